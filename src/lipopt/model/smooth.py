"""GELU (erf and tanh forms) and SiLU: values, derivatives and the constants that bound them.

gelu(z) = z Phi(z), gelu'(z) = Phi(z) + z phi(z), gelu''(z) = phi(z) (2 - z^2): critical points of the
derivative at exactly +-sqrt(2).  silu(z) = z sigma(z), silu'(z) = sigma(z) (1 + z sigma(-z)),
silu''(z) = sigma'(z) (2 - z tanh(z / 2)): critical points at +-c with c tanh(c / 2) = 2 (c ~ 2.3994).
gelu_tanh(z) = z sigma(2 u), u = k (z + 0.044715 z^3), k = sqrt(2 / pi) (PyTorch's approximate="tanh",
written with 1 + tanh(u) = 2 sigma(2 u) to stay relatively accurate for z < 0); its derivative's critical
points +-c (c ~ 1.4185) are the sign changes of the bracket B of gelu_tanh'' = 2 S (1 - S) B.
All three derivatives satisfy sigma'(z) + sigma'(-z) = 1, rise from 0 (z -> -inf, from below) to a
maximum at +c and fall back to 1: they are monotone on (-inf, -c], [-c, c], [c, inf).

Each critical point is enclosed in [c - CRIT_DELTA, c + CRIT_DELTA] by checking the sign of the
second derivative (well above its rounding error) at both ends; the derivative's value there differs
from its value at the true critical point by a second-order term (~1e-24), far inside the margins.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import erfc

SQRT2 = math.sqrt(2.0)
K_TANH = math.sqrt(2.0 / math.pi)
C_TANH = 0.044715
CRIT_DELTA = 1e-12
#: absolute outward margin for these derivatives (their two terms cancel near the zeros of sigma')
ABS_MARGIN = 1e-13
SMOOTH = ("gelu", "gelu_tanh", "silu")


def _sig(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _u(z):
    z = np.clip(z, -1e4, 1e4)  # beyond, sigma(2u) is exactly 0 or 1 in float64; avoids inf * 0
    return z, K_TANH * (z + C_TANH * z * z * z), K_TANH * (1.0 + 3.0 * C_TANH * z * z)


def value(name: str, z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if name == "gelu":
        return 0.5 * z * erfc(-z / SQRT2)
    if name == "silu":
        return z * _sig(z)
    _, u, _ = _u(z)
    return z * _sig(2.0 * u)


def derivative(name: str, z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(under="ignore", over="ignore"):  # z * z -> inf only where exp(-z^2/2) is 0 anyway
        if name == "gelu":
            return 0.5 * erfc(-z / SQRT2) + z * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        if name == "silu":
            return _sig(z) * (1.0 + z * _sig(-z))
        zc, u, du = _u(z)
        S, T = _sig(2.0 * u), _sig(-2.0 * u)
        return S + zc * 2.0 * S * T * du


def curvature_sign(name: str, z: np.ndarray) -> np.ndarray:
    """A function with the sign of sigma''(z) (its positive factors dropped)."""
    z = np.asarray(z, dtype=np.float64)
    if name == "gelu":
        return 2.0 - z * z
    if name == "silu":
        return 2.0 - z * np.tanh(0.5 * z)
    zc, u, du = _u(z)
    return 2.0 * du + zc * (-2.0 * np.tanh(u) * du * du + 6.0 * K_TANH * C_TANH * zc)


def _critical(name: str) -> float:
    """The positive critical point c of sigma' (bisection on the sign of sigma''), checked enclosed."""
    if name == "gelu":
        c = SQRT2
    else:
        a, b = 0.5, 4.0  # sigma'' > 0 at 0.5, < 0 at 4 for both
        for _ in range(200):
            m = 0.5 * (a + b)
            if m in (a, b):
                break
            a, b = (m, b) if curvature_sign(name, m) > 0 else (a, m)
        c = 0.5 * (a + b)
    lo, hi = c - CRIT_DELTA, c + CRIT_DELTA
    # the second derivative is ~1e-12 there, its rounding error ~1e-16: the signs are certain
    if not (curvature_sign(name, lo) > 1e-14 and curvature_sign(name, hi) < -1e-14):
        raise AssertionError(f"critical point of {name}' not enclosed")  # pragma: no cover
    return c


CRITICAL = {name: _critical(name) for name in SMOOTH}
#: sup of sigma' (at +c) rounded up generously; inf of sigma' = 1 - sup (by the symmetry above)
PEAK = {name: float(np.nextafter(derivative(name, CRITICAL[name]) + ABS_MARGIN, np.inf)) for name in SMOOTH}
GLOBAL = {name: (float(np.nextafter(1.0 - PEAK[name] - ABS_MARGIN, -np.inf)), PEAK[name]) for name in SMOOTH}


def slope_candidates(name: str, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of sigma' over the endpoints and every critical point (+-c, enclosed) in [lo, hi]; the
    true range over [lo, hi] up to rounding (sigma' is monotone between critical points)."""
    c = CRITICAL[name]
    dl, dh = derivative(name, lo), derivative(name, hi)
    smin, smax = np.minimum(dl, dh), np.maximum(dl, dh)
    top_in = (lo <= c + CRIT_DELTA) & (hi >= c - CRIT_DELTA)
    bot_in = (lo <= -c + CRIT_DELTA) & (hi >= -c - CRIT_DELTA)
    smax = np.where(top_in, PEAK[name], smax)
    smin = np.where(bot_in, GLOBAL[name][0], smin)
    return smin, smax


def _bisect(name: str, a: np.ndarray, left: float, right: float, increasing: bool) -> np.ndarray:
    """Vectorised bisection for sigma'(z) = a on [left, right], where sigma' is monotone; the end
    nearest the solution when a is outside the branch's range."""
    x0 = np.full(np.shape(a), left, dtype=np.float64)
    x1 = np.full(np.shape(a), right, dtype=np.float64)
    for _ in range(110):
        m = 0.5 * (x0 + x1)
        below = derivative(name, m) < a
        go_right = below if increasing else ~below
        x0, x1 = np.where(go_right, m, x0), np.where(go_right, x1, m)
    return 0.5 * (x0 + x1)


def derivative_roots(name: str, a) -> list[np.ndarray]:
    """Points z with sigma'(z) = a, one per monotone branch (clamped to the branch when a is out of
    its range, which only adds harmless candidates). Beyond |z| = 800 sigma' is 0 or 1 in float64
    (silu' ~ z e^z underflows last)."""
    a = np.asarray(a, dtype=np.float64)
    c = CRITICAL[name]
    return [_bisect(name, a, -800.0, -c, False), _bisect(name, a, -c, c, True),
            _bisect(name, a, c, 800.0, False)]


#: the one zero z0 of sigma' (sigma decreasing before, increasing after) and a lower bound of sigma(z0)
MINIMUM_AT = {name: float(derivative_roots(name, 0.0)[1]) for name in SMOOTH}
MINIMUM = {name: float(np.nextafter(value(name, MINIMUM_AT[name]) - ABS_MARGIN, -np.inf)) for name in SMOOTH}
