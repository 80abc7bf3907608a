"""Baselines as methods: the product of layer operator norms (an upper bound, each norm rounded up)."""
from __future__ import annotations

import time

from ..baselines import product_bound
from ..model import Network
from ..polynomial import SlopeBox
from .base import MethodOutput


def run_product(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
    t0 = time.perf_counter()
    ub = product_bound(net, vec, norm, slopes)
    return MethodOutput(ub, timings={"bound": time.perf_counter() - t0})
