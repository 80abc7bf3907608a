"""Witnesses of lower bounds: a value ||grad c^T f(x)||_q counts only at a point x that provably lies
in the domain and where the computed gradient is provably the gradient of f.

Domain: ``domain.contains_exact(x)`` (exact arithmetic); a point that fails is replaced by
``domain.inside_point(x)`` and its gradient recomputed there.

Certain activation pattern. For piecewise-linear activations (relu, leaky_relu, hardtanh) the float gradient at x
uses the sign of the computed pre-activation z~. It is the gradient of f at x when every pre-activation
that varies with x has a certain sign: |z~ - z| <= E with the rigorous forward error bound

    E_l = (|W_l| E_h + g (|W_l| |h~| + |b_l|)) (1 + g) + (2 n + 4) 2^-1074,   g = (n + 4) eps

(g >= 2 gamma_{n+1}: a length-n dot product plus the bias, and the rounding of the bound itself;
2^-1074 terms cover underflow), where E_h, the error of the previous layer's outputs, is E_{l-1}
through a 1-Lipschitz activation (plus 16 eps |h~| for the transcendental ones), 0 for ReLUs that
are certainly negative (they output exactly 0), and 0 for the input. A neuron "varies" unless all its
inputs are locally constant (certainly negative ReLUs); a constant neuron's slope does not matter
(dz/dx = 0). The pattern is certain iff every varying neuron of every piecewise-linear layer has
|z~| > E. Then f is affine near x with the computed pattern's gradient (up to the float rounding of the
backward product, relative n eps, not charged here). Smooth activations need no pattern.

An uncertain candidate is moved by tiny random steps (kept inside the domain) and re-checked; when no
candidate survives the lower bound is 0 at a point of the domain, which is always valid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exact.enumerate import dual_norm
from ..model.activations import value
from ..model.network import Network
from ..rounding import DENORM as _DENORM
from ..rounding import EPS as _EPS
from ..rounding import next_up
PIECEWISE_LINEAR = ("relu", "leaky_relu", "hardtanh")  # leaky_relu: any slope; hardtanh: two kinks
MOVE_SCALES = (1e-13, 1e-10, 1e-7, 1e-4)   # relative step sizes of the tiny moves
MOVES_PER_SCALE = 4


@dataclass(frozen=True)
class Witness:
    value: float          # ||grad c^T f(point)||_q, recomputed at point (0.0 if no certain point)
    point: np.ndarray     # in the domain (contains_exact) when a domain is given
    certain: bool         # the activation pattern at point is certain (False only for the 0 fallback)


def certain_rows(net: Network, X: np.ndarray) -> np.ndarray:
    """Per row of X: True when every varying pre-activation of every piecewise-linear hidden layer has a
    certain sign (|z~| > rigorous rounding-error bound), so the float gradient is grad f at that row."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    ok = np.all(np.isfinite(X), axis=1)
    _, zs = net.forward_with_preactivations(X)
    h, E = X, np.zeros_like(X)
    varies = np.ones(X.shape, dtype=np.float64)
    for l, z in enumerate(zs):
        W, b = net.weights[l], net.biases[l]
        absW = abs(W)
        n = W.shape[1]
        g = (n + 4) * _EPS
        with np.errstate(over="ignore", invalid="ignore"):
            mag = (absW @ np.abs(h).T).T + np.abs(b)
            prop = (absW @ E.T).T
            Ez = next_up((prop + g * mag) * (1.0 + g) + (2 * n + 4) * _DENORM)
        vz = (absW @ varies.T).T > 0
        hz = value(net.activations[l], z)
        bad, E, v = activation_step(net.activations[l], z, Ez, hz, vz)
        ok &= ~bad
        varies = v.astype(np.float64)
        h = hz
    return ok


def activation_step(act, z: np.ndarray, Ez: np.ndarray, hz: np.ndarray, vz: np.ndarray):
    """One activation in the forward error analysis: pre-activations z~ (rows = points) with error
    bound Ez, outputs hz = sigma(z~), vz = which z vary with x. Returns (rows where a varying z~ is
    within its error of a kink, error bound of hz, which outputs vary). Shared with graph_lower."""
    if act.name == "hardtanh":  # kinks k != 0: |z~ - k| must beat Ez plus the subtraction's rounding
        lo_k, hi_k = act.params
        Ek = next_up(Ez + 4 * _EPS * (np.abs(z) + max(abs(v) for v in act.params if np.isfinite(v))))
        below, above = z - lo_k < -Ek, z - hi_k > Ek
        inner = (z - lo_k > Ek) & (z - hi_k < -Ek)
        flat = below | above                                  # clipped: exactly min / max, constant
        return np.any(vz & ~(below | above | inner), axis=1), np.where(flat, 0.0, Ez), vz & ~flat
    if act.name in ("relu", "leaky_relu"):
        bad = np.any(vz & ~(np.abs(z) > Ez), axis=1)         # NaN counts as ambiguous
        if act.name == "relu":                                # certainly negative: exactly 0, constant
            negative = z < -Ez
            return bad, np.where(negative, 0.0, Ez), vz & ~negative
        # alpha z~ rounded: + eps |h~|
        return bad, (Ez if act.lipschitz == 1.0 else next_up(act.lipschitz * Ez)) + _EPS * np.abs(hz) + _DENORM, vz
    none = np.zeros(z.shape[0], dtype=bool)
    if act.lipschitz == 1.0:  # tanh, sigmoid, elu, softplus: 1-Lipschitz, a few ulps of evaluation
        return none, Ez + 16 * _EPS * np.abs(hz) + _DENORM, vz
    # gelu, silu, elu with alpha > 1: sup|sigma'| > 1; erfc / sigmoid products: 16 ulps of |z| too
    return none, next_up(act.lipschitz * Ez * (1 + _EPS)) + 16 * _EPS * (np.abs(hz) + np.abs(z)) + _DENORM, vz


def best_witness(net: Network, c: np.ndarray, norm: str, X, domain=None, *, values=None,
                 max_checks: int = 16, seed: int = 0) -> Witness:
    """The largest valid gradient norm among the candidate rows of X (best ``max_checks`` by
    ``values``, or by their computed gradient norms), each moved into ``domain`` if needed and tried
    with tiny moves when its pattern is uncertain; (0, a domain point) if none is valid."""
    c = np.asarray(c, dtype=np.float64)
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    if values is None:
        with np.errstate(all="ignore"):
            values = dual_norm(net.gradient(X, c), norm) if X.shape[0] else np.zeros(0)
    values = np.where(np.isnan(values), -np.inf, np.asarray(values, dtype=np.float64))
    order = np.argsort(-values, kind="stable")[:max_checks]
    cand = [X[k] for k in order]
    if domain is not None:
        cand.append(_centre(domain))
        cand = [x if domain.contains_exact(x) else domain.inside_point(x) for x in cand]
    C = np.vstack(cand) if cand else np.zeros((1, net.widths[0]))
    ok = certain_rows(net, C)
    if not ok.all():
        moved = _tiny_moves(C[~ok], domain, np.random.default_rng(seed))
        C = np.vstack([C[ok], moved])
        ok = certain_rows(net, C)
    C = C[ok]
    if C.shape[0] == 0:
        return Witness(0.0, cand[-1] if cand else C, False)
    with np.errstate(all="ignore"):
        vals = dual_norm(net.gradient(C, c), norm)
    vals = np.where(np.isfinite(vals), vals, -np.inf)
    for k in np.argsort(-vals, kind="stable"):
        x = C[k].copy()
        # the reported number is the single-point evaluation (what a user recomputes)
        v = float(dual_norm(net.gradient(x[None, :], c), norm)[0])
        if np.isfinite(v) and certain_rows(net, x[None, :])[0]:
            return Witness(v, x, True)
    return Witness(0.0, cand[-1], False)


def _centre(domain) -> np.ndarray:
    center = getattr(domain, "center", None)
    if center is None:
        lo, hi = domain.inner_box()
        center = 0.5 * lo + 0.5 * hi
    return domain.inside_point(center)


def _tiny_moves(X: np.ndarray, domain, rng: np.random.Generator) -> np.ndarray:
    """Random steps of relative sizes MOVE_SCALES around each row (toward the domain's centre and in
    random directions), moved into the domain."""
    out = []
    if domain is not None:
        lo, hi = domain.inner_box()
        with np.errstate(over="ignore", invalid="ignore"):
            width = np.where(np.isfinite(hi - lo), hi - lo, np.abs(lo) + np.abs(hi))
        centre = _centre(domain)
    for x in X:
        base = np.abs(x) + (width if domain is not None else 1.0)
        for s in MOVE_SCALES:
            steps = s * base * rng.uniform(-1.0, 1.0, (MOVES_PER_SCALE, x.size))
            P = x + steps
            if domain is not None:
                P = domain.project(np.vstack([P, x + s * (centre - x)]))  # exactly inside
            out.append(P)
    return np.vstack(out) if out else np.zeros((0, X.shape[1]))
