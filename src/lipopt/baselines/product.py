"""Product-of-norms upper bound: ||grad||_q <= ||W_d^T c||_q prod_l ||W_l^T||_{q->q} max|sigma'|.

With q dual to the input norm p: ||M^T||_{1->1} = max row abs sum of M (p = inf), the spectral norm
for p = 2, and ||M^T||_{inf->inf} = max column abs sum of M (p = 1). Rounding: every factor is
enlarged by a relative margin; spectral norms are proved upper bounds (``spectral_upper``: an eigenvalue
estimate certified by a rigorous lambda_min bound of t I - W^T W); the product is rounded upwards.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..model.network import Network
from ..polynomial import SlopeBox, global_slopes
from ..certify.gram import shifted_cholesky_bound
from ..relaxations.lipsdp import _norm2_upper
from ..rounding import TINY, U, gamma, gamma_float, norm2_bound, relative_up, up

_REL = 1e-12  # covers float summation error of the norms for any row length below 1e3 * 2^40
MAX_GRAM = 3000  # dense Gram matrices up to this order (72 MB, about a second); beyond: the cheap bound


def _op_norm(W: sp.csr_array, norm: str) -> float:
    if norm == "inf":
        return float(abs(W).sum(axis=1).max()) * (1 + _REL)
    if norm == "1":
        return float(abs(W).sum(axis=0).max()) * (1 + _REL)
    return spectral_upper(W)


def spectral_upper(W) -> float:
    """Rigorous upper bound on ||W||_2: an eigenvalue estimate s^2 of the smaller Gram matrix G, then
    sqrt(t) for the first t >= s^2 with lambda_min(t I - G) >= 0 proved for every G within the float
    error of computing it (certify.gram.shifted_cholesky_bound; |fl(G) - G| <= gamma_k |W|^T |W|).
    Orders above MAX_GRAM, or a failed proof, fall back to min(||W||_F, sqrt(||W||_1 ||W||_inf)), rounded up."""
    W = sp.csr_array(W)
    cheap = _norm2_upper(W)
    k = min(W.shape)
    if k == 0 or W.nnz == 0:
        return 0.0
    if k > MAX_GRAM:
        return cheap
    A = W if W.shape[1] == k else sp.csr_array(W.T)    # G = A^T A of order k
    if A.nnz > 0.05 * A.shape[0] * A.shape[1]:   # dense enough for BLAS (any summation order is covered)
        Ad = A.toarray()
        G, E = Ad.T @ Ad, np.abs(Ad).T @ np.abs(Ad)
    else:
        absA = abs(A)
        G, E = (A.T @ A).toarray(), (absA.T @ absA).toarray()
    G = np.triu(G) + np.triu(G, 1).T                  # exactly symmetric; each entry a computed one
    E = E * up(gamma(A.shape[0] + 2) * 1.01)
    if k <= 64:
        s2 = float(sla.eigvalsh(G, subset_by_index=[k - 1, k - 1], check_finite=False)[0])
    else:  # an estimate only (deterministic start); the Cholesky below proves the bound
        s2 = float(spla.eigsh(G, k=1, which="LA", tol=1e-10, v0=np.ones(k), return_eigenvectors=False)[0])
    rounding = norm2_bound(E)
    idx = np.arange(k)
    for rel in (1e-9, 1e-6, 1e-3):
        t = up(max(s2, 0.0) * (1 + rel) + TINY)
        Z = -G
        Z[idx, idx] += t   # |fl(t - G_ii) - (t - G_ii)| <= u |.|: covered by the 2u term of the theorem's diagonal
        nu = shifted_cholesky_bound(Z, 0.5 * rel * max(s2, 0.0), rounding + U * t)
        if nu is not None and nu >= 0:
            return min(cheap, up(math.sqrt(t)))
    return cheap


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
