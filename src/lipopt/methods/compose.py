"""compose: compositional blocks for deep networks (relaxations.compose has the mathematics).

The gradient chain is cut into blocks of one or two hidden layers; per-neuron row bounds of each block
(lipopt's exact l_inf FGL of the block with the previous block's row bounds as column weights, a bracket's
upper end at a deadline, the absolute path mass when time is out) propagate to the output. This is the
product of the blocks' inf-norms under the best diagonal scaling between blocks, never worse than the
product bound, which is also computed; the smaller certified value is returned. Plans of one-layer then
two-layer blocks share the budget; l_1 runs the same recursion on the transposed chain.
"""
from __future__ import annotations

import time

import numpy as np

from ..baselines import product_bound
from ..errors import InvalidInputError
from ..model import Network
from ..polynomial import SlopeBox
from ..problem import Problem
from ..relaxations.compose import compose_bound, forward_chain, plan_blocks, transposed_chain
from .base import MethodOutput

DEFAULT_SECONDS = 30.0       # without a time limit the row searches share this budget
FIRST_PLAN_SHARE = 0.4       # of the time: one-hidden-layer blocks first (many cheap searches), then two
SECONDS_PER_ROW = 0.05       # auto's estimate per block row search


def run_compose(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """min(product bound, compositional bounds of the plans tried within the budget)."""
    t0 = time.perf_counter()
    if norm not in ("inf", "1"):
        raise InvalidInputError(f"compose supports norms inf and 1; got {norm}")
    limit = opts.get("time_limit") or DEFAULT_SECONDS
    deadline = t0 + 0.95 * limit
    vec = np.asarray(vec, dtype=np.float64)
    product = product_bound(net, vec, norm, slopes)
    chain = forward_chain(net, slopes) if norm == "inf" else transposed_chain(net, vec, slopes)
    c = vec if norm == "inf" else None
    plans = _plans(opts.get("block_layers"), net.depth)
    best, best_plan, tried = product, "product", []
    for k, h in enumerate(plans):
        now = time.perf_counter()
        share = deadline if k == len(plans) - 1 else now + FIRST_PLAN_SHARE * (deadline - now)
        blocks = plan_blocks(len(chain.weights), h)
        r = compose_bound(chain, c, blocks, share, seed=opts.get("seed", 0))
        tried.append({"block_layers": h, "blocks": [list(b) for b in blocks], "value": r.upper,
                      "row_searches": r.rows, "proved_rows": r.proved_rows, "mass_rows": r.fallback_rows,
                      "seconds": time.perf_counter() - now})
        if r.upper < best:
            best, best_plan = r.upper, f"{h}-layer blocks"
    status = "ok"
    return MethodOutput(best, raw=best, status=status, timings={"compose": time.perf_counter() - t0},
                        sizes={"blocks": len(plan_blocks(len(chain.weights), plans[-1]))},
                        details={"algorithm": best_plan, "product_bound": product, "plans": tried})


def _plans(block_layers, depth: int) -> list[int]:
    if block_layers is None:
        return [1, 2] if depth >= 2 else [1]
    if block_layers not in (1, 2):
        raise InvalidInputError(f"block_layers must be 1 or 2; got {block_layers!r}")
    return [int(block_layers)]


def estimate_compose(problem: Problem, opts: dict) -> float | None:
    """Rough seconds from shapes: one search per neuron at every cut of both plans."""
    widths = problem.net.widths
    rows = sum(widths[2:-1:2]) + sum(widths[3:-1:3]) + 2
    return SECONDS_PER_ROW * rows
