"""Layer-structured l2 methods: feasible points of the LipSDP-Neuron LMI found layer by layer
(closed form, or refined by L-BFGS) and certified here by a rigorous shifted block Cholesky bound (certify.block_chol); the LMI blocks, the recursion and the
multiplier search are in relaxations.lipsdp_layers."""
from __future__ import annotations

import math
import time

import numpy as np

from .. import memory
from ..certify.block_chol import block_cholesky_lambda_min
from ..certify.lipsdp_sweep import certified_closed_form, p_term, sub_block, u_outer
from ..certify.row_sums import add_bounds, err_sums, lmi_bound, over_margins
from ..errors import InvalidInputError, OutOfTime, SolverFailure
from ..model import Network
from ..polynomial import SlopeBox
from ..relaxations.lipsdp_layers import GRAD_PER_SWEEP, LayerData, estimate_bytes, layer_data, refine, schur_value
from ..relaxations.quadratic import check_slopes
from ..relaxations.shor import SDPBound
from ..rounding import TINY, U, next_up, sum_up, up
from .base import MethodOutput
from .sdp import _sdp_output

RETREAT_CAPS = (6.0, 3.0, 1.0)  # certificate retreat: multipliers at most e^cap times the closed form's
MARGINS = (1e-9, 1e-6, 1e-3)  # relative increases of rho tried until the block certificate is nonnegative
LARGE_ORDER = 2000            # total hidden width above which the first margin is skipped
REFINE_EVALS = 1              # the refinement runs only when this many gradient evaluations fit
CERTIFIED_PER_PLAIN = 1.5    # a certified closed-form sweep's time / a plain Schur sweep's (1.3-1.65 on conv layers)
CERT_PER_SWEEP = 1.0          # a refined point's certificate's time / one certified closed-form sweep's (0.9-1.1)


def _run(mode):
    def run(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
        if norm != "2":
            raise InvalidInputError(f"the layer-structured LipSDP bounds the l2 Lipschitz constant; got norm l_{norm}")
        r = _with_deadline(net, vec, slopes, mode, opts.get("time_limit"))
        return _sdp_output(r)
    run.__name__ = f"run_l2_{mode}"
    run.__doc__ = (f"Layer-structured LipSDP-Neuron ({mode}): multipliers by sequential Schur complements, "
                   "bound certified by a rigorous shifted block Cholesky lambda_min bound.")
    return run


IN_PROCESS_FLOPS = 2e8   # below this (~0.01-0.1 s) a forked child costs more than it protects


def _with_deadline(net: Network, vec, slopes, mode: str, time_limit: float | None) -> SDPBound:
    """The dense factorisations cannot be interrupted, so above IN_PROCESS_FLOPS the computation runs in a
    forked child killed at ``time_limit`` (the refinement's own deadline ends it earlier, certified)."""
    if time_limit is None or _flops(net.widths) < IN_PROCESS_FLOPS:
        try:
            return lipsdp_layers(net, vec, slopes, mode=mode, time_limit=time_limit)
        except np.linalg.LinAlgError as exc:    # a factorisation met non-finite multipliers
            raise SolverFailure(f"the layer-structured LipSDP failed: {exc}") from None
    from ..solvers.base import call_with_deadline
    ok, out = call_with_deadline(lipsdp_layers, (net, vec, slopes, mode, 0.95 * float(time_limit)),
                                 float(time_limit))
    if not ok:
        kind = OutOfTime if out.startswith("time limit") else SolverFailure
        raise kind(f"the layer-structured LipSDP did not finish: {out}")
    return out


run_l2_fast = _run("fast")
run_l2_opt = _run("opt")


def l2_estimate(problem, opts) -> float:
    """Seconds from shapes: a few dense n^3 products per layer (~1 GFlop/s on one core, measured order)."""
    from .graph_l2 import l2_widths
    return 8 * _flops(l2_widths(problem.net)) / 1e9


def _flops(w) -> float:
    return float(sum(a * b * max(a, b) for a, b in zip(w[:-2], w[1:-1])) + sum(x ** 3 for x in w[:-1]))


def l2_opt_estimate(problem, opts) -> float:
    return 40 * l2_estimate(problem, opts)


def l2_precheck(problem, opts) -> None:
    from .graph_l2 import l2_widths
    widths = l2_widths(problem.net)
    memory.require(estimate_bytes(widths), f"the layer-structured LipSDP (widths {list(widths)})",
                   "--method product fits")


def certify(data: LayerData, F: float, t: list) -> tuple[float, float, dict]:
    """Certified (rho', L) for Z(rho, rho t), trying rho = F (1 + margin) for the margins in MARGINS."""
    d = len(data.W)
    # at conv-layer orders the 1e-9 margin's pivots are rarely definite and each try costs seconds;
    # 1e-6 loses at most 5e-7 of the bound
    margins = MARGINS[1:] if sum(len(x) for x in t) > LARGE_ORDER else MARGINS

    def attempt(rho, margin):
        tau = [rho * x for x in t]
        diag, derr, sub, serr = [], [], [], []
        for l in range(d + 1):
            n = data.W[0].shape[1] if l == 0 else len(tau[l - 1])
            B = np.zeros((n, n))
            B[np.diag_indices(n)] = rho if l == 0 else tau[l - 1]
            terms = []      # row sums of a symmetric entrywise bound on |Z_l - B| (rows = columns)
            if l < d and np.any(data.p[l]):
                P, prod = p_term(data, l, tau[l] * data.p[l])
                B += P
                terms.append(prod)
            if l == d:
                uu, uterm = u_outer(data, 1.0)
                B -= uu
                terms.append(uterm)
            rB, cB = err_sums(np.abs(B))      # 4 U (|B| + |B|^T): symmetric even where the float B is not
            terms.append(4 * U * (rB + cB))
            rows = add_bounds(*terms)
            diag.append(B)
            derr.append(rows)
            if l >= 1:
                O, O_err = sub_block(data, l, tau[l - 1])
                sub.append(O)
                serr.append(O_err)
        # block scaling S = blockdiag(2^k_l I) (exact; TINY covers underflow): lambda_min(S Z S) >= nu gives
        # xi^T Z xi >= nu sum_l ||dx_l||^2 4^-k_l, so R^2 becomes sum_l growth_l 4^-k_l; with unit pivots
        # the rounding term is relative to each block instead of to the largest one
        k = [-int(np.floor(np.log2(max(float(np.abs(np.diag(B)).max()), 1e-300)) / 2)) for B in diag]
        diag = [np.ldexp(B, 2 * kl) for B, kl in zip(diag, k)]
        derr = [(e, e) for e in (next_up(np.ldexp(e, 2 * kl) + TINY) for e, kl in zip(derr, k))]
        sub = [np.ldexp(O, k[l + 1] + k[l]) for l, O in enumerate(sub)]
        serr = [tuple(next_up(np.ldexp(e, k[l + 1] + k[l]) + TINY) for e in E) for l, E in enumerate(serr)]
        R2s = sum_up([up(math.ldexp(g, -2 * kl)) for g, kl in zip(data.growth, k)])
        bb = block_cholesky_lambda_min(diag, derr, sub, serr)
        return lmi_bound(rho, bb, R2s, margin)

    return over_margins(F, margins, attempt)


def retreats(t: list, t_start: list):
    """(cap, multipliers) for a refined point's certificate: t itself, then t capped at e^cap times the
    start's for the RETREAT_CAPS in turn (huge multipliers inflate the rounding term times R^2)."""
    for cap in (None,) + RETREAT_CAPS:
        yield cap, (t if cap is None else [np.minimum(a, b * math.exp(cap)) for a, b in zip(t, t_start)])


RACE_SHARE = 0.2   # refinement: each of the two LMIs gets this share of the time before the better one goes on


def _race(wide, t_wide, F_wide, data, own, deadline, sweep):
    """The superset box's LMI has the better start; the box's own LMI can be tighter at its optimum (fixed
    neurons enforced exactly, e.g. a lifted graph's skips). Each is refined for RACE_SHARE of the time;
    returns the better LMI's (data, closed-form t, its F, refined t): retreats stay relative to its start."""
    span = None if deadline is None else RACE_SHARE * max(deadline - time.perf_counter(), 0.0)
    until = (lambda: None) if span is None else (lambda: time.perf_counter() + span)
    t_own = refine(data, own[0], until(), sweep=sweep)
    t_w = refine(wide, t_wide, until(), sweep=sweep)
    if schur_value(data, t_own) < schur_value(wide, t_w):
        return data, own[0], own[1], t_own
    return wide, t_wide, F_wide, t_w


def closed_form_starts(net: Network, c, slopes: SlopeBox, data: LayerData, t_start: float,
                       time_limit: float | None, share: float = 0.5):
    """The certified closed-form starts (``certified_closed_form``): (best (data, t, F) by F, own (t, F): the
    best on the box's own LMI, certified L and its info, the slowest start's seconds, the last failure).
    No start is begun that would end past ``share`` of ``time_limit`` (judged by the last one's time)."""
    end = None if time_limit is None else t_start + float(time_limit)
    starts = [(data, True)]
    if any(np.any(p) for p in data.p) and all(np.all(np.asarray(lo, float) >= 0) for lo in slopes.lo):
        # narrow slopes: the boost is a heuristic, and the LMI of the superset box [0, b] (a valid LipSDP
        # LMI for a larger box, certified as such; a superset only when every lower slope is >= 0) may suit
        # the closed form better: keep the best start. With fixed neurons (slope box [1, 1]: a graph's
        # identity neurons, active ReLUs) the superset's start has won every measured case: it goes first
        wide = layer_data(net, c, SlopeBox(tuple(np.zeros_like(np.asarray(h, float)) for h in slopes.hi),
                                           slopes.hi), prune=data.pruned)
        starts = [(data, True), (data, False), (wide, False)]
        if any(np.any((np.asarray(lo) == np.asarray(hi)) & (np.asarray(hi) != 0)) for lo, hi in zip(slopes.lo, slopes.hi)):
            starts = starts[2:] + starts[:2]
    best, own, failure = None, None, None     # own: the best start on the box's own LMI (refine races it)
    t_one = 0.0                               # the slowest start: one certified sweep
    L, info = math.inf, {}
    for dd, boost in starts:
        t0 = time.perf_counter()
        try:
            tc, Fc, Lc, infoc = certified_closed_form(dd, boost=boost)
        except SolverFailure as exc:
            failure = exc
            continue
        t_one = max(t_one, time.perf_counter() - t0)
        if Lc < L:
            L, info = Lc, infoc
        if best is None or Fc < best[2]:
            best = (dd, tc, Fc)
        if dd is data and (own is None or Fc < own[1]):
            own = (tc, Fc)
        # at conv-layer orders each start costs seconds: the rest are skipped when they would leave less
        # than half the budget for the certificate and the refinement
        spent = time.perf_counter() - t_start
        if end is not None and spent + (time.perf_counter() - t0) > share * time_limit:
            break
    return best, own, L, info, t_one, failure


def lipsdp_layers(net: Network, c, slopes: SlopeBox | None = None, mode: str = "fast",
                  time_limit: float | None = None) -> SDPBound:
    """Certified l2 bound on c^T f from layer-structured LipSDP multipliers: ``mode`` "fast" (closed form)
    or "opt" (closed form, then L-BFGS refinement until the time limit)."""
    t_start = time.perf_counter()
    if mode not in ("fast", "opt"):
        raise InvalidInputError(f"mode must be fast or opt; got {mode!r}")
    memory.require(estimate_bytes(net.widths), f"the layer-structured LipSDP (widths {list(net.widths)})",
                   "--method product fits")
    data = layer_data(net, c, slopes)
    sizes = {"order": int(sum(net.widths[:-1])), "layers": net.depth}
    if data is None:
        return SDPBound(upper=0.0, raw=0.0, status="optimal", method=f"lipsdp-layers-{mode}", norm="2",
                        sizes=sizes, timings={"total": time.perf_counter() - t_start},
                        details={"note": "a hidden layer has every slope 0: c^T f is constant"})
    if not np.any(data.u) and not np.any(data.u_err):
        return SDPBound(upper=0.0, raw=0.0, status="optimal", method=f"lipsdp-layers-{mode}", norm="2",
                        sizes=sizes, timings={"total": time.perf_counter() - t_start}, details={})
    slopes = check_slopes(net, slopes)
    end = None if time_limit is None else t_start + float(time_limit)
    best, own, L, info, t_one, failure = closed_form_starts(net, c, slopes, data, t_start, time_limit)
    if best is None:
        raise failure
    own_data = data
    data, t_fast, F_fast = best
    t = t_fast
    t_sweeps = time.perf_counter() - t_start
    if not math.isfinite(F_fast):
        raise SolverFailure("the layer-structured multipliers are not feasible (a Schur complement is not definite)")
    # every start came certified from its own sweep; a refined point's certificate costs about
    # CERT_PER_SWEEP x one such sweep (a few dense products and factorisations per layer either way)
    t_cert = CERT_PER_SWEEP * t_one
    tl = None if end is None else float(time_limit)
    expensive = end is not None and t_cert > 0.1 * tl
    F_best, t_refine, t_certs = F_fast, 0.0, 0.0
    # the refinement needs a few gradient evaluations to move at all (each about GRAD_PER_SWEEP sweeps):
    # on the largest conv-layer orders 60 s may not hold them
    sweep = t_one / CERTIFIED_PER_PLAIN
    need = ((2.2 * t_cert + 0.05 * tl) if expensive else 3 * t_cert) + REFINE_EVALS * GRAD_PER_SWEEP * sweep
    if mode == "opt" and (end is None or end - time.perf_counter() > need):
        t0 = time.perf_counter()
        deadline = None if end is None else end - (1.2 if expensive else 2.5) * t_cert - 0.05 * tl
        t = t_fast
        if own is not None and data is not own_data and math.isfinite(own[1]):
            data, t_fast, F_fast, t = _race(data, t_fast, F_fast, own_data, own, deadline, sweep)
        t = refine(data, t, deadline, sweep=sweep)
        t_refine = time.perf_counter() - t0
        # huge multipliers (fixed neurons want t -> infinity) inflate the certificate's rounding term
        # (times R^2): retreat towards the closed form's scale while that costs less than it saves
        for cap, tc in retreats(t, t_fast):
            if t is t_fast:      # the refinement did not move: the closed form's point is certified already
                break
            if math.isfinite(L) and end is not None and end - time.perf_counter() < 1.2 * t_cert:
                break
            Fc = schur_value(data, tc)
            if not math.isfinite(Fc):
                continue
            t1 = time.perf_counter()
            cand = certify(data, Fc, tc)
            t_cert = time.perf_counter() - t1
            t_certs += t_cert
            if cand[1] < L:
                L, info, F_best = cand[1], {**cand[2], "retreat": cap}, Fc
            # the closed form's certificate is at least sqrt(F_fast): a candidate below it has won
            if cand[0] - cand[2]["rho"] <= 1e-6 * cand[2]["rho"] and cand[1] <= math.sqrt(F_fast):
                break
    if not math.isfinite(L):
        raise SolverFailure("the layer-structured certificate is not finite")
    sizes["kept_neurons"] = int(sum(len(k) for k in data.kept))
    return SDPBound(upper=L, raw=math.sqrt(max(F_best, 0.0)), status="ok", method=f"lipsdp-layers-{mode}", norm="2",
                    sizes=sizes, timings={"certified_sweeps": t_sweeps, "refine": t_refine,
                                          "certify_refined": t_certs,
                                          "total": time.perf_counter() - t_start},
                    details={**info, "raw_fast": math.sqrt(max(F_fast, 0.0)), "R2": data.R2})
