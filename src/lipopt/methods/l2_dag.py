"""l2-opt on lifted graphs with carries: L-BFGS on the carry-free block-chordal LMI (``relaxations.lipsdp_dag``)
from closed-form starts, certified by ``certify.lipsdp_dag``.

Starts: ECLipsE-Fast's rule on the carry-free LMI itself (``lipsdp_dag_start``, over the superset box
[0, b]: one factorisation), and, when three times its time fits START_SHARE of the budget, the lifted
chain's certified closed forms (their boosts and the box's own LMI win on small graphs) with the carries
dropped: the carry-free LMI at the chain's multipliers is at least as tight as the chain's (its
restriction). The carry-free LMI has no identity multipliers wanting t -> infinity, so the refinement
moves in fewer, smaller variables on smaller blocks (resnet_cnn: five 1568-blocks instead of 1568- and
3136-blocks in turn). The bound returned is the smallest certificate: the starts' and the refined point's.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..certify.lipsdp_dag import MARGINS, certify_dag
from ..errors import OutOfTime, SolverFailure
from ..model.graph_lift import LiftedChain
from ..relaxations.lipsdp_dag import dag_data, dag_value, reduce_input
from ..relaxations.lipsdp_dag_start import dag_closed_form
from ..relaxations.lipsdp_layers import BARRIERS, GRAD_PER_SWEEP, growth_terms, layer_data, refine
from ..relaxations.quadratic import check_slopes
from ..relaxations.shor import SDPBound
from ..slopes import SlopeBox
from .l2 import IN_PROCESS_FLOPS, RACE_SHARE, _flops, closed_form_starts, retreats

CERT_PER_VALUE = 4.0      # a certificate's time / one value evaluation (resnet_cnn: 6.0 s / 1.7 s)
START_SHARE = 0.15        # the chain's closed-form starts: the refinement, not they, needs the time
CHAIN_PER_DAG = 3.0       # the lifted chain's certified closed form / the carry-free one (resnet_cnn 2.4-3.2)
CF_PER_VALUE = 1.7        # the carry-free closed form / one value evaluation (resnet_cnn 1.5-1.9)
REFINE_EVALS = 4          # the refinement only when this many value evaluations fit before the certificate
LARGE_ORDER = 2000        # above this order F's float error exceeds MARGINS[0]: its certificate is skipped
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


def lipsdp_dag_opt(lifted: LiftedChain, n0: int, c, box: SlopeBox, time_limit: float | None,
                   refine_starts: bool = True) -> SDPBound:
    """Certified l2 bound on c^T f for the graph ``lifted`` was lifted from (see module doc); without
    ``refine_starts`` (l2-fast) the best of the starts' certificates."""
    t_start = time.perf_counter()
    name = "lipsdp-dag-opt" if refine_starts else "lipsdp-dag-fast"
    end = None if time_limit is None else t_start + float(time_limit)
    net = lifted.net
    box = check_slopes(net, box)
    c = np.asarray(c, float)
    sizes = {"order": int(sum(net.widths[:-1])), "layers": net.depth, "values": len(lifted.parts) + 1}
    growth = growth_terms(net, box)
    wide = SlopeBox(tuple(np.zeros_like(np.asarray(h, float)) for h in box.hi), box.hi)
    dd_wide = dag_data(lifted.dag, n0, *_value_box(lifted, wide), growth, c)
    if dd_wide is None or not any(np.any(u) or np.any(e) for u, e in zip(dd_wide.u, dd_wide.u_err)):
        return SDPBound(upper=0.0, raw=0.0, status="optimal", method=name, norm="2", sizes=sizes,
                        timings={"total": time.perf_counter() - t_start}, details={})
    margins = MARGINS[1:] if sum(dd_wide.sizes) > LARGE_ORDER else MARGINS
    L, F_best, details = math.inf, math.inf, {}
    starts, sweep, cert_cost, t_cf, t_cert, certified = [], 0.0, 0.0, 0.0, 0.0, None
    if all(np.all(np.asarray(lo, float) >= 0) for lo in box.lo):     # [0, b] is a superset of the box
        fast = reduce_input(dd_wide)
        s0 = time.perf_counter()
        try:
            t_w, F_w = dag_closed_form(fast)
        except SolverFailure:
            t_w, F_w = None, math.inf
        t_cf = time.perf_counter() - s0
        sweep = t_cf / CF_PER_VALUE
        if math.isfinite(F_w):
            s0 = time.perf_counter()
            rho_c, L, info = certify_dag(dd_wide, F_w, t_w, margins)
            cert_cost = t_cert = time.perf_counter() - s0
            F_best, details, certified = F_w, {**info, "start": "carry-free closed form", "carry_free": True}, t_w
            starts.append(("wide", fast, t_w, F_w, dd_wide))
    # the lifted chain's closed forms (boosts, the box's own LMI; better on small graphs) when they fit
    if end is None or not starts or time.perf_counter() - t_start + CHAIN_PER_DAG * t_cf <= START_SHARE * time_limit:
        data = layer_data(net, c, box, prune=False)    # _dag_start maps its kept neurons onto the graph's
        if data is None:
            return SDPBound(upper=0.0, raw=0.0, status="optimal", method=name, norm="2", sizes=sizes,
                            timings={"total": time.perf_counter() - t_start}, details={})
        best, own, Lc, info, t_one, failure = closed_form_starts(net, c, box, data, t_start, time_limit, START_SHARE)
        if best is None and not starts:
            raise failure
        if Lc < L:
            L, F_best, details = Lc, best[2], {**info, "start": "lifted chain closed form", "carry_free": False}
        cands = [("own", box, data, own[0])] if own is not None and refine_starts else []
        if best is not None and best[0] is not data and refine_starts:
            cands.append(("wide", wide, best[0], best[1]))
        for kind, b, cd, tc in cands:      # the chain's starts with the carries dropped
            lo, hi = _value_box(lifted, b)
            if not any(np.any(x) for x in lo):
                kind = "wide"              # the values' own box is [0, b] (the carries' made the difference)
            dd = dd_wide if kind == "wide" else dag_data(lifted.dag, n0, lo, hi, growth, c)
            if dd is None:
                continue
            t0 = _dag_start(lifted, cd, tc, dd)
            fast = reduce_input(dd)        # F and its gradient only; the certificate assembles dd itself
            s0 = time.perf_counter()
            F = dag_value(fast, t0)
            sweep = max(sweep, time.perf_counter() - s0)
            if math.isfinite(F):
                starts.append((kind, fast, t0, F, dd))
        cert_cost = max(cert_cost, CERT_PER_VALUE * sweep)
    # the carry-free closed form races only when it starts lowest: its box [0, b] also relaxes the graph's
    # linear values (slopes [1, 1]), which the chain's own-box start keeps exact (small DAGs: 0.23 vs 0.16)
    if len(starts) > 1 and starts[0][2] is certified and min(st[3] for st in starts[1:]) <= starts[0][3]:
        starts = starts[1:]
    # one start per LMI (the superset box's, the box's own): the one with the lower F
    kept = {}
    for st in starts:
        if st[0] not in kept or st[3] < kept[st[0]][3]:
            kept[st[0]] = st
    starts = [st[1:] for st in kept.values()]
    t_refine = 0.0
    if starts and refine_starts:
        deadline = None if end is None else end - 1.3 * cert_cost - sweep - 0.02 * float(time_limit)
        s0 = time.perf_counter()
        span = None if deadline is None else deadline - time.perf_counter()
        if span is None or span > REFINE_EVALS * sweep:
            barriers = BARRIERS if span is None or span > BARRIER_EVALS * BARRIER_PER_VALUE * sweep else ()
            # refine's ``sweep`` is a value's time, a gradient costing GRAD_PER_SWEEP of them (the chain's); here
            # a plain gradient costs about one value (v = Z'^-1 u comes with F), a barrier one BARRIER_PER_VALUE
            per = (BARRIER_PER_VALUE if barriers else 1.0) / GRAD_PER_SWEEP
            fast, t_first, F0, t, dd = _race(starts, deadline, per * sweep, barriers)
            t_refine = time.perf_counter() - s0
            # huge multipliers (fixed neurons want t -> infinity) inflate the certificate's rounding term
            # (times R^2): retreat towards the start's scale while that pays (as ``l2.lipsdp_layers``)
            for cap, tc in retreats(t, t_first):
                if t is certified or (end is not None and end - time.perf_counter() < 1.2 * cert_cost):
                    break     # the start the refinement did not move has its certificate already
                F = dag_value(fast, tc)
                if not math.isfinite(F):
                    continue
                s0 = time.perf_counter()
                try:
                    rho_c, Ld, infod = certify_dag(dd, F, tc, margins)
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
    return SDPBound(upper=L, raw=math.sqrt(max(F_best, 0.0)), status="ok", method=name, norm="2",
                    sizes=sizes, timings={"closed_form": t_cf, "refine": t_refine, "certify": t_cert,
                                          "total": time.perf_counter() - t_start},
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


def dag_with_deadline(lifted: LiftedChain, n0: int, c, box: SlopeBox, time_limit: float | None,
                      refine_starts: bool = True) -> SDPBound:
    """``lipsdp_dag_opt`` in a forked child killed at ``time_limit`` above IN_PROCESS_FLOPS (the dense
    factorisations cannot be interrupted; its own deadline ends it earlier, certified)."""
    if time_limit is None or _flops(lifted.net.widths) < IN_PROCESS_FLOPS:
        try:
            return lipsdp_dag_opt(lifted, n0, c, box, time_limit, refine_starts)
        except np.linalg.LinAlgError as exc:
            raise SolverFailure(f"the layer-structured LipSDP failed: {exc}") from None
    from ..solvers.base import call_with_deadline
    ok, out = call_with_deadline(lipsdp_dag_opt, (lifted, n0, c, box, 0.95 * float(time_limit), refine_starts),
                                 float(time_limit))
    if not ok:
        kind = OutOfTime if out.startswith("time limit") else SolverFailure
        raise kind(f"the layer-structured LipSDP did not finish: {out}")
    return out
