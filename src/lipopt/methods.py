"""One runner per upper-bound method: (network, c, norm, derivative box, options) -> MethodOutput.

Every ``upper`` a runner returns is valid in exact arithmetic:
* lp         LiPopt-k: Krivine LP, certified by certify.certify_krivine;
* product    product of layer operator norms (each rounded up);
* exact-fgl  exact maximum of the norm-gradient polynomial (DP / branch and bound / enumeration) plus an
             a-priori bound on its floating-point error; under a time limit, the proven upper end of
             the bracket (status "time_limit").
The api module picks the derivative box (global or local) before calling a runner.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .baselines import product_bound
from .certify import certify_krivine
from .errors import InvalidInputError, SolverFailure
from .exact import exact_fgl, exact_fgl_auto
from .exact.enumerate import MAX_ENUMERATION_BITS, dual_norm
from .model import Network
from .polynomial import SlopeBox, build_polynomial
from .relaxations.cliques import STRATEGIES, network_cliques
from .relaxations.krivine import covering_structure, krivine_lp
from .solvers import SOLUTION_PRESENT, solve_lp

AUTO_SIMPLEX_COLUMNS = 25_000  # simplex stalls on larger LiPopt LPs (>120 s at 82k columns vs 1.7 s IPM)
LP_NORMS = ("inf",)


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
        r = exact_fgl_auto(net, vec, slopes, time_limit=opts.get("time_limit"), seed=opts.get("seed", 0))
        upper = _round_up(r.upper + r.rounding_error)
        details = {"algorithm": r.algorithm, "exact_status": r.status, "bracket": [r.lower, upper],
                   "rounding_error": r.rounding_error, "witness_t": r.t.tolist(),
                   "free_neurons": free, **{k: v for k, v in r.info.items() if _jsonable(v)}}
        return MethodOutput(upper, raw=r.upper, status=r.status,
                            timings={"search": time.perf_counter() - t0},
                            sizes={"nodes": int(r.nodes), "free_neurons": free}, details=details,
                            pattern=[np.asarray(s) for s in r.s])
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


def run_lp(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """LiPopt-k: the Krivine LP over the chosen cliques, solved and certified."""
    if norm not in LP_NORMS:
        raise InvalidInputError(f"the LP method supports the norms {', '.join(LP_NORMS)}; got {norm!r} "
                                "(use --method sdp, exact-fgl or product)")
    degree = opts.get("degree")
    degree = max(3, net.depth + 1) if degree is None else check_degree(degree)
    timings = {}
    t0 = time.perf_counter()
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


def check_degree(degree) -> int:
    if not isinstance(degree, (int, np.integer)) or isinstance(degree, bool) or degree < 1:
        raise InvalidInputError(f"degree must be a positive integer, got {degree!r}")
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


RUNNERS = {"lp": run_lp, "product": run_product, "exact-fgl": run_exact_fgl}
