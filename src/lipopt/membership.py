"""Exact membership of floating-point points in sets defined by floats read as exact reals.

A Ball(c, r) means {x : |x_i - c_i| <= r} (or sum (x_i - c_i)^2 <= r^2) for the exact reals of the
stored floats c, r; fl(c + r) can lie half an ulp outside. These helpers decide membership of float
points exactly (TwoSum, exact integers) and move points inside; lipopt.domain builds on them.
"""
from __future__ import annotations

import numpy as np

from .errors import InvalidInputError

_EPS = float(np.finfo(np.float64).eps)
MAXF = float(np.finfo(np.float64).max)
# factors by which l2 points are shrunk toward the center until they are exactly inside
SHRINK = (1.0 - 4 * _EPS, 1.0 - 2.0 ** -40, 1.0 - 2.0 ** -26, 1.0 - 2.0 ** -12, 0.5, 2.0 ** -10, 2.0 ** -40)


def _two_sum(a, b):
    """(s, e) with s = fl(a + b) and s + e = a + b exactly (Knuth's TwoSum; no overflow assumed)."""
    s = a + b
    bp = s - a
    ap = s - bp
    return s, (a - ap) + (b - bp)


def inner_ends(c: np.ndarray, r: float):
    """(lo, hi): lo_i the smallest float >= c_i - r, hi_i the largest float <= c_i + r (exact reals).

    fl(c - r) is the nearest float to c - r = fl(c - r) + e (TwoSum, exact), so it is below the exact
    end iff e > 0, and then the next float up is the smallest float above it (one step suffices). An
    overflowed end means |c -+ r| > max float: the end is then the largest finite float."""
    with np.errstate(over="ignore", invalid="ignore"):
        lo, elo = _two_sum(c, -r)
        hi, ehi = _two_sum(c, r)
    lo = np.where(np.isfinite(lo), np.where(elo > 0, np.nextafter(lo, np.inf), lo), -MAXF)
    hi = np.where(np.isfinite(hi), np.where(ehi < 0, np.nextafter(hi, -np.inf), hi), MAXF)
    # an intermediate overflow inside TwoSum (a finite sum with a non-finite error) gets the exact test
    for ends, e, sign in ((lo, elo, -1.0), (hi, ehi, 1.0)):
        for i in np.flatnonzero(np.isfinite(ends) & ~np.isfinite(e)):
            ends[i] = _exact_end(float(c[i]), sign * r, sign)
    return lo, hi


def _exact_end(c: float, r: float, sign: float) -> float:
    """Largest float <= c + r (sign +1) or smallest float >= c + r (sign -1), by Fractions."""
    from fractions import Fraction
    target = Fraction(c) + Fraction(r)
    with np.errstate(over="ignore"):
        v = float(np.float64(c) + np.float64(r))
    v = float(np.clip(v, -MAXF, MAXF))
    while (sign > 0 and Fraction(v) > target) or (sign < 0 and Fraction(v) < target):
        v = float(np.nextafter(v, -sign * np.inf))
    return v


def rows(x, n: int):
    """(2-D float array, was x one point?) with the shape checked (InvalidInputError otherwise)."""
    try:
        X = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"the point is not numeric ({exc})") from None
    single = X.ndim <= 1
    X = np.atleast_2d(X)
    if X.ndim != 2 or X.shape[1] != n:
        raise InvalidInputError(f"points must have {n} coordinates, got shape {np.shape(x)}")
    return X, single


def in_box(X: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Row-wise lo <= x <= hi with every coordinate finite (float comparisons are exact)."""
    return np.all(np.isfinite(X) & (X >= lo) & (X <= hi), axis=1)


def lerp(lo, hi, u):
    """lo + u (hi - lo), or lo (1 - u) + hi u where hi - lo overflows (callers clamp the result)."""
    with np.errstate(over="ignore", invalid="ignore"):
        w = hi - lo
        return np.where(np.isfinite(w), lo + u * w, lo * (1.0 - u) + hi * u)


def midpoint(lo, hi):
    return np.clip(0.5 * lo + 0.5 * hi, lo, hi)


def row_norms(D: np.ndarray) -> np.ndarray:
    """||D_k||_2 per row without underflow or overflow (rows scaled by their largest entry)."""
    m = np.max(np.abs(D), axis=1)
    safe = np.where((m > 0) & np.isfinite(m), m, 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(m > 0, safe * np.sqrt(np.sum((D / safe[:, None]) ** 2, axis=1)), 0.0)


def _exact_int(v: float) -> int:
    """v * 2^1074 as an exact integer (every float is an integer multiple of 2^-1074)."""
    p, q = float(v).as_integer_ratio()
    return p << (1074 - (q.bit_length() - 1))


def l2_within(X: np.ndarray, c: np.ndarray, r: float) -> np.ndarray:
    """Row-wise sum_i (x_i - c_i)^2 <= r^2 in exact arithmetic.

    Filter: rows scaled by a power of two (exact) so the largest of |x_i - c_i| and r is in [1/2, 1);
    with D = fl(x - c) (relative error u) the float S - R of sum D^2 - r^2 is within
    B = (n + 8) eps (S + R) + n 2^-1070 of the exact value (squares, a length-n sum, the subtraction
    and underflow in the scaled units), so |S - R| > B decides. Other rows use exact integers."""
    n = X.shape[1]
    out = np.zeros(X.shape[0], dtype=bool)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        D = X - c
        m = np.maximum(np.max(np.abs(D), axis=1), r)
        usable = np.isfinite(m) & (m > 0) & np.all(np.isfinite(D), axis=1)
        k = np.frexp(np.where(usable, m, 1.0))[1]
        Ds = np.ldexp(D, -k[:, None])
        rs = np.ldexp(r, -k)
        S = np.sum(Ds * Ds, axis=1)
        R = rs * rs
        B = (n + 8) * _EPS * (S + R) + n * 2.0 ** -1070
        diff = S - R
    out[usable & (diff < -B)] = True
    out[m == 0] = True  # x == c exactly
    unsure = np.flatnonzero(usable & (np.abs(diff) <= B) | ~usable & (m != 0))
    if unsure.size:
        ic = [_exact_int(v) for v in c]
        r2 = _exact_int(r) ** 2
        for k in unsure:
            s = 0
            for v, w in zip(X[k], ic):
                s += (_exact_int(v) - w) ** 2
            out[k] = s <= r2
    return out


def checked(domain, y: np.ndarray, fallback) -> np.ndarray:
    """y if it is exactly in the domain, else the fallback point, else InvalidInputError."""
    if domain.contains_exact(y):
        return y
    if fallback is not None and domain.contains_exact(fallback):
        return np.array(fallback, dtype=np.float64)
    raise InvalidInputError("the domain contains no floating-point number point: no witness can be "
                            "evaluated inside it")
