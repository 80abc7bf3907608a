"""One hidden layer: the l_inf FGL as ||M||_{inf->1} (module docstring of ``bnb`` for the maths).

With v = W_1^T c, A = diag(v) W_0 and s = m + r*sigma: FGL = max_t sum_j r_j |A_j t| + m^T A t =
max_{x in {-1,1}^n} ||M x||_1, M = [m^T A; diag(r) A]. ``InfToOneSearch`` is the resumable branch and
bound on the columns of M (Russian-doll node bounds); ``OneLayerBnB`` maps it back to (t, s).
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ..model.network import Network
from ..polynomial import SlopeBox
from .fgl_common import BnBResult, evaluate_witness, rounding_bound
from ..problem import past
from .search import _batch_size, _decode, _dfs, _encode, _Range, _Ranges, _U64, doll_phase


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
            if past(deadline):
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


class InfToOneSearch:
    """max_{x in {-1,1}^n} ||M x||_1 by branch and bound on the columns of M, resumable.

    ``run(deadline)`` returns (lower, upper, x attaining lower, optimal, nodes so far). Bound at a node
    with x_0..x_{d-1} fixed (partial product c): ||c||_1 + B[d], B[d] >= max ||M_{:,d:} x||_1 (Russian-doll
    bounds; without them B[d] = sum |M_{:,d:}|, the interval bound). x_0 = +1 by symmetry. A later run
    continues the doll bounds and the open search of the earlier ones.
    """

    def __init__(self, M: np.ndarray, *, seed: int = 0, starts: int = 24, russian_doll: bool = True):
        self.M = M = np.asarray(M, dtype=np.float64)
        self.m, self.n = M.shape
        self.rng = np.random.default_rng(seed)
        self.MT = np.ascontiguousarray(M.T)
        self.colsum = np.abs(M).sum(0)
        self.batch = _batch_size(self.m, self.n)
        self.starts = starts
        self.last = {}  # b -> (k, x): optimum of the range k..b-1, extended to a start for range k-1..b-1
        self.ranges = _Ranges(self._solve_range)
        self.russian_doll = russian_doll
        self.doll_done = not russian_doll
        self.B = (np.full(self.n + 1, np.inf) if russian_doll else
                  np.concatenate([np.cumsum(self.colsum[::-1])[::-1], [0.0]]))
        if russian_doll and self.n:
            self.B[self.n] = 0.0
        self.nodes = 0
        self.upper = np.inf

    def _solve_range(self, k: int, b: int, Bk: np.ndarray, dl: float | None, final: bool, state) -> _Range:
        M, MT, starts = self.M, self.MT, self.starts
        root = float(self.colsum[k] + Bk[1])
        if past(dl) and not final and state is None:
            return _Range(-np.inf, root, None, False, 0)
        sub, MTk = M[:, k:b], MT[k:b]
        nk, n_words = b - k, (b - k + 63) // 64
        x0 = None
        if state is None:
            extra = None
            if b in self.last and self.last[b][0] == k + 1:
                xp = self.last[b][1]
                extra = np.array([np.concatenate([[1.0], xp]), np.concatenate([[-1.0], xp])])
            x0 = _heuristic_inf1(sub, self.rng, starts if final else max(4, starts // 2) if starts else 0, extra, dl)

        def children(S, D):
            col = MTk[D]
            S2 = np.concatenate([S + col, S - col])
            D2 = np.concatenate([D, D]) + 1
            return S2, np.abs(S2).sum(1) + Bk[D2]

        if state is None:
            out = _dfs(children, MTk[0].copy(), 1, np.zeros(n_words, dtype=_U64), root, nk,
                       float(np.abs(sub @ x0).sum()), _encode(x0, n_words), dl, self.batch)
        else:
            out = _dfs(children, None, 0, None, 0.0, nk, -np.inf, None, dl, self.batch, state=state)
        x = _decode(out.code, nk)
        if out.optimal:
            self.last[b] = (k, x)
        return _Range(out.value, out.upper, x, out.optimal, out.nodes, out.state)

    def run(self, deadline: float | None = None) -> tuple[float, float, np.ndarray, bool, int]:
        if self.n == 0 or self.m == 0:
            return 0.0, 0.0, np.ones(self.n), True, 0
        counter = [0]
        if not self.doll_done:
            # The bounds get at most half of the time; cut short, they are still valid upper bounds.
            self.doll_done = doll_phase(self.ranges, self.B, self.n, deadline, counter)
        out = self.ranges(0, self.n, self.B, deadline, final=True)
        self.nodes += counter[0] + out.nodes
        self.upper = min(self.upper, out.upper, float(self.colsum.sum()))
        return out.lower, max(out.lower, self.upper), out.x, out.optimal, self.nodes


def solve_inf_to_one(M: np.ndarray, *, deadline: float | None = None, seed: int = 0, starts: int = 24,
                     russian_doll: bool = True) -> tuple[float, float, np.ndarray, bool, int]:
    """max_{x in {-1,1}^n} ||M x||_1 in one run (InfToOneSearch): (lower, upper, x, optimal, nodes)."""
    return InfToOneSearch(M, seed=seed, starts=starts, russian_doll=russian_doll).run(deadline)


class OneLayerBnB:
    """Exact l_inf FGL of a one-hidden-layer network as ||M||_{inf->1}; ``run(deadline)`` resumes."""

    def __init__(self, net: Network, c: np.ndarray, slopes: SlopeBox, *, seed: int = 0,
                 russian_doll: bool = True, starts: int = 24):
        self.net, self.c, self.slopes = net, c, slopes
        M_full = one_layer_matrix(net, c, slopes)
        n0 = net.widths[0]
        A_cols = np.abs(M_full).sum(0) > 0 if M_full.size else np.zeros(n0, bool)
        self.cols = np.flatnonzero(A_cols)
        self.M = M = M_full[:, self.cols]
        # Branch on the inputs unless the units are clearly fewer: with the offsets (A^T m) on every row,
        # the unit-side search prunes worse at equal size (100x more nodes on banded layers).
        self.transpose = M.shape[0] < 0.75 * M.shape[1]
        self.search = InfToOneSearch(M.T if self.transpose else M, seed=seed, russian_doll=russian_doll,
                                     starts=starts)
        self.rounding_error = rounding_bound(float(np.abs(M).sum()), sum(M.shape))
        self.seconds = 0.0

    def run(self, deadline: float | None = None):
        t0 = time.perf_counter()
        net, c, slopes, M = self.net, self.c, self.slopes, self.M
        lower, upper, x, optimal, nodes = self.search.run(deadline)
        t = np.ones(net.widths[0])
        tx = np.where(M.T @ x >= 0, 1.0, -1.0) if self.transpose else x
        t[self.cols] = tx
        s = best_slopes_one(net, c, slopes, t)
        val = evaluate_witness(net, c, t, s)
        s_neg = best_slopes_one(net, c, slopes, -t)
        val_neg = evaluate_witness(net, c, -t, s_neg)
        if val_neg > val:  # the symmetric problem fixes t only up to a global sign
            t, s, val = -t, s_neg, val_neg
        self.seconds += time.perf_counter() - t0
        return BnBResult(upper=float(max(upper, val)), lower=val,
                         status="optimal" if optimal else "time_limit", t=t, s=s, nodes=nodes,
                         seconds=self.seconds, rounding_error=self.rounding_error,
                         info={"branching": "rows of M" if self.transpose else "inputs",
                               "variables": M.shape[0] if self.transpose else M.shape[1]})


def best_slopes_one(net: Network, c: np.ndarray, slopes: SlopeBox, t: np.ndarray) -> list[np.ndarray]:
    """Given t, the maximising s_1: hi where v_j (W_0 t)_j > 0, lo elsewhere."""
    z = (net.weights[1].T @ c) * (net.weights[0] @ t)
    return [np.where(z > 0, slopes.hi[0], slopes.lo[0])]
