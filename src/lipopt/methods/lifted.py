"""Deep networks, linear size: the interval Jacobian bound and the lifted McCormick LP (any depth).

``interval``: ||g||_q over the interval enclosure of the backward pass (relaxations.lifted.jacobian_box).
``lifted-lp``: maximise a linear overestimate of ||g||_q (q = 1: sum of chords of |g_i|; q = 2: sum of
chords of g_i^2, then sqrt; q = inf: max_i of max +-g_i, one LP per coordinate whose box could still beat
the best so far) over the lifted McCormick LP, solved by HiGHS (scipy.optimize.linprog, in a forked child
killed at the deadline) and certified from its duals (certify.lp_dual). Both read only the slope box,
so they serve every activation and domain.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .. import memory
from ..certify.lp_dual import dual_bound
from ..errors import SolverFailure
from ..model import Network
from ..polynomial import SlopeBox
from ..relaxations.lifted import chords, interval_bound, jacobian_box, lifted_lp, lp_size
from ..rounding import sum_up, up
from ..solvers.base import call_with_deadline
from .base import MethodOutput

BYTES_PER_INTERVAL_WEIGHT = 120   # transposed copy, signed parts, |W| per weight (scipy CSR, 3 arrays each)
BYTES_PER_LIFTED_NONZERO = 600    # COO/CSR build, scipy -> HiGHS copies, duals and the certificate's M^T
SECONDS_PER_WEIGHT = 2e-7         # interval propagation: a few sparse matvecs per weight
SECONDS_PER_LP_NONZERO = 2e-5     # HiGHS dual simplex on the lifted LP (measured: see bench_deep.py)
MAX_NORM1_LPS = 64                # l1 input norm: at most this many coordinate LPs, the rest by intervals


def _weights(net: Network) -> int:
    return int(sum(W.nnz for W in net.weights))


def interval_precheck(problem, opts: dict) -> None:
    memory.require(BYTES_PER_INTERVAL_WEIGHT * _weights(problem.net), "the interval Jacobian bound")


def lifted_precheck(problem, opts: dict) -> None:
    rows, cols, nnz = lp_size(problem.net)
    memory.require(BYTES_PER_LIFTED_NONZERO * nnz, f"the lifted LP ({rows:,} rows x {cols:,} columns)",
                   "use --method interval")
    limit = opts.get("time_limit")
    if limit is not None and SECONDS_PER_WEIGHT * _weights(problem.net) > limit:
        raise SolverFailure(f"time limit: the lifted LP's bounds alone need about "
                            f"{SECONDS_PER_WEIGHT * _weights(problem.net):.1f} s, more than the {limit:.1f} s left")


def interval_estimate(problem, opts: dict) -> float:
    return SECONDS_PER_WEIGHT * _weights(problem.net)


def lifted_estimate(problem, opts: dict) -> float:
    scale = problem.net.widths[0] if problem.norm == "1" else 1
    return SECONDS_PER_LP_NONZERO * lp_size(problem.net)[2] * min(scale, MAX_NORM1_LPS)


def run_interval(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """max ||g||_q over the interval enclosure of the backward pass."""
    t0 = time.perf_counter()
    box = jacobian_box(net, vec, slopes)
    ub = interval_bound(box, norm)
    return MethodOutput(ub, raw=ub, timings={"bound": time.perf_counter() - t0},
                        sizes={"hidden": int(sum(net.widths[1:-1])), "weights": _weights(net)})


def _solve(lp, obj, time_limit):
    """HiGHS through scipy: the duals (y >= 0 on the inequalities, z on the equalities) of max obj^T x."""
    from scipy.optimize import linprog
    options = {"presolve": True} if time_limit is None else {"presolve": True, "time_limit": float(time_limit)}
    res = linprog(-obj, A_ub=lp.A_ub, b_ub=lp.b_ub, A_eq=lp.A_eq, b_eq=np.zeros(lp.A_eq.shape[0]),
                  bounds=np.column_stack([lp.lb, lp.ub]), method="highs", options=options)
    if res.status != 0 or res.ineqlin is None:
        return None, f"HiGHS status {res.status}: {res.message}"
    return (-np.asarray(res.ineqlin.marginals), -np.asarray(res.eqlin.marginals), -float(res.fun)), "ok"


def _certified(lp, obj, deadline) -> tuple[float, float] | None:
    """(certified max obj^T x, solver's value), or None when the solver gave nothing in time."""
    if deadline is None:
        out, _ = _solve(lp, obj, None)
    else:
        left = deadline - time.perf_counter()
        if left <= 0.05:
            return None
        ok, res = call_with_deadline(_solve, (lp, obj, 0.9 * left), left)
        out = res[0] if ok else None
    if out is None:
        return None
    y, z, raw = out
    bound = dual_bound(obj, lp.A_ub, lp.b_ub, lp.A_eq, np.zeros(lp.A_eq.shape[0]), lp.lb, lp.ub, y, z)
    return (bound, raw) if math.isfinite(bound) else None


def run_lifted_lp(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """The lifted McCormick LP, certified from its duals; never above the interval bound."""
    t_start = time.perf_counter()
    limit = opts.get("time_limit")
    deadline = None if limit is None else t_start + limit
    box = jacobian_box(net, vec, slopes)
    interval = interval_bound(box, norm)
    lp = lifted_lp(net, box)
    timings = {"build": time.perf_counter() - t_start}
    sizes = {"rows": lp.shape[0], "columns": lp.shape[1], "nonzeros": lp.nnz}
    t0 = time.perf_counter()
    gi = lp.g_index
    solved, raw = 0, None
    if norm in ("inf", "2"):
        a, b = chords(box.g_lo, box.g_hi, "abs" if norm == "inf" else "square")
        obj = np.zeros(lp.shape[1])
        obj[gi] = a
        got = _certified(lp, obj, deadline)
        if got is None:
            raise SolverFailure("the lifted LP gave no solution within the time limit; no bound reported")
        solved = 1
        total = sum_up([got[0], *b.tolist()])
        raw = got[1] + float(b.sum())
        value = total if norm == "inf" else up(math.sqrt(max(total, 0.0)))
        raw = raw if norm == "inf" else math.sqrt(max(raw, 0.0))
    else:  # q = inf: max_i max(+g_i, -g_i), coordinates by decreasing interval bound
        a = np.maximum(np.abs(box.g_lo), np.abs(box.g_hi))
        order = np.argsort(-a, kind="stable")
        best, rest = 0.0, 0
        for pos, i in enumerate(order):
            if a[i] <= best:
                break
            if solved >= 2 * MAX_NORM1_LPS:
                rest = max(rest, float(a[order[pos:]].max()))
                break
            vals = []
            for sign in (1.0, -1.0):
                obj = np.zeros(lp.shape[1])
                obj[gi[i]] = sign
                got = _certified(lp, obj, deadline)
                vals.append(a[i] if got is None else min(a[i], got[0]))
                solved += got is not None
            best = max(best, *vals)
            if deadline is not None and time.perf_counter() > deadline:
                rest = max(rest, float(a[order[pos + 1:]].max(initial=0.0)))
                break
        value = max(best, rest)
        if solved == 0:
            raise SolverFailure("the lifted LP gave no solution within the time limit; no bound reported")
    timings["solve_and_certify"] = time.perf_counter() - t0
    details = {"interval_bound": interval, "lp_bound": value, "lps_solved": solved, "solver": "highs (scipy linprog)"}
    return MethodOutput(min(value, interval), raw=raw, timings=timings, sizes=sizes, details=details)
