"""The depth-first branch-and-bound engine shared by the one- and two-hidden-layer searches, and the
Russian-doll bounds over input suffixes.

The search is over sign vectors x in {-1,1}^n, depth first, children of a batch sorted so the best bound is
explored first; a node is pruned when its bound is <= the incumbent. ``_dfs`` is resumable: at the deadline
it returns its open stack with the incumbent (``_Outcome.state``), and a later call given that state
continues exactly where it stopped (auto's returning search and the LP-closing stage resume, not restart).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..problem import past

_U64 = np.uint64


def _encode(x: np.ndarray, n_words: int) -> np.ndarray:
    """Sign vector (+-1) -> bit code, bit i set where x_i = -1."""
    code = np.zeros(n_words, dtype=_U64)
    for i in np.flatnonzero(np.asarray(x) < 0):
        code[i >> 6] |= _U64(1) << _U64(i & 63)
    return code


def _decode(code: np.ndarray, n: int) -> np.ndarray:
    i = np.arange(n)
    bits = (code[i >> 6] >> (i & 63).astype(_U64)) & _U64(1)
    return np.where(bits == 1, -1.0, 1.0)


@dataclass
class _Outcome:
    value: float          # best leaf value found (the incumbent)
    code: np.ndarray      # its sign code
    upper: float          # valid upper bound on the subproblem
    optimal: bool
    nodes: int
    state: "_DFSState | None" = None   # the open search, when stopped at the deadline


@dataclass
class _DFSState:
    """An unfinished search: its open nodes and incumbent. Node states do not depend on the bounds
    used to prune them, so a resumed search may use tighter (still valid) bounds for the new children."""
    stack: "_Stack"
    incumbent: float
    code: np.ndarray


class _Stack:
    """Growable arrays of nodes: state rows, depth, sign code, bound (a manual stack, no re-copy per pop)."""

    def __init__(self, width: int, n_words: int, cap: int = 1024):
        self.S = np.empty((cap, width))
        self.D = np.empty(cap, dtype=np.int64)
        self.K = np.empty((cap, n_words), dtype=_U64)
        self.U = np.empty(cap)
        self.top = 0

    def push(self, S, D, K, U):
        k = len(D)
        if self.top + k > len(self.D):
            cap = max(2 * len(self.D), self.top + k)
            for name in ("S", "D", "K", "U"):
                old = getattr(self, name)
                new = np.empty((cap,) + old.shape[1:], dtype=old.dtype)
                new[:self.top] = old[:self.top]
                setattr(self, name, new)
        sl = slice(self.top, self.top + k)
        self.S[sl], self.D[sl], self.K[sl], self.U[sl] = S, D, K, U
        self.top += k

    def pop(self, b: int):
        lo = max(0, self.top - b)
        sl = slice(lo, self.top)
        out = self.S[sl].copy(), self.D[sl].copy(), self.K[sl].copy(), self.U[sl].copy()
        self.top = lo
        return out


Children = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _dfs(children: Children, S0: np.ndarray, D0: int, K0: np.ndarray, U0: float, n: int,
         incumbent: float, inc_code: np.ndarray, deadline: float | None, batch: int,
         state: _DFSState | None = None) -> _Outcome:
    """Depth-first branch and bound over sign variables D0..n-1 (or, given ``state``, the rest of an
    unfinished search; the root arguments are then unused).

    ``children(S, D)`` returns the states and bounds of the 2N children (first N: x_D = +1, then -1);
    at depth n the bound must be the exact objective. A node is pruned when bound <= incumbent.
    """
    if state is not None:
        stack, incumbent, inc_code = state.stack, state.incumbent, state.code
    elif D0 >= n:
        v = float(U0)
        return (_Outcome(v, K0.copy(), v, True, 0) if v > incumbent
                else _Outcome(incumbent, inc_code, incumbent, True, 0))
    else:
        stack = _Stack(S0.shape[0], K0.shape[0])
        stack.push(S0[None], np.array([D0]), K0[None], np.array([U0]))
    nodes = 0
    one = _U64(1)
    while stack.top:
        # a resumed search always expands at least one batch, so repeated short runs make progress
        if deadline is not None and (state is None or nodes) and time.perf_counter() > deadline:
            open_ub = float(stack.U[:stack.top].max())
            return _Outcome(incumbent, inc_code, max(incumbent, open_ub), False, nodes,
                            _DFSState(stack, incumbent, inc_code))
        S, D, K, U = stack.pop(batch)
        live = U > incumbent  # the incumbent may have improved since these were pushed
        if not live.all():
            S, D, K = S[live], D[live], K[live]
            if not len(D):
                continue
        S2, U2 = children(S, D)
        N = len(D)
        K_neg = K.copy()
        K_neg[np.arange(N), D >> 6] |= one << (D & 63).astype(_U64)
        K2 = np.concatenate([K, K_neg])
        D2 = np.concatenate([D, D]) + 1
        nodes += 2 * N
        leaf = D2 >= n
        if leaf.any():
            li = np.flatnonzero(leaf)
            j = li[int(np.argmax(U2[li]))]
            if U2[j] > incumbent:
                incumbent, inc_code = float(U2[j]), K2[j].copy()
        keep = np.flatnonzero(~leaf & (U2 > incumbent))
        if len(keep):
            keep = keep[np.argsort(U2[keep], kind="stable")]  # best bound pushed last, popped first
            stack.push(S2[keep], D2[keep], K2[keep], U2[keep])
    return _Outcome(incumbent, inc_code, incumbent, True, nodes)


def _batch_size(width: int, depth: int) -> int:
    # Enough nodes per numpy call to amortise the interpreter; few enough that the stack (at most
    # about depth * batch rows of ``width`` floats) stays below 2^25 floats = 256 MB.
    return int(np.clip((1 << 25) // max(width * depth, 1), 64, 4096))


# --------------------------------------------------------------------------------------------------
# Russian-doll bounds over input suffixes
# --------------------------------------------------------------------------------------------------

DOLL_SPLIT = 0.3      # suffixes starting in the last 70 % of a block are solved exactly
DOLL_MIN_BLOCK = 8    # blocks this short: every suffix exactly


@dataclass
class _Range:
    """Result of one range solve: lower <= FGL(inputs k..b-1) <= upper, x attaining lower."""
    lower: float
    upper: float
    x: np.ndarray | None
    optimal: bool
    nodes: int
    state: _DFSState | None = None   # unfinished: resume with it


RangeSolver = Callable[[int, int, np.ndarray, "float | None"], _Range]


def _doll_bounds(solve_range: RangeSolver, a: int, b: int, deadline: float | None, counter: list,
                 split: float | None = None, min_block: int = DOLL_MIN_BLOCK) -> np.ndarray:
    """B[k - a] >= FGL(inputs k..b-1) for a < k <= b (B[0] is not computed).

    ``solve_range(k, b, Bk, deadline)`` solves inputs k..b-1 given Bk[j] >= FGL(k+j..b-1). Suffixes
    k >= s are solved exactly, shortest first; for a < k < s the subadditivity FGL(k..b) <=
    FGL(k..s) + FGL(s..b) is used with the first term from the same construction on (a, s]. The
    longest suffixes cost nearly as much as the whole problem and tighten its bounds little: solving
    them all exactly made dense 40x40 and banded 80x80 (s = 40) instances 3-6 times slower.
    """
    split = DOLL_SPLIT if split is None else split
    B = np.full(b - a + 1, np.inf)
    B[b - a] = 0.0
    if b - a <= 1:
        return B
    s = a + 1 if b - a <= min_block else a + max(1, int(round(split * (b - a))))
    for k in range(b - 1, s - 1, -1):
        if past(deadline):  # past the deadline: the rest stay +inf (valid; the node bounds fall back
            return B            # to the corner bound)
        out = solve_range(k, b, B[k - a:], deadline)
        counter[0] += out.nodes
        B[k - a] = out.upper  # an upper bound is all the enclosing searches need
    if s > a + 1 and not past(deadline):
        inner = _doll_bounds(solve_range, a, s, deadline, counter, split, min_block)
        B[1:s - a] = inner[1:s - a] + B[s - a]
    return B


class _Ranges:
    """Range solves remembered across runs of one search: an optimal range is reused, an unfinished one
    resumed from its open stack. ``solve(k, b, Bk, deadline, final, state)`` does one range;
    ``incomplete`` records whether any non-final range stopped unfinished in the current run."""

    def __init__(self, solve: Callable[..., _Range]):
        self.solve = solve
        self.memo: dict[tuple, _Range] = {}
        self.incomplete = False

    def __call__(self, k: int, b: int, Bk: np.ndarray, deadline: float | None, final: bool = False) -> _Range:
        key = (k, b, final)
        prev = self.memo.get(key)
        if prev is not None and (prev.optimal or (past(deadline) and not final)):
            if not prev.optimal:
                self.incomplete = True
            return replace(prev, nodes=0)
        out = self.solve(k, b, Bk, deadline, final, None if prev is None else prev.state)
        if prev is not None and not out.optimal:  # both brackets are valid: keep the tighter ends
            out = replace(out, upper=min(out.upper, prev.upper))
        if out.x is not None or prev is None:
            self.memo[key] = out
        if not out.optimal and not final:
            self.incomplete = True
        return out


def doll_phase(ranges: _Ranges, B: np.ndarray, n: int, deadline: float | None, counter: list) -> bool:
    """One (possibly resumed) pass of the Russian-doll bounds over inputs 0..n-1 with at most half of the
    time to ``deadline``; tightens B in place (both are valid upper bounds) and says whether every suffix
    range was solved to optimality (nothing left to improve)."""
    now = time.perf_counter()
    rd_deadline = None if deadline is None else now + 0.5 * max(0.0, deadline - now)
    ranges.incomplete = False
    np.minimum(B, _doll_bounds(ranges, 0, n, rd_deadline, counter), out=B)
    return not ranges.incomplete and not past(rd_deadline)
