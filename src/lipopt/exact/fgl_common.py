"""What every exact l_inf FGL search shares: input checks, the witness value P(t, s), the a-priori
rounding bound of the node values, and the result record."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidInputError
from ..model.network import Network
from ..polynomial import SlopeBox, global_slopes
from ..rounding import EPS as _EPS


def check_inputs(net: Network, c, slopes: SlopeBox | None) -> tuple[np.ndarray, SlopeBox]:
    """Validate c and the derivative box (shapes, finiteness, lo <= hi); default box = global."""
    m = net.widths[-1]
    c = np.asarray(c, dtype=np.float64).ravel()
    if c.shape != (m,) or not np.all(np.isfinite(c)):
        raise InvalidInputError(f"c must be a finite vector of length {m}, got shape {c.shape}")
    slopes = slopes or global_slopes(net)
    if len(slopes.lo) != net.depth or len(slopes.hi) != net.depth:
        raise InvalidInputError(
            f"the derivative box has {len(slopes.lo)} layers; the network has {net.depth} hidden layers")
    lo_l, hi_l = [], []
    for l in range(net.depth):
        lo = np.asarray(slopes.lo[l], dtype=np.float64)
        hi = np.asarray(slopes.hi[l], dtype=np.float64)
        n = net.widths[l + 1]
        if lo.shape != (n,) or hi.shape != (n,):
            raise InvalidInputError(
                f"derivative box of hidden layer {l + 1} must have shape ({n},), got {lo.shape} and {hi.shape}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise InvalidInputError(f"derivative box of hidden layer {l + 1} contains NaN or Inf")
        if np.any(lo > hi):
            raise InvalidInputError(f"derivative box of hidden layer {l + 1} has lo > hi")
        lo_l.append(lo)
        hi_l.append(hi)
    return c, SlopeBox(tuple(lo_l), tuple(hi_l))


def evaluate_witness(net: Network, c: np.ndarray, t: np.ndarray, s: list[np.ndarray]) -> float:
    """P(t, s) = t^T W_0^T diag(s_1) ... W_d^T c, evaluated directly on the network."""
    g = np.asarray(c, dtype=np.float64)
    for l in range(net.depth, -1, -1):
        g = net.weights[l].T @ g
        if l > 0:
            g = g * s[l - 1]
    return float(g @ t)


def rounding_bound(mass: float, n_terms: int) -> float:
    """A priori bound on the floating-point error of any node value: ~ 2 n u * (sum of |terms|)."""
    return 4.0 * (n_terms + 4) * _EPS * mass


@dataclass
class BnBResult:
    """Bracket lower <= FGL <= upper (equal when status == "optimal"), the witness (t, s) attaining lower."""
    upper: float
    lower: float
    status: str
    t: np.ndarray
    s: list[np.ndarray]
    nodes: int
    seconds: float
    rounding_error: float
    info: dict = field(default_factory=dict)
