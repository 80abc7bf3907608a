"""Canonical keys for multilinear monomials.

A monomial is a sorted set of variable ids, stored as a row padded with -1. Its key is
sum_pos (id_pos + 1) * B**pos with B = n_vars + 1, which does not depend on the padding width, so
keys from the polynomial and from the certificate compare directly. When B**width would overflow
int64 the key is a structured row (lexicographic order), which numpy sorts and searches alike.
"""
from __future__ import annotations

import numpy as np


def monomial_keys(rows: np.ndarray, n_vars: int, width: int) -> np.ndarray:
    """Keys of the monomials in ``rows`` (shape (N, w), w <= width, padded with -1)."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 2 or rows.shape[1] > width:
        raise ValueError(f"rows must be (N, <= {width}), got {rows.shape}")
    base = n_vars + 1
    if width == 0 or base ** width < 2**62:
        powers = base ** np.arange(rows.shape[1], dtype=np.int64)
        return (rows + 1) @ powers
    padded = np.full((rows.shape[0], width), -1, dtype=np.int64)
    padded[:, : rows.shape[1]] = rows
    dtype = np.dtype([(f"v{i}", np.int64) for i in range(width)])
    return np.ascontiguousarray(padded).view(dtype).ravel()


def lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each key in ``sorted_keys``, or -1 where it is absent."""
    pos = np.searchsorted(sorted_keys, keys)
    pos_c = np.minimum(pos, max(len(sorted_keys) - 1, 0))
    found = (pos < len(sorted_keys)) & (sorted_keys[pos_c] == keys) if len(sorted_keys) else np.zeros(len(keys), bool)
    return np.where(found, pos_c, -1)
