"""Exact l_inf FGL of a one-hidden-layer network by dynamic programming over a path decomposition.

With v = W_1^T c, A = diag(v) W_0 and s_j = m_j + r_j sigma_j (m, r: midpoint and radius of [lo_j, hi_j]),

    FGL = max_{t in {-1,1}^n0} sum_j r_j |A_j t| + (m^T A) t                          (t side)
        = max_{sigma in {-1,1}^F} sum_i |(A^T m)_i + sum_{j in F} r_j A_ji sigma_j|   (s side, F = free units).

Both read max_x sum_rows |c0_row + B_row x| + ell^T x. Variables are taken in an order; the table holds,
for every sign pattern of the "bag" (variables already taken that share a row with a variable not yet
taken), the best value of the rows already complete. A row is added when its last variable arrives; a
variable leaves (is maximised out) when its last row is complete. Cost ~ n 2^bag, memory 2^bag, so we
refuse bags above ``max_bag``; the argmax bits kept for the witness take n 2^(bag-4) bytes. A banded
layer of band s has bag ~ s whatever its width. Of the two sides and two orders (natural, reverse
Cuthill-McKee) the smallest bag is used. Units with a fixed derivative (lo == hi) only add to ell, so
they never enlarge the bag.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee

from ..errors import InvalidInputError
from ..model.network import Network
from ..polynomial import SlopeBox
from .bnb import best_slopes_one, check_inputs, evaluate_witness, rounding_bound

MAX_BAG = 20       # 2^20 float64 = 8 MB per table; ~n * 2^bag work
HARD_MAX_BAG = 26  # 2^26 float64 = 512 MB per table: refuse larger limits outright


class BagTooLargeError(InvalidInputError):
    """The path decomposition needs more than ``max_bag`` simultaneous variables."""


@dataclass(frozen=True)
class AbsSumProblem:
    """max_{x in {-1,1}^n} sum_rows |c0_row + B_row x| + ell^T x + const (B sparse CSR)."""
    B: sp.csr_array
    c0: np.ndarray
    ell: np.ndarray
    const: float = 0.0


@dataclass
class DPPlan:
    order: np.ndarray     # variables in the order they enter
    bag: int              # largest number of simultaneous table variables
    cost: float           # sum over steps of 2^(bag at that step)


@dataclass
class DPResult:
    """FGL (upper == lower == value when status == "optimal") with the witness (t, s)."""
    upper: float
    lower: float | None
    status: str
    t: np.ndarray | None
    s: list[np.ndarray] | None
    bag: int
    side: str
    seconds: float
    rounding_error: float
    entries: int = 0      # table entries processed (sum over steps of 2^bag)


# --------------------------------------------------------------------------------------------------
# the two sides of a one-hidden-layer network
# --------------------------------------------------------------------------------------------------

def t_side(net: Network, c: np.ndarray, slopes: SlopeBox) -> AbsSumProblem:
    """Variables t (inputs); rows r_j A_j of the free units; the linear part m^T A is unary."""
    v = net.weights[1].T @ c
    A = sp.csr_array(sp.diags_array(v) @ net.weights[0])
    lo, hi = slopes.lo[0], slopes.hi[0]
    m, r = 0.5 * (lo + hi), 0.5 * (hi - lo)
    B = sp.csr_array(sp.diags_array(r) @ A)
    B.eliminate_zeros()
    keep = np.flatnonzero(np.diff(B.indptr) > 0)
    return AbsSumProblem(B=sp.csr_array(B[keep]), c0=np.zeros(len(keep)), ell=A.T @ m)


def s_side(net: Network, c: np.ndarray, slopes: SlopeBox) -> tuple[AbsSumProblem, np.ndarray]:
    """Variables sigma of the free units; one row per input i: |(A^T m)_i + sum_j r_j A_ji sigma_j|."""
    v = net.weights[1].T @ c
    A = sp.csr_array(sp.diags_array(v) @ net.weights[0])
    lo, hi = slopes.lo[0], slopes.hi[0]
    m, r = 0.5 * (lo + hi), 0.5 * (hi - lo)
    free = np.flatnonzero((r > 0) & (np.diff(A.indptr) > 0))
    B = sp.csr_array((sp.diags_array(r) @ A)[free].T)  # (n0, F)
    B.eliminate_zeros()
    return AbsSumProblem(B=B, c0=A.T @ m, ell=np.zeros(len(free))), free


# --------------------------------------------------------------------------------------------------
# planning: order and bag size
# --------------------------------------------------------------------------------------------------

def plan(B: sp.csr_array, order: np.ndarray) -> DPPlan:
    """Bag profile of the sweep in ``order``: variable v is in the table from its position to the
    position of the last variable of its last row."""
    n = B.shape[1]
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    lens = np.diff(B.indptr)
    nz = lens > 0
    release = pos.copy()
    if B.nnz:
        p = pos[B.indices]
        last = np.maximum.reduceat(p, B.indptr[:-1][nz])  # last position of every nonempty row
        np.maximum.at(release, B.indices, np.repeat(last, lens[nz]))
    diff = np.zeros(n + 1, dtype=np.int64)
    np.add.at(diff, pos, 1)
    np.add.at(diff, release + 1, -1)
    profile = np.cumsum(diff)[:n]
    bag = int(profile.max(initial=0))
    return DPPlan(order=np.asarray(order), bag=bag, cost=float(np.exp2(profile).sum()))


def best_plan(B: sp.csr_array, order=None) -> DPPlan:
    """The given order, or the better of the natural order and reverse Cuthill-McKee."""
    n = B.shape[1]
    if order is not None:
        order = np.asarray(order, dtype=np.int64)
        if order.ndim != 1 or sorted(order.tolist()) != list(range(n)):
            raise InvalidInputError(f"order must be a permutation of 0..{n - 1}")
        return plan(B, order)
    candidates = [plan(B, np.arange(n))]
    if n > 2 and B.nnz:
        P = sp.csr_array(abs(B).astype(bool).astype(np.float64))
        G = sp.csr_array(P.T @ P)  # inputs linked when they share a row
        rcm = reverse_cuthill_mckee(G, symmetric_mode=True).astype(np.int64)
        candidates.append(plan(B, rcm))
    return min(candidates, key=lambda p: (p.bag, p.cost))


# --------------------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------------------

_PM = np.array([-1.0, 1.0])  # table index 0 <-> x = -1, 1 <-> x = +1


def solve_abs_sum(P: AbsSumProblem, pl: DPPlan, deadline: float | None = None):
    """Run the sweep. Returns (value, x, optimal); on a deadline (upper bound, None, False)."""
    B, c0, ell = P.B, P.c0, P.ell
    n = B.shape[1]
    order = pl.order
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    lens = np.diff(B.indptr)
    const = P.const + float(np.abs(c0[lens == 0]).sum())  # rows without variables
    rows_at = [[] for _ in range(n)]
    release = pos.copy()
    for j in np.flatnonzero(lens):
        cols = B.indices[B.indptr[j]:B.indptr[j + 1]]
        last = int(pos[cols].max())
        rows_at[last].append(j)
        release[cols] = np.maximum(release[cols], last)
    leaving = [[] for _ in range(n)]
    for v in order:
        leaving[release[v]].append(int(v))
    # For an upper bound at a deadline: rows not yet added are worth at most |c0| + ||B_row||_1.
    row_cap = np.abs(c0) + abs(B).sum(axis=1)
    pending = float(sum(row_cap[j] for rs in rows_at for j in rs) + np.abs(ell).sum())

    T = np.zeros(())
    frontier: list[int] = []
    records = []  # (variable, remaining frontier, packed argmax bits)
    for p in range(n):
        if deadline is not None and time.perf_counter() > deadline:
            return float(T.max()) + const + pending, None, False
        v = int(order[p])
        # The new variable becomes axis 0, so its two halves of the new table are contiguous blocks.
        frontier.insert(0, v)
        half = [np.full((1,) * len(frontier[1:]), -ell[v]), np.full((1,) * len(frontier[1:]), ell[v])]
        pending -= abs(ell[v])
        for j in rows_at[p]:
            za = np.abs(_row_values(B, c0, j, frontier))  # the row contains v, so axis 0 has size 2
            half = [half[0] + za[0], half[1] + za[1]]
            pending -= row_cap[j]
        Tn = np.empty((2,) + T.shape)
        np.add(T, half[0], out=Tn[0, ...])
        np.add(T, half[1], out=Tn[1, ...])
        T = Tn
        for u in leaving[p]:
            a = frontier.index(u)
            idx0 = (slice(None),) * a + (0,)
            idx1 = (slice(None),) * a + (1,)
            hi_wins = T[idx1] > T[idx0]
            T = np.maximum(T[idx0], T[idx1])
            frontier.pop(a)
            records.append((u, list(frontier), np.packbits(hi_wins.ravel())))
    value = float(T) + const
    # Backtrack: the variables a record depends on leave later, so they are already set.
    x = np.ones(n)
    for u, rest, bits in reversed(records):
        flat = 0
        for w in rest:
            flat = 2 * flat + (x[w] > 0)
        x[u] = 1.0 if (bits[flat >> 3] >> (7 - (flat & 7))) & 1 else -1.0
    return value, x, True


def _row_values(B, c0, j, frontier):
    """c0_j + B_j x over the table's axes (size 2 on the row's variables, 1 elsewhere).

    Built from the last axis backwards so that every outer sum has a long contiguous inner loop
    (about 2 * 2^|row| operations in all)."""
    cols = B.indices[B.indptr[j]:B.indptr[j + 1]]
    vals = B.data[B.indptr[j]:B.indptr[j + 1]]
    coef = dict(zip(cols.tolist(), vals.tolist()))
    z = np.array([float(c0[j])])
    shape = []
    for w in reversed(frontier):
        if w in coef:
            z = (coef[w] * _PM)[:, None] + z[None, :]
            z = z.ravel()
            shape.append(2)
        else:
            shape.append(1)
    return z.reshape(shape[::-1])


# --------------------------------------------------------------------------------------------------
# the network-level entry point
# --------------------------------------------------------------------------------------------------

def dp_plan(net: Network, c, slopes: SlopeBox | None = None, order=None) -> tuple[str, DPPlan]:
    """Best (side, plan) for a one-hidden-layer network; ``order`` (a permutation of the inputs)
    forces the t side in that order."""
    if net.depth != 1:
        raise InvalidInputError(f"dynamic programming handles one hidden layer; this network has {net.depth}")
    c, slopes = check_inputs(net, c, slopes)
    pt = best_plan(t_side(net, c, slopes).B, order)
    if order is not None:
        return "t", pt
    ps = best_plan(s_side(net, c, slopes)[0].B)
    return ("t", pt) if (pt.bag, pt.cost) <= (ps.bag, ps.cost) else ("s", ps)


def dp_fgl(net: Network, c, slopes: SlopeBox | None = None, *, order=None, max_bag: int = MAX_BAG,
           time_limit: float | None = None) -> DPResult:
    """Exact l_inf FGL of a one-hidden-layer network by DP; raises BagTooLargeError above ``max_bag``.

    With a time limit that expires, returns status "time_limit" with a valid upper bound (table
    maximum + the largest possible value of the rows not yet added) and no witness.
    """
    t0 = time.perf_counter()
    if not 0 <= max_bag <= HARD_MAX_BAG:
        raise InvalidInputError(f"max_bag must be between 0 and {HARD_MAX_BAG} (2^bag floats per table)")
    c, slopes = check_inputs(net, c, slopes)
    side, pl = dp_plan(net, c, slopes, order)
    if pl.bag > max_bag:
        raise BagTooLargeError(
            f"dynamic programming needs a bag of {pl.bag} variables (limit {max_bag}); use branch and bound")
    if side == "t":
        P = t_side(net, c, slopes)
    else:
        P, free = s_side(net, c, slopes)
    deadline = None if time_limit is None else t0 + float(time_limit)
    value, x, optimal = solve_abs_sum(P, pl, deadline)
    mass = float(np.abs(P.c0).sum() + abs(P.B).sum() + np.abs(P.ell).sum())
    err = rounding_bound(mass, P.B.shape[0] + P.B.shape[1] + 2)
    if not optimal:
        return DPResult(upper=value, lower=None, status="time_limit", t=None, s=None, bag=pl.bag, side=side,
                        seconds=time.perf_counter() - t0, rounding_error=err, entries=int(pl.cost))
    if side == "t":
        t = x
    else:
        t = np.where(P.c0 + P.B @ x >= 0, 1.0, -1.0)
    s = best_slopes_one(net, c, slopes, t)
    val = evaluate_witness(net, c, t, s)
    return DPResult(upper=max(value, val), lower=val, status="optimal", t=t, s=s, bag=pl.bag, side=side,
                    seconds=time.perf_counter() - t0, rounding_error=err, entries=int(pl.cost))
