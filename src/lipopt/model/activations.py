"""Activations described by the range of their derivative.

The norm-gradient polynomial replaces sigma'(z) by a free variable s in [lo, hi]; globally that is the
range of sigma' over the real line (ReLU: [0, 1]). Locally (pre-activation z known to lie in [lo, hi])
``slope_range`` gives the exact range of sigma' over the interval, widened outward to be sound in
floating point.

Supported (parameters fixed at the PyTorch defaults the loaders accept): relu, leaky_relu (negative
slope 0.01), elu (alpha 1), tanh, sigmoid, softplus (beta 1; lipopt uses the smooth function
log(1 + e^z) everywhere, which differs from torch's thresholded version by at most 2.1e-9 for z > 20).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError

LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0
#: relative and absolute outward margins applied to every computed (transcendental) derivative value
SLOPE_REL_MARGIN = 1e-12
SLOPE_ABS_MARGIN = 1e-300


@dataclass(frozen=True)
class Activation:
    name: str
    slope_lo: float  # inf of sigma' over R
    slope_hi: float  # sup of sigma' over R


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", 0.0, 1.0),
    "leaky_relu": Activation("leaky_relu", LEAKY_SLOPE, 1.0),
    "elu": Activation("elu", 0.0, 1.0),
    "tanh": Activation("tanh", 0.0, 1.0),
    "sigmoid": Activation("sigmoid", 0.0, 0.25),
    "softplus": Activation("softplus", 0.0, 1.0),
}


def check_activation(name: str) -> Activation:
    """Return the Activation called ``name`` (case-insensitive) or raise InvalidInputError."""
    key = str(name).strip().lower()
    if key not in ACTIVATIONS:
        raise InvalidInputError(
            f"unsupported activation {name!r}; supported: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[key]


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
    """sigma'(z) elementwise (ReLU / leaky ReLU: the right derivative at 0 is not used; 0 -> left)."""
    z = np.asarray(z, dtype=np.float64)
    name = act.name
    if name == "relu":
        return (z > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, LEAKY_SLOPE)
    if name == "elu":
        return np.where(z > 0, 1.0, ELU_ALPHA * np.exp(np.minimum(z, 0.0)))
    if name == "tanh":
        return _tanh_slope(z)
    if name == "sigmoid":
        return _sigmoid_slope(z)
    if name == "softplus":
        return _sigmoid(z)
    raise InvalidInputError(f"no derivative rule for activation {name!r}")


def value(act: Activation, z: np.ndarray) -> np.ndarray:
    """sigma(z) elementwise."""
    z = np.asarray(z, dtype=np.float64)
    name = act.name
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, LEAKY_SLOPE * z)
    if name == "elu":
        return np.where(z > 0, z, ELU_ALPHA * np.expm1(np.minimum(z, 0.0)))
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return _sigmoid(z)
    if name == "softplus":
        return np.logaddexp(0.0, z)
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
        left = 0.0 if name == "relu" else LEAKY_SLOPE
        slo = np.where(lo > 0, 1.0, left)
        shi = np.where(hi < 0, left, 1.0)
        return slo.astype(np.float64), shi.astype(np.float64)
    if name in ("elu", "softplus"):
        return _widen(derivative(act, lo), derivative(act, hi), act)
    if name in ("tanh", "sigmoid"):
        near = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(np.abs(lo), np.abs(hi)))
        far = np.maximum(np.abs(lo), np.abs(hi))
        return _widen(derivative(act, far), derivative(act, near), act)
    raise InvalidInputError(f"no derivative range rule for activation {name!r}")
