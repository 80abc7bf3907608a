"""One runner per upper-bound method: (network, c, norm, derivative box, options) -> MethodOutput.

Every ``upper`` a runner returns is valid in exact arithmetic:
* lp         LiPopt-k: Krivine LP, certified by certify.certify_krivine;
* product    product of layer operator norms (each rounded up);
* sdp        Shor relaxation (order-1 SDP), certified from the dual by a rigorous eigenvalue bound;
* sdp2       sparse order-2 moment-SOS SDP on neuron cliques (one hidden layer, l_inf), certified the
             same way block by block; never looser than sdp;
* lipsdp     LipSDP-Neuron (l2 only), certified the same way;
* exact-fgl  exact maximum of the norm-gradient polynomial (DP / branch and bound / enumeration, closed
             by the LP when it meets the incumbent) plus an a-priori bound on its floating-point error;
             under a time limit, the proven upper end of the bracket (status "time_limit");
* exact      the activation-consistent local constant (MIP): the exception, see run_exact_mip;
* auto       the best of the above (not exact) under a time budget, see run_auto.
The api module picks the derivative box (global or local) before calling a runner. Every entry of
RUNNERS runs on the network normalised by exact powers of two and scales its values back
(``normalised``, lipopt.scaling), so no answer depends on the units of the weights.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .baselines import product_bound
from .certify import certify_krivine
from .errors import InvalidInputError, SolverFailure
from .exact import exact_fgl, exact_fgl_auto
from .exact.enumerate import MAX_ENUMERATION_BITS, dual_norm
from .exact.mip import exact_lipschitz_mip
from .model import Network
from .polynomial import SlopeBox, build_polynomial
from .relaxations.cliques import STRATEGIES, network_cliques
from .relaxations.krivine import (DEFAULT_MAX_COLUMNS, covering_structure, estimate_size, krivine_lp,
                                  precheck_size)
from .relaxations.lipsdp import lipsdp_neuron
from .relaxations.moments import order2_bound
from .relaxations.shor import shor_bound
from .scaling import normalise, scale_details
from .solvers import SOLUTION_PRESENT, solve_lp

AUTO_SIMPLEX_COLUMNS = 25_000  # simplex stalls on larger LiPopt LPs (>120 s at 82k columns vs 1.7 s IPM)
LP_NORMS = ("inf",)
FIRST_SEARCH = 2.0           # seconds of exact search before the LP is tried as a closing bound
LP_CLOSE_COLUMNS = 2_000_000  # the closing LP must stay cheap next to the search
MAX_DEGREE = 12              # the certificate's templates grow like 3^k per clique
AUTO_BUDGET = 60.0           # seconds for --method auto without --time-limit
AUTO_FIRST_SEARCH = 2.0
AUTO_ENUMERATION_BITS = 16   # other norms: enumerate 2^16 vertices at most inside auto
AUTO_LP_COLUMNS = 2_000_000  # beyond this the LP is left out of auto (minutes of IPM)
AUTO_SMALL_LP = 200_000      # up to this the LP goes first (seconds), else the SDP does
DEFAULT_CLIQUE_SIZE = 4      # sdp2: 1.5 s and 2.5 % below Shor on a dense 80-80-1 net (q = 6: 10 s, 4 %)
CLOSE_GAP = 1e-7             # upper - lower <= CLOSE_GAP |lower| (+ rounding) counts as proved (IPM LPs
                             # without crossover certify to ~1e-8 relative)


@dataclass
class MethodOutput:
    upper: float
    raw: float | None = None          # the solver's / search's value before certification
    status: str = "ok"                # "ok" | "optimal" | "time_limit"
    degree: int | None = None
    timings: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    pattern: list | None = None       # derivative vertex attaining the FGL, for lower bounds
    lower: float | None = None        # a lower bound the method found itself (gradient norm at ``point``)
    point: np.ndarray | None = None


def run_product(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    t0 = time.perf_counter()
    ub = product_bound(net, vec, norm, slopes)
    return MethodOutput(ub, timings={"bound": time.perf_counter() - t0})


def run_exact_fgl(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """l_inf with 1-2 hidden layers: exact_fgl_auto (DP, B&B or enumeration, the choice reported);
    otherwise (other norms, deeper nets) vertex enumeration, limited to MAX_ENUMERATION_BITS free neurons."""
    t0 = time.perf_counter()
    free = int(sum(np.count_nonzero(lo < hi) for lo, hi in zip(slopes.lo, slopes.hi)))
    if norm == "inf" and 1 <= net.depth <= 2:
        return _exact_fgl_search(net, vec, slopes, opts, free, t0)
    if free > MAX_ENUMERATION_BITS:
        why = "l_inf with 1 or 2 hidden layers" if norm == "inf" else "the l_inf norm"
        raise InvalidInputError(
            f"exact FGL for norm l_{norm} and {net.depth} hidden layer(s) enumerates vertices, limited to "
            f"{MAX_ENUMERATION_BITS} free neurons; this network has {free} (DP and branch and bound need {why})")
    ex = exact_fgl(net, vec, norm, slopes)
    upper = exact_certified(net, vec, norm, ex.value, slopes)
    return MethodOutput(upper, raw=ex.value, status="optimal", timings={"search": time.perf_counter() - t0},
                        sizes={"nodes": ex.vertices, "free_neurons": free},
                        details={"algorithm": "enumerate", "exact_status": "optimal",
                                 "bracket": [ex.value, upper]},
                        pattern=[np.asarray(s) for s in ex.slopes])


def _exact_fgl_search(net: Network, vec, slopes: SlopeBox, opts: dict, free: int, t0: float) -> MethodOutput:
    """Exact search first; if it has not closed after a tenth of the budget (2 s without a limit),
    the LiPopt LP certifies an upper bound of the FGL: when it meets the incumbent to CLOSE_GAP the FGL
    is proved ("bnb+lp"); otherwise the search resumes and the better of the two upper bounds is kept."""
    limit = opts.get("time_limit")
    seed = opts.get("seed", 0)
    r = exact_fgl_auto(net, vec, slopes, time_limit=min(0.1 * limit, FIRST_SEARCH) if limit else FIRST_SEARCH, seed=seed)
    lp_upper, algorithm = math.inf, r.algorithm
    if not r.optimal:
        lp_opts = {**opts, "degree": None, "time_limit": None if limit is None else 0.35 * limit,
                   "max_columns": min(opts.get("max_columns", LP_CLOSE_COLUMNS), LP_CLOSE_COLUMNS)}
        try:
            lp_upper = run_lp(net, vec, "inf", slopes, lp_opts).upper
        except (InvalidInputError, SolverFailure):
            pass
        if lp_upper > r.lower + CLOSE_GAP * abs(r.lower) + r.rounding_error:
            left = None if limit is None else max(1e-3, limit - (time.perf_counter() - t0))
            r = exact_fgl_auto(net, vec, slopes, time_limit=left, seed=seed)
        if lp_upper < r.upper + r.rounding_error:
            algorithm = f"{r.algorithm}+lp"
    upper = min(_round_up(r.upper + r.rounding_error), lp_upper)
    closed = r.optimal or upper <= r.lower + CLOSE_GAP * abs(r.lower) + r.rounding_error
    details = {"algorithm": algorithm, "exact_status": "optimal" if closed else r.status,
               "bracket": [r.lower, upper], "rounding_error": r.rounding_error, "witness_t": r.t.tolist(),
               "free_neurons": free, **{k: v for k, v in r.info.items() if _jsonable(v)}}
    return MethodOutput(upper, raw=r.upper if r.optimal else r.lower if closed else r.upper,
                        status="optimal" if closed else r.status, timings={"search": time.perf_counter() - t0},
                        sizes={"nodes": int(r.nodes), "free_neurons": free}, details=details,
                        pattern=[np.asarray(s) for s in r.s])


def run_lp(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """LiPopt-k: the Krivine LP over the chosen cliques, solved and certified."""
    if norm not in LP_NORMS:
        raise InvalidInputError(f"the LP method supports the norms {', '.join(LP_NORMS)}; got {norm!r} "
                                "(use --method sdp, exact-fgl or product)")
    degree = opts.get("degree")
    degree = max(3, net.depth + 1) if degree is None else check_degree(degree)
    timings = {}
    t0 = time.perf_counter()
    if isinstance(opts.get("cliques", "inputs"), str):  # refuse from shapes before building anything
        precheck_size(net, vec, slopes, degree, opts.get("cliques", "inputs"),
                      opts.get("max_columns", DEFAULT_MAX_COLUMNS))
    poly = build_polynomial(net, vec, slopes)
    timings["polynomial"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cliques = opts.get("cliques", "inputs")
    if isinstance(cliques, str):
        if cliques not in STRATEGIES:
            raise InvalidInputError(f"cliques must be one of {', '.join(STRATEGIES)} or a list; got {cliques!r}")
        clique_list = network_cliques(net, vec, slopes, poly, cliques)
        clique_name = cliques
    else:
        clique_list = [np.asarray(q, dtype=np.int64) for q in cliques]
        if any(q.ndim != 1 or (q.size and (q.min() < 0 or q.max() >= poly.n_vars)) for q in clique_list):
            raise InvalidInputError(f"custom cliques must be 1-D arrays of variable ids in [0, {poly.n_vars})")
        clique_name = "custom"
    clique_list = [q for q in clique_list if len(q)] or [np.zeros(1, dtype=np.int64)]  # P constant: any clique
    structure, added = covering_structure(poly, clique_list, degree, opts.get("coverage", "enlarge"),
                                          opts["max_columns"])
    lp = krivine_lp(poly, structure)
    timings["build"] = time.perf_counter() - t0
    lp_method = opts.get("lp_method", "auto")
    if lp_method == "auto":
        lp_method = "simplex" if lp.shape[1] <= AUTO_SIMPLEX_COLUMNS else "ipm-nocrossover"
    out = solve_lp(lp, opts.get("solver", "highs"), method=lp_method, time_limit=opts.get("time_limit"))
    timings["solve"] = out.seconds
    if out.status not in SOLUTION_PRESENT or out.x is None:
        raise SolverFailure(f"{out.solver}: {out.status.value} ({out.message}); no bound reported")
    t0 = time.perf_counter()
    cert = certify_krivine(poly, structure, out.x, out.objective)
    timings["certify"] = time.perf_counter() - t0
    sizes = {"variables": poly.n_vars, "monomials": poly.n_monomials, "paths": poly.n_paths,
             "cliques": len(structure.cliques), "max_clique": max(len(q) for q in structure.cliques),
             "added_cliques": added, "rows": lp.shape[0], "columns": lp.shape[1], "nonzeros": lp.nnz}
    details = {"solver": out.solver, "solver_status": out.status.value, "cliques": clique_name,
               "residual_mass": cert.residual_mass, "rounding_margin": cert.rounding_margin,
               "clipped_multipliers": cert.clipped}
    return MethodOutput(cert.upper_bound, raw=cert.raw_value, degree=degree, timings=timings, sizes=sizes,
                        details=details)


def run_sdp(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """Shor (order-1 SDP) relaxation of the norm-gradient polynomial, certified from its dual
    (certify_sdp: a rigorous lambda_min bound of the Gram matrix, shifted by R^2)."""
    r = shor_bound(net, vec, slopes, norm, solver=opts.get("sdp_solver", "sdpa"), time_limit=opts.get("time_limit"))
    return _sdp_output(r)


def run_sdp2(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """Sparse order-2 SDP (Lasserre order 2 on cliques of a hidden neuron and its strongest inputs, plus
    the Shor block), certified block by block (relaxations.moments)."""
    size = opts.get("clique_size")
    r = order2_bound(net, vec, slopes, norm, solver=opts.get("sdp_solver", "sdpa"), time_limit=opts.get("time_limit"),
                     clique_size=DEFAULT_CLIQUE_SIZE if size is None else size)
    return _sdp_output(r)


def run_lipsdp(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """LipSDP-Neuron (Fazlyab et al. 2019), the l2 reference, certified like the Shor SDP."""
    if norm != "2":
        raise InvalidInputError(f"LipSDP-Neuron bounds the l2 Lipschitz constant; got norm l_{norm} "
                                "(use --method sdp for l_inf and l1)")
    r = lipsdp_neuron(net, vec, slopes, solver=opts.get("sdp_solver", "sdpa"), time_limit=opts.get("time_limit"))
    return _sdp_output(r)


def _sdp_output(r) -> MethodOutput:
    # any multipliers certify a valid bound (certify_sdp), so an inaccurate solve still yields one;
    # the relaxations raise SolverFailure themselves when the solver returned nothing usable
    return MethodOutput(r.upper, raw=r.raw, timings=dict(r.timings), sizes=dict(r.sizes),
                        details={k: v for k, v in r.details.items() if _jsonable(v)}
                        | {"relaxation": r.method, "solver_status": r.status})


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


def run_auto(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """Best certified bound under a time budget (``time_limit``, default AUTO_BUDGET seconds).

    Order: product bound (instant); a short exact search (1-2 hidden layers, l_inf; enumeration for
    other norms when small) -- once the FGL is proved nothing relaxing P can beat it, so we stop;
    then LiPopt-(d+1) when its LP is small and the Shor SDP (plus LipSDP for l2), the cheaper first
    (sparse nets: the LP; dense ones: the SDP). Every attempt is reported in details["attempts"]."""
    budget = opts.get("time_limit") or AUTO_BUDGET
    t0 = time.perf_counter()
    attempts, outputs = [], {}

    def left() -> float:
        return budget - (time.perf_counter() - t0)

    def attempt(name, runner, share):
        if left() <= 0.05:
            attempts.append({"method": name, "value": None, "seconds": 0.0, "status": "skipped (budget)"})
            return None
        t1 = time.perf_counter()
        try:
            out = runner(net, vec, norm, slopes, {**opts, "time_limit": max(0.05, share * left())})
        except (InvalidInputError, SolverFailure, MemoryError) as exc:
            attempts.append({"method": name, "value": None, "seconds": time.perf_counter() - t1,
                             "status": f"failed: {str(exc) or type(exc).__name__}"})
            return None
        attempts.append({"method": name, "value": out.upper, "seconds": time.perf_counter() - t1,
                         "status": out.status})
        outputs[name] = out
        return out

    attempt("product", run_product, 1.0)
    free = int(sum(np.count_nonzero(lo < hi) for lo, hi in zip(slopes.lo, slopes.hi)))
    searchable = (norm == "inf" and 1 <= net.depth <= 2) or free <= AUTO_ENUMERATION_BITS
    ex = None
    if searchable:
        quick = {**opts, "time_limit": min(AUTO_FIRST_SEARCH, 0.1 * budget)}
        t1 = time.perf_counter()
        try:
            ex = _exact_quick(net, vec, norm, slopes, quick, free)
            attempts.append({"method": "exact-fgl", "value": ex.upper, "seconds": time.perf_counter() - t1,
                             "status": ex.status})
            outputs["exact-fgl"] = ex
        except (InvalidInputError, SolverFailure) as exc:
            attempts.append({"method": "exact-fgl", "value": None, "seconds": time.perf_counter() - t1,
                             "status": f"failed: {exc}"})
    if ex is None or ex.status != "optimal":
        lp_columns = _lp_columns(net, vec, slopes, opts) if norm in LP_NORMS else None
        plan = []
        if lp_columns is not None and lp_columns <= AUTO_LP_COLUMNS:
            plan.append(("lp", run_lp))
        plan.append(("sdp", run_sdp))
        if norm == "inf" and net.depth == 1:
            plan.append(("sdp2", run_sdp2))  # tighter than Shor, a few seconds at 80-80-1
        if plan[0][0] == "lp" and lp_columns > AUTO_SMALL_LP:
            plan.append(plan.pop(0))  # a large LP after the SDPs
        if norm == "2":
            plan.append(("lipsdp", run_lipsdp))
        for i, (name, runner) in enumerate(plan):
            attempt(name, runner, 1.0 / (len(plan) - i))
    if not outputs:
        raise SolverFailure("no method produced a bound within the time budget")
    best_name = min(outputs, key=lambda k: outputs[k].upper)
    best = outputs[best_name]
    status = "ok"
    if ex is not None:
        lo = ex.details["bracket"][0]
        status = "optimal" if best.upper <= lo + CLOSE_GAP * abs(lo) + ex.details.get("rounding_error", 0.0) else "ok"
    details = {**best.details, "best_method": best_name, "attempts": attempts}
    return MethodOutput(best.upper, raw=best.raw, status=status, degree=best.degree, timings={"auto": time.perf_counter() - t0},
                        sizes=best.sizes, details=details, pattern=ex.pattern if ex is not None else best.pattern)


def _exact_quick(net, vec, norm, slopes, opts, free) -> MethodOutput:
    """The exact search alone (no LP stage), time-limited: a proof or a bracket."""
    t0 = time.perf_counter()
    if norm == "inf" and 1 <= net.depth <= 2:
        r = exact_fgl_auto(net, vec, slopes, time_limit=opts["time_limit"], seed=opts.get("seed", 0))
        upper = _round_up(r.upper + r.rounding_error)
        return MethodOutput(upper, raw=r.upper, status=r.status, timings={"search": time.perf_counter() - t0},
                            sizes={"nodes": int(r.nodes), "free_neurons": free},
                            details={"algorithm": r.algorithm, "bracket": [r.lower, upper],
                                     "rounding_error": r.rounding_error},
                            pattern=[np.asarray(s) for s in r.s])
    return run_exact_fgl(net, vec, norm, slopes, opts)


def _lp_columns(net, vec, slopes, opts) -> int | None:
    """Estimated LiPopt-(d+1) columns (None when the polynomial itself is too large to build)."""
    try:
        poly = build_polynomial(net, vec, slopes)
        cliques = network_cliques(net, vec, slopes, poly, opts.get("cliques", "inputs")
                                  if isinstance(opts.get("cliques", "inputs"), str) else "inputs")
    except (InvalidInputError, MemoryError):
        return None
    return estimate_size(cliques, max(3, net.depth + 1))


def check_degree(degree) -> int:
    if not isinstance(degree, (int, np.integer)) or isinstance(degree, bool) or degree < 1:
        raise InvalidInputError(f"degree must be a positive integer, got {degree!r}")
    if degree > MAX_DEGREE:
        raise InvalidInputError(f"degree {degree} is above {MAX_DEGREE}; LiPopt LPs beyond that do not fit in memory")
    return int(degree)


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
    gamma = K * 2.0**-53 / (1 - K * 2.0**-53)
    margin = float(dual_norm(4 * gamma * a[None, :], norm)[0])
    return math.nextafter((value + margin) * (1 + 4 * 2.0**-53), math.inf)


def _round_up(x: float) -> float:
    """x (a sum already carrying its error bound) moved up by a relative 4 ulp for the last addition."""
    return math.nextafter(x * (1 + 4 * 2.0**-53) if x > 0 else x * (1 - 4 * 2.0**-53), math.inf)


def _jsonable(v) -> bool:
    return isinstance(v, (int, float, str, bool)) or v is None


def normalised(runner, forward: bool = False):
    """``runner`` on the normalised network (scaling.normalise), its values scaled back to the original
    units: upper bounds rounded up (overflow: SolverFailure), lower ends down, raw values to nearest,
    details by key (scaling.scale_details); patterns are unchanged by the scaling.

    Every runner but the MIP uses only the weights, c and the slope box (computed beforehand), for
    which any power-of-two normalisation is exact. ``forward=True`` (the MIP: forward passes with
    biases over the domain, whose witness x is returned) needs the consistent normalisation
    (homogeneous activations, biases scaled exactly: the same function up to 2^-K, the same points);
    without one that runner sees the original network.
    """
    @functools.wraps(runner)
    def run(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
        sc = normalise(net, vec, consistent=forward, slopes=slopes, norm=norm)
        if sc is None:
            out = runner(net, vec, norm, slopes, opts)
            if not math.isfinite(float(out.upper)):
                raise SolverFailure(f"the bound is not finite ({out.upper}): the network's values exceed "
                                    "the float64 range")
            return replace(out, details={**out.details, "normalisation": None})
        out = runner(sc.net, sc.vec, norm, slopes, opts)
        return replace(out, upper=sc.up(out.upper), raw=sc.nearest(out.raw),
                       lower=sc.down(out.lower), details=scale_details(out.details, sc))
    return run


RUNNERS = {"lp": normalised(run_lp), "sdp": normalised(run_sdp), "sdp2": normalised(run_sdp2),
           "lipsdp": normalised(run_lipsdp), "product": normalised(run_product),
           "exact-fgl": normalised(run_exact_fgl), "exact": normalised(run_exact_mip, forward=True),
           "auto": normalised(run_auto)}
