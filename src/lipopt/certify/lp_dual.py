"""Rigorous bound on an LP's maximum from any dual point (Neumaier & Shcherbina 2004).

For  max o^T x  s.t.  A x <= b,  E x = f,  lb <= x <= ub  and ANY y >= 0, z: with r = o - A^T y - E^T z,

    o^T x = y^T A x + z^T E x + r^T x  <=  b^T y + f^T z + sum_j max(r_j lb_j, r_j ub_j)

for every feasible x. The solver's duals only make it tight; y is clipped at 0. r is computed in floats
and enclosed with Higham's dot-product bound (gamma_k sum|terms|, charged 4x, k = terms per column + 2);
every product is rounded one ulp outward and the sums use fsum plus one ulp, so the value is an upper
bound in exact arithmetic. Every column must be finitely boxed.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..rounding import gamma, next_up, sum_up, widen_down, widen_up


def dual_bound(obj: np.ndarray, A: sp.csr_array, b: np.ndarray, E: sp.csr_array | None, f: np.ndarray | None,
               lb: np.ndarray, ub: np.ndarray, y: np.ndarray, z: np.ndarray | None) -> float:
    """An upper bound on max o^T x over the LP, valid for any y (clipped at 0) and z."""
    if not (np.all(np.isfinite(lb)) and np.all(np.isfinite(ub))):
        raise AssertionError("dual_bound needs finite variable bounds")
    y = np.maximum(np.nan_to_num(np.asarray(y, float)), 0.0)
    M = A if E is None else sp.vstack([A, E], format="csr")
    w = y if E is None else np.concatenate([y, np.nan_to_num(np.asarray(z, float))])
    rhs = b if E is None else np.concatenate([b, f])
    Mt = sp.csr_array(M.T)
    r = obj - Mt @ w
    mass = np.abs(obj) + abs(Mt) @ np.abs(w)
    k = int(np.diff(Mt.indptr).max(initial=0)) + 3
    err = next_up(4.0 * gamma(k) * mass)
    r_lo, r_hi = widen_down(r, err), widen_up(r, err)
    corners = np.stack([r_lo * lb, r_lo * ub, r_hi * lb, r_hi * ub])
    box_terms = next_up(corners.max(axis=0))
    return sum_up(np.concatenate([next_up(rhs * w), box_terms]).tolist())
