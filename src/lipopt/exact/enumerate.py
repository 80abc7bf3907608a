"""Exact FGL by vertex enumeration.

P is multilinear, so its maximum over the box is attained at a vertex. We enumerate the vertices of
every hidden derivative variable s (2^(number of free neurons)) in vectorised chunks and maximise over
t in closed form: max_{||t||_p <= 1} t^T g(s) = ||g(s)||_q, with g(s) = W_0^T diag(s_1) ... W_d^T c.
This also gives the exact FGL for the l2 and l1 norms.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError, SolverFailure
from ..model.network import Network
from ..polynomial import SlopeBox, global_slopes

MAX_ENUMERATION_BITS = 24
_CHUNK = 1 << 14


@dataclass(frozen=True)
class ExactResult:
    value: float
    slopes: list[np.ndarray]  # the maximising vertex, one derivative vector per hidden layer
    gradient: np.ndarray      # g at that vertex
    vertices: int


def dual_norm(g: np.ndarray, norm: str) -> np.ndarray:
    """||g||_q row-wise, q dual to the input norm p in {inf, 2, 1}."""
    if norm == "inf":
        return np.abs(g).sum(axis=-1)
    if norm == "2":
        return np.sqrt((g * g).sum(axis=-1))
    if norm == "1":
        return np.abs(g).max(axis=-1)
    raise InvalidInputError(f"unknown norm {norm!r}; choose inf, 2 or 1")


def exact_fgl(net: Network, c: np.ndarray, norm: str = "inf", slopes: SlopeBox | None = None,
              deadline: float | None = None) -> ExactResult:
    """max over vertices s of ||g(s)||_q (exact in floating point up to rounding of g).

    ``deadline`` (time.perf_counter()): past it, SolverFailure (a partial enumeration proves no upper
    bound)."""
    slopes = slopes or global_slopes(net)
    free = [np.flatnonzero(lo < hi) for lo, hi in zip(slopes.lo, slopes.hi)]
    bits = sum(len(f) for f in free)
    if bits > MAX_ENUMERATION_BITS:
        raise InvalidInputError(
            f"exact enumeration is limited to {MAX_ENUMERATION_BITS} free neurons; this network has {bits}")
    WT = [W.T.toarray() for W in net.weights]
    best, best_idx, best_g = -np.inf, 0, None
    total = 1 << bits
    for start in range(0, total, _CHUNK):
        if deadline is not None and time.perf_counter() > deadline:
            raise SolverFailure(f"time limit reached after enumerating {start:,} of {total:,} vertices; "
                                "no bound reported")
        idx = np.arange(start, min(total, start + _CHUNK), dtype=np.int64)
        s_layers = _vertices(idx, free, slopes)
        g = np.broadcast_to(c, (len(idx), len(c)))
        for l in range(net.depth, -1, -1):
            g = g @ WT[l].T
            if l > 0:
                g = g * s_layers[l - 1]
        vals = dual_norm(g, norm)
        k = int(np.argmax(vals))
        if vals[k] > best:
            best, best_idx, best_g = float(vals[k]), int(idx[k]), g[k].copy()
    s_best = _vertices(np.array([best_idx]), free, slopes)
    return ExactResult(best, [s[0] for s in s_best], best_g, total)


def _vertices(idx: np.ndarray, free: list[np.ndarray], slopes: SlopeBox) -> list[np.ndarray]:
    """Derivative vectors for vertex numbers ``idx``: bit b of the number picks hi for free neuron b."""
    out, b = [], 0
    for l, f in enumerate(free):
        s = np.tile(slopes.lo[l], (len(idx), 1))
        for j, unit in enumerate(f):
            on = (idx >> (b + j)) & 1 == 1
            s[on, unit] = slopes.hi[l][unit]
        b += len(f)
        out.append(s)
    return out
