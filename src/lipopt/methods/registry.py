"""The method registry: what each method is, what it supports, what it costs, and how it runs.

Every consumer (the API, the CLI's choices, labels and summaries, ``gap``'s rows, ``auto``'s plan,
``batch``, the experiments, every "not supported here" message) reads ``METHODS``. Adding a method is
one module with its runner and one entry below.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..errors import InvalidInputError
from ..problem import Budget, Norm, Problem
from .auto import run_auto
from .base import MethodOutput, normalised
from .baselines import run_product
from .graph import (GRAPH_LAYERS, graph_aware, graph_lower_runner, layers_refusal,
                    run_graph_exact_fgl, run_graph_interval, run_graph_product)
from .compose import estimate_compose, run_compose
from .exact import exact_fgl_check, run_exact_fgl, run_exact_mip
from .graph_l2 import graph_l2_runner, tail_check
from .l2 import l2_estimate, l2_opt_estimate, l2_precheck, run_l2_fast, run_l2_opt
from .l2_weighted import run_graph_l2_weighted, run_l2_weighted
from .lifted import (interval_estimate, interval_precheck, lifted_estimate, lifted_precheck, run_interval,
                     run_lifted_lp)
from .lp import lp_precheck, run_lp
from .sdp import run_lipsdp, run_sdp, run_sdp2
from .zonotope import run_zonotope, zonotope_estimate

ALL_NORMS = frozenset(n.value for n in Norm)


@dataclass(frozen=True)
class Capabilities:
    """What a method accepts; ``refuse`` turns a mismatch into the reason, or None."""
    kind: str = "upper"                              # "upper" | "lower"
    norms: frozenset = ALL_NORMS
    depths: tuple = (0, None)                        # min, max hidden layers (None: any)
    needs_domain: bool = False
    domains: frozenset = frozenset({"box", "inf-ball", "2-ball"})
    activations: frozenset | None = None             # None: any
    exact_arithmetic: bool = True                    # False: the bound rests on solver tolerances
    check: Callable[[Problem], str | None] | None = None  # further conditions, from shapes only
    layers: frozenset = frozenset({"chain"})         # network structure: chain, or + add/concat/maxpool (graphs)

    def refuse(self, problem: Problem) -> str | None:
        if layers_refusal(self.layers, getattr(problem.net, "kinds", frozenset())):
            return layers_refusal(self.layers, problem.net.kinds)
        if problem.norm not in self.norms:
            return f"supports norms {', '.join(sorted(self.norms))}; got {problem.norm}"
        lo, hi = self.depths
        if problem.depth < lo or (hi is not None and problem.depth > hi):
            want = f"{lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"
            return f"needs {want} hidden layer(s); the network has {problem.depth}"
        if self.needs_domain and problem.domain is None:
            return "needs a bounded input domain (--center/--radius or --lower/--upper)"
        if problem.domain is not None and _domain_kind(problem.domain) not in self.domains:
            return f"supports domains {', '.join(sorted(self.domains))}; got an {_domain_kind(problem.domain)}"
        if self.activations is not None and not problem.activations <= self.activations:
            bad = ", ".join(sorted(problem.activations - self.activations))
            return f"supports activations {', '.join(sorted(self.activations))}; the network uses {bad}"
        return self.check(problem) if self.check is not None else None


def _domain_kind(domain) -> str:
    p = getattr(domain, "p", None)
    return "box" if p is None else f"{p}-ball"


@dataclass(frozen=True)
class Method:
    """A registry entry: ``run`` gives ``runner`` the problem's parts, the options and the time left."""
    name: str
    label: str                                        # format fields: degree, algorithm, best
    capabilities: Capabilities
    runner: Callable[..., MethodOutput]
    cite: str = ""
    estimate: Callable[[Problem, dict], float | None] | None = None   # seconds, for auto's order
    describe: Callable[[object], list[str]] | None = None              # extra CLI summary lines
    note: Callable[[object], str] | None = None       # how the upper bound is certified, for the CLI
    precheck: Callable[[Problem, dict], None] | None = None  # size refusal from shapes, before any scaling
    options: tuple = field(default_factory=tuple)     # option names the method reads
    anytime: bool = False        # uses all the time it is given to improve its bound (auto gives it a share)
    subsumes: tuple = ()         # methods whose bound this one's first certificate already is (auto skips them)
    preferred: frozenset = frozenset()   # norms for which auto runs this anytime method first, with most of the time

    @property
    def kind(self) -> str:
        return self.capabilities.kind

    def run(self, problem: Problem, options: dict, budget: Budget) -> MethodOutput:
        opts = {**options, "time_limit": budget.seconds_left(), "domain": problem.domain}
        if self.precheck is not None:
            self.precheck(problem, opts)
        return self.runner(problem.net, problem.c, problem.norm, problem.slopes, opts)

    def title(self, degree=None, algorithm=None, best=None) -> str:
        return self.label.format(degree=degree, algorithm=algorithm, best=best)


def _lp_lines(res) -> list[str]:
    s = res.sizes
    return [f"LP size      {s['rows']:,} rows x {s['columns']:,} columns, {s['nonzeros']:,} nonzeros; "
            f"{s['cliques']} cliques (max {s['max_clique']} variables), solver {res.details['solver']}"]


def _sdp_lines(res) -> list[str]:
    return [f"SDP size     matrix order {res.sizes['order']:,}, {res.sizes.get('constraints', 0):,} multipliers, "
            f"solver {res.details.get('solver')}"]


def _mip_note(res) -> str:
    lo, hi = res.details["bracket"]
    return f"MIP {res.status}, bracket [{lo:.10g}, {hi:.10g}]; HiGHS tolerances, not an exact-arithmetic certificate"


def _fgl_note(res) -> str:
    lo, hi = res.details["bracket"]
    return (f"certified; FGL proved, {res.sizes['nodes']:,} nodes" if res.status == "optimal" else
            f"certified; time limit reached, FGL in [{lo:.10g}, {hi:.10g}]")


def _auto_lines(res) -> list[str]:
    return [f"  tried      {a['method']:<10} {'-' if a['value'] is None else format(a['value'], '.10g'):>16}  "
            f"{a['seconds']:.3f} s  {a['status']}" for a in res.details["attempts"]]


def _lower_runner(name):
    def run(net, vec, norm, slopes, opts):  # the lower-bound runners live in the api (witness checks)
        from ..api import run_lower
        return run_lower(name, net, vec, norm, slopes, opts)
    run.__name__ = f"run_{name}"
    return run


_PWL = frozenset({"relu", "leaky_relu"})

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("product", "product of layer norms", Capabilities(layers=GRAPH_LAYERS),
           graph_aware(normalised(run_product), run_graph_product), cite="product of operator norms"),
    Method("lp", "LiPopt-{degree} LP", Capabilities(norms=frozenset({"inf"})), normalised(run_lp),
           cite="Latorre, Rolland & Cevher, ICLR 2020", describe=_lp_lines, precheck=lp_precheck,
           options=("degree", "cliques", "solver", "lp_method", "coverage", "max_columns")),
    Method("exact-fgl", "exact FGL ({algorithm})", Capabilities(layers=GRAPH_LAYERS, check=exact_fgl_check),
           graph_aware(normalised(run_exact_fgl), run_graph_exact_fgl),
           cite="exact maximum of the norm-gradient polynomial", options=("seed",), note=_fgl_note),
    Method("sdp", "Shor SDP", Capabilities(), normalised(run_sdp), cite="Shor relaxation of the norm-gradient polynomial",
           describe=_sdp_lines, options=("sdp_solver",)),
    Method("sdp2", "order-2 SDP (cliques)", Capabilities(norms=frozenset({"inf"}), depths=(1, 1)), normalised(run_sdp2),
           cite="Lasserre order 2 on neuron cliques (Waki et al. correlative sparsity)",
           options=("sdp_solver", "clique_size")),
    Method("lipsdp", "LipSDP-Neuron",
           Capabilities(norms=frozenset({"2"}), depths=(1, None), layers=GRAPH_LAYERS, check=tail_check),
           graph_aware(normalised(run_lipsdp), graph_l2_runner("sdp")),
           cite="Fazlyab et al., NeurIPS 2019", describe=_sdp_lines, options=("sdp_solver",)),
    Method("l2-fast", "LipSDP-Neuron layers, closed form",
           Capabilities(norms=frozenset({"2"}), depths=(1, None), layers=GRAPH_LAYERS, check=tail_check),
           graph_aware(normalised(run_l2_fast), graph_l2_runner("fast")),
           cite="ECLipsE-Fast (Xu & Sivaranjani 2024) multipliers, shifted block Cholesky certificate",
           estimate=l2_estimate, precheck=l2_precheck),
    Method("l2-opt", "LipSDP-Neuron layers, refined",
           Capabilities(norms=frozenset({"2"}), depths=(1, None), layers=GRAPH_LAYERS, check=tail_check),
           graph_aware(normalised(run_l2_opt), graph_l2_runner("opt")),
           cite="LipSDP-Neuron multipliers by L-BFGS on sequential Schur complements",
           estimate=l2_opt_estimate, precheck=l2_precheck, anytime=True, subsumes=("l2-fast",),
           preferred=frozenset({"2"})),
    Method("l2-weighted", "weighted l2 bound (Cauchy-Schwarz on LipSDP layers)",
           Capabilities(norms=frozenset({"inf", "1"}), depths=(1, None), layers=GRAPH_LAYERS, check=tail_check),
           graph_aware(normalised(run_l2_weighted), run_graph_l2_weighted),
           cite="||g||_1 <= sqrt(sum 4^-k) ||2^k g||_2 on the input-scaled network's l2-opt bound",
           estimate=l2_opt_estimate, precheck=l2_precheck, anytime=True),
    Method("exact", "activation-consistent MIP",
           Capabilities(norms=frozenset({"inf", "1"}), needs_domain=True, domains=frozenset({"box", "inf-ball"}),
                        activations=_PWL, exact_arithmetic=False, depths=(1, None)),
           normalised(run_exact_mip, forward=True), cite="LipMIP (Jordan & Dimakis 2020) on HiGHS", options=("seed",),
           note=_mip_note, anytime=True),
    Method("interval", "interval Jacobian bound", Capabilities(depths=(1, None), layers=GRAPH_LAYERS),
           graph_aware(normalised(run_interval), run_graph_interval),
           cite="interval bounds on the backward pass (any depth)", estimate=interval_estimate,
           precheck=interval_precheck),
    Method("zonotope", "zonotope Jacobian bound", Capabilities(depths=(1, None), layers=GRAPH_LAYERS),
           graph_aware(normalised(run_zonotope), run_zonotope),
           cite="affine arithmetic on the backward pass: shared noise symbols, chords of the norm",
           estimate=zonotope_estimate),
    Method("lifted-lp", "lifted McCormick LP", Capabilities(depths=(1, None)), normalised(run_lifted_lp),
           cite="McCormick LP of the backward pass, certified from HiGHS duals", estimate=lifted_estimate,
           precheck=lifted_precheck, anytime=True),
    Method("compose", "compositional blocks ({algorithm})", Capabilities(depths=(2, None)),
           normalised(run_compose), cite="per-neuron exact FGL bounds of 1-2 layer blocks, optimal diagonal scaling",
           estimate=estimate_compose, options=("seed", "block_layers"), anytime=True),
    Method("auto", "auto (best: {best})", Capabilities(layers=GRAPH_LAYERS), run_auto, cite="the best certified bound in the budget",
           describe=_auto_lines),
    Method("sampling", "sampled gradients", Capabilities(kind="lower", layers=GRAPH_LAYERS),
           graph_aware(_lower_runner("sampling"), graph_lower_runner("sampling")),
           options=("samples", "seed")),
    Method("ascent", "local search + realised FGL maximiser", Capabilities(kind="lower", layers=GRAPH_LAYERS),
           graph_aware(_lower_runner("ascent"), graph_lower_runner("ascent")),
           options=("samples", "seed")),
)}


def upper_methods() -> list[str]:
    return [n for n, m in METHODS.items() if m.kind == "upper"]


def lower_methods() -> list[str]:
    return [n for n, m in METHODS.items() if m.kind == "lower"]


def applicable(problem: Problem, kind: str = "upper") -> list[Method]:
    """The methods of ``kind`` that accept ``problem``, in the registry's order."""
    return [m for m in METHODS.values() if m.kind == kind and m.capabilities.refuse(problem) is None]


def resolve(name: str, problem: Problem, kind: str | None = None) -> Method:
    """The method called ``name`` if it accepts ``problem``; else one InvalidInputError naming why and
    which methods do apply."""
    names = [n for n, m in METHODS.items() if kind is None or m.kind == kind]
    if name not in names:
        raise InvalidInputError(f"method must be one of {', '.join(names)}; got {name!r}")
    method = METHODS[name]
    why = method.capabilities.refuse(problem)
    if why is not None:
        ok = ", ".join(m.name for m in applicable(problem, method.kind)) or "none"
        raise InvalidInputError(f"{name} ({method.title(degree='k', algorithm='search', best='-')}) {why}. "
                                f"Applicable here: {ok}")
    return method
