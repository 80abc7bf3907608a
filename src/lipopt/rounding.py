"""Binary64 error arithmetic: the one home of every rounding rule lipopt's certified numbers rest on.

Model (IEEE 754 binary64, round to nearest): fl(a op b) = (a op b)(1 + d), |d| <= u = 2^-53, and a sum or
dot product of k terms computed in any order has |fl(s) - s| <= gamma_k sum|terms| with Higham's constant
gamma_k = k u / (1 - k u) (valid while k u < 1). Directed rounding is emulated by one ``nextafter`` step
after a correctly rounded (or error-bounded) result: the exact value lies within half an ulp of a
correctly rounded one, so one ulp outward covers it.

Helpers: ``gamma`` (rounded up, checked), ``gamma_float`` (the plain float formula, for callers that carry
their own safety factor), ``gamma_loose`` (the generous relative widening of the pre-activation bounds),
``up`` / ``down`` (scalar, one ulp), ``next_up`` / ``next_down`` (elementwise, numpy types kept),
``sum_up`` / ``sum_down`` (fsum is correctly rounded, then one ulp), ``row_sums_up`` (many sums at once:
float sums plus Higham's bound), ``norm2_bound``, ``widen_up`` /
``widen_down`` / ``widen`` (x +- margin +- TINY, then one ulp) and ``relative_up`` (x (1 +- k u), then
one ulp up).
"""
from __future__ import annotations

import math

import numpy as np

U = 2.0**-53            # unit roundoff of binary64
EPS = 2.0**-52          # machine epsilon, 2u (np.finfo(np.float64).eps)
TINY = 1e-300           # absolute slack: covers underflow of every product in the bounds it is added to
DENORM = 2.0**-1074     # smallest positive subnormal
MAX_FLOAT = float(np.finfo(np.float64).max)


def gamma(k: int | float) -> float:
    """gamma_k = k u / (1 - k u), rounded up (Higham's constant); AssertionError once k u >= 0.01."""
    ku = float(k) * U
    if ku >= 0.01:
        raise AssertionError("rounding bound undefined: too many terms")
    return float(np.nextafter(ku / (1.0 - ku) * (1.0 + 1e-12), np.inf))


def gamma_float(k):
    """k u / (1 - k u) as evaluated in floating point (no outward rounding, no range check).

    Only for callers that multiply it by a safety factor >= 2 (which dwarfs its own relative error of a
    few u) and that keep k u small; prefer ``gamma`` otherwise."""
    return k * U / (1 - k * U)


def gamma_loose(n: int) -> float:
    """max(1e-12, 4 (n + 2) eps) = max(1e-12, 8 (n + 2) u): at least 4 gamma_{n+2} (for (n + 2) u < 0.5),
    the relative widening used for interval / linear pre-activation bounds of length-n dot products."""
    return max(1e-12, 4.0 * (n + 2) * EPS)


def up(x: float) -> float:
    """The next float above x (a Python float): the exact value behind a correctly rounded x is <= it."""
    return float(np.nextafter(x, np.inf))


def down(x: float) -> float:
    """The next float below x (a Python float)."""
    return float(np.nextafter(x, -np.inf))


def next_up(x):
    """Elementwise next float above x (arrays stay arrays, numpy scalar types are kept)."""
    return np.nextafter(x, np.inf)


def next_down(x):
    """Elementwise next float below x."""
    return np.nextafter(x, -np.inf)


def sum_up(values) -> float:
    """Upper bound on the exact sum of floats: math.fsum is correctly rounded, one ulp up covers it."""
    return up(math.fsum(values))


def sum_down(values) -> float:
    """Lower bound on the exact sum of floats (fsum, then one ulp down)."""
    return down(math.fsum(values))


def row_sums_up(parts, axis: int = -1) -> np.ndarray:
    """Upper bounds on the exact sums along ``axis`` of the float arrays ``parts`` together (one array or
    several with the same shape off ``axis``), vectorised: a float sum of n terms in any order has
    |s - exact| <= gamma_{n-1} sum|x|, and the float sum a of |x| is >= (1 - gamma_n) sum|x|, so
    s + 2 gamma_{n+1} a (rounded up, TINY against underflow) covers it, one ulp up after the addition."""
    parts = [np.asarray(parts, float)] if isinstance(parts, np.ndarray) else [np.asarray(x, float) for x in parts]
    n = sum(x.shape[axis] for x in parts)
    s = sum(x.sum(axis=axis) for x in parts)
    a = sum(np.abs(x).sum(axis=axis) for x in parts)
    return next_up(s + next_up(2.0 * gamma(n + 1) * a + TINY))


def norm2_bound(E: np.ndarray) -> float:
    """Upper bound on ||E||_2 for a symmetric entrywise nonnegative matrix: its largest row sum
    (||E||_2 <= ||E||_inf for symmetric E), enlarged by 2 gamma_{n+1} for the float row sums."""
    if E.size == 0:
        return 0.0
    s = np.asarray(E.sum(axis=1)).ravel()
    return up(float(s.max()) * (1.0 + 2.0 * gamma(E.shape[1] + 1)))


def widen_up(x, margin):
    """x + margin + TINY, then one ulp up (elementwise): an upper end covering an error <= margin."""
    return np.nextafter(x + margin + TINY, np.inf)


def widen_down(x, margin):
    """x - margin - TINY, then one ulp down (elementwise): a lower end covering an error <= margin."""
    return np.nextafter(x - margin - TINY, -np.inf)


def widen(x, margin):
    """(widen_down(x, margin), widen_up(x, margin)): an interval around x covering an error <= margin."""
    return widen_down(x, margin), widen_up(x, margin)


def relative_up(x: float, k) -> float:
    """One ulp above x (1 + k u) for x > 0 and above x (1 - k u) otherwise: >= x plus a relative margin
    covering k roundings of a product of nonnegative factors (or a sum carried with its error bound)."""
    return up(x * (1 + k * U) if x > 0 else x * (1 - k * U))
