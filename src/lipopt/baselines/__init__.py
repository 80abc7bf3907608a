"""Baselines: the product-of-norms upper bound; sampled, local-search and pattern-realising lower bounds."""
from .ascent import ascent_lower_bound, local_lower_bound
from .product import product_bound
from .sampling import sampled_lower_bound

__all__ = ["ascent_lower_bound", "local_lower_bound", "product_bound", "sampled_lower_bound"]
