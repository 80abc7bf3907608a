"""Solver-agnostic semidefinite program in SeDuMi standard form, and a registry of SDP adapters.

    primal:  minimise c @ x   s.t.  A @ x == b,   x in K = R^f x R_+^l x S_+^{s_1} x ... x S_+^{s_k}
    dual:    maximise b @ y   s.t.  c - A^T y in K* = {0}^f x R_+^l x S_+^{s_1} x ...

A PSD block of order n occupies n*n consecutive entries of x (the full matrix, column-major; every
matrix put into c or a row of A must be symmetric). Relaxations in lipopt write their certificate as the
dual (LMI) side: the free vector y holds the multipliers and the slack c - A^T y the Gram matrices, so
a certificate is rebuilt from ``y`` alone. Adapters know nothing about networks.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError, SolverFailure
from .base import SOLUTION_PRESENT, Status, quiet_fds

# name -> (module that must be importable, adapter module in this package)
SDP_SOLVERS = {"sdpa": ("sdpap", "sdpa"), "clarabel": ("clarabel", "conic_sdp"), "scs": ("scs", "conic_sdp")}


@dataclass(frozen=True)
class SemidefiniteProgram:
    """SeDuMi-form SDP (see the module docstring); ``A`` is (m, n) sparse, n = f + l + sum s_i^2."""
    c: np.ndarray
    A: sp.csr_array
    b: np.ndarray
    f: int = 0
    l: int = 0
    s: tuple[int, ...] = ()

    def __post_init__(self):
        n = self.f + self.l + sum(k * k for k in self.s)
        if self.A.shape != (len(self.b), n) or len(self.c) != n:
            raise InvalidInputError(f"SDP dimensions disagree: A {self.A.shape}, b {len(self.b)}, "
                                    f"c {len(self.c)}, cone size {n}")

    @property
    def m(self) -> int:
        return int(self.A.shape[0])

    @property
    def n(self) -> int:
        return int(self.A.shape[1])

    def block_offsets(self) -> list[int]:
        """Start of every PSD block in x."""
        out, pos = [], self.f + self.l
        for k in self.s:
            out.append(pos)
            pos += k * k
        return out

    def dual_slack(self, y: np.ndarray) -> np.ndarray:
        """c - A^T y (floating point; certification recomputes it with error bounds)."""
        return self.c - self.A.T @ y

    @property
    def sizes(self) -> dict:
        return {"psd_blocks": list(self.s), "nonneg": self.l, "free": self.f, "constraints": self.m,
                "nnz": int(self.A.nnz)}


@dataclass(frozen=True)
class SDPSolution:
    status: Status
    x: np.ndarray | None        # primal point (SeDuMi x)
    y: np.ndarray | None        # dual point (the multipliers of A x = b)
    primal_objective: float | None
    dual_objective: float | None
    seconds: float
    solver: str
    message: str = ""
    info: dict = field(default_factory=dict)


def installed_sdp_solvers() -> list[str]:
    return [k for k, (mod, _) in SDP_SOLVERS.items() if importlib.util.find_spec(mod) is not None]


def solve_sdp(sdp: SemidefiniteProgram, solver: str = "sdpa", time_limit: float | None = None,
              threads: int | None = None, tolerance: float | None = None) -> SDPSolution:
    """Solve ``sdp`` with the named adapter; raises InvalidInputError if unknown or not installed."""
    if solver not in SDP_SOLVERS:
        raise InvalidInputError(f"unknown SDP solver {solver!r}; choose from {', '.join(SDP_SOLVERS)}")
    mod, adapter = SDP_SOLVERS[solver]
    if importlib.util.find_spec(mod) is None:
        pkg = {"sdpap": "sdpa-python"}.get(mod, mod)
        raise InvalidInputError(f"SDP solver {solver!r} is not installed (pip install {pkg})")
    if time_limit is not None and not (time_limit > 0):
        raise InvalidInputError(f"time_limit must be positive, got {time_limit!r}")
    module = importlib.import_module(f".{adapter}", __package__)
    return module.solve(sdp, solver=solver, time_limit=time_limit, threads=threads, tolerance=tolerance)


def solve_for_multipliers(sdp: SemidefiniteProgram, solver: str = "sdpa", time_limit: float | None = None,
                          threads: int | None = None, tolerance: float | None = None) -> SDPSolution:
    """``solve_sdp``, raising SolverFailure unless a dual point ``y`` came back: relaxations certify from
    y (any y gives a valid bound), so without one there is no bound to report."""
    sol = solve_sdp(sdp, solver=solver, time_limit=time_limit, threads=threads, tolerance=tolerance)
    if sol.status not in SOLUTION_PRESENT or sol.y is None:
        raise SolverFailure(f"{solver}: {sol.status.value.replace('_', ' ')} ({sol.message})")
    return sol


__all__ = ["SDP_SOLVERS", "SDPSolution", "SOLUTION_PRESENT", "SemidefiniteProgram", "installed_sdp_solvers",
           "quiet_fds", "solve_for_multipliers", "solve_sdp"]
