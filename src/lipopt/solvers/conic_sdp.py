"""Clarabel and SCS adapters for SemidefiniteProgram (both imported lazily).

Both solvers take  min q^T u  s.t.  G u + s = h,  s in K.  We pass the SeDuMi *dual* (LMI form):
u = y, q = -b, G = A^T, h = c, K = {0}^f x R_+^l x S_+ blocks, so the solver's own dual variable is the
SeDuMi primal x. PSD blocks go in scaled triangular vectors (off-diagonal entries times sqrt 2):
Clarabel takes the upper triangle column by column, SCS the lower triangle column by column.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from .base import Status
from .sdp import SDPSolution, SemidefiniteProgram, quiet_fds

_R2 = np.sqrt(2.0)


def _triangle_map(sdp: SemidefiniteProgram, upper: bool) -> sp.csr_array:
    """Sparse T with (T @ v)_r = scaled triangular entry r of the symmetric blocks of full vector v."""
    rows, cols, vals = [list(range(sdp.f + sdp.l))], [list(range(sdp.f + sdp.l))], [[1.0] * (sdp.f + sdp.l)]
    r0 = sdp.f + sdp.l
    for off, k in zip(sdp.block_offsets(), sdp.s):
        j, i = np.meshgrid(np.arange(k), np.arange(k))  # i = row, j = column
        keep = (i <= j) if upper else (i >= j)
        # order: column by column, rows ascending within a column
        order = np.lexsort((i[keep], j[keep]))
        ii, jj = i[keep][order], j[keep][order]
        r = r0 + np.arange(len(ii))
        diag = ii == jj
        rows += [r[diag], r[~diag], r[~diag]]
        cols += [off + ii[diag] + k * jj[diag], off + ii[~diag] + k * jj[~diag], off + jj[~diag] + k * ii[~diag]]
        vals += [np.ones(diag.sum()), np.full((~diag).sum(), 1 / _R2), np.full((~diag).sum(), 1 / _R2)]
        r0 += len(ii)
    rows = np.concatenate([np.asarray(a, np.int64) for a in rows])
    cols = np.concatenate([np.asarray(a, np.int64) for a in cols])
    vals = np.concatenate([np.asarray(a, float) for a in vals])
    return sp.csr_array((vals, (rows, cols)), shape=(r0, sdp.n))


def solve(sdp: SemidefiniteProgram, solver: str = "clarabel", time_limit: float | None = None,
          threads: int | None = None, tolerance: float | None = None) -> SDPSolution:
    if solver == "clarabel":
        return _clarabel(sdp, time_limit, tolerance)
    if solver == "scs":
        return _scs(sdp, time_limit, threads, tolerance)
    raise InvalidInputError(f"conic SDP adapter: unknown solver {solver!r}")


def _clarabel(sdp, time_limit, tolerance) -> SDPSolution:
    try:
        import clarabel
    except ImportError:  # pragma: no cover
        raise InvalidInputError("clarabel is not installed: pip install clarabel") from None
    T = _triangle_map(sdp, upper=True)
    G = sp.csc_matrix(T @ sdp.A.T)
    h = T @ sdp.c
    cones = ([clarabel.ZeroConeT(sdp.f)] if sdp.f else []) + ([clarabel.NonnegativeConeT(sdp.l)] if sdp.l else [])
    cones += [clarabel.PSDTriangleConeT(int(k)) for k in sdp.s]
    st = clarabel.DefaultSettings()
    st.verbose = False
    if tolerance is not None:
        st.tol_gap_abs = st.tol_gap_rel = st.tol_feas = float(tolerance)
    if time_limit is not None:
        st.time_limit = float(time_limit)
    t0 = time.perf_counter()
    with quiet_fds():
        sol = clarabel.DefaultSolver(sp.csc_matrix((sdp.m, sdp.m)), -np.asarray(sdp.b, float), G, h, cones, st).solve()
    seconds = time.perf_counter() - t0
    native = str(sol.status)
    status = {"Solved": Status.OPTIMAL, "AlmostSolved": Status.INACCURATE, "PrimalInfeasible": Status.INFEASIBLE,
              "AlmostPrimalInfeasible": Status.INFEASIBLE, "DualInfeasible": Status.UNBOUNDED,
              "AlmostDualInfeasible": Status.UNBOUNDED, "MaxTime": Status.TIME_LIMIT,
              "MaxIterations": Status.ERROR}.get(native, Status.ERROR)
    if status not in (Status.OPTIMAL, Status.INACCURATE):
        return SDPSolution(status, None, None, None, None, seconds, "clarabel", native)
    y = np.array(sol.x)
    x = T.T @ np.array(sol.z)  # back to full symmetric blocks (1/sqrt2 on both halves)
    return SDPSolution(status, x, y, float(sdp.c @ x), float(sdp.b @ y), seconds, "clarabel", native,
                       {"iterations": int(sol.iterations)})


def _scs(sdp, time_limit, threads, tolerance) -> SDPSolution:
    try:
        import scs
    except ImportError:
        raise InvalidInputError("scs is not installed: pip install scs") from None
    T = _triangle_map(sdp, upper=False)
    data = {"A": sp.csc_matrix(T @ sdp.A.T), "b": T @ sdp.c, "c": -np.asarray(sdp.b, float)}
    cone = {"z": sdp.f, "l": sdp.l, "s": [int(k) for k in sdp.s]}
    eps = 1e-7 if tolerance is None else float(tolerance)
    opts = {"verbose": False, "eps_abs": eps, "eps_rel": eps, "max_iters": 200_000}
    if time_limit is not None:
        opts["time_limit_secs"] = float(time_limit)
    t0 = time.perf_counter()
    with quiet_fds():
        sol = scs.SCS(data, cone, **opts).solve()
    seconds = time.perf_counter() - t0
    info = sol["info"]
    native = str(info.get("status", ""))
    val = int(info.get("status_val", -4))
    if "time" in native.lower() or (time_limit is not None and seconds >= time_limit and val != 1):
        status = Status.TIME_LIMIT
    else:
        status = {1: Status.OPTIMAL, 2: Status.INACCURATE, -2: Status.INFEASIBLE, -7: Status.INFEASIBLE,
                  -1: Status.UNBOUNDED, -6: Status.UNBOUNDED}.get(val, Status.ERROR)
    if status not in (Status.OPTIMAL, Status.INACCURATE):
        return SDPSolution(status, None, None, None, None, seconds, "scs", native)
    y = np.asarray(sol["x"], float)
    x = T.T @ np.asarray(sol["y"], float)
    return SDPSolution(status, x, y, float(sdp.c @ x), float(sdp.b @ y), seconds, "scs", native,
                       {"iterations": int(info.get("iter", -1))})
