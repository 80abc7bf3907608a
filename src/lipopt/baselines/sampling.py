"""Sampled-gradient lower bound on the Lipschitz constant: max_i ||grad f(x_i)||_q.

Any gradient norm at a point where f is differentiable is a valid lower bound. Global sampling draws
Gaussian points at several scales around the origin (x = r z, r log-spaced), which reaches activation
patterns near and far from the origin. Seeded and deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exact.enumerate import dual_norm
from ..model.network import Network


@dataclass(frozen=True)
class SampledBound:
    value: float
    point: np.ndarray
    samples: int


def sampled_lower_bound(net: Network, c: np.ndarray, norm: str = "inf", samples: int = 4096,
                        seed: int = 0, scales=(0.01, 0.1, 1.0, 10.0, 100.0)) -> SampledBound:
    rng = np.random.default_rng(seed)
    n0 = net.widths[0]
    best, best_x = -np.inf, None
    per_scale = max(1, samples // len(scales))
    for r in scales:
        x = r * rng.standard_normal((per_scale, n0))
        vals = dual_norm(net.gradient(x, c), norm)
        k = int(np.argmax(vals))
        if vals[k] > best:
            best, best_x = float(vals[k]), x[k]
    return SampledBound(best, best_x, per_scale * len(scales))
