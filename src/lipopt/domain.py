"""Input domains and pre-activation bounds for local Lipschitz bounds.

Domains: ``Box(lower, upper)`` and ``Ball(center, radius, p)`` with p in {"inf", "2"}, each optionally
intersected with a data range ``clip=(lo, hi)`` (scalars or arrays). An l_inf ball intersected with a
box is a box; an l2 ball intersected with a box keeps both sets and uses the smaller support function.

Pre-activation bounds per hidden layer: ``interval_bounds`` (interval arithmetic; the first layer uses
the domain's support function, e.g. ||W_row||_2 * radius for an l2 ball) and ``linear_bounds``
(CROWN / DeepPoly-style back-substitution through all earlier layers with linear relaxations of every
activation on its interval, concretised with the domain's support function, intersected with the
interval bounds so it is never looser). ``slopes.slope_box`` turns them into the SlopeBox the LP consumes.

Floating-point soundness. Every bound is computed in float64 and then widened outward by
``gamma * M + 1e-300`` where M is the sum of absolute values of every term that entered the computed
quantity (|W||h| + |b| style magnitudes) and gamma = max(1e-12, 4 (n + 2) eps), n the longest dot
product. The standard a-priori bound on the rounding error of a length-n dot product / sum is
n eps / (1 - n eps) times the sum of absolute terms, so the widening covers all rounding (the 1e-300
covers underflow). For the linear relaxations, each slope may be any float: the intercept is computed
as the max (min) of sigma(z) - a z over [l, u] from the finite set of candidates (endpoints, the kink
at 0, and the stationary points sigma'(z) = a), then widened by the same rule, so the lines enclose
sigma on [l, u]. The rounding of each back-substituted coefficient matrix Lambda W is charged to the
constant term as gamma * (|Lambda| |W|) max|h| with max|h| from the interval bounds of that layer.

Witnesses (points where lower bounds are evaluated) must lie in the exact set: c +- r are reals that
fl(c +- r) can overshoot by half an ulp. ``inner_box`` gives per coordinate the smallest float >= c_i - r
and the largest float <= c_i + r (TwoSum), ``contains_exact`` decides membership of float points in
exact arithmetic, and ``inside_point`` / ``project`` / ``sample`` only return such points. (The
outward ``bounding_box`` is for bounds, never for witnesses.)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidInputError
from .membership import SHRINK as _SHRINK
from .membership import checked as _checked
from .membership import in_box as _in_box
from .membership import inner_ends as _inner_ends
from .membership import l2_within as _l2_within
from .membership import lerp as _lerp
from .membership import midpoint as _midpoint
from .membership import row_norms as _row_norms
from .membership import rows as _rows
from .model.activations import Activation, derivative, stationary_points, value, value_range
from .model.network import Network
from .rounding import TINY as _TINY
from .rounding import gamma_loose as _gamma
from .rounding import widen_down as _down
from .rounding import widen_up as _up


def _vec(a, n, what) -> np.ndarray:
    try:
        v = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} is not numeric ({exc})") from None
    if v.ndim == 0 and n is not None:
        v = np.full(n, float(v))
    v = v.ravel() if v.ndim > 1 else v
    if v.ndim != 1 or (n is not None and v.shape[0] != n):
        raise InvalidInputError(f"{what} must be a vector of length {n}, got shape {np.shape(a)}")
    if np.any(np.isnan(v)):
        raise InvalidInputError(f"{what} contains NaN")
    return v


# -------------------------------------------------------------------------------------------------
# Domains


@dataclass(frozen=True)
class Box:
    """{x : lower <= x <= upper} (intersected with ``clip`` if given)."""
    lower: np.ndarray
    upper: np.ndarray
    clip: tuple | None = None

    def __post_init__(self):
        lo = _vec(self.lower, None, "lower")
        hi = _vec(self.upper, lo.shape[0], "upper")
        if lo.shape[0] == 0:
            raise InvalidInputError("the domain has dimension 0")
        if self.clip is not None:
            clo, chi = _clip_arrays(self.clip, lo.shape[0])
            lo, hi = np.maximum(lo, clo), np.minimum(hi, chi)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise InvalidInputError("box bounds must be finite")
        if np.any(lo > hi):
            raise InvalidInputError(
                f"empty box: lower > upper at coordinates {np.flatnonzero(lo > hi)[:5].tolist()}")
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)

    @property
    def dim(self) -> int:
        return int(self.lower.shape[0])

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lower, self.upper

    def contains(self, x, tol: float = 0.0) -> np.ndarray:
        x = np.atleast_2d(x)
        return np.all((x >= self.lower - tol) & (x <= self.upper + tol), axis=-1)

    def project(self, x) -> np.ndarray:
        """A point of the domain (the Euclidean projection for a box; NaN goes to the midpoint)."""
        x = np.asarray(x, dtype=np.float64)
        x = np.where(np.isnan(x), _midpoint(self.lower, self.upper), x)
        return np.clip(x, self.lower, self.upper)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n points: uniform, with a quarter on random vertices."""
        u = rng.random((n, self.dim))
        k = n // 4
        u[:k] = np.round(u[:k])
        return self.project(_lerp(self.lower, self.upper, u))

    def inner_box(self) -> tuple[np.ndarray, np.ndarray]:
        """The float box whose float points are exactly the float points of the domain."""
        return self.lower, self.upper

    def contains_exact(self, x):
        """Exact membership of the float point x (or of each row of a 2-D x): lower <= x <= upper."""
        X, single = _rows(x, self.dim)
        ok = _in_box(X, self.lower, self.upper)
        return bool(ok[0]) if single else ok

    def inside_point(self, x) -> np.ndarray:
        """A float point of the domain near x (x clamped to the box; NaN -> the midpoint)."""
        X, _ = _rows(x, self.dim)
        y = self.project(X[0])
        return _checked(self, y, None)

    def support(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) over the domain of A x, row-wise, rounded outward."""
        return _box_support(A, self.lower, self.upper)


@dataclass(frozen=True)
class Ball:
    """{x : ||x - center||_p <= radius}, p in {"inf", "2"}, intersected with ``clip`` if given.

    The center must lie in the clip range (so the intersection is non-empty and clipping a ball point
    coordinate-wise keeps it in the ball).
    """
    center: np.ndarray
    radius: float
    p: str = "inf"
    clip: tuple | None = None

    def __post_init__(self):
        c = _vec(self.center, None, "center")
        if c.shape[0] == 0 or not np.all(np.isfinite(c)):
            raise InvalidInputError("center must be a non-empty finite vector")
        r = float(self.radius)
        if not np.isfinite(r) or r < 0:
            raise InvalidInputError(f"radius must be finite and >= 0, got {self.radius!r}")
        p = str(self.p).lower().replace("l", "")
        if p not in ("inf", "2"):
            raise InvalidInputError(f"ball norm must be 'inf' or '2', got {self.p!r}")
        with np.errstate(over="ignore"):
            lo, hi = c - r, c + r
        # c +- r rounded outward so the box contains the exact ball
        lo, hi = np.nextafter(lo, -np.inf), np.nextafter(hi, np.inf)
        # inner float box: the float points of the exact ball's bounding box (see inner_box)
        ilo, ihi = _inner_ends(c, r)
        if self.clip is not None:
            clo, chi = _clip_arrays(self.clip, c.shape[0])
            if np.any(c < clo) or np.any(c > chi):
                raise InvalidInputError("the ball center lies outside the data range clip")
            lo, hi = np.maximum(lo, clo), np.minimum(hi, chi)
            ilo, ihi = np.maximum(ilo, clo), np.minimum(ihi, chi)
        object.__setattr__(self, "center", c)
        object.__setattr__(self, "radius", r)
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_hi", hi)
        object.__setattr__(self, "_ilo", ilo)
        object.__setattr__(self, "_ihi", ihi)

    @property
    def dim(self) -> int:
        return int(self.center.shape[0])

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        return self._lo, self._hi

    def contains(self, x, tol: float = 0.0) -> np.ndarray:
        x = np.atleast_2d(x)
        ok = np.all((x >= self._lo - tol) & (x <= self._hi + tol), axis=-1)
        if self.p == "2":
            ok &= np.linalg.norm(x - self.center, axis=-1) <= self.radius * (1 + 1e-12) + tol
        return ok

    def project(self, x) -> np.ndarray:
        """Points of the domain near the rows of x (exactly inside, see contains_exact): radially into
        the ball for l2, then clamped to the inner float box; l2 rows that rounding left outside are
        shrunk further (_into_l2)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        x = np.where(np.isnan(x), self.center, x)
        if self.p == "2":
            d = x - self.center
            nrm = _row_norms(d)
            with np.errstate(divide="ignore", invalid="ignore"):
                # rows on or beyond the sphere go to radius r (1 - 1e-12): the exact test is then
                # decided by the float filter (no integer fallback) unless r is tiny next to |c|
                scale = np.where(nrm > self.radius * (1 - 1e-12), self.radius * (1 - 1e-12) / nrm, 1.0)
            x = self.center + d * np.where(np.isfinite(scale), scale, 0.0)[:, None]
        x = np.clip(x, self._ilo, self._ihi)
        return self._into_l2(x) if self.p == "2" else x

    def _into_l2(self, Y: np.ndarray) -> np.ndarray:
        """Rows of Y (inside the inner box) moved exactly into the l2 ball: rows failing contains_exact
        are shrunk toward the center by t f, t = min(1, r / ||y - c||), for the factors f of _SHRINK
        (re-clamped: clamping to a box around c never increases the distance); then the center."""
        Y = np.array(Y, dtype=np.float64)
        bad = np.flatnonzero(~self.contains_exact(Y))
        if bad.size == 0:
            return Y
        with np.errstate(over="ignore", invalid="ignore"):
            D = Y[bad] - self.center
            nrm = _row_norms(D)
            usable = np.isfinite(nrm) & (nrm > 0)
            t = np.where(usable, np.minimum(1.0, self.radius / np.where(usable, nrm, 1.0)), 0.0)
        D = np.where(usable[:, None], D, 0.0)
        for f in _SHRINK:
            Z = np.clip(self.center + (t * f)[:, None] * D, self._ilo, self._ihi)
            ok = self.contains_exact(Z)
            Y[bad[ok]] = Z[ok]
            bad, D, t = bad[~ok], D[~ok], t[~ok]
            if bad.size == 0:
                return Y
        Y[bad] = self.center  # always in the set (distance 0, inside clip)
        return Y

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.p == "inf":
            u = rng.random((n, self.dim))
            u[: n // 4] = np.round(u[: n // 4])
            return np.clip(_lerp(self._ilo, self._ihi, u), self._ilo, self._ihi)
        g = rng.standard_normal((n, self.dim))
        g /= np.maximum(np.linalg.norm(g, axis=-1, keepdims=True), _TINY)
        rad = self.radius * rng.random((n, 1)) ** (1.0 / self.dim)
        rad[: n // 4] = self.radius  # a quarter on the sphere
        return self.project(self.center + g * rad)

    def inner_box(self) -> tuple[np.ndarray, np.ndarray]:
        """[lo_i, hi_i]: lo_i the smallest float >= c_i - r (exact reals), hi_i the largest float <=
        c_i + r, intersected with clip. A float point lies in the exact l_inf ball (with clip) iff it
        lies in this box; for l2 the box contains every float point of the ball."""
        return self._ilo, self._ihi

    def contains_exact(self, x):
        """Exact membership of the float point x (each row of a 2-D x) in the exact set: the inner
        box (equivalent to c - r <= x <= c + r and clip, exactly) and for l2 sum (x - c)^2 <= r^2 in
        exact arithmetic (a float filter with a rigorous error bound, exact integers when it is
        inconclusive)."""
        X, single = _rows(x, self.dim)
        ok = _in_box(X, self._ilo, self._ihi)
        if self.p == "2" and ok.any():
            ok[ok] = _l2_within(X[ok], self.center, self.radius)
        return bool(ok[0]) if single else ok

    def inside_point(self, x) -> np.ndarray:
        """A float point of the exact set near x: clamped to the inner box; for l2 then shrunk toward
        the center by factors slightly below r / ||x - c|| until contains_exact holds (the center
        itself, always in the set, is the last resort)."""
        X, _ = _rows(x, self.dim)
        y = np.clip(np.where(np.isnan(X[0]), self.center, X[0]), self._ilo, self._ihi)
        if self.p == "2":
            y = self._into_l2(y[None, :])[0]
        return _checked(self, y, self.center)

    def support(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = _box_support(A, self._lo, self._hi)
        if self.p == "2":
            n = A.shape[1]
            g = _gamma(n)
            ac = A @ self.center
            an = np.sqrt(np.einsum("ij,ij->i", A, A)) * self.radius
            m = g * (np.abs(A) @ np.abs(self.center) + an)
            lo = np.maximum(lo, _down(ac - an, m))
            hi = np.minimum(hi, _up(ac + an, m))
        return lo, hi


Domain = Box | Ball


def _clip_arrays(clip, n):
    try:
        clo, chi = clip
    except (TypeError, ValueError):
        raise InvalidInputError(f"clip must be a pair (lo, hi), got {clip!r}") from None
    clo, chi = _vec(clo, n, "clip lo"), _vec(chi, n, "clip hi")
    if np.any(clo > chi):
        raise InvalidInputError("clip range has lo > hi")
    return clo, chi


def _box_support(A: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    Ap, Am = np.maximum(A, 0.0), np.minimum(A, 0.0)
    mx = Ap @ hi + Am @ lo
    mn = Ap @ lo + Am @ hi
    m = _gamma(A.shape[1]) * (np.abs(A) @ np.maximum(np.abs(lo), np.abs(hi)))
    return _down(mn, m), _up(mx, m)


# -------------------------------------------------------------------------------------------------
# Pre-activation bounds


@dataclass(frozen=True)
class PreactivationBounds:
    """lo[l], hi[l]: bounds on the pre-activation of hidden layer l + 1 over the domain."""
    lo: tuple[np.ndarray, ...]
    hi: tuple[np.ndarray, ...]
    method: str = field(default="interval")


def _check(net: Network, domain) -> None:
    if not isinstance(domain, (Box, Ball)):
        raise InvalidInputError(f"domain must be a Box or a Ball, got {type(domain).__name__}")
    if domain.dim != net.widths[0]:
        raise InvalidInputError(f"the domain has dimension {domain.dim} but the network has "
                                f"{net.widths[0]} inputs")


def _first_layer(net: Network, domain):
    W = net.weights[0].toarray()
    b = net.biases[0]
    lo, hi = domain.support(W)
    m = _gamma(2) * (np.maximum(np.abs(lo), np.abs(hi)) + np.abs(b))
    return _down(lo + b, m), _up(hi + b, m)


def _act_interval(act: Activation, lo, hi):
    """Outward-rounded range of sigma on [lo, hi] ([sigma(lo), sigma(hi)] when sigma is nondecreasing)."""
    vlo, vhi = value_range(act, lo, hi)
    return _down(vlo, 1e-12 * np.abs(vlo)), _up(vhi, 1e-12 * np.abs(vhi))


def _affine_interval(W, b, hlo, hhi):
    Ap = W.maximum(0) if hasattr(W, "maximum") else np.maximum(W, 0)
    Am = W.minimum(0) if hasattr(W, "minimum") else np.minimum(W, 0)
    hi = Ap @ hhi + Am @ hlo + b
    lo = Ap @ hlo + Am @ hhi + b
    absW = abs(W)
    m = _gamma(W.shape[1]) * (absW @ np.maximum(np.abs(hlo), np.abs(hhi)) + np.abs(b))
    return _down(lo, m), _up(hi, m)


def interval_bounds(net: Network, domain) -> PreactivationBounds:
    """Pre-activation bounds of every hidden layer by interval arithmetic (sound, outward rounded)."""
    _check(net, domain)
    los, his = [], []
    lo, hi = _first_layer(net, domain)
    for l in range(net.depth):
        if l > 0:
            hlo, hhi = _act_interval(net.activations[l - 1], los[-1], his[-1])
            lo, hi = _affine_interval(net.weights[l], net.biases[l], hlo, hhi)
        los.append(lo)
        his.append(hi)
    return PreactivationBounds(tuple(los), tuple(his), "interval")


# -- linear relaxations ----------------------------------------------------------------------------

def _stationary(act: Activation, a: np.ndarray) -> list[np.ndarray]:
    """Candidate points where sigma'(z) = a or sigma has a kink (may lie outside the interval)."""
    out = [np.zeros_like(a)]
    inside = (a > 0) & (a < 1)
    safe = np.where(inside, a, 0.5)
    with np.errstate(all="ignore"):
        if act.name == "elu":  # alpha e^z = a
            alpha = act.params[0]
            ok = (a > 0) & (a < alpha)
            out.append(np.where(ok, np.log(np.where(ok, a, 0.5 * alpha) / alpha), 0.0))
        elif act.name == "softplus":  # sigmoid(beta z) = a
            out.append(np.where(inside, (np.log(safe) - np.log1p(-safe)) / act.params[0], 0.0))
        elif act.name == "tanh":
            z = np.arccosh(1.0 / np.sqrt(safe))
            out += [np.where(inside, z, 0.0), np.where(inside, -z, 0.0)]
        elif act.name == "sigmoid":
            ok = (a > 0) & (a < 0.25)
            sa = np.where(ok, a, 0.1)
            s = 2.0 * sa / (1.0 + np.sqrt(1.0 - 4.0 * sa))  # smaller root of s (1 - s) = a, no cancellation
            z = np.log1p(-s) - np.log(s)
            out += [np.where(ok, z, 0.0), np.where(ok, -z, 0.0)]
        elif act.name in ("hardtanh", "gelu", "gelu_tanh", "silu"):  # kinks / the roots on each branch
            out += stationary_points(act, a)
    return out


def _intercept(act: Activation, a, l, u, upper: bool):
    """Sound b with sigma(z) <= a z + b (upper) or >= (lower) for all z in [l, u]."""
    cands = [l, u] + [np.clip(z, l, u) for z in _stationary(act, a)]
    vals = np.stack([value(act, z) - a * z for z in cands])
    mags = np.stack([np.abs(value(act, z)) + np.abs(a * z) for z in cands]).max(axis=0)
    m = 1e-12 * mags
    return _up(vals.max(axis=0), m) if upper else _down(vals.min(axis=0), m)


_CONVEX = ("relu", "leaky_relu", "elu", "softplus")  # leaky_relu / elu only with slope / alpha <= 1


def relaxation(act: Activation, l, u):
    """(aL, bL, aU, bU): aL z + bL <= sigma(z) <= aU z + bU on [l, u] (sound intercepts)."""
    l, u = np.asarray(l, float), np.asarray(u, float)
    w = u - l
    wide = w > 1e-9 * np.maximum(1.0, np.maximum(np.abs(l), np.abs(u)))
    mid = 0.5 * (l + u)
    with np.errstate(all="ignore"):
        chord = np.where(wide, (value(act, u) - value(act, l)) / np.where(wide, w, 1.0),
                         derivative(act, mid))
    tangent = derivative(act, mid)
    if act.name in _CONVEX and (act.name not in ("leaky_relu", "elu") or act.params[0] <= 1.0):
        aU, aL = chord, tangent
    else:  # tanh, sigmoid: convex on z <= 0, concave on z >= 0
        convex, concave = u <= 0, l >= 0
        aU = np.where(convex, chord, np.where(concave, tangent, chord))
        aL = np.where(convex, tangent, chord)
    aU = np.where(np.isfinite(aU), aU, 0.0)
    aL = np.where(np.isfinite(aL), aL, 0.0)
    return aL, _intercept(act, aL, l, u, False), aU, _intercept(act, aU, l, u, True)


def linear_bounds(net: Network, domain) -> PreactivationBounds:
    """CROWN-style back-substituted bounds, intersected with the interval bounds (never looser)."""
    _check(net, domain)
    if net.depth == 0:  # an affine map: no hidden layer to bound
        return PreactivationBounds((), (), "linear")
    dense = [W.toarray() for W in net.weights]
    xlo, xhi = domain.bounding_box()
    xabs = np.maximum(np.abs(xlo), np.abs(xhi))
    lo, hi = _first_layer(net, domain)
    los, his, rel, habs = [lo], [hi], [], []
    for k in range(1, net.depth):
        act = net.activations[k - 1]
        rel.append(relaxation(act, los[-1], his[-1]))
        hlo, hhi = _act_interval(act, los[-1], his[-1])
        habs.append(np.maximum(np.abs(hlo), np.abs(hhi)))
        # interval bounds of this layer (from the already tightened previous layer)
        ilo, ihi = _affine_interval(net.weights[k], net.biases[k], hlo, hhi)
        bounds = []
        for upper in (True, False):
            Lam = dense[k].copy()
            const = net.biases[k].copy()
            err = np.zeros_like(const)
            for m in range(k - 1, -1, -1):
                aL, bL, aU, bU = rel[m]
                g = _gamma(Lam.shape[1])
                zabs = np.maximum(np.abs(los[m]), np.abs(his[m]))
                Lp, Lm = np.maximum(Lam, 0.0), np.minimum(Lam, 0.0)
                if upper:
                    Lz, add = Lp * aU + Lm * aL, Lp @ bU + Lm @ bL
                else:
                    Lz, add = Lp * aL + Lm * aU, Lp @ bL + Lm @ bU
                absLam = np.abs(Lam)
                err += g * (absLam @ (np.maximum(np.abs(bU), np.abs(bL)) + habs[m])
                            + np.abs(Lz) @ zabs + np.abs(const))
                const = const + add
                prev_abs = habs[m - 1] if m > 0 else xabs
                absLz = np.abs(Lz)
                gW = _gamma(Lz.shape[1] + dense[m].shape[1])
                err += gW * (absLz @ np.abs(net.biases[m]) + (absLz @ np.abs(dense[m])) @ prev_abs
                             + np.abs(const))
                const = const + Lz @ net.biases[m]
                Lam = Lz @ dense[m]
            smin, smax = domain.support(Lam)
            err = err * (1 + 1e-6)
            if upper:
                v = smax + const
                bounds.append(_up(v, err + _gamma(2) * (np.abs(smax) + np.abs(const))))
            else:
                v = smin + const
                bounds.append(_down(v, err + _gamma(2) * (np.abs(smin) + np.abs(const))))
        uhi, ulo = bounds
        los.append(np.maximum(ulo, ilo))
        his.append(np.minimum(uhi, ihi))
    return PreactivationBounds(tuple(los), tuple(his), "linear")


# SlopeBox, slope_box, count_fixed and local_slopes moved to lipopt.slopes (the domain stage's output);
# re-exported here for one release. Lazily: slopes.py imports this module's bound functions.
_MOVED_TO_SLOPES = ("SlopeBox", "slope_box", "count_fixed", "local_slopes")


def __getattr__(name):
    if name in _MOVED_TO_SLOPES:
        from . import slopes
        return getattr(slopes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
