"""Two hidden layers: FGL = max over (t, tau) of sum_i phi_i(x_i y_i) (module docstring of ``bnb``).

x = W_0 t, y = y0 + Y tau (tau the free layer-2 signs), phi_i(z) = m_i z + r_i |z| (s_1 maximised in
closed form). ``TwoLayerSearch`` is the resumable branch and bound (corner and Russian-doll node bounds);
``TwoLayerBnB`` maps it back to (t, s).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..model.network import Network
from ..polynomial import SlopeBox
from .fgl_common import BnBResult, evaluate_witness, rounding_bound
from ..problem import past
from .search import _batch_size, _decode, _dfs, _encode, _Range, _Ranges, _U64, doll_phase

TAU_FIRST_MAX = 16  # branch on the layer-2 signs first when there are at most this many


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
        if it and past(deadline):
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
            if past(deadline):
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


class TwoLayerSearch:
    """Branch and bound on (tau, t), resumable; ``run(deadline)`` returns (lower, upper, t, tau, optimal,
    nodes so far) in the reduced form.

    Node bound: min(corner bound, sum_i max_y phi_i(xF_i y_i) + B[#t fixed]) where xF is the fixed part
    of x and B the Russian-doll bounds on the FGL of the remaining inputs (subadditivity of phi).
    """

    def __init__(self, F: TwoLayerForm, *, seed: int = 0, starts: int = 24, russian_doll: bool = True,
                 tau_first: bool | None = None):
        self.F = F
        n1, n0 = F.W0.shape
        n2 = F.Y.shape[1]
        self.n0, self.n1, self.n2 = n0, n1, n2
        self.tau_first = n2 <= TAU_FIRST_MAX if tau_first is None else tau_first
        self.rng = np.random.default_rng(seed)
        self.starts = starts
        self.absW = np.abs(F.W0)
        absY = np.abs(F.Y)
        self.ry_all = absY.sum(1)
        self.tailY = np.vstack([np.cumsum(absY[:, ::-1], 1)[:, ::-1].T, np.zeros((1, n1))])  # (n2+1, n1)
        self.batch = _batch_size(2 * n1, n0 + n2)
        self.last = {}  # b -> (k, t, tau): optimum of the range k..b-1
        self.ranges = _Ranges(self._solve_range)
        self.doll_done = not russian_doll
        self.B = None
        if russian_doll:
            self.B = np.full(n0 + 1, np.inf)
            self.B[n0] = 0.0
        self.nodes = 0
        self.upper = np.inf

    def _solve_range(self, k: int, b: int, Bk: np.ndarray | None, dl: float | None, final: bool, state) -> _Range:
        W0, y0, Y, m, r = self.F.W0, self.F.y0, self.F.Y, self.F.m, self.F.r
        n1, n2, tau_first, absW, tailY = self.n1, self.n2, self.tau_first, self.absW, self.tailY
        lo1, hi1 = m - r, m + r
        alo1, ahi1 = np.abs(lo1), np.abs(hi1)
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
            Ry = np.vstack([np.tile(self.ry_all, (nt, 1)), tailY])
            t_fixed = np.minimum(depth, nt)
            fast_from = nt
        rd_of_depth = None if Bk is None else Bk[t_fixed]
        root = float(_corner_bound(np.zeros(n1), Rx[0], y0, Ry[0], m, r))
        if not final and past(dl) and state is None:
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

        if state is None:
            extra = None
            starts = self.starts
            if starts and b in self.last and self.last[b][0] == k + 1:  # the previous range's optimum, extended
                tp, up = self.last[b][1], self.last[b][2]
                extra = (np.array([np.concatenate([[1.0], tp]), np.concatenate([[-1.0], tp])]), np.array([up, up]))
            tk, uk, inc = _heuristic_two(Wk, y0, Y, m, r, self.rng,
                                         starts if final else starts and max(4, starts // 3), extra, dl)
            n_words = (nv + 63) // 64
            code0 = _encode(np.concatenate([uk, tk] if tau_first else [tk, uk]), n_words)
            S0 = np.concatenate([np.zeros(n1), y0])
            out = _dfs(children, S0, 0, np.zeros(n_words, _U64), root, nv, inc, code0, dl, self.batch)
        else:
            out = _dfs(children, None, 0, None, 0.0, nv, -np.inf, None, dl, self.batch, state=state)
        xs = _decode(out.code, nv)
        t_k, u_k = (xs[n2:], xs[:n2]) if tau_first else (xs[:nt], xs[nt:])
        if out.optimal:
            self.last[b] = (k, t_k, u_k)
        return _Range(out.value, out.upper, (t_k, u_k), out.optimal, out.nodes, out.state)

    def run(self, deadline: float | None = None):
        n0, n2 = self.n0, self.n2
        if n0 == 0 or self.n1 == 0:  # no live path: P is identically zero
            return 0.0, 0.0, np.ones(n0), np.ones(n2), True, 0
        counter = [0]
        if not self.doll_done:
            # The bounds get at most half of the time; cut short, they are still valid upper bounds.
            self.doll_done = doll_phase(self.ranges, self.B, n0, deadline, counter)
        out = self.ranges(0, n0, self.B, deadline, final=True)
        self.nodes += counter[0] + out.nodes
        self.upper = min(self.upper, out.upper)
        t, tau = out.x
        return out.lower, max(out.lower, self.upper), t, tau, out.optimal, self.nodes


def solve_two_layer(F: TwoLayerForm, *, deadline: float | None = None, seed: int = 0, starts: int = 24,
                    russian_doll: bool = True, tau_first: bool | None = None):
    """One run of TwoLayerSearch: (lower, upper, t, tau, optimal, nodes) in the reduced form."""
    return TwoLayerSearch(F, seed=seed, starts=starts, russian_doll=russian_doll, tau_first=tau_first).run(deadline)


class TwoLayerBnB:
    """Exact l_inf FGL of a two-hidden-layer network; ``run(deadline)`` resumes the search."""

    def __init__(self, net: Network, c: np.ndarray, slopes: SlopeBox, *, seed: int = 0,
                 russian_doll: bool = True, tau_first: bool | None = None, starts: int = 24):
        self.net, self.c, self.slopes = net, c, slopes
        self.F = F = two_layer_form(net, c, slopes)
        self.search = TwoLayerSearch(F, seed=seed, russian_doll=russian_doll, tau_first=tau_first, starts=starts)
        mass = float(((np.abs(F.m) + F.r) * np.abs(F.W0).sum(1) * (np.abs(F.y0) + np.abs(F.Y).sum(1))).sum())
        self.rounding_error = rounding_bound(mass, sum(F.W0.shape) + F.Y.shape[1])
        self.seconds = 0.0

    def run(self, deadline: float | None = None):
        t0 = time.perf_counter()
        net, c, slopes, F = self.net, self.c, self.slopes, self.F
        lower, upper, tx, tau, optimal, nodes = self.search.run(deadline)
        t = np.ones(net.widths[0])
        t[F.inputs] = tx
        lo2, hi2 = slopes.lo[1], slopes.hi[1]
        s2 = lo2.copy()
        s2[F.free2] = np.where(tau > 0, hi2[F.free2], lo2[F.free2])
        y = net.weights[1].T @ (s2 * (net.weights[2].T @ c))
        x = net.weights[0] @ t
        s1 = np.where(x * y > 0, slopes.hi[0], slopes.lo[0])
        val = evaluate_witness(net, c, t, [s1, s2])
        self.seconds += time.perf_counter() - t0
        return BnBResult(upper=float(max(upper, val)), lower=val,
                         status="optimal" if optimal else "time_limit", t=t, s=[s1, s2], nodes=nodes,
                         seconds=self.seconds, rounding_error=self.rounding_error,
                         info={"branching": ("layer-2 signs, then inputs" if self.search.tau_first
                                             else "inputs, then layer-2 signs"),
                               "variables": F.W0.shape[1] + F.Y.shape[1]})
