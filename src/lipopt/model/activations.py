"""Activations described by the range of their derivative.

The norm-gradient polynomial replaces sigma'(z) by a free variable s in [lo, hi]; globally that is the
range of sigma' over the real line (ReLU: [0, 1]).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidInputError


@dataclass(frozen=True)
class Activation:
    name: str
    slope_lo: float  # inf of sigma' over R
    slope_hi: float  # sup of sigma' over R


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", 0.0, 1.0),
}


def check_activation(name: str) -> Activation:
    """Return the Activation called ``name`` (case-insensitive) or raise InvalidInputError."""
    key = str(name).strip().lower()
    if key not in ACTIVATIONS:
        raise InvalidInputError(
            f"unsupported activation {name!r}; supported: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[key]
