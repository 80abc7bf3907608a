"""Certified value of the sparse order-2 moment-SOS relaxation (relaxations.moments) from any multipliers.

For any y the SOS identity lambda - P(x) = sum_k m_k(x)^T Z_k m_k(x) holds exactly on {-1, 1}^n with the
exact blocks Z_k = C + L y, so for every vertex P(x) <= lambda + sum_k max(0, -nu_k) |m_k|^2 with
nu_k <= lambda_min(Z_k) rigorous (``gram.lambda_min_lower_bound``, for every Z_k within the entrywise
error bound E of the float blocks) and |m_k|^2 = order of block k (every entry of m_k is +-1). E covers
the coefficient errors C_err of P and the rounding of C + L y (gamma_{K+1}, factor 2 for the masses).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import SolverFailure
from ..relaxations.moments import MomentSystem
from ..rounding import TINY, gamma, next_up, sum_up, up
from .gram import lambda_min_lower_bound


@dataclass(frozen=True)
class MomentCertificate:
    upper: float
    lam: float
    nu: list          # rigorous lambda_min lower bound per block
    penalty: float


def certify_moments(system: MomentSystem, y: np.ndarray) -> MomentCertificate:
    """Certified max P from any multipliers y (module docstring)."""
    y = np.asarray(y, float)
    if y.shape != (system.n_multipliers,) or not np.all(np.isfinite(y)):
        raise SolverFailure("the SDP solver returned no usable multipliers")
    L = sp.csr_array(system.L)
    Z = system.C + L @ y
    K = int(np.diff(L.indptr).max(initial=0)) + 2
    mass = np.abs(system.C) + abs(L) @ np.abs(y)
    E = next_up(2.0 * gamma(K + 1) * mass + system.C_err * (1.0 + 2.0 * gamma(K + 1)) + TINY)
    nus, penalties = [], []
    for k, B in enumerate(system.orders):
        lo, hi = system.offsets[k], system.offsets[k + 1]
        r, c = system.rows[lo:hi], system.cols[lo:hi]
        Zk, Ek = np.zeros((B, B)), np.zeros((B, B))
        Zk[r, c] = Z[lo:hi]
        Zk[c, r] = Z[lo:hi]
        Ek[r, c] = E[lo:hi]
        Ek[c, r] = E[lo:hi]
        nu = lambda_min_lower_bound(Zk, Ek).nu
        nus.append(nu)
        if nu < 0:
            penalties.append(up(-nu * B))
    lam = float(y[0])
    penalty = sum_up(penalties) if penalties else 0.0
    upper = sum_up([lam, penalty]) if penalties else lam
    return MomentCertificate(upper=upper, lam=lam, nu=nus, penalty=penalty)
