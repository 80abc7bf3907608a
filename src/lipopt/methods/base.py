"""What every method shares: the output record and the power-of-two normalisation wrapper.

Every ``upper`` a method returns is valid in exact arithmetic (the MIP is the labelled exception, see
methods.exact). Runners take (network, c, norm, derivative box, options) and return a MethodOutput;
``normalised`` runs them on the network scaled by exact powers of two (lipopt.scaling) and scales the
values back with directed rounding, so no answer depends on the units of the weights.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import SolverFailure
from ..model import Network
from ..polynomial import SlopeBox
from ..scaling import normalise, scale_details
from ..solvers.sdp import solve_for_multipliers

CLOSE_GAP = 1e-7             # upper - lower <= CLOSE_GAP |lower| (+ rounding) counts as proved (IPM LPs
                             # without crossover certify to ~1e-8 relative)


@dataclass
class MethodOutput:
    upper: float
    raw: float | None = None          # the solver's / search's value before certification
    status: str = "ok"                # "ok" | "optimal" | "time_limit"
    degree: int | None = None
    timings: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    pattern: list | None = None       # derivative vertex attaining the FGL, for lower bounds
    lower: float | None = None        # a lower bound the method found itself (gradient norm at ``point``)
    point: np.ndarray | None = None


def _jsonable(v) -> bool:
    return isinstance(v, (int, float, str, bool)) or v is None


def finite_upper(value: float) -> float:
    """``value`` when finite; SolverFailure otherwise (an upper bound that overflowed is no bound)."""
    if not math.isfinite(float(value)):
        raise SolverFailure(f"the bound is not finite ({value}): the network's values exceed the float64 range")
    return value


def normalised(runner, forward: bool = False):
    """``runner`` on the normalised network (scaling.normalise), its values scaled back to the original
    units: upper bounds rounded up (overflow: SolverFailure), lower ends down, raw values to nearest,
    details by key (scaling.scale_details); patterns are unchanged by the scaling.

    Every runner but the MIP uses only the weights, c and the slope box (computed beforehand), for
    which any power-of-two normalisation is exact. ``forward=True`` (the MIP: forward passes with
    biases over the domain, whose witness x is returned) needs the consistent normalisation
    (homogeneous activations, biases scaled exactly: the same function up to 2^-K, the same points);
    without one that runner sees the original network.
    """
    @functools.wraps(runner)
    def run(net: Network, vec, norm: str, slopes: SlopeBox, opts: dict) -> MethodOutput:
        sc = normalise(net, vec, consistent=forward, slopes=slopes, norm=norm)
        if sc is None:
            out = runner(net, vec, norm, slopes, opts)
            finite_upper(out.upper)
            return replace(out, details={**out.details, "normalisation": None})
        out = runner(sc.net, sc.vec, norm, slopes, opts)
        return replace(out, upper=sc.up(out.upper), raw=sc.nearest(out.raw),
                       lower=sc.down(out.lower), details=scale_details(out.details, sc))
    return run


def solve_and_certify(sdp, certify, solver: str, time_limit: float | None, threads: int | None = None,
                      tolerance: float | None = None):
    """The one solve-and-certify step of the SDP methods: the solver's multipliers y of ``sdp`` (SeDuMi
    form), then ``certify(y)``, a bound valid in exact arithmetic for any y. Returns (solution,
    certificate, {"solve", "certify"} seconds); SolverFailure when the solver returned nothing usable."""
    sol = solve_for_multipliers(sdp, solver=solver, time_limit=time_limit, threads=threads, tolerance=tolerance)
    t0 = time.perf_counter()
    cert = certify(sol.y)
    return sol, cert, {"solve": sol.seconds, "certify": time.perf_counter() - t0}
