"""l2-opt on lifted graphs with carries: the chain's certified closed form as the start, then L-BFGS on
the carry-free block-chordal LMI (``relaxations.lipsdp_dag``), certified by ``certify.lipsdp_dag``.

The carry-free LMI at the chain's multipliers (carries dropped) is at least as tight as the chain's LMI
(its restriction), and it has no identity multipliers wanting t -> infinity, so the refinement moves in
fewer, smaller variables on smaller blocks (resnet_cnn: five 1568-blocks instead of 1568- and 3136-blocks
in turn). The bound returned is the smaller of the chain's certified closed form and the refined point's
certificate.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..certify.lipsdp_dag import certify_dag
from ..errors import OutOfTime, SolverFailure
from ..model.graph_lift import LiftedChain
from ..relaxations.lipsdp_dag import dag_data, dag_value, reduce_input
from ..relaxations.lipsdp_layers import BARRIERS, GRAD_PER_SWEEP, layer_data, refine
from ..relaxations.quadratic import check_slopes
from ..relaxations.shor import SDPBound
from ..slopes import SlopeBox
from .l2 import IN_PROCESS_FLOPS, RACE_SHARE, _flops, closed_form_starts, retreats

CERT_PER_VALUE = 4.0      # a certificate's time / one value evaluation (resnet_cnn: 6.0 s / 1.7 s)
START_SHARE = 0.15        # the chain's closed-form starts: the refinement, not they, needs the time
BARRIER_PER_VALUE = 3.0   # a barrier gradient's time / one value (the selected inverse; resnet_cnn 5.3 s / 1.7 s)
BARRIER_EVALS = 100       # the barrier path only when this many of its gradients fit: on fewer, plain
                          # descent gets further (resnet_cnn at 45 s: 32.4 plain, 33.1 with the barrier)


def _value_box(lifted: LiftedChain, box: SlopeBox):
    """Each hidden layer's new value's part of the chain's slope box (the last part of the layer)."""
    lo, hi = [], []
    for layer, a, b in zip(lifted.parts, box.lo, box.hi):
        n = layer[-1][1]
        lo.append(np.asarray(a, float)[len(a) - n:])
        hi.append(np.asarray(b, float)[len(b) - n:])
    return lo, hi


def _dag_start(lifted: LiftedChain, chain_data, t_chain: list, dd) -> list:
    """The chain's multipliers on the values' kept neurons (each layer's last part)."""
    out = []
    for l, layer in enumerate(lifted.parts):
        n_layer = sum(s for _, s in layer)
        full = np.full(n_layer, np.nan)
        full[chain_data.kept[l]] = t_chain[l]
        out.append(full[n_layer - layer[-1][1]:][dd.kept[l + 1]])
    return out


def lipsdp_dag_opt(lifted: LiftedChain, n0: int, c, box: SlopeBox, time_limit: float | None) -> SDPBound:
    """Certified l2 bound on c^T f for the graph ``lifted`` was lifted from (see module doc)."""
    t_start = time.perf_counter()
    end = None if time_limit is None else t_start + float(time_limit)
    net = lifted.net
    box = check_slopes(net, box)
    data = layer_data(net, c, box)
    sizes = {"order": int(sum(net.widths[:-1])), "layers": net.depth}
    if data is None or (not np.any(data.u) and not np.any(data.u_err)):
        return SDPBound(upper=0.0, raw=0.0, status="optimal", method="lipsdp-dag-opt", norm="2", sizes=sizes,
                        timings={"total": time.perf_counter() - t_start}, details={})
    best, own, L, info, t_one, failure = closed_form_starts(net, c, box, data, t_start, time_limit, START_SHARE)
    if best is None:
        raise failure
    t_sweeps = time.perf_counter() - t_start
    wide = SlopeBox(tuple(np.zeros_like(np.asarray(h, float)) for h in box.hi), box.hi)
    cands = [(box, data, own[0])] if own is not None else []
    if best[0] is not data:
        cands.append((wide, best[0], best[1]))
    starts, sweep = [], 0.0
    for b, cd, tc in cands:      # the chain's starts with the carries dropped
        lo, hi = _value_box(lifted, b)
        dd = dag_data(lifted.dag, n0, lo, hi, data.growth, np.asarray(c, float))
        if dd is None:
            return SDPBound(upper=0.0, raw=0.0, status="optimal", method="lipsdp-dag-opt", norm="2",
                            sizes=sizes, timings={"total": time.perf_counter() - t_start}, details={})
        t0 = _dag_start(lifted, cd, tc, dd)
        fast = reduce_input(dd)        # F and its gradient only; the certificate assembles dd itself
        s0 = time.perf_counter()
        F = dag_value(fast, t0)
        sweep = max(sweep, time.perf_counter() - s0)
        if math.isfinite(F):
            starts.append((fast, t0, F, dd))
    details = {**info, "raw_fast": math.sqrt(max(best[2], 0.0)), "R2": data.R2, "carry_free": False}
    t_refine = t_cert = 0.0
    F_best = best[2]
    cert_cost = CERT_PER_VALUE * sweep
    if starts:
        deadline = None if end is None else end - 1.3 * cert_cost - sweep - 0.02 * float(time_limit)
        s0 = time.perf_counter()
        span = None if deadline is None else deadline - time.perf_counter()
        barriers = BARRIERS if span is None or span > BARRIER_EVALS * BARRIER_PER_VALUE * sweep else ()
        # refine's ``sweep`` is a value's time, a gradient costing GRAD_PER_SWEEP of them (the chain's); here a
        # plain gradient costs about one value (v = Z'^-1 u comes with F), a barrier one BARRIER_PER_VALUE
        per = (BARRIER_PER_VALUE if barriers else 1.0) / GRAD_PER_SWEEP
        fast, t_first, F0, t, dd = _race(starts, deadline, per * sweep, barriers)
        t_refine = time.perf_counter() - s0
        # huge multipliers (fixed neurons want t -> infinity) inflate the certificate's rounding term
        # (times R^2): retreat towards the start's scale while that pays (as ``l2.lipsdp_layers``)
        for cap, tc in retreats(t, t_first):
            if end is not None and end - time.perf_counter() < 1.2 * cert_cost:
                break
            F = dag_value(fast, tc)
            if not math.isfinite(F):
                continue
            s0 = time.perf_counter()
            try:
                rho_c, Ld, infod = certify_dag(dd, F, tc)
            except SolverFailure:
                continue
            finally:
                t_cert += time.perf_counter() - s0
            if Ld < L:
                L, F_best = Ld, F
                details = {**details, **infod, "carry_free": True, "retreat": cap,
                           "raw_carry_free_start": math.sqrt(max(F0, 0.0))}
            if rho_c - infod["rho"] <= 1e-6 * infod["rho"]:
                break
    if not math.isfinite(L):
        raise SolverFailure("the layer-structured certificate is not finite")
    sizes["values"] = len(lifted.parts) + 1
    return SDPBound(upper=L, raw=math.sqrt(max(F_best, 0.0)), status="ok", method="lipsdp-dag-opt", norm="2",
                    sizes=sizes, timings={"certified_sweeps": t_sweeps, "refine": t_refine,
                                          "certify_refined": t_cert, "total": time.perf_counter() - t_start},
                    details=details)


def _race(starts: list, deadline: float | None, sweep: float, barriers: tuple):
    """Refine each start for RACE_SHARE of the time left, then the better one to the deadline:
    (value data, start t, start F, refined t, certificate data). The superset box's start is often lower, its optimum higher."""
    if len(starts) == 1:
        fast, t0, F0, dd = starts[0]
        return fast, t0, F0, refine(fast, t0, deadline, barriers=barriers, sweep=sweep, value=dag_value), dd
    span = None if deadline is None else RACE_SHARE * max(deadline - time.perf_counter(), 0.0)
    runs = []
    for fast, t0, F0, dd in starts:
        until = None if span is None else time.perf_counter() + span
        t = refine(fast, t0, until, barriers=barriers, sweep=sweep, value=dag_value)
        stopped = until is None or time.perf_counter() < until     # by itself (converged), not by the clock
        runs.append((dag_value(fast, t), fast, t0, F0, t, dd, stopped))
    _, fast, t0, F0, t, dd, stopped = min(runs, key=lambda r: r[0])
    if stopped:     # a second barrier path from a converged point only walks away and back (small graphs)
        return fast, t0, F0, t, dd
    return fast, t0, F0, refine(fast, t, deadline, barriers=barriers, sweep=sweep, value=dag_value), dd


def dag_with_deadline(lifted: LiftedChain, n0: int, c, box: SlopeBox, time_limit: float | None) -> SDPBound:
    """``lipsdp_dag_opt`` in a forked child killed at ``time_limit`` above IN_PROCESS_FLOPS (the dense
    factorisations cannot be interrupted; its own deadline ends it earlier, certified)."""
    if time_limit is None or _flops(lifted.net.widths) < IN_PROCESS_FLOPS:
        try:
            return lipsdp_dag_opt(lifted, n0, c, box, time_limit)
        except np.linalg.LinAlgError as exc:
            raise SolverFailure(f"the layer-structured LipSDP failed: {exc}") from None
    from ..solvers.base import call_with_deadline
    ok, out = call_with_deadline(lipsdp_dag_opt, (lifted, n0, c, box, 0.95 * float(time_limit)), float(time_limit))
    if not ok:
        kind = OutOfTime if out.startswith("time limit") else SolverFailure
        raise kind(f"the layer-structured LipSDP did not finish: {out}")
    return out
