"""Exact methods: the FGL (exact maximum of the norm-gradient polynomial: DP, branch and bound or
enumeration, closed by the LP when it meets the incumbent; certified by an a-priori rounding bound) and
the activation-consistent MIP (HiGHS; its upper end rests on solver tolerances and is labelled so)."""
from __future__ import annotations

import math
import time

import numpy as np

from ..errors import InvalidInputError, SolverFailure
from ..exact import ExactSearch, exact_fgl
from ..exact.enumerate import MAX_ENUMERATION_BITS, dual_norm
from ..exact.mip import exact_lipschitz_mip
from ..exact.zonotope_bnb import ZonotopeSearch
from ..model import Network
from ..polynomial import SlopeBox
from ..rounding import U, gamma_float, relative_up, up
from . import lp as _lp
from .base import CLOSE_GAP, MethodOutput, _jsonable

FIRST_SEARCH = 2.0           # seconds of exact search before the LP is tried as a closing bound
LP_CLOSE_COLUMNS = 2_000_000  # the closing LP must stay cheap next to the search


def run_exact_fgl(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """l_inf with 1-2 hidden layers: exact_fgl_auto (DP, B&B or enumeration, the choice reported);
    otherwise (other norms, deeper nets) vertex enumeration up to MAX_ENUMERATION_BITS free neurons, beyond
    that branch and bound with zonotope node bounds (exact.zonotope_bnb; a bracket at the time limit)."""
    t0 = time.perf_counter()
    free = int(sum(np.count_nonzero(lo < hi) for lo, hi in zip(slopes.lo, slopes.hi)))
    if norm == "inf" and 1 <= net.depth <= 2:
        return _exact_fgl_search(net, vec, slopes, opts, free, t0)
    if free > MAX_ENUMERATION_BITS:
        return bnb_output(ZonotopeSearch(net, vec, norm, slopes, graph=False).run(opts.get("time_limit")), free, t0)
    limit = opts.get("time_limit")
    ex = exact_fgl(net, vec, norm, slopes, deadline=None if limit is None else t0 + limit)
    upper = exact_certified(net, vec, norm, ex.value, slopes)
    return MethodOutput(upper, raw=ex.value, status="optimal", timings={"search": time.perf_counter() - t0},
                        sizes={"nodes": ex.vertices, "free_neurons": free},
                        details={"algorithm": "enumerate", "exact_status": "optimal",
                                 "bracket": [ex.value, upper]},
                        pattern=[np.asarray(s) for s in ex.slopes])


def _exact_fgl_search(net: Network, vec, slopes: SlopeBox, opts: dict, free: int, t0: float) -> MethodOutput:
    """Exact search first; if it has not closed after a tenth of the budget (2 s without a limit),
    the LiPopt LP certifies an upper bound of the FGL: when it meets the incumbent to CLOSE_GAP the FGL
    is proved ("bnb+lp"); otherwise the same search resumes (open nodes, incumbent and doll bounds kept)
    and the better of the two upper bounds is kept."""
    limit = opts.get("time_limit")
    search = ExactSearch(net, vec, slopes, seed=opts.get("seed", 0))
    r = search.run(min(0.1 * limit, FIRST_SEARCH) if limit else FIRST_SEARCH)
    lp_upper, algorithm = math.inf, r.algorithm
    if not r.optimal:
        lp_opts = {**opts, "degree": None, "time_limit": None if limit is None else 0.35 * limit,
                   "max_columns": min(opts.get("max_columns", LP_CLOSE_COLUMNS), LP_CLOSE_COLUMNS)}
        try:
            lp_upper = _lp.run_lp(net, vec, "inf", slopes, lp_opts).upper
        except (InvalidInputError, SolverFailure):
            pass
        if lp_upper > r.lower + CLOSE_GAP * abs(r.lower) + r.rounding_error:
            left = None if limit is None else max(1e-3, limit - (time.perf_counter() - t0))
            r = search.run(left)
        if lp_upper < r.upper + r.rounding_error:
            algorithm = f"{r.algorithm}+lp"
    return _search_output(r, free, t0, lp_upper, algorithm)


def _search_output(r, free: int, t0: float, lp_upper: float = math.inf, algorithm: str | None = None) -> MethodOutput:
    """A bracket of the l_inf FGL search as a certified MethodOutput (upper end + rounding bound, rounded up)."""
    upper = min(_round_up(r.upper + r.rounding_error), lp_upper)
    closed = r.optimal or upper <= r.lower + CLOSE_GAP * abs(r.lower) + r.rounding_error
    details = {"algorithm": algorithm or r.algorithm, "exact_status": "optimal" if closed else r.status,
               "bracket": [r.lower, upper], "rounding_error": r.rounding_error, "witness_t": r.t.tolist(),
               "free_neurons": free, **{k: v for k, v in r.info.items() if _jsonable(v)}}
    return MethodOutput(upper, raw=r.upper if r.optimal else r.lower if closed else r.upper,
                        status="optimal" if closed else r.status, timings={"search": time.perf_counter() - t0},
                        sizes={"nodes": int(r.nodes), "free_neurons": free}, details=details,
                        pattern=[np.asarray(s) for s in r.s])


def exact_fgl_check(problem) -> str | None:
    """The registry's size check: DP / B&B for l_inf with 1-2 hidden layers, enumeration up to its limit
    (MAX_ENUMERATION_BITS free neurons; graph_fgl.MAX_VERTICES vertices on graphs), else the zonotope
    branch and bound's unit limit."""
    from ..exact.graph_fgl import MAX_VERTICES, units, vertex_count
    from ..exact.zonotope_bnb import refusal
    from .graph import is_graph
    if is_graph(problem.net):
        if vertex_count(problem.net, problem.slopes) <= MAX_VERTICES:
            return None
        return refusal(len(units(problem.net, problem.slopes)))
    if (problem.norm == "inf" and 1 <= problem.depth <= 2) or problem.free_neurons <= MAX_ENUMERATION_BITS:
        return None
    return refusal(problem.free_neurons)


def bnb_output(r, free: int, t0: float) -> MethodOutput:
    """A bracket of the zonotope branch and bound (exact.zonotope_bnb) as a MethodOutput."""
    status = "optimal" if r.optimal else "time_limit"
    return MethodOutput(r.upper, raw=r.lower, status=status, timings={"search": time.perf_counter() - t0},
                        sizes={"nodes": int(r.nodes), "free_neurons": free},
                        details={"algorithm": "bnb (zonotope bounds)", "exact_status": status,
                                 "bracket": [r.lower, r.upper]})


def run_exact_mip(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """Activation-consistent local Lipschitz constant over a box (LipMIP-style MIP on HiGHS). The
    upper end is HiGHS' dual bound plus a tolerance margin (exact_mip docstring): the one bound in
    lipopt that rests on a solver's tolerances rather than an exact-arithmetic certificate."""
    domain = opts.get("domain")
    if domain is None:
        raise InvalidInputError("the activation-consistent exact method needs a bounded domain "
                                "(--center/--radius or --lower/--upper); globally use exact-fgl")
    r = exact_lipschitz_mip(net, vec, domain, norm, time_limit=opts.get("time_limit"), seed=opts.get("seed", 0))
    details = {"algorithm": "mip", "exact_status": r.status, "bracket": [r.lower, r.upper],
               "witness_x": np.asarray(r.x).tolist(), "exact_arithmetic_certificate": False,
               **{k: v for k, v in r.info.items() if _jsonable(v)}}
    return MethodOutput(r.upper, raw=r.lower, status=r.status, timings={"search": r.seconds},
                        sizes={"nodes": int(r.nodes)}, details=details, lower=r.lower, point=np.asarray(r.x))


def exact_session(free: int, enumerate_bits: int = MAX_ENUMERATION_BITS):
    """An exact-search runner that keeps its search between calls (auto's first and returning windows):
    for l_inf with 1-2 hidden layers the second call resumes the branch and bound where the first
    stopped, and so does the zonotope branch and bound (graphs, and chains beyond ``enumerate_bits`` free
    neurons); otherwise each call is run_exact_fgl. The network seen is the normalised one, the same at
    every call (normalisation is deterministic), so the kept search stays valid."""
    kept = {}

    def run(net, vec, norm, slopes, opts) -> MethodOutput:
        from .graph import is_graph
        t0 = time.perf_counter()
        graph = is_graph(net)
        if graph or (free > enumerate_bits and not (norm == "inf" and 1 <= net.depth <= 2)):
            if "bnb" not in kept:
                kept["bnb"] = ZonotopeSearch(net, vec, norm, slopes, graph=graph)
            return bnb_output(kept["bnb"].run(opts["time_limit"]), free, t0)
        if not (norm == "inf" and 1 <= net.depth <= 2):
            return run_exact_fgl(net, vec, norm, slopes, opts)
        if "search" not in kept:
            kept["search"] = ExactSearch(net, vec, slopes, seed=opts.get("seed", 0))
        return _search_output(kept["search"].run(opts["time_limit"]), free, t0)
    return run


def exact_certified(net: Network, vec, norm: str, value: float, slopes: SlopeBox) -> float:
    """Enlarge the enumerated maximum by a rigorous bound on the rounding of g = W_0^T S_1 ... c.

    Each entry of g is a sum of path products; its error is at most gamma_K times the absolute path
    sum |W_0|^T |S_1| ... |c| (K = summed widths + factors), and ||.||_q is monotone in |g|.
    """
    a = np.abs(vec)
    for l in range(net.depth, -1, -1):
        a = abs(net.weights[l]).T @ a
        if l > 0:
            a = a * np.maximum(np.abs(slopes.lo[l - 1]), np.abs(slopes.hi[l - 1]))
    K = sum(net.widths) + 2 * net.depth + 4
    margin = float(dual_norm(4 * gamma_float(K) * a[None, :], norm)[0])
    return up((value + margin) * (1 + 4 * U))


def _round_up(x: float) -> float:
    """x (a sum already carrying its error bound) moved up by a relative 4 ulp for the last addition."""
    return relative_up(x, 4)
