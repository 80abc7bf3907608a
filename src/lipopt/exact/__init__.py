"""Exact maximum of the norm-gradient polynomial (the FGL) for small networks."""
from .enumerate import MAX_ENUMERATION_BITS, exact_fgl

__all__ = ["MAX_ENUMERATION_BITS", "exact_fgl"]
