"""Clarabel adapter for LPs: minimise c@x s.t. A_eq x = b_eq, x >= lb (finite lb, ub = inf only).

Clarabel's form is  min q^T x  s.t.  A x + s = b,  s in K;  here A = [A_eq; -I], b = [b_eq; -lb],
K = Zero(m) x Nonnegative(n).
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from .base import LinearProgram, SolverOutput, Status


def solve(lp: LinearProgram, method: str = "ipm", time_limit: float | None = None,
          threads: int | None = None) -> SolverOutput:
    try:
        import clarabel
    except ImportError:  # pragma: no cover
        raise InvalidInputError("clarabel is not installed: pip install clarabel") from None
    if np.any(np.isfinite(lp.ub)) or np.any(~np.isfinite(lp.lb)):
        raise InvalidInputError("the clarabel LP adapter supports only x >= lb (finite lb, no upper bounds)")
    m, n = lp.A_eq.shape
    A = sp.csc_matrix(sp.vstack([sp.csc_matrix(lp.A_eq), -sp.identity(n, format="csc")]))
    b = np.concatenate([lp.b_eq, -lp.lb])
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    if time_limit is not None:
        settings.time_limit = float(time_limit)
    t0 = time.perf_counter()
    solver = clarabel.DefaultSolver(sp.csc_matrix((n, n)), np.asarray(lp.c, float), A, b,
                                    [clarabel.ZeroConeT(m), clarabel.NonnegativeConeT(n)], settings)
    sol = solver.solve()
    seconds = time.perf_counter() - t0
    native = str(sol.status)
    status = {"Solved": Status.OPTIMAL, "AlmostSolved": Status.INACCURATE,
              "PrimalInfeasible": Status.INFEASIBLE, "AlmostPrimalInfeasible": Status.INFEASIBLE,
              "DualInfeasible": Status.UNBOUNDED, "MaxTime": Status.TIME_LIMIT,
              "MaxIterations": Status.TIME_LIMIT}.get(native, Status.ERROR)
    x = np.array(sol.x) if status in (Status.OPTIMAL, Status.INACCURATE) else None
    obj = float(sol.obj_val) + lp.offset if x is not None else None
    return SolverOutput(status, x, obj, seconds, "clarabel", native, {"iterations": int(sol.iterations)})
