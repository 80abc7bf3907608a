"""Product-of-norms upper bound: ||grad||_q <= ||W_d^T c||_q prod_l ||W_l^T||_{q->q} max|sigma'|.

With q dual to the input norm p: ||M^T||_{1->1} = max row abs sum of M (p = inf), the spectral norm
for p = 2, and ||M^T||_{inf->inf} = max column abs sum of M (p = 1). Rounding: every factor is
enlarged by a relative margin (spectral norms carry the solver's error, covered by 1e-9), and the
product is rounded upwards.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..model.network import Network
from ..polynomial import SlopeBox, global_slopes
from ..rounding import gamma_float, relative_up

_REL = 1e-12  # covers float summation error of the norms for any row length below 1e3 * 2^40


def _op_norm(W: sp.csr_array, norm: str) -> float:
    if norm == "inf":
        return float(abs(W).sum(axis=1).max()) * (1 + _REL)
    if norm == "1":
        return float(abs(W).sum(axis=0).max()) * (1 + _REL)
    if min(W.shape) <= 500:
        s = np.linalg.norm(W.toarray(), 2)
    else:
        s = spla.svds(W, k=1, return_singular_vectors=False, tol=1e-12)[0]
    return float(s) * (1 + 1e-9)


def product_bound(net: Network, c: np.ndarray, norm: str = "inf", slopes: SlopeBox | None = None) -> float:
    slopes = slopes or global_slopes(net)
    c = np.asarray(c, dtype=np.float64)
    WT = net.weights[-1].T
    # |fl(W^T c) - W^T c| <= gamma_m |W|^T |c| entrywise (m outputs); enlarge |g| by twice that.
    gamma = gamma_float(len(c) + 2)
    g = np.abs(WT @ c) + 2 * gamma * (abs(WT) @ np.abs(c))
    q = {"inf": 1, "2": 2, "1": np.inf}[norm]
    value = float(np.linalg.norm(g, q)) * (1 + _REL)
    for l in range(net.depth):
        s_max = float(max(np.abs(slopes.lo[l]).max(), np.abs(slopes.hi[l]).max()))
        value = value * _op_norm(net.weights[l], norm) * s_max
    return relative_up(value, 4 * (net.depth + 1))  # value >= 0: value (1 + 4 (d + 1) u), one ulp up
