"""``zonotope``: the backward pass in affine arithmetic over the derivative box (relaxations.jacobian_zonotope),
for chains and graphs, any norm and activation; one pass, no solver."""
from __future__ import annotations

import time

from ..relaxations.jacobian_zonotope import chain_steps, graph_steps, symbols_needed, zonotope_bound
from .base import MethodOutput, finite_upper
from .graph import is_graph

SECONDS_PER_SYMBOL_WEIGHT = 1e-9   # auto's order: symbols x (weights + sizes) (resnet_cnn r=0.1: 3.2 s estimated,
                                   # 2.5 s measured; lenet5 r=0.01 1.2 / 1.2 s)
AUTO_FREE_SHARE = 0.9              # auto leaves it out when more of the derivatives are free (global scopes): there
                                   # it costs seconds for interval-like bounds (resnet_cnn global 3,430 in 4.9 s,
                                   # auto's best 936; mlp1024x2 r=0.1 1,848 in 6.6 s, best 494)
AUTO_BUSY_SHARE, AUTO_BUSY_SECONDS = 0.5, 1.0   # ... and above half free only when estimated under a second:
                                   # its seconds cost the anytime l2 methods more than it gains there (zoo, 15 s:
                                   # resnet_cnn l2 ball 37.1 -> 60.4 and mlp1024x2 r=0.1 image 1 350 -> 1,611 with it;
                                   # cnn_bn r=0.1, 71 % free, 0.7 s: 1,630 where the rest gives 2,302)


def _steps(net, slopes):
    return graph_steps(net, slopes) if is_graph(net) else chain_steps(net, slopes)


def run_zonotope(net, vec, norm: str, slopes, opts: dict) -> MethodOutput:
    t0 = time.perf_counter()
    limit = opts.get("time_limit")
    z = zonotope_bound(_steps(net, slopes), vec, norm, deadline=None if limit is None else t0 + limit)
    return MethodOutput(finite_upper(z.value), timings={"bound": time.perf_counter() - t0},
                        sizes={"symbols": z.symbols, "boxed_units": z.boxed})


def zonotope_estimate(problem, opts: dict) -> float | None:
    """Seconds from shapes; None (auto leaves it out) when nearly all derivatives are free, or most of them
    and it is not cheap."""
    steps = _steps(problem.net, problem.slopes)
    acts = [s for s in steps if s.kind == "act"]
    free, total = sum(int((s.lo < s.hi).sum()) for s in acts), sum(s.size for s in acts)
    weights = sum((s.W.nnz if hasattr(s.W, "nnz") else s.W.size) if s.W is not None else 0 for s in steps)
    seconds = SECONDS_PER_SYMBOL_WEIGHT * (1 + symbols_needed(steps)) * (weights + sum(s.size for s in steps))
    if free > AUTO_FREE_SHARE * total or (free > AUTO_BUSY_SHARE * total and seconds > AUTO_BUSY_SECONDS):
        return None
    return seconds
