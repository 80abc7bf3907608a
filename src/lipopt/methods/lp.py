"""LiPopt-k: the Krivine LP over the network's cliques, solved (HiGHS / Clarabel) and certified
(certify.certify_krivine: residual and rounding charged in exact arithmetic)."""
from __future__ import annotations

import time

import numpy as np

from ..certify import certify_krivine
from ..errors import InvalidInputError, SolverFailure
from ..model import Network
from ..polynomial import SlopeBox, build_polynomial
from ..relaxations.cliques import STRATEGIES, network_cliques
from ..relaxations.krivine import DEFAULT_MAX_COLUMNS, covering_structure, krivine_lp, precheck_size
from ..solvers import SOLUTION_PRESENT, solve_lp
from .base import MethodOutput

AUTO_SIMPLEX_COLUMNS = 25_000  # simplex stalls on larger LiPopt LPs (>120 s at 82k columns vs 1.7 s IPM)
LP_NORMS = ("inf",)
MAX_DEGREE = 12              # the certificate's templates grow like 3^k per clique
SECONDS_PER_COLUMN = 1.2e-6  # build + solver setup/readout + certificate per LP column (2.5 M columns: ~3 s)
SOLVER_SHARE = 0.9           # HiGHS checks its clock per iteration and overruns a little


def lp_precheck(problem, opts: dict) -> None:
    """Refuse from the weight patterns alone (columns, memory, time) before the network is even scaled;
    marks ``opts`` so that run_lp does not repeat it."""
    if isinstance(opts.get("cliques", "inputs"), str):
        degree = opts.get("degree")
        degree = max(3, problem.depth + 1) if degree is None else check_degree(degree)
        opts["_columns"] = _check_size(problem.net, problem.c, problem.slopes, degree, opts)


def _check_size(net, vec, slopes, degree, opts) -> int:
    limit = opts.get("time_limit")
    est = precheck_size(net, vec, slopes, degree, opts.get("cliques", "inputs"),
                        opts.get("max_columns", DEFAULT_MAX_COLUMNS))
    if limit is not None and est * SECONDS_PER_COLUMN > limit:
        raise SolverFailure(f"time limit: LiPopt-{degree} (about {est:,} LP columns) needs about "
                            f"{est * SECONDS_PER_COLUMN:.1f} s to build and hand to the solver, more than the "
                            f"{limit:.1f} s left; give more time or use a lower degree")
    return est


def run_lp(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """LiPopt-k: the Krivine LP over the chosen cliques, solved and certified."""
    if norm not in LP_NORMS:
        raise InvalidInputError(f"the LP method supports the norms {', '.join(LP_NORMS)}; got {norm!r} "
                                "(use --method sdp, exact-fgl or product)")
    degree = opts.get("degree")
    degree = max(3, net.depth + 1) if degree is None else check_degree(degree)
    timings = {}
    t0 = t_start = time.perf_counter()
    limit = opts.get("time_limit")
    if isinstance(opts.get("cliques", "inputs"), str) and "_columns" not in opts:
        _check_size(net, vec, slopes, degree, opts)  # refuse from shapes before building anything
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
    left = None
    if limit is not None:  # what the solver may use: the rest, less its setup/readout and the certificate
        left = SOLVER_SHARE * (limit - (time.perf_counter() - t_start)) - lp.shape[1] * SECONDS_PER_COLUMN / 2
        if left <= 0:
            raise SolverFailure(f"time limit reached while building LiPopt-{degree} ({lp.shape[1]:,} columns); "
                                "no bound reported")
    out = solve_lp(lp, opts.get("solver", "highs"), method=lp_method, time_limit=left)
    timings["solve"] = out.seconds
    if out.status not in SOLUTION_PRESENT or out.x is None:
        raise SolverFailure(f"{out.solver}: {out.status.value.replace('_', ' ')} ({out.message}); no bound reported")
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
    if degree > MAX_DEGREE:
        raise InvalidInputError(f"degree {degree} is above {MAX_DEGREE}; LiPopt LPs beyond that do not fit in memory")
    return int(degree)
