"""Public API: upper_bound(), lower_bound() and load(); every call returns a Result.

Pipeline: model -> derivative box (global) -> norm-gradient polynomial -> Krivine LP -> solver ->
certificate -> Result.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .baselines import product_bound, sampled_lower_bound
from .baselines.ascent import local_lower_bound
from .certify import certify_krivine
from .domain import Ball, count_fixed, local_slopes
from .errors import InvalidInputError, SolverFailure
from .exact.enumerate import dual_norm, exact_fgl
from .model import Network, load, output_vector
from .polynomial import SlopeBox, build_polynomial, global_slopes
from .relaxations.cliques import STRATEGIES, network_cliques
from .relaxations.krivine import DEFAULT_MAX_COLUMNS, covering_structure, krivine_lp
from .result import Result
from .solvers import SOLUTION_PRESENT, solve_lp

NORMS = ("inf", "2", "1")
UPPER_METHODS = ("lp", "product", "exact")
LP_NORMS = ("inf",)
AUTO_SIMPLEX_COLUMNS = 25_000  # simplex stalls on larger LiPopt LPs (>120 s at 82k columns vs 1.7 s IPM)


def _check_norm(norm) -> str:
    norm = str(norm).lower().replace("l", "").replace("infinity", "inf")
    if norm not in NORMS:
        raise InvalidInputError(f"norm must be one of inf, 2, 1; got {norm!r}")
    return norm


def upper_bound(net, norm: str = "inf", method: str = "lp", degree: int | None = None,
                output: int | None = None, margin: tuple[int, int] | None = None, c=None,
                cliques: str | list = "inputs", solver: str = "highs", lp_method: str = "auto",
                coverage: str = "enlarge", time_limit: float | None = None,
                max_columns: int = DEFAULT_MAX_COLUMNS, lower: bool = True, samples: int = 4096,
                seed: int = 0, domain=None, preactivation: str = "linear") -> Result:
    """Certified upper bound on the Lipschitz constant of c^T f w.r.t. ||.||_norm on the input.

    method: "lp" (LiPopt-k, Krivine LP of degree ``degree``, default max(3, depth + 1)),
    "product" (product of layer norms) or "exact" (vertex enumeration of the FGL, small nets).
    ``cliques``: "inputs", "units", "dense", or a list of variable-id arrays. With ``lower`` the
    result also carries a seeded sampled-gradient lower bound.
    """
    t_start = time.perf_counter()
    net = load(net)
    norm = _check_norm(norm)
    vec = output_vector(net, output, margin, c)
    if method not in UPPER_METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(UPPER_METHODS)}; got {method!r}")
    timings, sizes, details = {}, {}, {}
    raw, deg = None, None
    t0 = time.perf_counter()
    slopes = _slopes(net, domain, preactivation, details)
    timings["domain"] = time.perf_counter() - t0
    if method == "product":
        t0 = time.perf_counter()
        ub = product_bound(net, vec, norm, slopes)
        timings["bound"] = time.perf_counter() - t0
    elif method == "exact":
        t0 = time.perf_counter()
        ex = exact_fgl(net, vec, norm, slopes)
        raw = ex.value
        ub = _exact_certified(net, vec, norm, ex.value, slopes)
        timings["enumerate"] = time.perf_counter() - t0
        sizes["vertices"] = ex.vertices
    else:
        if norm not in LP_NORMS:
            raise InvalidInputError(f"the LP method supports the norms {', '.join(LP_NORMS)}; got {norm!r}")
        deg = max(3, net.depth + 1) if degree is None else _check_degree(degree)
        ub, raw, lp_timings, sizes, lp_details = _lp_bound(net, vec, slopes, deg, cliques, solver, lp_method,
                                                           coverage, time_limit, max_columns)
        timings.update(lp_timings)
        details.update(lp_details)
    lb = None
    if lower:
        t0 = time.perf_counter()
        lb, witness = _lower(net, vec, norm, domain, samples, seed)
        details["lower_bound_witness"] = witness.tolist()
        timings["lower_bound"] = time.perf_counter() - t0
    return Result(ub, lb, method, norm, deg, raw, "ok", time.perf_counter() - t_start, timings, sizes,
                  details)


def lower_bound(net, norm: str = "inf", output: int | None = None, margin=None, c=None,
                samples: int = 4096, seed: int = 0, domain=None) -> Result:
    """Seeded lower bound ||grad c^T f(x)||_q at a witness x (in details): the best of sampled points
    globally, or of sampling plus projected local search inside ``domain``."""
    t0 = time.perf_counter()
    net = load(net)
    norm = _check_norm(norm)
    vec = output_vector(net, output, margin, c)
    if not isinstance(samples, (int, np.integer)) or samples < 1:
        raise InvalidInputError(f"samples must be a positive integer, got {samples!r}")
    value, witness = _lower(net, vec, norm, domain, samples, seed)
    return Result(None, value, "sampling", norm, None, None, "ok", time.perf_counter() - t0,
                  {"lower_bound": time.perf_counter() - t0}, {"samples": samples},
                  {"witness": witness.tolist(), "seed": seed, "local": domain is not None})


def _slopes(net: Network, domain, preactivation: str, details: dict) -> SlopeBox:
    """Global derivative ranges, or their ranges over the domain's pre-activation bounds."""
    if domain is None:
        details["domain"] = "global"
        return global_slopes(net)
    slopes = local_slopes(net, domain, preactivation)
    details.update({"domain": repr_domain(domain), "preactivation": preactivation,
                    "fixed_neurons": count_fixed(slopes), "hidden_neurons": int(sum(net.widths[1:-1]))})
    return slopes


def repr_domain(domain) -> str:
    if isinstance(domain, Ball):
        return f"l_{domain.p} ball of radius {domain.radius:g}" + (" (clipped)" if domain.clip is not None else "")
    return "box"


def _lower(net: Network, vec, norm: str, domain, samples: int, seed: int):
    if domain is None:
        sb = sampled_lower_bound(net, vec, norm, samples=samples, seed=seed)
        return sb.value, sb.point
    lb = local_lower_bound(net, vec, domain, norm, samples=samples, seed=seed)
    return lb.value, lb.point


def _check_degree(degree) -> int:
    if not isinstance(degree, (int, np.integer)) or isinstance(degree, bool) or degree < 1:
        raise InvalidInputError(f"degree must be a positive integer, got {degree!r}")
    return int(degree)


def _lp_bound(net: Network, vec, slopes, degree, cliques, solver, lp_method, coverage, time_limit,
              max_columns):
    timings = {}
    t0 = time.perf_counter()
    poly = build_polynomial(net, vec, slopes)
    timings["polynomial"] = time.perf_counter() - t0
    t0 = time.perf_counter()
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
    structure, added = covering_structure(poly, clique_list, degree, coverage, max_columns)
    lp = krivine_lp(poly, structure)
    timings["build"] = time.perf_counter() - t0
    if lp_method == "auto":
        lp_method = "simplex" if lp.shape[1] <= AUTO_SIMPLEX_COLUMNS else "ipm-nocrossover"
    out = solve_lp(lp, solver, method=lp_method, time_limit=time_limit)
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
    return cert.upper_bound, cert.raw_value, timings, sizes, details


def _exact_certified(net: Network, vec, norm: str, value: float, slopes: SlopeBox) -> float:
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
