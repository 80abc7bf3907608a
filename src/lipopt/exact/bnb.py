"""Exact l_inf FGL of networks with one or two hidden layers by branch and bound.

Write every derivative box as s = m + r*sigma, sigma in [-1, 1] (m, r: midpoint and radius of [lo, hi]).

One hidden layer (v = W_1^T c, A = diag(v) W_0): maximising over s in closed form,
    FGL = max_{t in {-1,1}^n0} sum_j r_j |A_j t| + m^T A t = ||M||_{inf->1},   M = [m^T A; diag(r) A],
where the linear row may carry |.| because t -> -t changes nothing else. ||M t||_1 is even in t, so the
first variable is fixed to +1; we branch on the columns of M (inputs), or on its rows (units) when
they are clearly fewer: max_sigma ||M^T sigma||_1 is the same number.

Two hidden layers (v = W_2^T c, tau the free signs of layer 2, x = W_0 t, y = W_1^T diag(s_2) v = y0 + Y tau):
    FGL = max_{t, tau} sum_i phi_i(x_i y_i),    phi_i(z) = max(lo_i z, hi_i z) = m_i z + r_i |z|,
with s_1 maximised in closed form. We branch on tau first when it has at most TAU_FIRST_MAX signs (the
last hidden layer is usually narrow; once tau is fixed every node bound is a cheap one-factor bound),
otherwise on t first.

Node bounds (closed form, one numpy call per batch of nodes):
  * interval / corner: a unit whose pre-activation range is known exactly (all its inputs fixed) is
    exact; otherwise phi is convex, so its maximum over the box of (x_i, y_i) is at a corner;
  * Russian doll: phi is subadditive (|a + b| <= |a| + |b|, r >= 0), so the free inputs t_k.. add at
    most the FGL of the same network restricted to inputs k.. . These suffix values are computed first,
    from the shortest suffix up, each by the same branch and bound using the shorter ones; the longest
    suffixes are bounded by FGL(k..s) + FGL(s..) instead of being solved (see ``_doll_bounds``).
The incumbent comes from alternating maximisation (each group of variables in closed form given the
others) and 1-flip local search from seeded random starts. The search is depth first, children of a
batch sorted so the best bound is explored first. With a deadline the answer is a bracket
[incumbent, max open bound] with status "time_limit", never a claimed optimum.

Values are exact up to floating-point rounding of the sums (relative error ~ n * 1e-16): pruning uses
bound <= incumbent in floating point; ``rounding_error`` bounds that error.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from ..model.network import Network
from ..polynomial import SlopeBox, global_slopes
from ..rounding import EPS as _EPS

_U64 = np.uint64
TAU_FIRST_MAX = 16  # branch on the layer-2 signs first when there are at most this many


# --------------------------------------------------------------------------------------------------
# input checks and the witness
# --------------------------------------------------------------------------------------------------

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


def best_slopes_one(net: Network, c: np.ndarray, slopes: SlopeBox, t: np.ndarray) -> list[np.ndarray]:
    """Given t, the maximising s_1: hi where v_j (W_0 t)_j > 0, lo elsewhere."""
    z = (net.weights[1].T @ c) * (net.weights[0] @ t)
    return [np.where(z > 0, slopes.hi[0], slopes.lo[0])]


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


# --------------------------------------------------------------------------------------------------
# the depth-first engine
# --------------------------------------------------------------------------------------------------

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
         incumbent: float, inc_code: np.ndarray, deadline: float | None, batch: int) -> _Outcome:
    """Depth-first branch and bound over sign variables D0..n-1.

    ``children(S, D)`` returns the states and bounds of the 2N children (first N: x_D = +1, then -1);
    at depth n the bound must be the exact objective. A node is pruned when bound <= incumbent.
    """
    if D0 >= n:
        v = float(U0)
        return (_Outcome(v, K0.copy(), v, True, 0) if v > incumbent
                else _Outcome(incumbent, inc_code, incumbent, True, 0))
    stack = _Stack(S0.shape[0], K0.shape[0])
    stack.push(S0[None], np.array([D0]), K0[None], np.array([U0]))
    nodes = 0
    one = _U64(1)
    while stack.top:
        if deadline is not None and time.perf_counter() > deadline:
            open_ub = float(stack.U[:stack.top].max())
            return _Outcome(incumbent, inc_code, max(incumbent, open_ub), False, nodes)
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
        if _expired(deadline):  # past the deadline: the rest stay +inf (valid; the node bounds fall back
            return B            # to the corner bound)
        out = solve_range(k, b, B[k - a:], deadline)
        counter[0] += out.nodes
        B[k - a] = out.upper  # an upper bound is all the enclosing searches need
    if s > a + 1 and not _expired(deadline):
        inner = _doll_bounds(solve_range, a, s, deadline, counter, split, min_block)
        B[1:s - a] = inner[1:s - a] + B[s - a]
    return B


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() > deadline


# --------------------------------------------------------------------------------------------------
# one hidden layer: ||M||_{inf -> 1}
# --------------------------------------------------------------------------------------------------

def one_layer_matrix(net: Network, c: np.ndarray, slopes: SlopeBox) -> np.ndarray:
    """M = [m^T A; diag(r) A] (dense, zero rows dropped) with FGL = ||M||_{inf->1}, A = diag(W_1^T c) W_0.

    The linear row comes first: branching on the rows (M^T), its sign is the variable fixed by symmetry,
    which leaves exactly max_sigma sum_i |(A^T m)_i + sum_j r_j A_ji sigma_j|. Branched last, this dense
    row keeps every input undecided to the bottom of the tree (a banded 52-input layer: 0.2 s -> > 20 s).
    """
    v = net.weights[1].T @ c
    A = sp.csr_array(sp.diags_array(v) @ net.weights[0])
    lo, hi = slopes.lo[0], slopes.hi[0]
    m, r = 0.5 * (lo + hi), 0.5 * (hi - lo)
    rows = sp.csr_array(sp.diags_array(r) @ A).toarray()
    ell = A.T @ m
    M = np.vstack([ell[None], rows])
    return M[np.abs(M).sum(axis=1) > 0]


def _alternate_inf1(M: np.ndarray, X: np.ndarray, iters: int = 100) -> np.ndarray:
    """Alternating maximisation of sigma^T M x: sigma = sign(M x), x = sign(M^T sigma), from rows of X."""
    for _ in range(iters):
        sig = np.where(X @ M.T >= 0, 1.0, -1.0)
        Xn = np.where(sig @ M >= 0, 1.0, -1.0)
        if np.array_equal(Xn, X):
            break
        X = Xn
    return X


def _flip_search_inf1(M: np.ndarray, X: np.ndarray, rel: float = 1e-13,
                      deadline: float | None = None) -> np.ndarray:
    """Best-improvement 1-flip local search on ||M x||_1 for every row of X (stops at the deadline)."""
    MT = M.T
    out = X.copy()
    chunk = max(1, int(4e6 // max(1, M.size)))
    for lo in range(0, len(X), chunk):
        Xc = out[lo:lo + chunk]
        Z = Xc @ MT
        val = np.abs(Z).sum(1)
        for _ in range(4 * M.shape[1]):
            if _expired(deadline):
                break
            Znew = Z[:, None, :] - 2.0 * Xc[:, :, None] * MT[None]
            gain = np.abs(Znew).sum(2) - val[:, None]
            i = gain.argmax(1)
            g = gain[np.arange(len(i)), i]
            imp = np.flatnonzero(g > rel * np.maximum(val, 1e-300))
            if not len(imp):
                break
            Xc[imp, i[imp]] *= -1.0
            Z[imp] = Znew[imp, i[imp]]
            val[imp] += g[imp]
        out[lo:lo + chunk] = Xc
    return out


def _heuristic_inf1(M: np.ndarray, rng: np.random.Generator, starts: int,
                    extra: np.ndarray | None = None, deadline: float | None = None) -> np.ndarray:
    """Best x (x_0 = +1) found by alternating maximisation + 1-flip search from seeded starts.

    starts == 0 switches the heuristic off (x = all ones): tests use it to exercise the search itself.
    """
    n = M.shape[1]
    if starts == 0:
        return np.ones(n)
    X = np.where(rng.random((starts, n)) < 0.5, -1.0, 1.0)
    # structured starts: signs of the largest rows, and of the all-ones direction
    big = np.argsort(-np.abs(M).sum(1))[: max(1, starts // 4)]
    X = np.vstack([X, np.where(M[big] >= 0, 1.0, -1.0), np.ones((1, n))])
    if extra is not None:
        X = np.vstack([X, extra])
    X = _flip_search_inf1(M, _alternate_inf1(M, X), deadline=deadline)
    vals = np.abs(X @ M.T).sum(1)
    x = X[int(np.argmax(vals))].copy()
    return x if x[0] > 0 else -x


def solve_inf_to_one(M: np.ndarray, *, deadline: float | None = None, seed: int = 0, starts: int = 24,
                     russian_doll: bool = True) -> tuple[float, float, np.ndarray, bool, int]:
    """max_{x in {-1,1}^n} ||M x||_1 by branch and bound on the columns of M.

    Returns (lower, upper, x attaining lower, optimal, nodes). Bound at a node with x_0..x_{d-1} fixed
    (partial product c): ||c||_1 + B[d], B[d] >= max ||M_{:,d:} x||_1 (Russian-doll bounds; without
    them B[d] = sum |M_{:,d:}|, the interval bound). x_0 = +1 by symmetry.
    """
    M = np.asarray(M, dtype=np.float64)
    m, n = M.shape
    if n == 0 or m == 0:
        return 0.0, 0.0, np.ones(n), True, 0
    rng = np.random.default_rng(seed)
    MT = np.ascontiguousarray(M.T)
    colsum = np.abs(M).sum(0)
    batch = _batch_size(m, n)
    last = {}  # b -> (k, x): optimum of the range k..b-1, extended to a start for range k-1..b-1

    def solve_range(k: int, b: int, Bk: np.ndarray, dl: float | None, final: bool = False) -> _Range:
        root = float(colsum[k] + Bk[1])
        if _expired(dl) and not final:
            return _Range(-np.inf, root, None, False, 0)
        sub, MTk = M[:, k:b], MT[k:b]
        nk, n_words = b - k, (b - k + 63) // 64
        extra = None
        if b in last and last[b][0] == k + 1:
            xp = last[b][1]
            extra = np.array([np.concatenate([[1.0], xp]), np.concatenate([[-1.0], xp])])
        x0 = _heuristic_inf1(sub, rng, starts if final else max(4, starts // 2) if starts else 0, extra, dl)

        def children(S, D):
            col = MTk[D]
            S2 = np.concatenate([S + col, S - col])
            D2 = np.concatenate([D, D]) + 1
            return S2, np.abs(S2).sum(1) + Bk[D2]

        out = _dfs(children, MTk[0].copy(), 1, np.zeros(n_words, dtype=_U64), root, nk,
                   float(np.abs(sub @ x0).sum()), _encode(x0, n_words), dl, batch)
        x = _decode(out.code, nk)
        if out.optimal:
            last[b] = (k, x)
        return _Range(out.value, out.upper, x, out.optimal, out.nodes)

    counter = [0]
    if russian_doll:
        # The bounds get at most half of the time; cut short, they are still valid upper bounds.
        now = time.perf_counter()
        rd_deadline = None if deadline is None else now + 0.5 * max(0.0, deadline - now)
        B = _doll_bounds(solve_range, 0, n, rd_deadline, counter)
    else:
        B = np.concatenate([np.cumsum(colsum[::-1])[::-1], [0.0]])
    out = solve_range(0, n, B, deadline, final=True)
    upper = min(out.upper, float(colsum.sum()))
    return out.lower, max(out.lower, upper), out.x, out.optimal, counter[0] + out.nodes


def bnb_one_layer(net: Network, c: np.ndarray, slopes: SlopeBox, *, deadline: float | None = None,
                  seed: int = 0, russian_doll: bool = True, starts: int = 24) -> BnBResult:
    """Exact l_inf FGL of a one-hidden-layer network as ||M||_{inf->1} (see module docstring)."""
    t0 = time.perf_counter()
    M_full = one_layer_matrix(net, c, slopes)
    n0 = net.widths[0]
    A_cols = np.abs(M_full).sum(0) > 0 if M_full.size else np.zeros(n0, bool)
    cols = np.flatnonzero(A_cols)
    M = M_full[:, cols]
    # Branch on the inputs unless the units are clearly fewer: with the offsets (A^T m) on every row,
    # the unit-side search prunes worse at equal size (100x more nodes on banded layers).
    transpose = M.shape[0] < 0.75 * M.shape[1]
    lower, upper, x, optimal, nodes = solve_inf_to_one(M.T if transpose else M, deadline=deadline,
                                                       seed=seed, russian_doll=russian_doll, starts=starts)
    t = np.ones(n0)
    tx = np.where(M.T @ x >= 0, 1.0, -1.0) if transpose else x
    t[cols] = tx
    s = best_slopes_one(net, c, slopes, t)
    val = evaluate_witness(net, c, t, s)
    s_neg = best_slopes_one(net, c, slopes, -t)
    val_neg = evaluate_witness(net, c, -t, s_neg)
    if val_neg > val:  # the symmetric problem fixes t only up to a global sign
        t, s, val = -t, s_neg, val_neg
    return BnBResult(upper=float(max(upper, val)), lower=val,
                     status="optimal" if optimal else "time_limit", t=t, s=s, nodes=nodes,
                     seconds=time.perf_counter() - t0,
                     rounding_error=rounding_bound(float(np.abs(M).sum()), sum(M.shape)),
                     info={"branching": "rows of M" if transpose else "inputs",
                           "variables": M.shape[0] if transpose else M.shape[1]})


# --------------------------------------------------------------------------------------------------
# two hidden layers: max over (tau, t) of sum_i phi_i(x_i y_i)
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TwoLayerForm:
    """FGL = max_{t, tau in {-1,1}} sum_i m_i x_i y_i + r_i |x_i y_i|, x = W0 t, y = y0 + Y tau.

    Only live units/inputs are kept: ``units`` (layer 1), ``inputs`` and ``free2`` (layer-2 units
    whose derivative is free) index into the network.
    """
    W0: np.ndarray   # (n1', n0') dense
    y0: np.ndarray   # (n1',)
    Y: np.ndarray    # (n1', n2')
    m: np.ndarray
    r: np.ndarray
    units: np.ndarray
    inputs: np.ndarray
    free2: np.ndarray


def two_layer_form(net: Network, c: np.ndarray, slopes: SlopeBox) -> TwoLayerForm:
    v = net.weights[2].T @ c
    lo2, hi2 = slopes.lo[1], slopes.hi[1]
    m2, r2 = 0.5 * (lo2 + hi2), 0.5 * (hi2 - lo2)
    W1T = sp.csr_array(net.weights[1].T)  # (n1, n2)
    y0 = W1T @ (m2 * v)
    free2 = np.flatnonzero((r2 > 0) & (v != 0))
    Y = (W1T @ sp.diags_array(r2 * v)).toarray()[:, free2]
    lo1, hi1 = slopes.lo[0], slopes.hi[0]
    m1, r1 = 0.5 * (lo1 + hi1), 0.5 * (hi1 - lo1)
    W0 = net.weights[0]
    live = ((m1 != 0) | (r1 != 0)) & ((y0 != 0) | (np.abs(Y).sum(1) > 0)) & (np.diff(W0.indptr) > 0)
    units = np.flatnonzero(live)
    W0d = W0[units].toarray() if len(units) else np.zeros((0, net.widths[0]))
    inputs = np.flatnonzero(np.abs(W0d).sum(0) > 0)
    Yd = Y[units]
    keep2 = np.abs(Yd).sum(0) > 0
    return TwoLayerForm(W0=W0d[:, inputs], y0=y0[units], Y=Yd[:, keep2], m=m1[units], r=r1[units],
                        units=units, inputs=inputs, free2=free2[keep2])


def _phi(z, m, r):
    return m * z + r * np.abs(z)


def _alternate_two(W0, y0, Y, m, r, T, U, iters: int = 100, deadline: float | None = None):
    """Alternating maximisation over t | s_1 | tau, each in closed form given the others (stops at the
    deadline after the first round)."""
    for it in range(iters):
        if it and _expired(deadline):
            break
        x = T @ W0.T
        y = y0 + U @ Y.T
        s1 = m + r * np.where(x * y >= 0, 1.0, -1.0)
        Tn = np.where((s1 * y) @ W0 >= 0, 1.0, -1.0)
        x = Tn @ W0.T
        s1 = m + r * np.where(x * y >= 0, 1.0, -1.0)
        Un = np.where((s1 * x) @ Y >= 0, 1.0, -1.0)
        if np.array_equal(Tn, T) and np.array_equal(Un, U):
            break
        T, U = Tn, Un
    return T, U


def _flip_search_two(W0, y0, Y, m, r, T, U, rel: float = 1e-13, deadline: float | None = None):
    """Best-improvement 1-flip local search over (t, tau) for each start (stops at the deadline)."""
    n0, n2 = W0.shape[1], Y.shape[1]
    T, U = T.copy(), U.copy()
    per = max(1, (n0 + n2) * W0.shape[0])
    chunk = max(1, int(4e6 // per))
    for lo in range(0, len(T), chunk):
        Tc, Uc = T[lo:lo + chunk], U[lo:lo + chunk]
        x = Tc @ W0.T
        y = y0 + Uc @ Y.T
        val = _phi(x * y, m, r).sum(1)
        rows = np.arange(len(Tc))
        for _ in range(4 * (n0 + n2)):
            if _expired(deadline):
                break
            xt = x[:, None, :] - 2.0 * Tc[:, :, None] * W0.T[None]      # flip t_i
            gt = _phi(xt * y[:, None, :], m, r).sum(2) - val[:, None]
            yu = y[:, None, :] - 2.0 * Uc[:, :, None] * Y.T[None]       # flip tau_k
            gu = _phi(x[:, None, :] * yu, m, r).sum(2) - val[:, None]
            gain = np.concatenate([gt, gu], axis=1)
            i = gain.argmax(1)
            g = gain[rows, i]
            imp = np.flatnonzero(g > rel * np.maximum(np.abs(val), 1e-300))
            if not len(imp):
                break
            it, iu = imp[i[imp] < n0], imp[i[imp] >= n0]
            Tc[it, i[it]] *= -1.0
            x[it] = xt[it, i[it]]
            Uc[iu, i[iu] - n0] *= -1.0
            y[iu] = yu[iu, i[iu] - n0]
            val[imp] += g[imp]
        T[lo:lo + chunk], U[lo:lo + chunk] = Tc, Uc
    return T, U


def _heuristic_two(W0, y0, Y, m, r, rng, starts, extra=None, deadline=None):
    """Best (t, tau, value) from alternating maximisation + 1-flip search; starts == 0: all ones, no search."""
    n0, n2 = W0.shape[1], Y.shape[1]
    if starts == 0 and extra is None:
        return np.ones(n0), np.ones(n2), float(_phi((W0.sum(1)) * (y0 + Y.sum(1)), m, r).sum())
    T = np.where(rng.random((starts, n0)) < 0.5, -1.0, 1.0)
    U = np.where(rng.random((starts, n2)) < 0.5, -1.0, 1.0)
    if extra is not None:
        T, U = np.vstack([T, extra[0]]), np.vstack([U, extra[1]])
    T, U = _flip_search_two(W0, y0, Y, m, r, *_alternate_two(W0, y0, Y, m, r, T, U, deadline=deadline),
                            deadline=deadline)
    vals = _phi((T @ W0.T) * (y0 + U @ Y.T), m, r).sum(1)
    j = int(np.argmax(vals))
    return T[j].copy(), U[j].copy(), float(vals[j])


def _corner_bound(x, rx, y, ry, m, r):
    """sum_i max over the corners of [x +- rx] x [y +- ry] of phi_i(x y) (phi convex, xy bilinear)."""
    xl, xu, yl, yu = x - rx, x + rx, y - ry, y + ry
    b = np.maximum(_phi(xl * yl, m, r), _phi(xl * yu, m, r))
    b = np.maximum(b, _phi(xu * yl, m, r))
    return np.maximum(b, _phi(xu * yu, m, r)).sum(-1)


def solve_two_layer(F: TwoLayerForm, *, deadline: float | None = None, seed: int = 0, starts: int = 24,
                    russian_doll: bool = True, tau_first: bool | None = None):
    """Branch and bound on (tau, t); returns (lower, upper, t, tau, optimal, nodes) in the reduced form.

    Node bound: min(corner bound, sum_i max_y phi_i(xF_i y_i) + B[#t fixed]) where xF is the fixed part
    of x and B the Russian-doll bounds on the FGL of the remaining inputs (subadditivity of phi).
    """
    W0, y0, Y, m, r = F.W0, F.y0, F.Y, F.m, F.r
    n1, n0 = W0.shape
    n2 = Y.shape[1]
    if n0 == 0 or n1 == 0:  # no live path: P is identically zero
        return 0.0, 0.0, np.ones(n0), np.ones(n2), True, 0
    if tau_first is None:
        tau_first = n2 <= TAU_FIRST_MAX
    rng = np.random.default_rng(seed)
    absW = np.abs(W0)
    absY = np.abs(Y)
    ry_all = absY.sum(1)
    tailY = np.vstack([np.cumsum(absY[:, ::-1], 1)[:, ::-1].T, np.zeros((1, n1))])  # (n2+1, n1)
    batch = _batch_size(2 * n1, n0 + n2)
    lo1, hi1 = m - r, m + r
    alo1, ahi1 = np.abs(lo1), np.abs(hi1)
    last = {}  # b -> (k, t, tau): optimum of the range k..b-1

    def solve_range(k: int, b: int, Bk: np.ndarray | None, dl: float | None, final: bool = False) -> _Range:
        Wk = W0[:, k:b]
        nt = b - k
        nv = n2 + nt
        depth = np.arange(nv + 1)
        tailx = np.vstack([np.cumsum(absW[:, k:b][:, ::-1], 1)[:, ::-1].T, np.zeros((1, n1))])  # (nt+1, n1)
        if tau_first:   # variable order: tau, then t_k..; from depth n2 on, y is exact
            cols = np.vstack([Y.T, Wk.T])
            is_t = np.arange(nv) >= n2
            Rx = np.vstack([np.tile(tailx[0], (n2, 1)), tailx])       # (nv+1, n1)
            Ry = np.vstack([tailY, np.zeros((nt, n1))])
            t_fixed = np.maximum(depth - n2, 0)
            fast_from = n2
        else:           # t_k.., then tau; from depth nt on, x is exact
            cols = np.vstack([Wk.T, Y.T])
            is_t = np.arange(nv) < nt
            Rx = np.vstack([tailx, np.zeros((n2, n1))])
            Ry = np.vstack([np.tile(ry_all, (nt, 1)), tailY])
            t_fixed = np.minimum(depth, nt)
            fast_from = nt
        rd_of_depth = None if Bk is None else Bk[t_fixed]
        root = float(_corner_bound(np.zeros(n1), Rx[0], y0, Ry[0], m, r))
        if not final and _expired(dl):
            return _Range(-np.inf, root, None, False, 0)

        def children(S, D):
            col = cols[D]
            x, y = S[:, :n1], S[:, n1:]
            if D.min() >= fast_from:
                # One factor of every product x_i y_i is exact, the other is known up to +-q_i. With
                # phi(z) = max(lo z, hi z): max over |e| <= q of phi(p + e) = max(hi p + |hi| q, lo p + |lo| q).
                if tau_first:
                    xy, cy, q = x * y, col * y, Rx[D + 1] * np.abs(y)
                else:
                    xy, cy, q = x * y, col * x, Ry[D + 1] * np.abs(x)
                p = np.concatenate([xy + cy, xy - cy])
                q = np.concatenate([q, q])
                ub = np.maximum(hi1 * p + ahi1 * q, lo1 * p + alo1 * q).sum(1)
                if tau_first and rd_of_depth is not None:
                    rd = np.maximum(hi1 * p, lo1 * p).sum(1) + np.concatenate([rd_of_depth[D + 1]] * 2)
                    ub = np.minimum(ub, rd)
                if tau_first:
                    S2 = np.hstack([np.concatenate([x + col, x - col]), np.concatenate([y, y])])
                else:
                    S2 = np.hstack([np.concatenate([x, x]), np.concatenate([y + col, y - col])])
                return S2, ub
            isx = is_t[D][:, None]
            dx = np.where(isx, col, 0.0)
            dy = col - dx
            x2 = np.concatenate([x + dx, x - dx])
            y2 = np.concatenate([y + dy, y - dy])
            D2 = np.concatenate([D, D]) + 1
            ub = _corner_bound(x2, Rx[D2], y2, Ry[D2], m, r)
            if rd_of_depth is not None:
                # subadditivity: phi(x y) <= phi(xF y) + phi(xR y); the free inputs add at most B
                ry = Ry[D2]
                rd = np.maximum(_phi(x2 * (y2 - ry), m, r), _phi(x2 * (y2 + ry), m, r)).sum(1)
                ub = np.minimum(ub, rd + rd_of_depth[D2])
            return np.hstack([x2, y2]), ub

        extra = None
        if starts and b in last and last[b][0] == k + 1:  # the previous range's optimum, extended
            tp, up = last[b][1], last[b][2]
            extra = (np.array([np.concatenate([[1.0], tp]), np.concatenate([[-1.0], tp])]), np.array([up, up]))
        tk, uk, inc = _heuristic_two(Wk, y0, Y, m, r, rng, starts if final else starts and max(4, starts // 3),
                                     extra, dl)
        n_words = (nv + 63) // 64
        code0 = _encode(np.concatenate([uk, tk] if tau_first else [tk, uk]), n_words)
        S0 = np.concatenate([np.zeros(n1), y0])
        out = _dfs(children, S0, 0, np.zeros(n_words, _U64), root, nv, inc, code0, dl, batch)
        xs = _decode(out.code, nv)
        t_k, u_k = (xs[n2:], xs[:n2]) if tau_first else (xs[:nt], xs[nt:])
        if out.optimal:
            last[b] = (k, t_k, u_k)
        return _Range(out.value, out.upper, (t_k, u_k), out.optimal, out.nodes)

    counter = [0]
    B = None
    if russian_doll:
        # The bounds get at most half of the time; cut short, they are still valid upper bounds.
        now = time.perf_counter()
        rd_deadline = None if deadline is None else now + 0.5 * max(0.0, deadline - now)
        B = _doll_bounds(solve_range, 0, n0, rd_deadline, counter)
    out = solve_range(0, n0, B, deadline, final=True)
    t, tau = out.x
    return out.lower, max(out.lower, out.upper), t, tau, out.optimal, counter[0] + out.nodes


def bnb_two_layer(net: Network, c: np.ndarray, slopes: SlopeBox, *, deadline: float | None = None,
                  seed: int = 0, russian_doll: bool = True, tau_first: bool | None = None,
                  starts: int = 24) -> BnBResult:
    """Exact l_inf FGL of a two-hidden-layer network (see module docstring)."""
    t0 = time.perf_counter()
    F = two_layer_form(net, c, slopes)
    if tau_first is None:
        tau_first = F.Y.shape[1] <= TAU_FIRST_MAX
    lower, upper, tx, tau, optimal, nodes = solve_two_layer(F, deadline=deadline, seed=seed,
                                                            russian_doll=russian_doll, tau_first=tau_first,
                                                            starts=starts)
    t = np.ones(net.widths[0])
    t[F.inputs] = tx
    lo2, hi2 = slopes.lo[1], slopes.hi[1]
    s2 = lo2.copy()
    s2[F.free2] = np.where(tau > 0, hi2[F.free2], lo2[F.free2])
    y = net.weights[1].T @ (s2 * (net.weights[2].T @ c))
    x = net.weights[0] @ t
    s1 = np.where(x * y > 0, slopes.hi[0], slopes.lo[0])
    val = evaluate_witness(net, c, t, [s1, s2])
    mass = float(((np.abs(F.m) + F.r) * np.abs(F.W0).sum(1) * (np.abs(F.y0) + np.abs(F.Y).sum(1))).sum())
    return BnBResult(upper=float(max(upper, val)), lower=val,
                     status="optimal" if optimal else "time_limit", t=t, s=[s1, s2], nodes=nodes,
                     seconds=time.perf_counter() - t0,
                     rounding_error=rounding_bound(mass, sum(F.W0.shape) + F.Y.shape[1]),
                     info={"branching": ("layer-2 signs, then inputs" if tau_first
                                         else "inputs, then layer-2 signs"),
                           "variables": F.W0.shape[1] + F.Y.shape[1]})


def bnb_fgl(net: Network, c, slopes: SlopeBox | None = None, *, time_limit: float | None = None,
            seed: int = 0, russian_doll: bool = True, tau_first: bool | None = None,
            starts: int = 24) -> BnBResult:
    """Exact l_inf FGL (t in {-1,1}^n0) for one or two hidden layers by branch and bound."""
    c, slopes = check_inputs(net, c, slopes)
    deadline = None if time_limit is None else time.perf_counter() + float(time_limit)
    if net.depth == 1:
        return bnb_one_layer(net, c, slopes, deadline=deadline, seed=seed, russian_doll=russian_doll,
                             starts=starts)
    if net.depth == 2:
        return bnb_two_layer(net, c, slopes, deadline=deadline, seed=seed, russian_doll=russian_doll,
                             tau_first=tau_first, starts=starts)
    raise InvalidInputError(f"branch and bound handles 1 or 2 hidden layers; this network has {net.depth}")
