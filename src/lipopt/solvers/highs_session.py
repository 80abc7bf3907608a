"""A HiGHS model kept in memory for many objectives over one feasible set (bound tightening, per-coordinate
maxima): the dual simplex warm-starts from the previous basis, so each new objective costs a few pivots.

Rows are row_lo <= A x <= row_hi, columns lb <= x <= ub. ``maximise`` returns the row multipliers of the
maximisation (w = -row_dual of the equivalent minimisation of -obj, so w >= 0 on active upper rows), also
after a time limit when HiGHS has a dual point: a certificate (certify.lp_dual) is valid for any multipliers.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import quiet_fds

STRATEGY = 1  # dual simplex (primal, 4, warm-started slower: 256 vs 432 tightening LPs in 30 s on mlp128x4)


class HighsSession:
    def __init__(self, A: sp.csr_array, row_lo: np.ndarray, row_hi: np.ndarray, lb: np.ndarray, ub: np.ndarray):
        import highspy
        self._hs = highspy
        A = sp.csc_array(A)
        with quiet_fds((1,)):
            h = highspy.Highs()
            h.setOptionValue("output_flag", False)
            h.setOptionValue("solver", "simplex")
            # no "threads" option: HiGHS has one scheduler per process, and a thread count differing from
            # the first instance's makes every later run fail (after the MIP, the session returned no duals)
            h.setOptionValue("simplex_strategy", STRATEGY)
            # presolve does not check the clock (1.1 s past a 0.5 s limit on the 1.9 M-nonzero lifted LP of
            # 784-1024x2-10) and is not faster there (its first solve: > 20 s with presolve, 14.3 s without);
            # later objectives warm-start from the basis, where presolve is not run anyway
            h.setOptionValue("presolve", "off")
            model = highspy.HighsLp()
            model.num_col_, model.num_row_ = A.shape[1], A.shape[0]
            model.col_cost_ = np.zeros(A.shape[1])
            model.col_lower_ = np.asarray(lb, float)
            model.col_upper_ = np.asarray(ub, float)
            model.row_lower_ = np.where(np.isinf(row_lo), -highspy.kHighsInf, row_lo)
            model.row_upper_ = np.where(np.isinf(row_hi), highspy.kHighsInf, row_hi)
            model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
            model.a_matrix_.start_ = A.indptr.astype(np.int32)
            model.a_matrix_.index_ = A.indices.astype(np.int32)
            model.a_matrix_.value_ = A.data.astype(float)
            h.passModel(model)
        self.h = h
        self.n = A.shape[1]
        self._nonzero = np.zeros(0, dtype=np.int32)

    def maximise(self, obj: np.ndarray, time_limit: float | None = None):
        """(row multipliers w or None, solver's objective value or None, status string)."""
        idx = np.flatnonzero(obj).astype(np.int32)
        reset = np.union1d(self._nonzero, idx).astype(np.int32)
        self.h.changeColsCost(len(reset), reset, -np.asarray(obj, float)[reset])
        self._nonzero = idx
        self.h.setOptionValue("time_limit", float(time_limit) if time_limit is not None else self._hs.kHighsInf)
        with quiet_fds((1,)):
            self.h.run()
        info = self.h.getInfo()
        status = self.h.modelStatusToString(self.h.getModelStatus())
        if info.dual_solution_status == 0:  # no dual point
            return None, None, status
        w = -np.asarray(self.h.getSolution().row_dual, float)
        raw = -float(info.objective_function_value) if info.primal_solution_status != 0 else None
        return w, raw, status
