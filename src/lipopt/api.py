"""Public API: upper_bound(), lower_bound() and load(); every call returns a Result.

Pipeline: validate the options -> Budget (one deadline for the whole call) -> Problem (model, output
vector, norm, domain, derivative box: built once) -> registry.resolve -> Method.run (polynomial ->
relaxation -> solver -> certificate, or an exact search) -> lower bound within the same deadline -> Result.
"""
from __future__ import annotations

import time

import numpy as np

from . import memory, options
from .baselines import ascent_lower_bound, local_lower_bound, sampled_lower_bound
from .baselines.patterns import realisable
from .domain import Ball, count_fixed, local_slopes
from .errors import InvalidInputError, SolverFailure
from .methods import METHODS, MethodOutput, check_degree, lower_methods, resolve, run_exact_fgl, upper_methods
from .model import GraphNetwork, Network, load, output_vector
from .polynomial import SlopeBox, global_slopes
from .problem import Budget, Norm, Problem
from .relaxations.krivine import DEFAULT_MAX_COLUMNS
from .result import Result
from .scaling import normalise, scale_down

NORMS = tuple(n.value for n in Norm)
UPPER_METHODS = tuple(upper_methods())
LOWER_METHODS = tuple(lower_methods())
LOWER_RESERVE = 5.0      # seconds at most kept back from the method for the lower bound (a tenth of a limit)


def _check_norm(norm) -> str:
    return Norm.parse(norm).value


def upper_bound(net, norm: str = "inf", method: str = "lp", degree: int | None = None,
                output: int | None = None, margin: tuple[int, int] | None = None, c=None,
                cliques: str | list = "inputs", solver: str = "highs", lp_method: str = "auto",
                coverage: str = "enlarge", time_limit: float | None = None,
                max_columns: int = DEFAULT_MAX_COLUMNS, lower: bool | str = True, samples: int = 4096,
                seed: int = 0, domain=None, preactivation: str = "linear", sdp_solver: str = "sdpa",
                clique_size: int | None = None, memory_limit=None) -> Result:
    """Certified upper bound on the Lipschitz constant of c^T f w.r.t. ||.||_norm on the input.

    method: "lp" (LiPopt-k, Krivine LP of degree ``degree``, default max(3, depth + 1)), "product"
    (product of layer norms), "exact-fgl" (exact maximum of the norm-gradient polynomial: DP, branch
    and bound or enumeration; under ``time_limit`` a proven bracket with status "time_limit"),
    "sdp" (Shor SDP), "sdp2" (sparse order-2 SDP on cliques of ``clique_size`` variables, default 4: a
    hidden neuron and its strongest inputs; one hidden layer, l_inf), "lipsdp" (l2), "exact" (MIP) and
    "auto" (the best of these under ``time_limit``); ``lipopt.methods.METHODS`` says what each supports.
    ``time_limit``: seconds of wall time for the whole call (domain bounds, the method, the lower bound).
    ``cliques``: "inputs", "units", "dense", or a list of variable-id arrays. ``lower``: True or
    "sampling" (seeded sampled gradients), "ascent" (local search plus the FGL maximiser realised as
    an input), or False. ``memory_limit``: bytes (or "4GB"); every method estimates its size from the
    network's shapes first and refuses above it (default: half the physical memory).
    """
    t_start = time.perf_counter()
    budget = Budget.seconds(time_limit)
    net = load(net)
    norm = _check_norm(norm)
    vec = output_vector(net, output, margin, c)
    options.choice(method, "method", UPPER_METHODS)
    lower_method = {True: "sampling", False: None}.get(lower, lower) if isinstance(lower, bool) else lower
    if lower_method is not None and lower_method not in LOWER_METHODS:
        raise InvalidInputError(f"lower must be True, False or one of {', '.join(LOWER_METHODS)}; got {lower!r}")
    samples, seed = options.samples(samples), options.seed(seed)
    if degree is not None:
        degree = check_degree(degree)
    clique_size = options.positive_int(clique_size, "clique_size", 12, allow_none=True)
    max_columns = options.positive_int(max_columns, "max_columns")
    options.choice(preactivation, "preactivation", ("linear", "interval"))
    options.choice(solver, "solver", ("highs", "clarabel"))
    options.choice(sdp_solver, "sdp_solver", ("sdpa", "scs", "clarabel"))
    options.choice(lp_method, "lp_method", ("auto", "simplex", "ipm", "ipm-nocrossover", "pdlp"))
    options.choice(coverage, "coverage", ("enlarge", "strict"))
    opts = {"degree": degree, "cliques": cliques, "solver": solver, "lp_method": lp_method,
            "coverage": coverage, "max_columns": max_columns, "seed": seed, "samples": samples,
            "sdp_solver": sdp_solver, "clique_size": clique_size}
    with memory.limit(memory.current() if memory_limit is None else options.memory_limit(memory_limit)):
        if lower_method is not None:
            _check_samples(net, samples)
        details, t0 = {}, time.perf_counter()
        problem = make_problem(net, vec, norm, domain, preactivation, details, seconds=budget.seconds_left())
        t_domain = time.perf_counter() - t0
        chosen = resolve(method, problem, "upper")
        reserve = 0.0 if lower_method is None or budget.deadline is None else min(LOWER_RESERVE, 0.1 * budget.left())
        out = chosen.run(problem, opts, budget.share(1.0, reserve))
        timings = {"domain": t_domain, **out.timings}
        details.update(out.details)
        lb = None
        if lower_method is not None:
            t0 = time.perf_counter()
            left = budget.seconds_left()
            low = METHODS[lower_method].run(problem, {**opts, "pattern": out.pattern},
                                            Budget.seconds(LOWER_RESERVE if left is None else min(LOWER_RESERVE, left)))
            lb, witness = low.lower, low.point
            details.update({k: v for k, v in low.details.items() if k not in details})
            details["lower_bound_method"] = lower_method
            if out.lower is not None and out.lower > lb:  # the method's own witness (exact MIP) is better
                lb, witness = out.lower, out.point
                details["lower_bound_method"] = f"{method} witness"
            details["lower_bound_witness"] = np.asarray(witness).tolist()
            timings["lower_bound"] = time.perf_counter() - t0
    return Result(out.upper, lb, method, norm, out.degree, out.raw, out.status, time.perf_counter() - t_start,
                  timings, out.sizes, details)


def lower_bound(net, norm: str = "inf", method: str = "sampling", output: int | None = None, margin=None,
                c=None, samples: int = 4096, seed: int = 0, domain=None, time_limit: float = 5.0,
                memory_limit=None) -> Result:
    """Seeded lower bound ||grad c^T f(x)||_q at a witness x provably inside the domain (in details).

    "sampling": the best of sampled points globally, or of sampling plus projected local search inside
    ``domain``. "ascent": local search from restarts (globally at several scales) plus, for ReLU-type
    networks, the maximiser of the FGL (found by branch and bound within ``time_limit``) realised as
    an input by an LP.
    """
    t0 = time.perf_counter()
    budget = Budget.seconds(time_limit, allow_none=False)
    net = load(net)
    norm = _check_norm(norm)
    vec = output_vector(net, output, margin, c)
    samples, seed = options.samples(samples), options.seed(seed)
    options.choice(method, "method", LOWER_METHODS)
    with memory.limit(memory.current() if memory_limit is None else options.memory_limit(memory_limit)):
        _check_samples(net, samples)
        problem = make_problem(net, vec, norm, domain, "linear", {}, slopes=method == "ascent")
        out = resolve(method, problem, "lower").run(problem, {"samples": samples, "seed": seed}, budget)
    details = {**out.details, "witness": np.asarray(out.point).tolist(), "seed": seed, "local": domain is not None}
    return Result(None, out.lower, method, norm, None, None, "ok", time.perf_counter() - t0,
                  {"lower_bound": time.perf_counter() - t0}, {"samples": samples}, details)


def make_problem(net: Network, vec, norm: str, domain, preactivation: str, details: dict,
                 slopes: bool = True, seconds: float | None = None) -> Problem:
    """The validated Problem: global derivative ranges, or their ranges over the domain's pre-activation
    bounds (skipped with ``slopes=False`` when only forward evaluations follow; a graph's back-substitution
    takes a share of ``seconds``, the call's time limit)."""
    if isinstance(net, GraphNetwork):
        return _graph_problem(net, vec, norm, domain, preactivation, details, slopes, seconds)
    if domain is None:
        details["domain"] = "global"
        box = global_slopes(net)
    elif not slopes:
        box = global_slopes(net)
    else:
        box = local_slopes(net, domain, preactivation)
        details.update({"domain": repr_domain(domain), "preactivation": preactivation,
                        "fixed_neurons": count_fixed(box), "hidden_neurons": int(sum(net.widths[1:-1]))})
    return Problem(net, np.asarray(vec, dtype=np.float64), norm, domain, box, preactivation)


def _graph_problem(net: GraphNetwork, vec, norm, domain, preactivation, details, slopes, seconds=None) -> Problem:
    """A graph's Problem: derivative ranges per activation node and the certain max-pool windows over the
    domain's node bounds, back-substituted or interval (graph_bounds.graph_slopes)."""
    from .graph_bounds import graph_slopes
    box = graph_slopes(net, domain if slopes else None, preactivation, seconds)
    details["domain"] = "global" if domain is None else repr_domain(domain)
    if domain is not None and slopes:
        details.update({"preactivation": preactivation, "fixed_neurons": count_fixed(box),
                        "hidden_neurons": int(sum(net.widths[1:-1])), "fixed_pool_windows":
                        int(sum((f >= 0).sum() for f in box.fixed.values()))})
    return Problem(net, np.asarray(vec, dtype=np.float64), norm, domain, box, preactivation)


def _check_samples(net: Network, samples: int) -> None:
    """The samplers hold every sampled point and its activations at once."""
    memory.require(float(samples) * max(net.widths) * memory.BYTES_PER_SAMPLE_ENTRY,
                   f"{samples:,} gradient samples of a {'-'.join(map(str, net.widths))} network", "use fewer samples")


def repr_domain(domain) -> str:
    if isinstance(domain, Ball):
        return f"l_{domain.p} ball of radius {domain.radius:g}" + (" (clipped)" if domain.clip is not None else "")
    return "box"


def run_lower(name: str, net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """The registry's runner of the lower-bound methods: MethodOutput with ``lower`` and ``point``."""
    details = {}
    limit = opts.get("time_limit")
    value, point = _lower(net, vec, norm, opts.get("domain"), opts.get("samples", 4096), opts.get("seed", 0),
                          name, slopes, opts.get("pattern"), 5.0 if limit is None else limit, details)
    return MethodOutput(None, lower=value, point=point, details=details)


def _lower(net: Network, vec, norm: str, domain, samples: int, seed: int, method: str, slopes, pattern,
           time_limit: float, details: dict):
    """(value, witness x) of the chosen lower-bound method; for "ascent" without a given FGL maximiser
    on a ReLU-type net, search one first (time-limited; its incumbent is enough).

    Runs on the consistent normalisation when there is one (scaling.normalise: the same function up to
    the factor 2^-K on every input, so the same witnesses, without overflow) and scales the value back
    rounded down. Without any finite gradient norm the lower bound is the trivial 0, at the domain's
    centre (the origin globally).
    """
    deadline = time.perf_counter() + time_limit
    sc = normalise(net, vec, consistent=True)
    lnet, lvec = (sc.net, sc.vec) if sc is not None else (net, vec)
    if method == "ascent":
        if pattern is None and realisable(net):
            ws = normalise(net, vec, slopes=slopes, norm=norm)  # the FGL uses only weights: always exact
            try:
                fgl = run_exact_fgl(ws.net, ws.vec, norm, slopes, {"time_limit": 0.5 * time_limit, "seed": seed})
                pattern = fgl.pattern
                details["fgl_bracket"] = ws.bracket(fgl.details["bracket"])
            except (InvalidInputError, SolverFailure) as exc:  # too large to search: local search alone
                details["fgl_skipped"] = str(exc)
        # the local search stops at 85 % of the time: realising the pattern (an LP) and validating the
        # witnesses come after it
        lb = ascent_lower_bound(lnet, lvec, norm, domain, samples=samples, seed=seed,
                                patterns=[pattern] if pattern is not None else [],
                                deadline=deadline - 0.15 * time_limit)
    elif domain is None:
        lb = sampled_lower_bound(lnet, lvec, norm, samples=samples, seed=seed, deadline=deadline)
    else:
        lb = local_lower_bound(lnet, lvec, domain, norm, samples=samples, seed=seed, deadline=deadline)
    value, point = lb.value, lb.point
    if point is None or value is None or not np.isfinite(value):
        details["lower_bound_note"] = "no finite gradient norm found: the trivial lower bound 0"
        if domain is None:
            return 0.0, np.zeros(net.widths[0])
        lo, hi = domain.bounding_box()
        return 0.0, np.asarray(domain.project(0.5 * lo + 0.5 * hi), dtype=np.float64).reshape(-1)
    return (scale_down(value, sc.exponent) if sc is not None else float(value)), np.asarray(point)
