"""Derivative boxes: the domain stage's output and the polynomial / relaxation stages' input.

A ``SlopeBox`` holds, per hidden layer, an interval [lo, hi] of every neuron's activation derivative
sigma'(z). ``global_slopes`` gives each activation's global range (ReLU: [0, 1]); ``slope_box`` turns
pre-activation bounds z in [l, u] (``domain.interval_bounds`` / ``domain.linear_bounds``) into the
derivative range over [l, u] (``model.activations.slope_range``, rounded outward); ``local_slopes`` does
both for a domain. A neuron with lo == hi has a fixed derivative and is folded as a constant
(``count_fixed`` of them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .domain import PreactivationBounds, interval_bounds, linear_bounds
from .errors import InvalidInputError
from .model.activations import slope_range
from .model.network import Network
from .scaling import normalise


@dataclass(frozen=True)
class SlopeBox:
    """Per hidden layer, the interval [lo, hi] of each neuron's activation derivative."""
    lo: tuple[np.ndarray, ...]
    hi: tuple[np.ndarray, ...]


def global_slopes(net: Network) -> SlopeBox:
    """Every derivative free in its activation's global range (ReLU: [0, 1])."""
    widths = net.widths[1:-1]
    return SlopeBox(tuple(np.full(n, a.slope_lo) for n, a in zip(widths, net.activations)),
                    tuple(np.full(n, a.slope_hi) for n, a in zip(widths, net.activations)))


def slope_box(net: Network, bounds: PreactivationBounds) -> SlopeBox:
    """Per hidden neuron the range of its activation derivative over its pre-activation interval."""
    if len(bounds.lo) != net.depth or len(bounds.hi) != net.depth:
        raise InvalidInputError(f"bounds cover {len(bounds.lo)} layers but the network has "
                                f"{net.depth} hidden layers")
    lo, hi = [], []
    for act, zl, zh in zip(net.activations, bounds.lo, bounds.hi):
        zl, zh = np.asarray(zl, dtype=np.float64), np.asarray(zh, dtype=np.float64)
        # an overflowed bound (inf, or NaN from inf - inf / 0 * inf) says nothing: the neuron is free
        # over its activation's global range, never fixed (NaN compares False both ways)
        known = np.isfinite(zl) & np.isfinite(zh)
        s, t = slope_range(act, np.where(known, zl, 0.0), np.where(known, zh, 0.0))
        lo.append(np.where(known, s, act.slope_lo))
        hi.append(np.where(known, t, act.slope_hi))
    return SlopeBox(tuple(lo), tuple(hi))


def count_fixed(slopes: SlopeBox) -> int:
    """Number of hidden neurons whose derivative is a single value (lo == hi: folded as constants)."""
    return int(sum(np.count_nonzero(lo == hi) for lo, hi in zip(slopes.lo, slopes.hi)))


def local_slopes(net: Network, domain, method: str = "linear") -> SlopeBox:
    """slope_box of the ``method`` ("linear" or "interval") pre-activation bounds over ``domain``.

    ReLU-type networks are bounded through their consistent normalisation (scaling.normalise: every
    pre-activation exactly 2^-S_l times the original on every input, so the same signs and the same
    slope box), which keeps weights of any magnitude from overflowing the bounds.
    """
    sc = normalise(net, None, consistent=True)
    if sc is not None:
        net = sc.net
    if method not in ("linear", "interval"):
        raise InvalidInputError(f"unknown bound method {method!r}; choose linear or interval")
    with np.errstate(over="ignore", invalid="ignore"):  # overflowed bounds are made free in slope_box
        bounds = linear_bounds(net, domain) if method == "linear" else interval_bounds(net, domain)
    return slope_box(net, bounds)
