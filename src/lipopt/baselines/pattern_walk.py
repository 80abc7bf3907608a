"""Walk over activation regions of a piecewise-linear network towards a larger gradient norm.

At x with pattern P the gradient is g = c^T W_d D_{d-1} ... D_1 W_1. Flipping neuron j of layer l
changes D_l[j] by delta and g by delta * b_l[j] * a_l[j], where b_l = d(c^T f)/d h_l and a_l[j] is
the row of the Jacobian of z_l in x (both for P): so every single flip's ||g'||_q is known in one
vectorised pass. The flips that would raise the norm are then tried as moves:

- *crossings*: points x + t u along u = -sign(z_lj) a_l[j] with t a few multiples of the distance to
  the neuron's hyperplane (one batched gradient evaluation for all of them);
- *LP moves* when no crossing helps: the closest point (l1) to x in the domain's inner box where the
  flipped pattern holds with a small margin, by an LP over the rows of the neurons nearest their
  hyperplanes, adding the rows the solution violates (row generation, a few rounds).

Every point is projected into the domain and its value is the network's own gradient norm there, so
whatever the LP does the result is a valid lower bound once ``witness.best_witness`` validates it.
"""
from __future__ import annotations

import time

import numpy as np
from scipy.optimize import linprog

from ..exact.enumerate import dual_norm
from ..model.activations import derivative
from ..model.network import Network
from ..problem import past
from .patterns import MAX_DENSE, region_affine

CROSSING_STEPS = np.array([0.25, 0.5, 0.9, 1.001, 1.05, 1.3, 2.0, 4.0, 8.0, 16.0, 64.0])
CANDIDATES = 32       # flips tried per step as crossings
LP_CANDIDATES = 16    # ... and as LP moves when no crossing helps
MAX_LP_MOVES = 96     # LP moves per walk: the walk's cost stays bounded where it stalls
NEAR_ROWS = 64        # rows of the LP before row generation
LP_ROUNDS = 4
MARGIN = 1e-7


def _jacobians(net: Network, c, x):
    """Pre-activations z_l and slopes s_l at x, the Jacobians A_l = dz_l/dx of the region of x, the
    backward rows b_l = d(c^T f)/dh_l and the gradient g = c^T A_d."""
    _, zs = net.forward_with_preactivations(x[None, :])
    z = [v[0] for v in zs]
    s = [derivative(act, v) for act, v in zip(net.activations, z)]
    aff, A_out = region_affine(net, s)
    g = c @ A_out
    back, b = [None] * net.depth, c @ net.weights[-1].toarray()
    for l in reversed(range(net.depth)):
        back[l] = b
        b = (b * s[l]) @ net.weights[l].toarray()
    return z, s, [A for A, _ in aff], back, g


def _across(act, z):
    """The slope on the other side of each neuron's hyperplane (piecewise-linear activations)."""
    return derivative(act, np.where(z > 0, -1.0, 1.0))


def _flips(net, norm, z, s, jac, back, g, cur):
    """(predicted value, layer, neuron) of the single flips predicted above ``cur``, best first."""
    out = []
    for l, act in enumerate(net.activations):
        d = _across(act, z[l]) - s[l]
        v = dual_norm(g[None, :] + (d * back[l])[:, None] * jac[l], norm)
        for j in np.flatnonzero(v > cur):
            out.append((float(v[j]), l, int(j)))
    out.sort(key=lambda t: -t[0])
    return out[:CANDIDATES]


def _crossings(x, z, jac, flips):
    """x + t u for each flip: u = -sign(z_lj) a_l[j], t = CROSSING_STEPS x the distance |z_lj| / ||a||^2
    (may overflow on a nearly flat row: ``_evaluate`` drops what is not finite)."""
    pts = []
    with np.errstate(over="ignore", invalid="ignore"):
        for _, l, j in flips:
            a = jac[l][j]
            t = abs(z[l][j]) / max(float(a @ a), 1e-300)
            pts.append(x[None, :] + (CROSSING_STEPS * t)[:, None] * (-np.sign(z[l][j]) * a)[None, :])
    return np.vstack(pts)


def _lp_move(net: Network, x, z, s, flip, lo, hi, deadline):
    """Points from the row-generation LP: min ||x' - x||_1 s.t. x' in [lo, hi] and the rows of the
    flipped pattern (its own affine maps) nearest x hold with margin MARGIN; rows the solution
    violates are added for the next round."""
    _, l0, j0 = flip
    n0 = x.shape[0]
    s = [v.copy() for v in s]
    s[l0][j0] = _across(net.activations[l0], z[l0][j0:j0 + 1])[0]
    aff, _ = region_affine(net, s)
    rows_A = np.vstack([A for A, _ in aff])
    offs = np.concatenate([a for _, a in aff])
    zc = np.concatenate(z)
    sign = np.where(zc > 0, 1.0, -1.0)
    k0 = sum(len(v) for v in z[:l0]) + j0
    sign[k0] = -sign[k0]
    nrm = np.maximum(np.linalg.norm(rows_A, axis=1), 1e-300)
    dist = np.abs(zc) / nrm
    active = set(np.argsort(dist)[:NEAR_ROWS].tolist()) | {k0}
    bounds = list(zip(np.zeros(n0), np.maximum(hi - x, 0))) + list(zip(np.zeros(n0), np.maximum(x - lo, 0)))
    pts = []
    for _ in range(LP_ROUNDS):
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left <= 0:
            break
        S = np.array(sorted(active))
        # sign*(A (x + p - m) + off) >= MARGIN*||A||  <=>  -sign*A p + sign*A m <= sign*(A x + off) - MARGIN*||A||
        SA = sign[S, None] * rows_A[S]
        b_ub = sign[S] * (rows_A[S] @ x + offs[S]) - MARGIN * nrm[S]
        res = linprog(np.ones(2 * n0), A_ub=np.hstack([-SA, SA]), b_ub=b_ub, bounds=bounds, method="highs",
                      options={} if left is None else {"time_limit": left})
        if res.x is None or res.status != 0:
            break
        y = np.clip(x + res.x[:n0] - res.x[n0:], lo, hi)
        pts.append(y)
        _, zs = net.forward_with_preactivations(y[None, :])
        new = set(np.flatnonzero(sign * np.concatenate([v[0] for v in zs]) <= 0).tolist()) - active
        if not new:
            break
        active |= new
    return pts


def _evaluate(net: Network, c, norm: str, domain, pts):
    """The finite candidate points projected into the domain, and their gradient norms (NaN -> -inf):
    a crossing along a nearly flat row can overflow."""
    with np.errstate(all="ignore"):
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        if pts.shape[0] == 0:
            return pts, np.empty(0)
        pts = np.atleast_2d(domain.project(pts))
        vals = dual_norm(net.gradient(pts, c), norm)
    return pts, np.where(np.isfinite(vals), vals, -np.inf)


def pattern_walk(net: Network, c, norm: str, domain, x, value: float, deadline=None, max_steps: int = 200):
    """(best points found, their values) walking from x (value = its gradient norm) over single-neuron
    flips predicted to raise ||grad c^T f||_q; stops when no flip helps, at ``deadline`` or after
    ``max_steps`` moves. ``domain`` is a Box or Ball; points are projected into it."""
    if net.depth == 0 or sum(net.widths[1:-1]) * net.widths[0] > MAX_DENSE:
        return np.empty((0, net.widths[0])), np.empty(0)
    lo, hi = domain.inner_box()
    x, cur = np.asarray(x, dtype=np.float64).copy(), float(value)
    best_x, best_v = [], []
    lp_moves = 0
    for _ in range(max_steps):
        if past(deadline):
            break
        z, s, jac, back, g = _jacobians(net, c, x)
        flips = _flips(net, norm, z, s, jac, back, g, cur)
        if not flips:
            break
        pts, vals = _evaluate(net, c, norm, domain, _crossings(x, z, jac, flips))
        if vals.size == 0 or vals.max() <= cur:
            pts, vals = np.empty((0, x.shape[0])), np.empty(0)
            for flip in flips[:LP_CANDIDATES]:
                if past(deadline) or lp_moves >= MAX_LP_MOVES:
                    break
                lp_moves += 1
                cand = _lp_move(net, x, z, s, flip, lo, hi, deadline)
                if not cand:
                    continue
                cp, cv = _evaluate(net, c, norm, domain, np.vstack(cand))
                pts, vals = np.vstack([pts, cp]), np.concatenate([vals, cv])
                if cv.size and cv.max() > cur:
                    break
            if vals.size == 0 or vals.max() <= cur:
                break
        k = int(np.argmax(vals))
        x, cur = pts[k].copy(), float(vals[k])
        best_x.append(x)
        best_v.append(cur)
    if not best_x:
        return np.empty((0, x.shape[0])), np.empty(0)
    return np.vstack(best_x[-16:]), np.array(best_v[-16:])
