"""The validated problem every method receives, the input norm, and the one deadline of a call.

``Problem`` is built once at the API boundary (network, output vector c, norm, domain, derivative box);
every later stage trusts it. ``Budget`` turns ``time_limit`` (the wall time of the whole call: domain
bounds, build, solve, certify and the lower bound) into a deadline that each stage reads.
"""
from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass

import numpy as np

from . import options
from .errors import InvalidInputError
from .model.network import Network


class Norm(str, enum.Enum):
    """Input norm ||.||_p; the gradient is measured in the dual norm q (inf <-> 1, 2 <-> 2)."""
    INF = "inf"
    L2 = "2"
    L1 = "1"

    @classmethod
    def parse(cls, value) -> "Norm":
        """"inf", "l_inf", "infinity", np.inf, 2, "l2", 1, "l1", ... -> Norm."""
        if isinstance(value, Norm):
            return value
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            text = "inf" if math.isinf(value) and value > 0 else (str(int(value)) if value in (1, 2) else str(value))
        else:
            text = str(value).strip().lower().replace("_", "").replace("infinity", "inf")
            text = text[1:] if text.startswith("l") else text
        for n in cls:
            if text == n.value:
                return n
        raise InvalidInputError(f"norm must be one of inf, 2, 1; got {value!r}")

    def dual(self, g: np.ndarray) -> np.ndarray:
        """||g||_q row-wise, q the dual exponent (exact.enumerate.dual_norm, the one implementation)."""
        from .exact.enumerate import dual_norm  # exact/ sits above this module
        return dual_norm(np.atleast_2d(np.asarray(g, dtype=np.float64)), self.value)


def past(deadline: float | None) -> bool:
    """True once time.perf_counter() has reached ``deadline`` (a deadline of None never passes)."""
    return deadline is not None and time.perf_counter() >= deadline


@dataclass(frozen=True)
class Budget:
    """A deadline on time.perf_counter(); ``None`` means no limit."""
    deadline: float | None

    @classmethod
    def seconds(cls, time_limit, name: str = "time_limit", allow_none: bool = True) -> "Budget":
        limit = options.time_limit(time_limit, name, allow_none=allow_none)
        return cls(None if limit is None else time.perf_counter() + limit)

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.perf_counter()

    def expired(self) -> bool:
        return past(self.deadline)

    def share(self, fraction: float, reserve: float = 0.0) -> "Budget":
        """A sub-budget: ``fraction`` of what is left after keeping ``reserve`` seconds back."""
        if self.deadline is None:
            return self
        left = max(0.0, self.left() - reserve)
        return Budget(time.perf_counter() + fraction * left)

    def seconds_left(self, floor: float = 1e-3) -> float | None:
        """What a stage may spend (at least ``floor`` so that a solver call stays well-formed)."""
        left = self.left()
        return None if left is None else max(floor, left)


@dataclass(frozen=True)
class Problem:
    """A validated bound problem: every method reads it, none re-checks it."""
    net: Network
    c: np.ndarray
    norm: str                 # "inf" | "2" | "1" (Norm.value)
    domain: object | None     # Box | Ball | None (global)
    slopes: object            # SlopeBox: derivative interval per hidden neuron
    preactivation: str = "linear"

    @property
    def depth(self) -> int:
        return self.net.depth

    @property
    def free_neurons(self) -> int:
        return int(sum(np.count_nonzero(np.asarray(lo) < np.asarray(hi)) for lo, hi in zip(self.slopes.lo, self.slopes.hi)))

    @property
    def activations(self) -> frozenset[str]:
        return frozenset(a.name for a in self.net.activations)

    @property
    def piecewise_linear(self) -> bool:
        return {a.name for a in self.net.activations} <= {"relu", "leaky_relu", "hardtanh"}

    @property
    def local(self) -> bool:
        return self.domain is not None
