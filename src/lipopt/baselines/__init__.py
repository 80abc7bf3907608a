"""Baselines: the product-of-norms upper bound and sampled-gradient lower bounds."""
from .ascent import local_lower_bound
from .product import product_bound
from .sampling import sampled_lower_bound

__all__ = ["local_lower_bound", "product_bound", "sampled_lower_bound"]
