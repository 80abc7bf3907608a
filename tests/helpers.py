"""Shared test fixtures: small random networks with fixed seeds."""
from __future__ import annotations

import numpy as np

from lipopt.model import build_network
from lipopt.model.random import band_mask


def small_network(widths, seed, band=None, bias=True, scale=1.0):
    """Gaussian weights (heavier tails than the uniform init, so more varied sign patterns)."""
    rng = np.random.default_rng(seed)
    Ws, bs = [], []
    for l in range(len(widths) - 1):
        W = scale * rng.standard_normal((widths[l + 1], widths[l]))
        if band is not None and l < len(widths) - 2:
            W = W * band_mask(widths[l + 1], widths[l], band)
        Ws.append(W)
        bs.append(rng.standard_normal(widths[l + 1]) if bias else np.zeros(widths[l + 1]))
    return build_network(Ws, bs)


def relative_tolerance(value: float) -> float:
    """Solver-level tolerance for comparing two certified LP values that are equal in exact arithmetic."""
    return 1e-7 * max(1.0, abs(value))


def margin_c(net) -> np.ndarray:
    """e_0 - e_last (e_0 alone for one output): a margin-like output weighting."""
    c = np.zeros(net.widths[-1])
    c[0] = 1.0
    if c.size > 1:
        c[-1] = -1.0
    return c


def random_domain(net, seed: int, kind: str):
    """A seeded local domain around a random point: a box, an l_inf ball ("inf-ball") or an l2 ball."""
    from lipopt.domain import Ball, Box
    rng = np.random.default_rng(1000 + seed)
    x0 = rng.standard_normal(net.widths[0])
    r = float(rng.uniform(0.1, 0.8))
    if kind == "box":
        return Box(x0 - r, x0 + r)
    return Ball(x0, r, "inf" if kind == "inf-ball" else "2")
