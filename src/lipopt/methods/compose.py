"""compose: compositional blocks for deep networks (relaxations.compose has the mathematics).

The gradient chain is cut into blocks of one or two hidden layers; per-neuron row bounds of each block
(lipopt's exact l_inf FGL of the block with the previous block's row bounds as column weights, a bracket's
upper end at a deadline, the absolute path mass when time is out) propagate to the output. This is the
product of the blocks' inf-norms under the best diagonal scaling between blocks, never worse than the
product bound, which is also computed; the smaller certified value is returned. Plans: uniform blocks of
every length (both alignments) and beam-searched cuts with closed-form rows first (under 40 % of the time),
then the exact searches on the best plan of 1-2 layer blocks until the deadline. l_1 runs the same
recursion on the transposed chain; l_2 is sqrt(l_inf bound x l_1 bound).
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..baselines import product_bound
from ..errors import InvalidInputError
from ..model import Network
from ..polynomial import SlopeBox
from ..problem import Problem
from ..rounding import up
from ..relaxations.compose import beam_plan, compose_bound, forward_chain, plan_blocks, transposed_chain
from .base import MethodOutput

DEFAULT_SECONDS = 10.0       # without a time limit the row searches share this budget
CLOSED_FORM_FLOPS = 2e9      # auto's estimate: dense products per second on one core
CLOSED_FORM_SHARE = 0.4      # of the time at most for the closed-form plans


def run_compose(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    """min(product bound, every block plan with closed-form rows, the best 1-2 layer plan with searches).
    l_2: sup ||g||_2 <= sqrt(sup ||g||_1 sup ||g||_inf) (sum g_i^2 <= max |g_i| sum |g_i|), the l_inf and
    l_1 bounds each on half the time, or the l_2 product bound if smaller."""
    if norm == "2":
        return _run_l2(net, vec, slopes, opts)
    t0 = time.perf_counter()
    if norm not in ("inf", "1"):
        raise InvalidInputError(f"compose supports norms inf, 1 and 2; got {norm}")
    layers = opts.get("block_layers")
    if layers is not None and layers not in (1, 2):
        raise InvalidInputError(f"block_layers must be 1 or 2; got {layers!r}")
    limit = opts.get("time_limit") or DEFAULT_SECONDS
    deadline = t0 + 0.75 * limit             # the normalisation and the caller's bookkeeping run outside t0
    vec = np.asarray(vec, dtype=np.float64)
    product = product_bound(net, vec, norm, slopes)
    chain = forward_chain(net, slopes) if norm == "inf" else transposed_chain(net, vec, slopes)
    c = vec if norm == "inf" else None
    n = len(chain.weights)
    # closed-form pass: blocks of every length (interval rows need no search), both alignments
    plans = {}
    for h in ([layers] if layers else range(0, n)):
        for at_output in (True, False):
            plans.setdefault(tuple(plan_blocks(n, h, at_output)), h)
    tried, best, best_name = [], product, "product"
    for blocks, h in plans.items():
        if time.perf_counter() > t0 + CLOSED_FORM_SHARE * limit:
            break
        r = compose_bound(chain, c, list(blocks), t0 + CLOSED_FORM_SHARE * limit, search=False)
        tried.append({"blocks": [list(b) for b in blocks], "value": r.upper, "search": False})
        if r.upper < best:
            best, best_name = r.upper, f"{h}-layer blocks"
    if layers is None:                        # cut placement by beam search over the closed-form recursion
        value, blocks = beam_plan(chain, c, t0 + CLOSED_FORM_SHARE * limit)
        if blocks and tuple(blocks) not in plans:
            tried.append({"blocks": [list(b) for b in blocks], "value": value, "search": False, "beam": True})
            if value < best:
                best, best_name = value, "beam-searched cuts"
    # search passes: the best plan of one-layer blocks (many small searches), then the best with two-layer
    # blocks, on half of the time left each (the second on all that is left); a plan stops searching
    # where its searches stall, leaving the time to the next
    picks = []
    for longest in (2, 3):
        cand = [t for t in tried if not t["search"] and max(b - a for a, b in t["blocks"]) == longest]
        if cand:
            picks.append(min(cand, key=lambda t: t["value"]))
    for k, pick in enumerate(picks):
        now = time.perf_counter()
        if now >= deadline:
            break
        end = deadline if k == len(picks) - 1 else now + 0.5 * (deadline - now)
        r = compose_bound(chain, c, [tuple(b) for b in pick["blocks"]], end, seed=opts.get("seed", 0))
        tried.append({"blocks": pick["blocks"], "value": r.upper, "search": True, "row_searches": r.rows,
                      "proved_rows": r.proved_rows, "seconds": time.perf_counter() - now})
        if r.upper < best:
            best, best_name = r.upper, f"{max(b - a for a, b in pick['blocks']) - 1}-layer blocks, searched"
    return MethodOutput(best, raw=best, status="ok", timings={"compose": time.perf_counter() - t0},
                        sizes={"plans": len(tried)},
                        details={"algorithm": best_name, "plans": _unit_free(tried, product)})


def _run_l2(net: Network, vec, slopes: SlopeBox, opts: dict) -> MethodOutput:
    t0 = time.perf_counter()
    limit = opts.get("time_limit") or DEFAULT_SECONDS
    half = {**opts, "time_limit": 0.4 * limit}   # the rest: the spectral product and the normalisation
    a = run_compose(net, vec, "inf", slopes, half)
    b = run_compose(net, vec, "1", slopes, {**half, "time_limit": max(1e-3, 0.8 * limit - (time.perf_counter() - t0))})
    product = product_bound(net, np.asarray(vec, dtype=np.float64), "2", slopes)
    value = up(math.sqrt(up(a.upper * b.upper)))         # sqrt is correctly rounded: one ulp up covers it
    best, name = (value, "sqrt(l_inf x l_1 compose)") if value < product else (product, "product")
    return MethodOutput(best, raw=best, status="ok", timings={"compose": time.perf_counter() - t0},
                        sizes={"plans": a.sizes["plans"] + b.sizes["plans"]},
                        details={"algorithm": name, "plans": a.details["plans"] + b.details["plans"]})


def _unit_free(tried: list[dict], product: float) -> list[dict]:
    """The plans with their values as fractions of the product bound (the runner sees the normalised
    network: absolute values here would be in its units)."""
    return [{**{k: v for k, v in t.items() if k != "value"},
             "vs_product": t["value"] / product if product > 0 else None} for t in tried]


def estimate_compose(problem: Problem, opts: dict) -> float | None:
    """Rough seconds from shapes: the closed-form plans (about 26 blocks per weight, each a few dense
    products of the widest layer squared by the input width) plus a second of searches."""
    widths = problem.net.widths
    blocks = 26 * (len(widths) - 1) * (2 if problem.norm == "2" else 1)
    return 1.0 + blocks * 4 * max(widths[1:-1]) ** 2 * max(widths[0], 1) / CLOSED_FORM_FLOPS
