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

    def _clean(self, W: np.ndarray) -> np.ndarray:
        """A copy of the multipliers (rows first, targets last if several): NaN / inf to 0, y clipped at 0."""
        W = np.nan_to_num(np.array(W, float), nan=0.0, posinf=0.0, neginf=0.0, copy=False)
        np.maximum(W[:self.m_ub], 0.0, out=W[:self.m_ub])
        return W

    def _terms(self, r: np.ndarray, err: np.ndarray, W: np.ndarray):
        """The bound's terms rounded up: b^T y + f^T z by rows, and per column the largest corner of
        [r - err, r + err] x [lb, ub] (a trailing axis of targets kept)."""
        r_lo, r_hi = widen_down(r, err), widen_up(r, err)
        shape = (-1,) + (1,) * (r.ndim - 1)
        lb, ub = self.lb.reshape(shape), self.ub.reshape(shape)
        corners = np.maximum(r_lo * lb, r_lo * ub)
        np.maximum(corners, r_hi * lb, out=corners)
        np.maximum(corners, r_hi * ub, out=corners)
        return next_up(self.rhs.reshape(shape) * W), next_up(corners)

    def bound(self, obj: np.ndarray, w: np.ndarray) -> float:
        """Upper bound on max obj^T x for multipliers w = (y, z) (y clipped at 0)."""
        w = self._clean(w)
        r = obj - self.Mt @ w
        err = next_up(4.0 * self.gamma * (np.abs(obj) + self.absMt @ np.abs(w)))
        return sum_up(np.concatenate(self._terms(r, err, w)).tolist())

    def unit_bounds(self, cols: np.ndarray, signs, W: np.ndarray) -> np.ndarray:
        """``bound`` for many unit objectives at once: target i maximises signs[i] x[cols[i]] with
        multipliers W[i] (W of shape (T, rows)); the same terms, summed by ``rounding.row_sums_up``."""
        W = self._clean(np.atleast_2d(W).T)           # (rows, T): column layout throughout
        at = (np.asarray(cols), np.arange(W.shape[1]))
        R = -np.asarray(self.Mt @ W)                 # r = o - M^T w, the unit o added below
        R[at] += np.broadcast_to(np.asarray(signs, float), (W.shape[1],))
        err = np.asarray(self.absMt @ np.abs(W))
        err[at] += 1.0
        err = next_up(4.0 * self.gamma * err)
        return row_sums_up(self._terms(R, err, W), axis=0)


def dual_bound(obj: np.ndarray, A: sp.csr_array, b: np.ndarray, E: sp.csr_array | None, f: np.ndarray | None,
               lb: np.ndarray, ub: np.ndarray, y: np.ndarray, z: np.ndarray | None) -> float:
    """An upper bound on max o^T x over the LP, valid for any y (clipped at 0) and z."""
    w = np.asarray(y, float) if E is None else np.concatenate([np.asarray(y, float), np.asarray(z, float)])
    return DualCertifier(A, b, E, f, lb, ub).bound(np.asarray(obj, float), w)
