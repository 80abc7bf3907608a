"""Solver-agnostic problem and answer types; adapters know nothing about networks."""
from __future__ import annotations

import contextlib
import enum
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class LinearProgram:
    """minimise c @ x + offset  s.t.  A_eq @ x == b_eq,  lb <= x <= ub."""
    c: np.ndarray
    A_eq: sp.csc_array
    b_eq: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    offset: float = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        return self.A_eq.shape

    @property
    def nnz(self) -> int:
        return int(self.A_eq.nnz)


class Status(enum.Enum):
    OPTIMAL = "optimal"
    INACCURATE = "optimal_inaccurate"  # a point is returned; the certificate decides what it proves
    TIME_LIMIT = "time_limit"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    ERROR = "error"


SOLUTION_PRESENT = (Status.OPTIMAL, Status.INACCURATE)


@dataclass(frozen=True)
class SolverOutput:
    status: Status
    x: np.ndarray | None
    objective: float | None  # including the LP's offset
    seconds: float
    solver: str
    message: str = ""
    info: dict = field(default_factory=dict)


@contextlib.contextmanager
def quiet_fds(fds: tuple[int, ...] = (1, 2)):
    """Send C-level output on the given file descriptors to /dev/null (solvers print banners from C,
    which would break --json on stdout)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    try:
        with open(os.devnull, "w") as devnull:
            for fd in fds:
                os.dup2(devnull.fileno(), fd)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, keep in zip(fds, saved):
            os.dup2(keep, fd)
            os.close(keep)
