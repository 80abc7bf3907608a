"""Rigorous bound on an LP's maximum from any dual point (Neumaier & Shcherbina 2004).

For  max o^T x  s.t.  A x <= b,  E x = f,  lb <= x <= ub  and ANY y >= 0, z: with r = o - A^T y - E^T z,

    o^T x = y^T A x + z^T E x + r^T x  <=  b^T y + f^T z + sum_j max(r_j lb_j, r_j ub_j)

for every feasible x. The solver's duals only make it tight; y is clipped at 0. r is computed in floats
and enclosed with Higham's dot-product bound (gamma_k sum|terms|, charged 4x, k = terms per column + 3);
every product is rounded one ulp outward and the sums use fsum plus one ulp, so the value is an upper
bound in exact arithmetic. Every column must be finitely boxed.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..rounding import gamma, next_up, row_sums_up, sum_up, widen_down, widen_up


class DualCertifier:
    """The LP's data prepared once (M^T, |M|^T, k) for many objectives and dual points."""

    def __init__(self, A: sp.csr_array, b: np.ndarray, E: sp.csr_array | None, f: np.ndarray | None,
                 lb: np.ndarray, ub: np.ndarray):
        if not (np.all(np.isfinite(lb)) and np.all(np.isfinite(ub))):
            raise AssertionError("dual_bound needs finite variable bounds")
        M = A if E is None else sp.vstack([A, E], format="csr")
        self.m_ub = A.shape[0]
        self.rhs = np.asarray(b, float) if E is None else np.concatenate([b, f])
        self.Mt = sp.csr_array(M.T)
        self.absMt = abs(self.Mt)
        self.gamma = gamma(int(np.diff(self.Mt.indptr).max(initial=0)) + 3)
        self.lb, self.ub = np.asarray(lb, float), np.asarray(ub, float)

    def bound(self, obj: np.ndarray, w: np.ndarray) -> float:
        """Upper bound on max obj^T x for multipliers w = (y, z) (y clipped at 0)."""
        w = np.nan_to_num(np.asarray(w, float), nan=0.0, posinf=0.0, neginf=0.0)
        w[:self.m_ub] = np.maximum(w[:self.m_ub], 0.0)
        r = obj - self.Mt @ w
        err = next_up(4.0 * self.gamma * (np.abs(obj) + self.absMt @ np.abs(w)))
        r_lo, r_hi = widen_down(r, err), widen_up(r, err)
        corners = np.stack([r_lo * self.lb, r_lo * self.ub, r_hi * self.lb, r_hi * self.ub])
        return sum_up(np.concatenate([next_up(self.rhs * w), next_up(corners.max(axis=0))]).tolist())

    def unit_bounds(self, cols: np.ndarray, signs, W: np.ndarray) -> np.ndarray:
        """``bound`` for many unit objectives at once: target i maximises signs[i] x[cols[i]] with
        multipliers W[i] (W of shape (T, rows)); the same terms, summed by ``rounding.row_sums_up``."""
        T = len(cols)
        W = np.nan_to_num(np.array(W, float, ndmin=2), nan=0.0, posinf=0.0, neginf=0.0, copy=False)
        np.maximum(W[:, :self.m_ub], 0.0, out=W[:, :self.m_ub])
        at = (np.asarray(cols), np.arange(T))
        R = -np.asarray(self.Mt @ W.T)               # (columns, T): r = o - M^T w, column layout
        R[at] += np.broadcast_to(np.asarray(signs, float), (T,))
        err = np.asarray(self.absMt @ np.abs(W).T)
        err[at] += 1.0
        err *= 4.0 * self.gamma
        err = next_up(err)
        r_lo, r_hi = widen_down(R, err), widen_up(R, err)
        lb, ub = self.lb[:, None], self.ub[:, None]
        corners = np.maximum(r_lo * lb, r_lo * ub)
        np.maximum(corners, r_hi * lb, out=corners)
        np.maximum(corners, r_hi * ub, out=corners)
        return row_sums_up([next_up(self.rhs[:, None] * W.T), next_up(corners)], axis=0)


def dual_bound(obj: np.ndarray, A: sp.csr_array, b: np.ndarray, E: sp.csr_array | None, f: np.ndarray | None,
               lb: np.ndarray, ub: np.ndarray, y: np.ndarray, z: np.ndarray | None) -> float:
    """An upper bound on max o^T x over the LP, valid for any y (clipped at 0) and z."""
    w = np.asarray(y, float) if E is None else np.concatenate([np.asarray(y, float), np.asarray(z, float)])
    return DualCertifier(A, b, E, f, lb, ub).bound(np.asarray(obj, float), w)
