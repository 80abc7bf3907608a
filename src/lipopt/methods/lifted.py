"""Deep networks, linear size: the interval Jacobian bound and the lifted McCormick LP (any depth).

``interval``: ||g||_q over the interval enclosure of the backward pass (relaxations.lifted.jacobian_box).
``lifted-lp``: linear bound propagation (relaxations.lifted_duals, certified as LP dual points), then
optimisation-based bound tightening of the u (and g) intervals (OBBT, a share of the time),
then maximise a linear overestimate of ||g||_q (q = 1: sum of chords of |g_i|; q = 2: sum of chords of
g_i^2, then sqrt; q = inf: max_i of max +-g_i, one LP per coordinate whose box could still beat the best
so far) over the lifted McCormick LP. HiGHS dual simplex, warm-started across objectives
(solvers.highs_session); every LP value is certified from its duals (certify.lp_dual), the tightened
intervals included. Both read only the slope box, so they serve every activation and domain.
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import scipy.sparse as sp

from .. import memory
from ..certify.lp_dual import DualCertifier
from ..errors import SolverFailure
from ..model import Network
from ..polynomial import SlopeBox
from ..relaxations.lifted import chords, interval_bound, jacobian_box, lifted_lp, lp_size, tighten
from ..relaxations.lifted_duals import LAMBDAS, assemble, propagate
from ..rounding import sum_up, up
from ..solvers.highs_session import HighsSession
from .base import MethodOutput

BYTES_PER_INTERVAL_WEIGHT = 120   # transposed copy, signed parts, |W| per weight (scipy CSR; an estimate)
BYTES_PER_LIFTED_NONZERO = 600    # COO/CSR build, HiGHS copy, the certificate's M^T and |M^T| (an estimate)
SECONDS_PER_WEIGHT = 2e-7         # interval propagation: a few sparse matvecs per weight
SECONDS_PER_LP_NONZERO = 2e-5     # auto's order only: the method uses whatever time it is given
MAX_NORM1_LPS = 64                # l1 input norm: auto's estimate counts this many coordinate LPs
OBBT_SECONDS = 10.0               # bound tightening without a time limit
OBBT_SHARE = 0.5                  # of the time limit for bound tightening
CERT_BATCH_ENTRIES = 4_000_000    # targets certified together: (targets x (rows + columns)) floats, a few
                                  # such arrays alive (cnn_bn: 107 targets, ~100 MB; one by one was 4.8 ms each)
NORM1_SECONDS = 30.0              # l1 input norm without a time limit: the per-coordinate LPs, then boxes


def _weights(net: Network) -> int:
    return int(sum(W.nnz for W in net.weights))


def interval_precheck(problem, opts: dict) -> None:
    memory.require(BYTES_PER_INTERVAL_WEIGHT * _weights(problem.net), "the interval Jacobian bound")


def _propagation_bytes(net: Network) -> int:
    """lifted_duals.propagate: dense (targets x width) blocks, six per layer above the target, and one dense
    copy of each weight matrix, in float64."""
    w = net.widths
    targets = max(w[:max(1, net.depth - 1)])  # g (n_0) and u_l for l <= d - 3 (width w[l + 1])
    return 8 * (targets * 6 * sum(w[1:-1]) + max(a * b for a, b in zip(w[1:-1], w[:-2])))


def lifted_precheck(problem, opts: dict) -> None:
    rows, cols, nnz = lp_size(problem.net)
    memory.require(BYTES_PER_LIFTED_NONZERO * nnz + _propagation_bytes(problem.net),
                   f"the lifted LP ({rows:,} rows x {cols:,} columns) and its bound propagation",
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


class _Solver:
    """One LP in a warm-started HiGHS session; every answer certified from the duals (lp_dual)."""

    def __init__(self, lp, deadline: float | None):
        m, e = lp.A_ub.shape[0], lp.A_eq.shape[0]
        A = sp.vstack([lp.A_ub, lp.A_eq], format="csr")
        row_lo = np.concatenate([np.full(m, -np.inf), np.zeros(e)])
        row_hi = np.concatenate([lp.b_ub, np.zeros(e)])
        self.session = HighsSession(A, row_lo, row_hi, lp.lb, lp.ub)
        self.cert = DualCertifier(lp.A_ub, lp.b_ub, lp.A_eq, np.zeros(e), lp.lb, lp.ub)
        self.deadline = deadline
        self.solved = 0

    def maximum(self, obj: np.ndarray) -> tuple[float | None, float | None]:
        """(certified upper bound on max obj^T x or None, the solver's value or None)."""
        left = None if self.deadline is None else self.deadline - time.perf_counter()
        if left is not None and left <= 0.0:
            return None, None
        w, raw, _ = self.session.maximise(obj, left)
        if w is None:
            return None, None
        self.solved += 1
        bound = self.cert.bound(obj, w)
        return (bound if math.isfinite(bound) else None), raw


def _unit(n: int, col: int, sign: float) -> np.ndarray:
    e = np.zeros(n)
    e[col] = sign
    return e


def _propagated(net: Network, box, deadline: float | None) -> tuple[object, int]:
    """Tighten u_l (l <= d - 3, top first) and then g with linear bound propagation (relaxations.
    lifted_duals): per target the best of a few plane mixes by its float estimate, certified as a dual
    point of the layer's LP (a rigorous bound whatever the float estimate said)."""
    count = 0
    if net.depth < 2:
        return box, count
    for t in range(net.depth - 3, -2, -1):
        lp = lifted_lp(net, box, first=max(t, 0))
        cert = DualCertifier(lp.A_ub, lp.b_ub, lp.A_eq, np.zeros(lp.A_eq.shape[0]), lp.lb, lp.ub)
        cols = np.asarray(lp.g_index if t < 0 else lp.u_index[t])
        ends = {}
        for sign in (1.0, -1.0):
            out = np.full(len(cols), np.inf)
            mixes = []
            for lam in LAMBDAS:  # each mix is a full backward sweep: the clock is checked between them
                if deadline is not None and time.perf_counter() >= deadline:
                    break
                mixes.append(propagate(net, box, t, sign, lam))
            pick = np.argmin(np.stack([m[2] for m in mixes]), axis=0) if mixes else np.zeros(0, dtype=int)
            chunk = max(1, CERT_BATCH_ENTRIES // (lp.shape[0] + lp.shape[1]))
            for i, (Y, Z, _) in enumerate(mixes):
                targets = np.flatnonzero(pick == i)
                for s0 in range(0, len(targets), chunk):
                    if deadline is not None and time.perf_counter() >= deadline:
                        break  # the targets left keep their boxes (out = inf)
                    js = targets[s0:s0 + chunk]
                    out[js] = cert.unit_bounds(cols[js], sign, assemble(net, box, t, Y, Z, js))
                    count += len(js)
            ends[sign] = out
        if t >= 0:
            box = tighten(net, box, t, -ends[-1.0], ends[1.0])
        else:
            glo, ghi = np.maximum(box.g_lo, -ends[-1.0]), np.minimum(box.g_hi, ends[1.0])
            if np.any(glo > ghi):
                raise AssertionError("bound propagation produced an empty interval: an enclosure is not rigorous")
            box = dataclasses.replace(box, g_lo=glo, g_hi=ghi)
        if deadline is not None and time.perf_counter() >= deadline:
            break
    return box, count


def _obbt(net: Network, box, deadline: float | None) -> tuple[object, int]:
    """Optimisation-based bound tightening of u_l, top layer first, widest McCormick gaps (u width times
    s width) first, then of g where it straddles 0; each new end is a certified LP bound, intersected
    with the old enclosure. Only u_l with l <= d - 3 (0-based) and g at depth >= 2 can gain: u_{d-1} =
    W_d^T c is a constant and u_{d-2} (like g at depth 1) is separable in one layer's slopes, where the
    LP's maximum equals the interval end."""
    count = 0
    if net.depth < 2:
        return box, count
    for l in range(net.depth - 3, -1, -1):
        lp = lifted_lp(net, box, first=l)  # the layers below u_l only hold consequences of it: left out
        solver = _Solver(lp, deadline)
        lo, hi = box.u_lo[l].copy(), box.u_hi[l].copy()
        gap = (hi - lo) * (box.s_hi[l] - box.s_lo[l] + 1e-3)
        for j in np.argsort(-gap, kind="stable"):
            if not hi[j] > lo[j]:
                continue
            col = lp.u_index[l][j]
            top, _ = solver.maximum(_unit(lp.shape[1], col, 1.0))
            bot, _ = solver.maximum(_unit(lp.shape[1], col, -1.0))
            if top is None or bot is None:
                break
            hi[j], lo[j] = min(hi[j], top), max(lo[j], -bot)
            count += 2
        box = tighten(net, box, l, lo, hi)
        if deadline is not None and time.perf_counter() >= deadline:
            return box, count
    lp = lifted_lp(net, box)
    solver = _Solver(lp, deadline)
    glo, ghi = box.g_lo.copy(), box.g_hi.copy()
    straddle = np.minimum(-glo, ghi)
    for i in np.argsort(-straddle, kind="stable"):
        if straddle[i] <= 0:
            break
        top, _ = solver.maximum(_unit(lp.shape[1], lp.g_index[i], 1.0))
        bot, _ = solver.maximum(_unit(lp.shape[1], lp.g_index[i], -1.0))
        if top is None or bot is None:
            break
        ghi[i], glo[i] = min(ghi[i], top), max(glo[i], -bot)
        count += 2
    if np.any(glo > ghi):
        raise AssertionError("bound tightening produced an empty interval: an enclosure is not rigorous")
    return dataclasses.replace(box, g_lo=glo, g_hi=ghi), count


def run_lifted_lp(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """The lifted McCormick LP after bound tightening, certified from its duals; never above the
    interval bound."""
    t_start = time.perf_counter()
    limit = opts.get("time_limit")
    deadline = None if limit is None else t_start + limit
    box = jacobian_box(net, vec, slopes)
    interval = interval_bound(box, norm)
    obbt = opts.get("obbt_seconds", OBBT_SECONDS if limit is None else OBBT_SHARE * limit)
    box, propagated = _propagated(net, box, t_start + obbt)
    box, tightened = _obbt(net, box, t_start + obbt) if time.perf_counter() < t_start + obbt else (box, 0)
    t_obbt = time.perf_counter() - t_start
    t0 = time.perf_counter()
    tight = interval_bound(box, norm)  # the interval bound of the tightened box: also valid
    if deadline is not None and t0 >= deadline:  # building the LP and HiGHS' setup do not check the clock
        return MethodOutput(min(interval, tight), raw=None, status="time_limit", timings={"tighten": t_obbt},
                            details={"interval_bound": interval, "tightened_interval_bound": tight,
                                     "propagated_bounds": propagated, "obbt_lps": tightened})
    lp = lifted_lp(net, box)
    solver = _Solver(lp, deadline)
    sizes = {"rows": lp.shape[0], "columns": lp.shape[1], "nonzeros": lp.nnz}
    gi, n = lp.g_index, lp.shape[1]
    raw = None
    if norm in ("inf", "2"):
        a, b = chords(box.g_lo, box.g_hi, "abs" if norm == "inf" else "square")
        obj = np.zeros(n)
        obj[gi] = a
        got, raw = solver.maximum(obj)
        status = "ok" if got is not None else "time_limit"  # then the tightened boxes' bound stands
        total = math.inf if got is None else sum_up([got, *b.tolist()])
        value = total if norm == "inf" else up(math.sqrt(max(total, 0.0)))
        if raw is not None:
            raw = raw + float(b.sum()) if norm == "inf" else math.sqrt(max(raw + float(b.sum()), 0.0))
    else:  # q = inf: max_i max(+g_i, -g_i), coordinates by decreasing box bound, until none can beat the best
        a = np.maximum(np.abs(box.g_lo), np.abs(box.g_hi))
        order = np.argsort(-a, kind="stable")
        best, status = 0.0, "ok"
        if deadline is None:  # up to 2 n_0 LPs: capped even without a time limit
            solver.deadline = time.perf_counter() + NORM1_SECONDS
        for pos, i in enumerate(order):
            if a[i] <= best:
                break
            tops = [solver.maximum(_unit(n, gi[i], sign))[0] for sign in (1.0, -1.0)]
            if any(t is None for t in tops):  # out of time: the rest by their boxes
                best, status = max(best, float(a[order[pos:]].max())), "time_limit"
                break
            best = max(best, min(a[i], max(tops)))
        value = best
    timings = {"tighten": t_obbt, "solve_and_certify": time.perf_counter() - t0}
    details = {"interval_bound": interval, "tightened_interval_bound": tight, "lp_bound": value,
               "lps_solved": solver.solved, "propagated_bounds": propagated, "obbt_lps": tightened,
               "solver": "highs (simplex, warm-started)"}
    return MethodOutput(min(value, interval, tight), raw=raw, status=status, timings=timings, sizes=sizes,
                        details=details)
