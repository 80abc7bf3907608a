"""Lower bounds from activation patterns: turn a maximiser of the FGL into a real input.

For a piecewise-linear network (ReLU, leaky ReLU) a pattern fixes every hidden derivative, the network
is then affine, and each pre-activation is an affine function z_l(x) = A_l x + a_l. The pattern is
realised by the Chebyshev-style LP

    max delta  s.t.  +-(A_l x + a_l)_j / ||(A_l)_j||_2 >= delta  (sign given by the pattern),  x in X,

and if delta > 0 the gradient at the LP's x is the pattern's gradient. The LP runs over the domain's
inner float box (whose float points are in the exact domain); its x is then moved exactly inside
(``domain.project``) and validated by ``witness.best_witness`` (exact membership, certain activation
pattern, else tiny moves or 0). The value returned is always recomputed as ||grad c^T f(x)||_q at that
x by the network itself, so it is a valid lower bound whether or not the LP succeeded (an unrealisable
pattern still yields a point that violates it least). ``realised`` says whether the pattern at the
returned x is the requested one.
"""
from __future__ import annotations

import time

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from ..model.network import Network
from .witness import best_witness

PIECEWISE_LINEAR = ("relu", "leaky_relu")
GLOBAL_RADIUS = 1e3  # global search keeps x in [-R, R]^n so the LP stays bounded and well scaled
MAX_DENSE = 4_000_000  # entries of the dense affine maps sum_l n_l x n_0 a pattern's region may need


@dataclass(frozen=True)
class RealisedPattern:
    value: float         # ||grad c^T f(x)||_q at x
    point: np.ndarray
    margin: float        # the LP's delta: > 0 means x lies inside the pattern's region
    realised: bool


def realisable(net: Network) -> bool:
    """Patterns determine the gradient only for piecewise-linear activations."""
    return all(a.name in PIECEWISE_LINEAR for a in net.activations)


def region_affine(net: Network, pattern) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Per hidden layer (A_l, a_l) with z_l = A_l x + a_l on the region of ``pattern`` (derivative values
    per hidden layer; h = s * z there, as ReLU and leaky ReLU pass through the origin), and the output
    map's dense matrix A_d (its offset is not needed)."""
    A, a = net.weights[0].toarray(), np.asarray(net.biases[0], dtype=np.float64)
    out = []
    for l in range(net.depth):
        out.append((A, a))
        s = np.asarray(pattern[l], dtype=np.float64)
        W = net.weights[l + 1]
        A, a = W @ (s[:, None] * A), W @ (s * a) + net.biases[l + 1]
    return out, A


def realise_pattern(net: Network, c: np.ndarray, pattern: list[np.ndarray], norm: str = "inf",
                    domain=None, max_dense: int = MAX_DENSE, deadline: float | None = None) -> RealisedPattern | None:
    """Search x in ``domain`` (a Box/Ball's bounding box, or [-R, R]^n globally) whose activation
    pattern is ``pattern`` (derivative values per hidden layer, e.g. the FGL witness). Returns None when
    the network is not piecewise linear or the dense affine maps would exceed ``max_dense`` entries, or
    when the LP does not finish by ``deadline`` (time.perf_counter(); HiGHS' own time limit)."""
    if not realisable(net) or net.depth == 0:
        return None
    n0 = net.widths[0]
    if sum(net.widths[1:-1]) * n0 > max_dense:
        return None
    rows, rhs = [], []
    for l, (A, a) in enumerate(region_affine(net, pattern)[0]):
        active = _active(np.asarray(pattern[l], dtype=np.float64), net.activations[l])
        sign = np.where(active, 1.0, -1.0)
        nrm = np.linalg.norm(A, axis=1)
        keep = nrm > 0
        # sign * (A x + a) / ||A|| >= delta   <=>   -sign * A x / ||A|| + delta <= sign * a / ||A||
        rows.append(np.hstack([-(sign / np.where(keep, nrm, 1))[keep, None] * A[keep], np.ones((keep.sum(), 1))]))
        rhs.append((sign * a / np.where(keep, nrm, 1))[keep])
    if domain is None:
        lo, hi = np.full(n0, -GLOBAL_RADIUS), np.full(n0, GLOBAL_RADIUS)
    else:
        lo, hi = domain.inner_box()
    cost = np.zeros(n0 + 1)
    cost[-1] = -1.0
    bounds = list(zip(lo, hi)) + [(None, 1.0)]
    left = None if deadline is None else deadline - time.perf_counter()
    if left is not None and left <= 0:
        return None
    res = linprog(cost, A_ub=np.vstack(rows), b_ub=np.concatenate(rhs), bounds=bounds, method="highs",
                  options={} if left is None else {"time_limit": left})
    if res.x is None or res.status != 0:
        return None
    x = np.clip(res.x[:n0], lo, hi)
    if domain is not None:
        x = np.atleast_2d(domain.project(x))[0]
    w = best_witness(net, c, norm, x[None, :], domain)
    margin = float(res.x[-1])
    return RealisedPattern(w.value, w.point, margin, margin > 0 and _has_pattern(net, w.point, pattern))


def _has_pattern(net: Network, x: np.ndarray, pattern) -> bool:
    """The activation pattern at x (active iff z > 0) is the requested one."""
    _, zs = net.forward_with_preactivations(x[None, :])
    return all(np.array_equal(z[0] > 0, _active(np.asarray(s), act))
               for z, s, act in zip(zs, pattern, net.activations))


def _active(s: np.ndarray, act) -> np.ndarray:
    """Slopes of the z > 0 side (1): the top of the box unless a leaky slope > 1 puts 1 at the bottom."""
    if act.name == "leaky_relu" and act.params[0] > 1.0:
        return s <= act.slope_lo
    return s >= act.slope_hi
