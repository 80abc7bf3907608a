"""Scale covariance: normalise every layer by an exact power of two, bound, scale the value back.

L(a f) = a L(f). The norm-gradient polynomial P(t, s) = t^T W_0^T diag(s_1) W_1^T ... diag(s_d) W_d^T c is
multilinear in the weights, so with W_l -> 2^-k_l W_l and c -> 2^-k_c c (the slope box s is unchanged)

    P' = 2^-K P  exactly,   K = k_0 + ... + k_d + k_c,

and a bound u' of the normalised problem gives u = u' 2^K for the original. Powers of two change only
exponents: if no entry overflows or loses low bits (subnormal underflow) the normalised network is the
original one exactly, and every floating-point computation on it is the original computation scaled,
so solvers see weights of magnitude ~1 whatever the units (an SDP fails at weights ~1e3 otherwise).

Biases: b_l -> 2^-S_l b_l with S_l = k_0 + ... + k_l. For positively homogeneous activations (relu,
leaky_relu: sigma(a z) = a sigma(z), a > 0) every pre-activation is then 2^-S_l times the original, so
activation patterns are unchanged and f' = 2^-S_d f on every input: forward passes, witnesses and
pre-activation bounds may use the normalised network too (``consistent``).

Rounding back: u' 2^K is exact unless it under- or overflows; an upper bound is rounded up (overflow:
SolverFailure, the bound exceeds the float64 range), a lower bound down (overflow: the largest finite
float, still a valid lower bound).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .errors import SolverFailure
from .model.network import Network
from .rounding import MAX_FLOAT, down, up

HOMOGENEOUS = ("relu", "leaky_relu")  # sigma(a z) = a sigma(z) for a > 0
_FREE = 1 << 20  # exponent range of an all-zero array (any k is exact)

#: details keys whose values are upper bounds / error bounds in the units of P (scaled back rounded up),
#: lower ends (rounded down), plain values (nearest), and values in the units of P^2 (LipSDP's rho)
UP_KEYS = ("rounding_error", "residual_mass", "rounding_margin", "gap_allowance", "margin", "trivial_bound")
NEAREST_KEYS = ("dual_bound", "primal")
SQUARED_UP_KEYS = ("rho", "rho_certified", "rho_dense", "rho_layers")
SQUARED_NEAREST_KEYS = ("rho_raw",)
BRACKET_KEYS = ("bracket", "fgl_bracket")
#: solver internals left in the normalised problem's units (listed in details["normalisation"])
NORMALISED_KEYS = ("nu", "min_nu", "penalty", "R2", "gap")


_CHUNK = 1 << 20


def exact_range(x) -> tuple[int, int]:
    """[kmin, kmax] such that ldexp(x, -k) is exact (no overflow, no lost low bits) for every k in it.

    A nonzero float is odd * 2^low with odd < 2^53 and leading exponent e (frexp): x 2^-k is a float iff
    e - k <= 1024 (no overflow) and low - k >= -1074 (the subnormal grid).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    top, low = None, None
    for i in range(0, x.size, _CHUNK):  # in chunks: the temporaries stay small next to the weights
        a = np.abs(x[i:i + _CHUNK])
        a = a[a != 0]
        if a.size == 0:
            continue
        mant, e = np.frexp(a)
        m = np.ldexp(mant, 53).astype(np.int64)          # a = m 2^(e - 53), m an integer < 2^53
        tz = np.frexp((m & -m).astype(np.float64))[1] - 1  # trailing zero bits of m
        t, l = int(e.max()), int((e - 53 + tz).min())
        top, low = (t, l) if top is None else (max(top, t), min(low, l))
    if top is None:
        return -_FREE, _FREE
    return top - 1024, low + 1074


def round_trips(x, k: int) -> bool:
    """ldexp(ldexp(x, -k), k) == x exactly (the check the exponent choice must pass)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    with np.errstate(over="ignore", under="ignore"):
        return all(np.array_equal(np.ldexp(np.ldexp(x[i:i + _CHUNK], -k), k), x[i:i + _CHUNK])
                   for i in range(0, max(x.size, 1), _CHUNK))


def _top_exponent(x) -> int:
    """e with max|x| in [2^(e-1), 2^e) (0 for an all-zero array): x 2^-e has entries below 1."""
    a = np.abs(np.asarray(x, dtype=np.float64))
    return int(np.frexp(a.max())[1]) if a.size and a.max() > 0 else 0


def _data(W) -> np.ndarray:
    return W.data if sp.issparse(W) else np.asarray(W)


@dataclass(frozen=True)
class Scaling:
    """The normalised network: W_l 2^-k_l, b_l 2^-S_l, c 2^-k_c (see the module docstring).

    ``consistent``: biases were scaled exactly and every activation is homogeneous, so the normalised
    network is 2^-S_d times the original on every input (forward passes and witnesses carry over).
    """
    net: Network
    vec: np.ndarray | None
    exponents: tuple[int, ...]
    c_exponent: int
    consistent: bool

    @property
    def exponent(self) -> int:
        """K: P(original) = 2^K P(normalised)."""
        return int(sum(self.exponents) + self.c_exponent)

    def up(self, u, power: int = 1):
        return scale_up(u, power * self.exponent)

    def down(self, v, power: int = 1):
        return scale_down(v, power * self.exponent)

    def nearest(self, v, power: int = 1):
        return scale_nearest(v, power * self.exponent)

    def bracket(self, pair):
        lo, hi = pair
        return [self.down(lo), self.up(hi)]

    def summary(self, keys_left=()) -> dict:
        """JSON-able record for details["normalisation"]."""
        return {"exponent": self.exponent, "layer_exponents": list(self.exponents),
                "c_exponent": self.c_exponent, "biases": "consistent" if self.consistent else "weights only",
                "normalised_units": sorted(keys_left)}


def normalise(net: Network, vec=None, consistent: bool = False, slopes=None,
              norm: str | None = None) -> Scaling | None:
    """Normalise every layer by an exact power of two (module docstring).

    consistent=False: k_l from frexp(max|W_l|) (entries below 1 in magnitude), lowered only where
    that would lose bits; for computations that use only the weights, c and the slope box. Biases are
    scaled along when that is exact, else set to 0 (they are not used; ``consistent`` is then False).
    consistent=True: the k_l closest to those that keep every bias exact too; None unless every
    activation is homogeneous and such exponents exist (then use the original network).
    With ``slopes`` and ``norm``, c's exponent also brings a cheap estimate of max P (gradient_scale)
    to [1, 2): solvers' stopping gaps are absolute below 1 (SDPA: |p - d| / max(1, |obj|)).
    """
    homogeneous = all(a.name in HOMOGENEOUS for a in net.activations)
    if consistent and not homogeneous:
        return None
    ks, total, exact_biases = [], 0, True
    for W, b in zip(net.weights, net.biases):
        lo, hi = exact_range(_data(W))
        k = min(_top_exponent(_data(W)), hi)
        if consistent:  # S_l = total + k must keep b_l exact as well
            blo, bhi = exact_range(b)
            lo, hi = max(lo, blo - total), min(hi, bhi - total)
            if lo > hi:
                return None
            k = min(max(k, lo), hi)
        if not round_trips(_data(W), k):  # cannot happen with k in exact_range; never risk the network
            if consistent:
                return None
            k = 0
        total += k
        exact_biases = exact_biases and round_trips(b, total)
        ks.append(k)
    if consistent and not exact_biases:
        return None
    Ws, bs, total = [], [], 0
    for W, b, k in zip(net.weights, net.biases, ks):
        total += k
        W = sp.csr_array(W)  # the scaled copy shares W's index arrays: only the values are new
        Ws.append(W if k == 0 else sp.csr_array((np.ldexp(W.data, -k), W.indices, W.indptr), shape=W.shape))
        bs.append(np.ldexp(np.asarray(b, dtype=np.float64), -total) if exact_biases else np.zeros(len(b)))
    scaled_net = Network(tuple(Ws), tuple(bs), net.activations)
    kc, c2 = 0, None
    if vec is not None:
        vec = np.asarray(vec, dtype=np.float64)
        lo, hi = exact_range(vec)
        kc = min(_top_exponent(vec), hi)
        if slopes is not None and norm is not None:
            est = gradient_scale(scaled_net, np.ldexp(vec, -kc), slopes, norm)
            if est > 0:
                kc = min(max(kc + int(np.frexp(est)[1]) - 1, lo), hi)
        if not round_trips(vec, kc):
            kc = 0
        c2 = np.ldexp(vec, -kc)
    return Scaling(scaled_net, c2, tuple(ks), kc, homogeneous and exact_biases)


def scale_up(u, K: int):
    """An upper bound u' 2^K rounded up; SolverFailure if it is not finite or exceeds the float64 range."""
    if u is None:
        return None
    u = float(u)
    if math.isnan(u) or u == math.inf:
        raise SolverFailure(f"the bound is not finite ({u}): the network's values exceed the float64 range")
    if u == -math.inf:
        return u
    try:
        v = math.ldexp(u, K)
    except OverflowError:
        if u < 0:
            return -MAX_FLOAT
        raise SolverFailure(f"the certified bound {u!r} x 2^{K} exceeds the float64 range "
                            "(the network's Lipschitz constant is too large to represent)") from None
    return v if math.ldexp(v, -K) == u else up(v)


def scale_down(v, K: int):
    """A lower bound v' 2^K rounded down; overflow gives the largest finite float (still a lower bound)."""
    if v is None:
        return None
    v = float(v)
    if not math.isfinite(v):
        return v
    try:
        w = math.ldexp(v, K)
    except OverflowError:
        if v > 0:
            return MAX_FLOAT
        return -math.inf
    return w if math.ldexp(w, -K) == v else down(w)


def scale_nearest(v, K: int):
    """A plain (uncertified) value v' 2^K to nearest; +-inf on overflow."""
    if v is None:
        return None
    v = float(v)
    try:
        return math.ldexp(v, K)
    except OverflowError:
        return math.copysign(math.inf, v)


def scale_details(details: dict, sc: Scaling) -> dict:
    """details with every value in the units of P scaled back (direction by key, see UP_KEYS ...);
    auto's attempts (each an upper bound) too. Solver internals (NORMALISED_KEYS) are listed as such."""
    out = dict(details)
    for key in UP_KEYS:
        if _number(out.get(key)):
            out[key] = sc.up(out[key])
    for key in NEAREST_KEYS:
        if _number(out.get(key)):
            out[key] = sc.nearest(out[key])
    for key in SQUARED_UP_KEYS:
        if _number(out.get(key)):
            out[key] = sc.up(out[key], power=2)
    for key in SQUARED_NEAREST_KEYS:
        if _number(out.get(key)):
            out[key] = sc.nearest(out[key], power=2)
    for key in BRACKET_KEYS:
        if isinstance(out.get(key), (list, tuple)) and len(out[key]) == 2:
            out[key] = sc.bracket(out[key])
    if isinstance(out.get("attempts"), list):
        out["attempts"] = [_attempt(a, sc) for a in out["attempts"]]
    out["normalisation"] = sc.summary([k for k in NORMALISED_KEYS if k in out])
    return out


def _attempt(a: dict, sc: Scaling) -> dict:
    """One of auto's attempts with its value (an upper bound) scaled back."""
    if not _number(a.get("value")):
        return dict(a)
    try:
        return {**a, "value": sc.up(a["value"])}
    except SolverFailure:  # this attempt's bound overflows (another one did not): no value
        return {**a, "value": None, "status": f"{a.get('status')} (bound exceeds the float64 range)"}


def _number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def gradient_scale(net: Network, vec, slopes, norm: str) -> float:
    """A cheap magnitude estimate of max P: the dual norm of W_0^T S_1 ... W_d^T c at the slope box's
    midpoint and at its upper end (values of P's box, so at most the FGL); 0 when both vanish."""
    q = {"inf": 1, "2": 2, "1": np.inf}.get(norm)
    best = 0.0
    if q is None or np.shape(vec) != (net.widths[-1],) or len(slopes.lo) != net.depth:
        return best  # malformed input: left to the runner's own checks
    for pick in (lambda lo, hi: 0.5 * lo + 0.5 * hi, lambda lo, hi: hi):
        v = np.asarray(vec, dtype=np.float64)
        with np.errstate(all="ignore"):
            for l in range(net.depth, -1, -1):
                v = net.weights[l].T @ v
                if l > 0:
                    lo, hi = np.asarray(slopes.lo[l - 1], float), np.asarray(slopes.hi[l - 1], float)
                    if lo.shape != v.shape or hi.shape != v.shape:
                        return 0.0  # malformed box: left to the runner's own checks
                    v = v * pick(lo, hi)
            g = float(np.linalg.norm(v, q))
        if math.isfinite(g):
            best = max(best, g)
    return best
