"""SDPA adapter (sdpa-python 0.2.3, module ``sdpap``), called directly in SeDuMi form.

We call ``sdpap.sdpacall.solve_sdpa`` (the C wrapper) rather than ``sdpap.solve``: our problems need no
cone conversion (no free primal variables, only equality rows), and ``sdpap.solve`` afterwards
recomputes feasibility errors with sparse eigensolvers, which costs more than the solve on large
blocks and prints warnings. SDPA has no time limit of its own: with ``time_limit`` the solve runs in a
forked child process that is killed when the limit passes (status TIME_LIMIT, no point).
"""
from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import scipy.sparse as sp

from .base import Status
from .sdp import SDPSolution, SemidefiniteProgram, quiet_fds

# SDPA's phase, read from the SeDuMi primal's point of view (sdpap flips p/d for its users; we use
# the raw value only to tell "a point came back" from "no point").
_STATUS = {"pdOPT": Status.OPTIMAL, "pdFEAS": Status.INACCURATE, "pFEAS": Status.INACCURATE,
           "dFEAS": Status.INACCURATE, "noINFO": Status.ERROR, "pdINF": Status.INFEASIBLE,
           "pFEAS_dINF": Status.INFEASIBLE, "pINF_dFEAS": Status.INFEASIBLE, "pUNBD": Status.UNBOUNDED,
           "dUNBD": Status.UNBOUNDED}


def _options(threads, tolerance):
    from sdpap.param import param
    from sdpap.sdpacall import sdpacall
    eps = 1e-7 if tolerance is None else float(tolerance)
    opt = {"print": "no", "epsilonStar": eps, "epsilonDash": eps, "maxIteration": 200,
           "numThreads": int(threads) if threads else 1}
    return param(opt, sdpacall.get_backend_info()["gmp"])


def _raw_solve(sdp: SemidefiniteProgram, threads, tolerance):
    from sdpap.sdpacall.sdpacall import solve_sdpa
    from sdpap.symcone import SymCone
    A = sp.csc_matrix(sdp.A)
    b = sp.csc_matrix(np.asarray(sdp.b, float).reshape(-1, 1))
    c = sp.csc_matrix(np.asarray(sdp.c, float).reshape(-1, 1))
    K = SymCone(f=sdp.f, l=sdp.l, s=tuple(int(k) for k in sdp.s))
    with quiet_fds():
        x, y, _s, info = solve_sdpa(A, b, c, K, _options(threads, tolerance))
    return (np.asarray(x.toarray()).ravel(), np.asarray(y.toarray()).ravel(), dict(info))


def _child(conn, sdp, threads, tolerance):  # pragma: no cover - runs in the forked process
    try:
        conn.send(("ok", _raw_solve(sdp, threads, tolerance)))
    except BaseException as exc:  # report anything to the parent, never hang it
        conn.send(("error", repr(exc)))
    finally:
        conn.close()


def solve(sdp: SemidefiniteProgram, solver: str = "sdpa", time_limit: float | None = None,
          threads: int | None = None, tolerance: float | None = None) -> SDPSolution:
    if sdp.f:
        # split free variables would need sdpap's conversion; our relaxations never create them
        from ..errors import InvalidInputError
        raise InvalidInputError("the SDPA adapter expects no free primal variables (K.f = 0)")
    t0 = time.perf_counter()
    if time_limit is None:
        try:
            x, y, info = _raw_solve(sdp, threads, tolerance)
        except Exception as exc:  # SDPA raises plain exceptions on numerical breakdown
            return SDPSolution(Status.ERROR, None, None, None, None, time.perf_counter() - t0, "sdpa",
                               f"SDPA failed: {exc}")
    else:
        ctx = mp.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(send, sdp, threads, tolerance), daemon=True)
        proc.start()
        send.close()
        ready = recv.poll(float(time_limit))
        if not ready:
            proc.kill()
            proc.join()
            return SDPSolution(Status.TIME_LIMIT, None, None, None, None, time.perf_counter() - t0, "sdpa",
                               f"time limit {time_limit:g} s reached")
        try:
            kind, payload = recv.recv()
        except EOFError:
            kind, payload = "error", "the SDPA process died"
        proc.join()
        if kind != "ok":
            return SDPSolution(Status.ERROR, None, None, None, None, time.perf_counter() - t0, "sdpa",
                               f"SDPA failed: {payload}")
        x, y, info = payload
    seconds = time.perf_counter() - t0
    phase = str(info.get("phasevalue", "noINFO"))
    status = _STATUS.get(phase, Status.ERROR)
    if status in (Status.OPTIMAL, Status.INACCURATE) and not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        status = Status.ERROR
    if status not in (Status.OPTIMAL, Status.INACCURATE):
        return SDPSolution(status, None, None, None, None, seconds, "sdpa", f"SDPA phase {phase}", info)
    return SDPSolution(status, x, y, float(sdp.c @ x), float(sdp.b @ y), seconds, "sdpa", f"SDPA phase {phase}",
                       {"iterations": int(info.get("iteration", -1)), "phase": phase,
                        "gap": float(info.get("dualityGap", np.nan))})
