"""HiGHS adapter (highspy): minimise c@x s.t. A_eq x = b_eq, lb <= x <= ub, passed as CSC arrays."""
from __future__ import annotations

import time

import numpy as np

from ..errors import InvalidInputError
from .base import LinearProgram, SolverOutput, Status, call_with_deadline, quiet_fds

METHODS = {"ipm": ("ipm", "on"), "ipm-nocrossover": ("ipm", "off"), "simplex": ("simplex", "on"),
           "pdlp": ("pdlp", "off"), "choose": ("choose", "on")}


def _status_map():
    import highspy
    S = highspy.HighsModelStatus
    return {S.kOptimal: Status.OPTIMAL, S.kInfeasible: Status.INFEASIBLE,
            S.kUnbounded: Status.UNBOUNDED,
            S.kUnboundedOrInfeasible: Status.INFEASIBLE,  # our LPs are bounded below by max P
            S.kTimeLimit: Status.TIME_LIMIT, S.kIterationLimit: Status.TIME_LIMIT,
            S.kInterrupt: Status.TIME_LIMIT}


GRACE = 0.25  # seconds past the limit before the child process is killed (HiGHS stops itself first)


def solve(lp: LinearProgram, method: str = "ipm", time_limit: float | None = None,
          threads: int | None = None) -> SolverOutput:
    """Solve with HiGHS; with ``time_limit`` in a child process killed at the limit (HiGHS' own limit
    is checked per iteration, seconds apart on large interior-point solves)."""
    if time_limit is None:
        return _solve(lp, method, None, threads)
    t0 = time.perf_counter()
    ok, out = call_with_deadline(_solve, (lp, method, time_limit, threads), float(time_limit) + GRACE)
    if ok:
        return out
    status = Status.TIME_LIMIT if out.startswith("time limit") else Status.ERROR
    return SolverOutput(status, None, None, time.perf_counter() - t0, f"highs-{method}", out, {})


def _solve(lp: LinearProgram, method: str, time_limit: float | None, threads: int | None) -> SolverOutput:
    try:
        import highspy
    except ImportError:  # pragma: no cover
        raise InvalidInputError("highspy is not installed: pip install highspy") from None
    if method not in METHODS:
        raise InvalidInputError(f"unknown HiGHS method {method!r}; choose from {', '.join(METHODS)}")
    solver, crossover = METHODS[method]
    A = lp.A_eq.tocsc()
    t0 = time.perf_counter()
    with quiet_fds((1,)):  # HiGHS prints a banner from C on fd 1
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("solver", solver)
        h.setOptionValue("run_crossover", crossover)
        if time_limit is not None:
            h.setOptionValue("time_limit", float(time_limit))
        if threads is not None:
            h.setOptionValue("threads", int(threads))
        model = highspy.HighsLp()
        model.num_col_, model.num_row_ = A.shape[1], A.shape[0]
        model.col_cost_ = np.asarray(lp.c, float)
        model.col_lower_ = np.asarray(lp.lb, float)
        model.col_upper_ = np.where(np.isinf(lp.ub), highspy.kHighsInf, lp.ub)
        model.row_lower_ = np.asarray(lp.b_eq, float)
        model.row_upper_ = np.asarray(lp.b_eq, float)
        model.offset_ = float(lp.offset)
        model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        model.a_matrix_.start_ = A.indptr.astype(np.int32)
        model.a_matrix_.index_ = A.indices.astype(np.int32)
        model.a_matrix_.value_ = A.data.astype(float)
        h.passModel(model)
        h.run()
    seconds = time.perf_counter() - t0
    native = h.getModelStatus()
    status = _status_map().get(native, Status.ERROR)
    info = h.getInfo()
    x = None
    if info.primal_solution_status != 0:  # kSolutionStatusNone
        x = np.array(h.getSolution().col_value)
    if status is Status.OPTIMAL and info.primal_solution_status != 2:  # 2 = feasible
        status = Status.INACCURATE
    obj = info.objective_function_value if x is not None else None
    return SolverOutput(status, x, obj, seconds, f"highs-{method}", h.modelStatusToString(native),
                        {"iterations": int(info.ipm_iteration_count + info.simplex_iteration_count
                                           + info.pdlp_iteration_count)})
