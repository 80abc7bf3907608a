"""Solver-agnostic problem and answer types; adapters know nothing about networks."""
from __future__ import annotations

import contextlib
import enum
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import LipoptError


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


def call_with_deadline(fn, args: tuple, seconds: float):
    """fn(*args) in a forked child that is killed after ``seconds``: (True, result) or (False, reason).

    For solvers whose own time limit is checked too rarely (HiGHS' interior point checks its clock per
    iteration, SDPA has none) and dense linear algebra that cannot be interrupted: the call's budget stays
    a promise. The result must be picklable; a LipoptError raised in the child is raised again here."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def child():  # pragma: no cover - runs in the forked process
        try:
            send.send(("ok", fn(*args)))
        except LipoptError as exc:    # lipopt's own refusals and failures keep their type
            try:
                send.send(("raise", exc))
            except Exception:
                send.send(("error", repr(exc)))
        except BaseException as exc:  # report anything to the parent, never hang it
            send.send(("error", repr(exc)))
        finally:
            send.close()

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    send.close()
    if not recv.poll(max(0.0, float(seconds))):
        proc.kill()
        proc.join()
        return False, f"time limit {seconds:.3g} s reached"
    try:
        kind, payload = recv.recv()
    except EOFError:
        kind, payload = "error", "the solver process died"
    proc.join()
    if kind == "raise":
        raise payload
    return (True, payload) if kind == "ok" else (False, payload)
