"""``zonotope``: the backward pass in affine arithmetic over the derivative box (relaxations.jacobian_zonotope),
for chains and graphs, any norm and activation; one pass, no solver."""
from __future__ import annotations

import time

from ..relaxations.jacobian_zonotope import chain_steps, graph_steps, symbols_needed, zonotope_bound
from .base import MethodOutput, finite_upper
from .graph import is_graph

SECONDS_PER_SYMBOL_WEIGHT = 3e-9   # auto's order: symbols x (weights + sizes), dense products per symbol column


def _steps(net, slopes):
    return graph_steps(net, slopes) if is_graph(net) else chain_steps(net, slopes)


def run_zonotope(net, vec, norm: str, slopes, opts: dict) -> MethodOutput:
    t0 = time.perf_counter()
    limit = opts.get("time_limit")
    z = zonotope_bound(_steps(net, slopes), vec, norm, deadline=None if limit is None else t0 + limit)
    return MethodOutput(finite_upper(z.value), timings={"bound": time.perf_counter() - t0},
                        sizes={"symbols": z.symbols, "boxed_units": z.boxed})


def zonotope_estimate(problem, opts: dict) -> float:
    steps = _steps(problem.net, problem.slopes)
    weights = sum((s.W.nnz if hasattr(s.W, "nnz") else s.W.size) if s.W is not None else 0 for s in steps)
    return SECONDS_PER_SYMBOL_WEIGHT * (1 + symbols_needed(steps)) * (weights + sum(s.size for s in steps))
