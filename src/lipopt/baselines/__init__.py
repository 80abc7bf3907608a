"""Baselines: the product-of-norms upper bound and sampled-gradient lower bounds."""
from .product import product_bound
from .sampling import sampled_lower_bound

__all__ = ["product_bound", "sampled_lower_bound"]
