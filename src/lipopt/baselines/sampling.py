"""Sampled-gradient lower bound on the Lipschitz constant: max_i ||grad f(x_i)||_q.

Any gradient norm at a point where f is differentiable is a valid lower bound. Global sampling draws
Gaussian points at several scales around the origin (x = r z, r log-spaced), which reaches activation
patterns near and far from the origin. Seeded and deterministic. The reported value is recomputed at a
witness whose activation pattern is certain (``witness.best_witness``; 0 if none of the best samples
has one, which is always valid).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..exact.enumerate import dual_norm
from ..model.network import Network
from .witness import best_witness


@dataclass(frozen=True)
class SampledBound:
    value: float
    point: np.ndarray
    samples: int


CHUNK = 4096  # points per gradient evaluation: bounds memory, and the deadline is checked between chunks


def sampled_lower_bound(net: Network, c: np.ndarray, norm: str = "inf", samples: int = 4096,
                        seed: int = 0, scales=(0.01, 0.1, 1.0, 10.0, 100.0),
                        deadline: float | None = None) -> SampledBound:
    """``deadline`` (time.perf_counter()): sampling stops there, after at least one chunk per scale,
    and the best sample so far is validated. The same seed gives the same points in the same order."""
    rng = np.random.default_rng(seed)
    n0 = net.widths[0]
    per_scale = max(1, samples // len(scales))
    found, found_v, drawn = [], [], 0
    for r in scales:
        for start in range(0, per_scale, CHUNK):
            x = r * rng.standard_normal((min(CHUNK, per_scale - start), n0))
            vals = dual_norm(net.gradient(x, c), norm)
            top = np.argsort(-vals)[:4]
            found.append(x[top])
            found_v.append(vals[top])
            drawn += x.shape[0]
            if deadline is not None and time.perf_counter() > deadline:
                break
        if deadline is not None and time.perf_counter() > deadline:
            break
    w = best_witness(net, c, norm, np.vstack(found), None, values=np.concatenate(found_v), seed=seed)
    return SampledBound(w.value, w.point, drawn)
