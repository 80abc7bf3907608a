"""Activations described by the range of their derivative.

The norm-gradient polynomial replaces sigma'(z) by a free variable s in [lo, hi]; globally that is the
range of sigma' over the real line (ReLU: [0, 1]). Locally (pre-activation z known to lie in [lo, hi])
``slope_range`` gives the exact range of sigma' over the interval, widened outward to be sound in
floating point.

An activation is named by a spec string ``name[:p1[:p2]]`` (``check_activation``; ``make_activation``
takes keyword parameters); its parameters travel in ``Activation.params``:
relu; leaky_relu[:a] (any finite slope a, default 0.01; sigma' in [min(a,1), max(a,1)]); elu[:alpha]
(alpha > 0, default 1); tanh; sigmoid; softplus[:beta] (beta > 0, default 1; lipopt uses the smooth
function log(1 + e^(beta z)) / beta everywhere, which differs from torch's thresholded version by at most
e^-20 / beta); hardtanh[:min:max] (clip(z, min, max), default -1:1, one side may be infinite);
relu6 (= hardtanh:0:6); gelu (z Phi(z)); gelu_tanh (PyTorch's approximate="tanh"); silu (z sigmoid(z),
alias swish). GELU' and SiLU' are not monotone and take negative values (model.smooth).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..errors import InvalidInputError
from . import smooth

LEAKY_SLOPE = 0.01  # the default slope of leaky_relu (PyTorch's)
ELU_ALPHA = 1.0
#: relative and absolute outward margins applied to every computed (transcendental) derivative value
SLOPE_REL_MARGIN = 1e-12
SLOPE_ABS_MARGIN = 1e-300


@dataclass(frozen=True)
class Activation:
    name: str
    slope_lo: float  # inf of sigma' over R
    slope_hi: float  # sup of sigma' over R
    params: tuple = field(default=())  # e.g. (slope,) for leaky_relu, (min, max) for hardtanh

    @property
    def spec(self) -> str:
        """The string ``check_activation`` maps back to this activation (bare name for the defaults)."""
        if self.params == _DEFAULTS.get(self.name, ()):
            return self.name
        return ":".join([self.name] + [repr(float(p)) for p in self.params])

    @property
    def lipschitz(self) -> float:
        """sup |sigma'|."""
        return max(abs(self.slope_lo), abs(self.slope_hi))

    @property
    def nondecreasing(self) -> bool:
        """sigma' >= 0 everywhere (then max_k sigma(z_k) = sigma(max_k z_k))."""
        return self.slope_lo >= 0


_DEFAULTS = {"leaky_relu": (LEAKY_SLOPE,), "elu": (ELU_ALPHA,), "softplus": (1.0,), "hardtanh": (-1.0, 1.0)}
_ALIASES = {"leakyrelu": "leaky_relu", "swish": "silu", "relu6": "hardtanh:0:6", "gelu_none": "gelu"}
_PARAM_NAMES = {"leaky_relu": ("negative_slope",), "elu": ("alpha",), "softplus": ("beta",),
                "hardtanh": ("min_val", "max_val")}


def _make(name: str, params: tuple) -> Activation:
    if name == "leaky_relu":
        (a,) = params
        return Activation(name, min(a, 1.0), max(a, 1.0), params)
    if name == "elu":
        (alpha,) = params
        if not alpha > 0:
            raise InvalidInputError(f"elu needs alpha > 0, got {alpha:g}")
        return Activation(name, 0.0, max(alpha, 1.0), params)
    if name == "softplus":
        if not params[0] > 0:
            raise InvalidInputError(f"softplus needs beta > 0, got {params[0]:g}")
        return Activation(name, 0.0, 1.0, params)
    if name == "hardtanh":
        lo, hi = params
        if not lo < hi or (math.isinf(lo) and math.isinf(hi)):
            raise InvalidInputError(f"hardtanh needs min < max with at least one finite, got {lo:g}:{hi:g}")
        return Activation(name, 0.0, 1.0, params)
    if name in smooth.SMOOTH:
        return Activation(name, *smooth.GLOBAL[name])
    return Activation(name, 0.0, 0.25 if name == "sigmoid" else 1.0)


_NAMES = ("relu", "leaky_relu", "elu", "tanh", "sigmoid", "softplus", "hardtanh", "gelu", "gelu_tanh", "silu")
ACTIVATIONS: dict[str, Activation] = {n: _make(n, _DEFAULTS.get(n, ())) for n in _NAMES}


@lru_cache(maxsize=256)
def check_activation(name: str) -> Activation:
    """The Activation of a spec ``name[:p1[:p2]]`` (case-insensitive, e.g. "leaky_relu:0.2",
    "hardtanh:-1:1", "relu6", "gelu") or InvalidInputError."""
    spec = str(name).strip().lower().replace(" ", "")
    base, _, rest = spec.partition(":")
    base = _ALIASES.get(base, base)
    if ":" in base:  # an alias that carries parameters (relu6)
        if rest:
            raise InvalidInputError(f"activation {name!r} takes no parameters")
        base, _, rest = base.partition(":")
    if base not in _NAMES:
        raise InvalidInputError(
            f"unsupported activation {name!r}; supported: {', '.join(sorted([*ACTIVATIONS, 'relu6']))} "
            f"(parameters as leaky_relu:0.2, elu:0.5, softplus:2, hardtanh:-1:1)")
    default = _DEFAULTS.get(base, ())
    if not rest:
        return _make(base, default)
    try:
        params = tuple(float(p) for p in rest.split(":"))
    except ValueError:
        raise InvalidInputError(f"activation {name!r}: parameters must be numbers") from None
    if len(params) != len(default):
        raise InvalidInputError(f"activation {name!r}: {base} takes {len(default)} parameter(s), got {len(params)}")
    if any(math.isnan(p) for p in params) or base != "hardtanh" and any(math.isinf(p) for p in params):
        raise InvalidInputError(f"activation {name!r}: parameters must be finite numbers")
    return _make(base, tuple(0.0 if p == 0 else p for p in params))  # -0.0 -> 0.0: one spelling


def make_activation(name: str, **params) -> Activation:
    """``make_activation("leaky_relu", negative_slope=0.2)``, ``("hardtanh", min_val=0, max_val=6)``,
    ``("gelu", approximate="tanh")``; torch's parameter names; missing ones take their defaults."""
    base = _ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if base == "gelu":
        approx = str(params.pop("approximate", "none") or "none").lower()
        if approx not in ("none", "tanh"):
            raise InvalidInputError(f"gelu approximate={approx!r} is not supported (none, tanh)")
        base = "gelu" if approx == "none" else "gelu_tanh"
    if ":" in base:
        if params:
            raise InvalidInputError(f"{name} takes no parameters, got {sorted(params)}")
        return check_activation(base)
    names = _PARAM_NAMES.get(base, ())
    unknown = set(params) - set(names)
    if unknown:
        raise InvalidInputError(f"{name}: unknown parameter(s) {', '.join(sorted(unknown))}")
    values = []
    for key, default in zip(names, _DEFAULTS.get(base, ())):
        v = params.get(key)
        try:
            values.append(default if v is None else float(v))
        except (TypeError, ValueError):
            raise InvalidInputError(f"{name}: {key}={v!r} is not a number") from None
    return check_activation(":".join([base] + [repr(v) for v in values]))


# ---------------------------------------------------------------------------------------------------
# Derivatives written in relatively accurate forms (no cancellation), shared with network.py.

def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sigmoid_slope(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.minimum(e / ((1.0 + e) * (1.0 + e)), 0.25)  # the true value is <= 1/4


def _tanh_slope(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        ch = np.cosh(np.asarray(z, dtype=np.float64))
        return np.minimum(1.0 / (ch * ch), 1.0)


def derivative(act: Activation, z: np.ndarray) -> np.ndarray:
    """sigma'(z) elementwise (ReLU / leaky ReLU: the right derivative at 0 is not used; 0 -> left;
    hardtanh: 1 strictly inside (min, max), 0 at and beyond the kinks, as torch's autograd)."""
    z = np.asarray(z, dtype=np.float64)
    name = act.name
    if name == "relu":
        return (z > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, act.params[0])
    if name == "elu":
        return np.where(z > 0, 1.0, act.params[0] * np.exp(np.minimum(z, 0.0)))
    if name == "tanh":
        return _tanh_slope(z)
    if name == "sigmoid":
        return _sigmoid_slope(z)
    if name == "softplus":
        beta = act.params[0]
        with np.errstate(over="ignore"):  # beta z = +-inf: sigmoid is exactly 1 or 0 there
            return _sigmoid(z if beta == 1.0 else beta * z)
    if name == "hardtanh":
        return ((z > act.params[0]) & (z < act.params[1])).astype(np.float64)
    if name in smooth.SMOOTH:
        return smooth.derivative(name, z)
    raise InvalidInputError(f"no derivative rule for activation {name!r}")


def value(act: Activation, z: np.ndarray) -> np.ndarray:
    """sigma(z) elementwise."""
    z = np.asarray(z, dtype=np.float64)
    name = act.name
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, act.params[0] * z)
    if name == "elu":
        return np.where(z > 0, z, act.params[0] * np.expm1(np.minimum(z, 0.0)))
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return _sigmoid(z)
    if name == "softplus":
        beta = act.params[0]
        if beta == 1.0:
            return np.logaddexp(0.0, z)
        with np.errstate(over="ignore"):  # |beta z| > 1.8e308: the relu part dominates
            bz = beta * z
            return np.where(np.isfinite(bz), np.logaddexp(0.0, bz) / beta, np.maximum(z, 0.0))
    if name == "hardtanh":
        return np.clip(z, act.params[0], act.params[1])
    if name in smooth.SMOOTH:
        return smooth.value(name, z)
    raise InvalidInputError(f"no forward rule for activation {name!r}")


def _widen(lo: np.ndarray, hi: np.ndarray, act: Activation) -> tuple[np.ndarray, np.ndarray]:
    lo = np.nextafter(lo - SLOPE_REL_MARGIN * np.abs(lo) - SLOPE_ABS_MARGIN, -np.inf)
    hi = np.nextafter(hi + SLOPE_REL_MARGIN * np.abs(hi) + SLOPE_ABS_MARGIN, np.inf)
    return (np.clip(lo, act.slope_lo, act.slope_hi), np.clip(hi, act.slope_lo, act.slope_hi))


def slope_range(act: Activation, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Range [slo, shi] of sigma' over each pre-activation interval [lo, hi] (arrays, vectorised).

    * relu / leaky_relu: exact constants; an interval touching or containing 0 gets the full range
      (the derivative at the kink is taken as anything in [left, right]); hi < 0 -> left slope only,
      lo > 0 -> 1 only.
    * elu, softplus: sigma' is nondecreasing, so [sigma'(lo), sigma'(hi)].
    * tanh, sigmoid: sigma' is even and decreasing in |z|: max at the point of [lo, hi] closest to 0,
      min at the endpoint farthest from 0.
    Transcendental endpoints are widened outward by a relative 1e-12, an absolute 1e-300 (underflow)
    and one ulp, then clipped to the global range [act.slope_lo, act.slope_hi]; the true range is
    therefore contained in the result. Raises InvalidInputError on NaN or lo > hi.
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    if lo.shape != hi.shape:
        raise InvalidInputError(f"slope_range: lo has shape {lo.shape} but hi has shape {hi.shape}")
    if np.any(np.isnan(lo)) or np.any(np.isnan(hi)) or np.any(lo > hi):
        raise InvalidInputError("slope_range: every interval must satisfy lo <= hi (no NaN)")
    name = act.name
    if name in ("relu", "leaky_relu"):
        left = 0.0 if name == "relu" else act.params[0]
        slo = np.where(lo > 0, 1.0, np.where(hi < 0, left, min(left, 1.0)))
        shi = np.where(hi < 0, left, np.where(lo > 0, 1.0, max(left, 1.0)))
        return slo.astype(np.float64), shi.astype(np.float64)
    if name == "hardtanh":
        a, b = act.params
        inside, outside = (lo > a) & (hi < b), (hi < a) | (lo > b)
        return np.where(inside, 1.0, 0.0), np.where(outside, 0.0, 1.0)
    if name == "elu" and act.params[0] > 1.0:  # alpha e^z on z <= 0 rises to alpha > 1, then 1
        neg_lo, neg_hi = derivative(act, np.minimum(lo, 0.0)), derivative(act, np.minimum(hi, 0.0))
        neg = lo <= 0
        slo = np.where(neg, np.where(hi > 0, np.minimum(neg_lo, 1.0), neg_lo), 1.0)
        shi = np.where(neg, neg_hi, 1.0)
        return _widen(slo, shi, act)
    if name in ("elu", "softplus"):
        return _widen(derivative(act, lo), derivative(act, hi), act)
    if name in ("tanh", "sigmoid"):
        near = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(np.abs(lo), np.abs(hi)))
        far = np.maximum(np.abs(lo), np.abs(hi))
        return _widen(derivative(act, far), derivative(act, near), act)
    if name in smooth.SMOOTH:  # endpoints and the enclosed critical points +-c inside [lo, hi]
        slo, shi = smooth.slope_candidates(name, lo, hi)
        return _widen(slo - smooth.ABS_MARGIN, shi + smooth.ABS_MARGIN, act)
    raise InvalidInputError(f"no derivative range rule for activation {name!r}")


def value_range(act: Activation, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Outward-rounded range of sigma over each interval [lo, hi]: [sigma(lo), sigma(hi)] for the
    nondecreasing activations; GELU / SiLU and leaky_relu with a negative slope decrease up to their one
    minimiser z0 and increase after it, so an interval around z0 gets sigma's global minimum (rounded down)."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    vlo, vhi = value(act, lo), value(act, hi)
    if act.name == "leaky_relu" and act.params[0] < 0:  # exact products: no widening needed
        return np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(vlo, vhi)), np.maximum(vlo, vhi)
    if act.name not in smooth.SMOOTH:
        return vlo, vhi
    z0 = smooth.MINIMUM_AT[act.name]  # bisection result, within 1e-15 of the true minimiser
    around = (lo <= z0 + 1e-9) & (hi >= z0 - 1e-9)
    vlo, vhi = (np.where(around, smooth.MINIMUM[act.name], np.minimum(vlo, vhi)) - smooth.ABS_MARGIN,
                np.maximum(vlo, vhi) + smooth.ABS_MARGIN)
    return (np.nextafter(vlo - SLOPE_REL_MARGIN * np.abs(vlo), -np.inf),
            np.nextafter(vhi + SLOPE_REL_MARGIN * np.abs(vhi), np.inf))


def stationary_points(act: Activation, a) -> list[np.ndarray]:
    """Points where sigma'(z) = a, and sigma's kinks (candidates for the extrema of sigma(z) - a z; may
    lie outside any given interval)."""
    a = np.asarray(a, dtype=np.float64)
    if act.name == "hardtanh":
        return [np.full_like(a, p) for p in act.params if math.isfinite(p)]
    if act.name in smooth.SMOOTH:
        return smooth.derivative_roots(act.name, a)
    return [np.zeros_like(a)]
