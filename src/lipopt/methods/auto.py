"""auto: an anytime portfolio over the registry, returning the best certified bound within the budget.

Order: the product bound (instant); on a graph, its vertex enumeration when estimated within
AUTO_GRAPH_SEARCH of the budget; a short exact search where the registry says exact-fgl applies
(once the FGL is proved nothing that relaxes P can beat it, so auto stops); then every other applicable
upper-bound method (less those another one subsumes), first those that stop by themselves, cheapest
estimate first (not started when the estimate is far beyond the time left), then the anytime ones, each
given an equal share of what is left (the one the registry prefers for the norm first, with most of
it); the MIP last
when a box domain makes it applicable (its bound rests on solver tolerances and is labelled so); and,
with time still left and the FGL unproved, the exact search again with the rest of the budget, resumed
where it stopped (open nodes, incumbent, doll bounds), not restarted; before that, the leading anytime
method reruns with most of what is left when that is well above its first share. Every attempt is in
``details["attempts"]``; at the deadline the best bound so far is returned.
"""
from __future__ import annotations

import time

from ..errors import InvalidInputError, OutOfTime, SolverFailure
from ..model import Network
from ..polynomial import SlopeBox
from ..problem import Problem
from ..relaxations.krivine import precheck_size
from .base import CLOSE_GAP, MethodOutput, normalised
from .exact import exact_session
from .graph import graph_aware, is_graph

AUTO_BUDGET = 60.0           # seconds for --method auto without --time-limit
AUTO_FIRST_SEARCH = 2.0      # seconds at most (a quarter of the budget) for the first exact search
AUTO_ENUMERATION_BITS = 16   # other norms: enumerate 2^16 vertices at most inside auto
AUTO_LP_COLUMNS = 2_000_000  # beyond this the LP is left out of auto (minutes of IPM)
AUTO_SECONDS_PER_LP_COLUMN = 2e-5   # simplex / IPM on LiPopt LPs: 0.4 s at 20k columns, 1.7 s at 82k
AUTO_SDP_SECONDS = 0.3 / 150 ** 3   # SDPA on one dense block: 0.3 s at order 150 (about cubic)
MIN_ATTEMPT = 0.05           # seconds: below this an attempt is skipped, not started
PREFERRED_SHARE = 0.8       # of the time left, for the registry's preferred anytime method (l2: l2-opt, whose
                             # refinement is slow on conv layers and whose closed form alone is ECLipsE-Fast's)
RERUN_GAIN = 2.0             # the second round reruns the leading anytime method with at least this x its limit
SEARCH_NEAR = 1.5            # ... and leaves the search half of the rest only while its upper end is this close
SKIP_FACTOR = 2.0            # a method that stops by itself is skipped when its estimate exceeds this x time left
AUTO_GRAPH_SEARCH = 0.4      # of the budget at most, by its estimate, for a graph's vertex enumeration (run first:
                             # once it proves the FGL nothing else can beat it)
AUTO_BNB_UNITS = 64          # free units (neurons, pool windows) at most for the zonotope branch and bound in
                             # auto (mlp64x7 l_inf r=0.01 image 0, 36 free: the FGL 310.8 proved in 3.7 s)
AUTO_MIP_FREE = 100          # the activation-consistent MIP only with at most this many free neurons: beyond,
                             # its seconds end at the interval bound (zoo, 15 s: cnn_bn r = 0.01 with 417,
                             # mlp64x7 r = 0.1, cnn_stride2 r = 0.1, mlp128x4 r = 0.01: 2-3 s each, no gain)


def estimate(problem: Problem, name: str, opts: dict) -> float | None:
    """Rough seconds for ``name`` on ``problem`` (None: too large for auto), from shapes only."""
    net = problem.net
    order = 1 + net.widths[0] + problem.free_neurons
    if name == "product":
        return 0.0
    if name == "lp":
        try:
            cols = precheck_size(net, problem.c, problem.slopes, max(3, net.depth + 1),
                                 opts.get("cliques") if isinstance(opts.get("cliques"), str) else "inputs",
                                 AUTO_LP_COLUMNS)
        except (InvalidInputError, MemoryError):
            return None
        return cols * AUTO_SECONDS_PER_LP_COLUMN
    if name == "lipsdp" and is_graph(net):
        from .graph_l2 import lipsdp_seconds
        return lipsdp_seconds(net)
    if name in ("sdp", "lipsdp"):
        return AUTO_SDP_SECONDS * (order * (1 + max(0, net.depth - 1))) ** 3
    if name == "sdp2":
        return 3 * AUTO_SDP_SECONDS * order ** 3
    if name == "exact":  # a MIP: last, with what is left; not at all when hopeless
        return None if problem.free_neurons > AUTO_MIP_FREE else 1e3
    from .registry import METHODS  # the registry imports this module; entries may declare an estimate
    own = METHODS[name].estimate if name in METHODS else None
    return None if own is None else own(problem, opts)


def run_auto(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """Best certified bound under a time budget (``time_limit``, default AUTO_BUDGET seconds)."""
    from .registry import METHODS, applicable  # the registry lists auto itself
    budget = opts.get("time_limit") or AUTO_BUDGET
    t0 = time.perf_counter()
    problem = Problem(net, vec, norm, opts.get("domain"), slopes)
    attempts, outputs = [], {}

    def left() -> float:
        return budget - (time.perf_counter() - t0)

    def attempt(name, runner, seconds):
        if left() <= MIN_ATTEMPT:
            attempts.append({"method": name, "value": None, "seconds": 0.0, "status": "skipped (budget)"})
            return None
        t1 = time.perf_counter()
        limit = max(MIN_ATTEMPT, min(seconds, left()))
        try:
            out = runner(net, vec, norm, slopes, {**opts, "time_limit": limit})
        except (InvalidInputError, SolverFailure, MemoryError) as exc:
            attempts.append({"method": name, "value": None, "seconds": time.perf_counter() - t1,
                             "status": f"failed: {str(exc) or type(exc).__name__}", "limit": limit,
                             "out_of_time": isinstance(exc, OutOfTime)})
            return None
        attempts.append({"method": name, "value": out.upper, "seconds": time.perf_counter() - t1,
                         "status": out.status, "limit": limit})
        if name not in outputs or out.upper < outputs[name].upper:
            outputs[name] = out
        return out

    names = [m.name for m in applicable(problem) if m.name != "auto"]
    attempt("product", METHODS["product"].runner, budget)
    graph = is_graph(net)
    enumerated = False
    if graph and "exact-fgl" in names:  # a graph's enumeration is not resumable: first, or not at all
        from ..exact.graph_fgl import MAX_VERTICES, estimate_seconds, vertex_count
        cost = estimate_seconds(net, problem.slopes) if vertex_count(net, problem.slopes) <= MAX_VERTICES else None
        if cost is not None and cost <= AUTO_GRAPH_SEARCH * budget:
            attempt("exact-fgl", METHODS["exact-fgl"].runner, 2 * cost + 1.0)
            enumerated = True
    units = problem.free_neurons + (problem.slopes.free_windows() if graph else 0)
    searchable = "exact-fgl" in names and not enumerated and (
        units <= AUTO_BNB_UNITS or (not graph and norm == "inf" and 1 <= net.depth <= 2))
    session = exact_session(problem.free_neurons, AUTO_ENUMERATION_BITS)  # one search, resumed when auto returns
    quick = graph_aware(normalised(session), session)

    def proved() -> bool:
        ex = outputs.get("exact-fgl")
        if ex is None:
            return False
        lo = ex.details["bracket"][0]
        best = min(o.upper for o in outputs.values())
        return ex.status == "optimal" or best <= lo + CLOSE_GAP * abs(lo) + ex.details.get("rounding_error", 0.0)

    def leader() -> str | None:
        """The method of the best bound so far when it is anytime (and not the search)."""
        if not outputs:
            return None
        lead = min(outputs, key=lambda k: (outputs[k].upper, k))
        return lead if lead != "exact-fgl" and METHODS[lead].anytime else None

    def second() -> str | None:
        """The second round's method: the first anytime method that ran out of time before it had any
        bound (not yet judged; on wide or convolutional nets l2-weighted's certificate can miss an equal
        share, and it is then the strongest l_inf method), else the leader."""
        late = [a["method"] for a in attempts if a.get("out_of_time") and a["method"] not in outputs]
        return late[0] if late else leader()

    if searchable:
        attempt("exact-fgl", quick, min(AUTO_FIRST_SEARCH, 0.25 * budget))
    if not proved():
        costs = {n: estimate(problem, n, opts) for n in names if n not in ("product", "exact-fgl")}
        covered = {s for n in costs for s in METHODS[n].subsumes}
        plan = sorted((n for n, c in costs.items() if c is not None and n not in covered),
                      key=lambda n: (METHODS[n].anytime, n == "exact", norm not in METHODS[n].preferred, costs[n], n))
        for i, name in enumerate(plan):
            # equal shares of what is left (the returning exact search counts as two); a method that
            # stops by itself gets at least twice its estimate and gives back what it does not use,
            # one whose estimate is far beyond the time left is not started
            share = left() / (len(plan) - i + (2 if searchable else 0))
            if not METHODS[name].anytime:
                if costs[name] > SKIP_FACTOR * left():
                    attempts.append({"method": name, "value": None, "seconds": 0.0,
                                     "status": f"skipped (estimated {costs[name]:.3g} s, {left():.3g} s left)"})
                    continue
                share = max(share, min(2 * costs[name], 0.5 * left()))
            elif norm in METHODS[name].preferred:
                share = max(share, PREFERRED_SHARE * left())
            elif name == "exact" and second() is not None:
                share = min(share, 0.5 * left())     # half stays for the second round
            attempt(name, METHODS[name].runner, share)
            if proved():
                break
        # second round: the best anytime method so far (or one that ran out of time with no bound) starts
        # again with most of what is left when that is well above what it had (its rerun is not resumed,
        # so it needs more to gain); the search
        # keeps a share only while its bracket's upper end is within SEARCH_NEAR of the best bound
        lead = second()
        if lead is not None and not proved():
            first = [a for a in attempts if a["method"] == lead and "limit" in a][-1]
            ex = outputs.get("exact-fgl")
            best = min(o.upper for o in outputs.values())
            # a method not yet judged (out of time) gets all of it: the search has had its shares
            near = lead in outputs and ex is not None and ex.upper <= SEARCH_NEAR * best
            keep = 0.5 if near else 0.0
            share = (1 - keep) * left()
            if share > RERUN_GAIN * first["limit"]:
                attempt(lead, METHODS[lead].runner, share)
        if searchable and not proved() and left() > MIN_ATTEMPT:
            attempt("exact-fgl", quick, left())  # the rest of the budget to the search
    if not outputs:
        why = "; ".join(f"{a['method']}: {a['status']}" for a in attempts)
        raise SolverFailure(f"no method produced a bound within the time budget ({why})")
    best_name = min(outputs, key=lambda k: (outputs[k].upper, k != "exact-fgl"))
    best = outputs[best_name]
    ex = outputs.get("exact-fgl")
    details = {**best.details, "best_method": best_name, "attempts": attempts,
               "exact_arithmetic_certificate": METHODS[best_name].capabilities.exact_arithmetic}
    return MethodOutput(best.upper, raw=best.raw, status="optimal" if proved() else "ok", degree=best.degree,
                        timings={"auto": time.perf_counter() - t0}, sizes=best.sizes, details=details,
                        pattern=ex.pattern if ex is not None else best.pattern,
                        lower=best.lower, point=best.point)
