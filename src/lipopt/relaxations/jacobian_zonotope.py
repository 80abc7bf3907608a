"""Affine-arithmetic (zonotope) enclosure of the backward pass c^T J over the derivative box, any graph.

Every adjoint is an affine form  v = c + G e + d,  e in [-1, 1]^m noise symbols shared by all nodes, |d| <= w
(a box part). Reverse mode from c: an affine node maps it exactly (W^T c, W^T G, |W|^T w); an add copies it,
a concat splits it. A free derivative s in [lo, hi] is s = mid + r eta with a fresh symbol eta, so s v =
mid v + r c eta + r (G e) eta + s d: the product (G e) eta lies in [-||G_row||_1, ||G_row||_1] and becomes one
more fresh symbol (affine arithmetic, Stolfi & de Figueiredo; the backward analogue of DeepZ). A free max-pool
window sends its adjoint to one of its candidates (``pool_windows``): a tournament of pairwise choices
(1 + eta)/2 and (1 - eta)/2 that share eta, so the weights always sum to 1; a window reading a nondecreasing
activation whose candidates share one derivative box takes that box once, after the pool (``_pool_first``).
At the input g = c + G e + d and

    ||g||_1 <= sum_i (a_i c_i + b_i + |a_i| w_i) + sum_j |sum_i a_i G_ij|     (|z| <= a_i z + b_i on z_i's range)

(squares' chords for ||g||_2, then the square root; ||g||_inf by the ranges): symbols shared across
coordinates cancel, which interval bounds cannot do. Symbols beyond the memory budget go to the box part.

Certified: the pass runs in floats; every quantity it forms is a sum of path products whose absolute values
sum to at most M (|c| through |W|^T, max|s|, every input of a window), so each coordinate of c, of the rows of
G and of w errs by at most 4 gamma_K M_i (K: node sizes, symbols and nodes, generously). The ranges are widened
by that before the chords are taken, the error enters the sums times |a_i|, and the final sums are rounded up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import memory
from ..errors import OutOfTime
from ..pool_windows import fixed_inputs
from ..problem import past
from ..rounding import gamma, next_up, sum_up, up, widen_down, widen_up
from .lifted import chords

BYTES_PER_SYMBOL_ENTRY = 8 * 4    # one float per node entry and symbol, a few nodes pending at once (residuals)
SYMBOL_SHARE = 0.25               # of the memory budget for the symbol columns


@dataclass(frozen=True)
class Step:
    """One node of the reverse pass: kind in input | affine | act | add | concat | maxpool."""
    kind: str
    inputs: tuple
    size: int
    W: object = None
    lo: np.ndarray | None = None      # act: derivative interval
    hi: np.ndarray | None = None
    windows: np.ndarray | None = None  # maxpool: (n_out, k) inputs, -1 padding
    fixed: np.ndarray | None = None    # maxpool: selected input, -1 free


@dataclass(frozen=True)
class ZonotopeBound:
    value: float          # certified upper bound on max ||c^T J||_q over the box
    symbols: int          # noise symbols used
    boxed: int            # free units whose terms went to the box part (symbol budget)


def chain_steps(net, slopes) -> list[Step]:
    """The chain x -> W_0 -> act -> ... -> W_d as steps."""
    steps = [Step("input", (), net.widths[0])]
    for l in range(net.depth):
        steps.append(Step("affine", (len(steps) - 1,), net.widths[l + 1], W=net.weights[l]))
        steps.append(Step("act", (len(steps) - 1,), net.widths[l + 1], lo=np.asarray(slopes.lo[l], float),
                          hi=np.asarray(slopes.hi[l], float)))
    steps.append(Step("affine", (len(steps) - 1,), net.widths[-1], W=net.weights[net.depth]))
    return steps


def graph_steps(g, slopes, pool_first: bool = True) -> list[Step]:
    """The graph's nodes as steps; with ``pool_first`` every act -> max pool pair (a nondecreasing
    activation read by the pool only) becomes three steps (``_pool_first``)."""
    acts = dict(zip(g.act_nodes, zip(slopes.lo, slopes.hi)))
    steps = [Step(n.kind, tuple(n.inputs), n.size, W=n.W,
                  lo=np.asarray(acts[i][0], float) if i in acts else None,
                  hi=np.asarray(acts[i][1], float) if i in acts else None,
                  windows=slopes.taps(g, i) if n.kind == "maxpool" else None,
                  fixed=slopes.fixed.get(i) if n.kind == "maxpool" else None)
             for i, n in enumerate(g.nodes)]
    consumers = g.consumers()
    pairs = {g.nodes[p].inputs[0]: p for p in (g.pool_nodes if pool_first else ())
             if g.nodes[g.nodes[p].inputs[0]].kind == "act" and g.nodes[g.nodes[p].inputs[0]].act.nondecreasing
             and consumers[g.nodes[p].inputs[0]] == [p]}
    if not pairs:
        return steps
    out, new = [], {}
    for i, st in enumerate(steps):
        ins = tuple(new[t] for t in st.inputs)
        if i in pairs:
            first, pool, after = _pool_first(st, steps[pairs[i]])
            out.append(Step("act", ins, first.size, lo=first.lo, hi=first.hi))
            out.append(Step("maxpool", (len(out) - 1,), pool.size, windows=pool.windows, fixed=pool.fixed))
            new[i] = len(out) - 1
            pairs[i] = after
        elif st.kind == "maxpool" and st.inputs[0] in pairs:
            out.append(Step("act", ins, st.size, lo=pairs[st.inputs[0]].lo, hi=pairs[st.inputs[0]].hi))
            new[i] = len(out) - 1
        else:
            out.append(Step(st.kind, ins, st.size, W=st.W, lo=st.lo, hi=st.hi, windows=st.windows, fixed=st.fixed))
            new[i] = len(out) - 1
    return out


def _pool_first(act: Step, pool: Step) -> tuple[Step, Step, Step]:
    """act -> max pool as act' -> pool -> act'' (the steps' inputs left to the caller).

    max_k sigma(z_k) = sigma(max_k z_k) for nondecreasing sigma. A window is *shared* when its inputs are
    in no other window and, leaving out those whose box is {0}, have one common box that holds 0 (or none
    was left out): the derivative of its maximum is in that box (where a left-out input is the max, every
    candidate is < 0 or tied on a flat piece: that 0 is the window's Jacobian, and the box holds it). A
    shared window takes its box once, after the pool (act''), its inputs pass with slope 1 (act'): one
    symbol per window instead of one per candidate, the same Jacobians. Every other window keeps all its
    inputs with their own boxes (act'; one derivative per input, shared by overlapping windows) and slope
    1 after the pool."""
    W = pool.windows.copy()
    chosen = pool.fixed >= 0                      # a window fixed by the domain or by a branch
    W[chosen] = -1
    W[chosen, 0] = pool.fixed[chosen]
    valid = W >= 0
    at = np.maximum(W, 0)
    lo, hi = act.lo[at], act.hi[at]
    nonzero = valid & ~((lo == 0) & (hi == 0))
    cand = np.where(nonzero.any(axis=1)[:, None], nonzero, valid)
    wlo = np.where(cand, lo, np.inf).min(axis=1)
    whi = np.where(cand, hi, -np.inf).max(axis=1)
    uses = np.bincount(W[valid], minlength=act.size)
    same = np.all(~cand | ((lo == wlo[:, None]) & (hi == whi[:, None]) & (uses[at] == 1)), axis=1)
    zero_ok = ~np.any(valid & ~cand, axis=1) | ((wlo <= 0) & (whi >= 0))
    shared = same & zero_ok
    W = np.where(np.where(shared[:, None], cand, valid), W, -1)
    own = np.ones(act.size, dtype=bool)
    own[W[shared[:, None] & (W >= 0)]] = False
    one = np.ones(act.size)
    first = Step("act", act.inputs, act.size, lo=np.where(own, act.lo, one), hi=np.where(own, act.hi, one))
    after = Step("act", (), pool.size, lo=np.where(shared, wlo, 1.0), hi=np.where(shared, whi, 1.0))
    return first, Step("maxpool", (), pool.size, windows=W, fixed=fixed_inputs(W)), after


def symbols_needed(steps: list[Step]) -> int:
    """Two per free neuron (its own and its product term), two per tournament match of a free window."""
    m = 0
    for s in steps:
        if s.kind == "act":
            m += 2 * int(np.count_nonzero(s.lo < s.hi))
        elif s.kind == "maxpool":
            k = (s.windows >= 0).sum(axis=1)
            m += 2 * int(np.sum(np.maximum(k - 1, 0)[s.fixed < 0]))
    return m


def zonotope_bound(steps: list[Step], c: np.ndarray, norm: str, deadline: float | None = None) -> ZonotopeBound:
    """Certified max ||c^T J||_q over the steps' derivative box (q dual to ``norm``); OutOfTime at
    ``deadline`` (time.perf_counter(), checked between nodes)."""
    sizes = [s.size for s in steps]
    cap = int(SYMBOL_SHARE * memory.current() // (BYTES_PER_SYMBOL_ENTRY * max(sizes)))
    m = min(symbols_needed(steps), cap)
    pass_ = _Pass(steps, m, deadline)
    pass_.run(np.asarray(c, dtype=np.float64))
    c0, G0, w0 = pass_.form(0)
    M = path_magnitudes(steps, c)
    K = 2 * sum(sizes) + 2 * m + 4 * len(steps) + 8
    err = next_up(12.0 * gamma(K) * M)   # c, the rows of G and w, 4 gamma_K M each
    return ZonotopeBound(_norm_bound(c0, G0, w0, err, norm), pass_.used, pass_.boxed)


class _Pass:
    """The reverse pass over affine forms (c, G, w) per node; symbols are columns of G, numbered in order."""

    def __init__(self, steps: list[Step], m: int, deadline: float | None = None):
        self.steps, self.m, self.used, self.boxed, self.deadline = steps, m, 0, 0, deadline
        self.c, self.G, self.w = {}, {}, {}

    def form(self, i: int):
        n = self.steps[i].size
        if i not in self.c:
            return np.zeros(n), np.zeros((n, 0)), np.zeros(n)
        return self.c.pop(i), self.G.pop(i)[:, :self.used], self.w.pop(i)

    def _add(self, t: int, c, G, w) -> None:
        if t not in self.c:
            self.c[t], self.w[t] = c.copy(), w.copy()
            self.G[t] = np.zeros((self.steps[t].size, self.m))
            self.G[t][:, :G.shape[1]] = G
        else:
            self.c[t] += c
            self.w[t] += w
            self.G[t][:, :G.shape[1]] += G

    def _new(self, k: int) -> int | None:
        """First column of k fresh symbols, or None when the budget is spent."""
        if self.used + k > self.m:
            return None
        self.used += k
        return self.used - k

    def run(self, c: np.ndarray) -> None:
        last = len(self.steps) - 1
        self._add(last, c, np.zeros((c.size, 0)), np.zeros(c.size))
        for i in range(last, 0, -1):
            if i not in self.c:
                continue
            if past(self.deadline):
                raise OutOfTime("the zonotope Jacobian bound ran out of time")
            s = self.steps[i]
            cv, G, w = self.form(i)
            if s.kind == "affine":
                Wt = s.W.T
                self._add(s.inputs[0], np.asarray(Wt @ cv).ravel(), np.asarray(Wt @ G), np.asarray(abs(Wt) @ w).ravel())
            elif s.kind == "act":
                self._act(s, cv, G, w)
            elif s.kind == "add":
                for t in s.inputs:
                    self._add(t, cv, G, w)
            elif s.kind == "concat":
                cut = np.cumsum([0] + [self.steps[t].size for t in s.inputs])
                for t, a, b in zip(s.inputs, cut[:-1], cut[1:]):
                    self._add(t, cv[a:b], G[a:b], w[a:b])
            elif s.kind == "maxpool":
                self._pool(s, cv, G, w)

    def _act(self, s: Step, cv, G, w) -> None:
        mid = 0.5 * s.lo + 0.5 * s.hi
        r = np.where(s.lo < s.hi, next_up(np.maximum(s.hi - mid, mid - s.lo)), 0.0)  # [mid - r, mid + r] covers
        free = np.flatnonzero(r > 0)
        own = r[free] * cv[free]                        # r c eta
        prod = r[free] * np.abs(G[free]).sum(axis=1)    # r (G e) eta: one fresh symbol each
        G = G * mid[:, None]
        w = (np.abs(mid) + r) * w
        col = self._new(2 * free.size)
        if col is None:   # out of symbols: both terms of every free neuron to the box part
            w[free] += np.abs(own) + prod
            self.boxed += free.size
        elif free.size:
            G = np.hstack([G, np.zeros((G.shape[0], col + 2 * free.size - G.shape[1]))])
            G[free, col + np.arange(free.size)] = own
            G[free, col + free.size + np.arange(free.size)] = prod
        self._add(s.inputs[0], mid * cv, G, w)

    def _pool(self, s: Step, cv, G, w) -> None:
        n_in = self.steps[s.inputs[0]].size
        cin, win = np.zeros(n_in), np.zeros(n_in)
        Gin = np.zeros((n_in, self.m))
        fixed = np.flatnonzero(s.fixed >= 0)
        np.add.at(cin, s.fixed[fixed], cv[fixed])
        np.add.at(win, s.fixed[fixed], w[fixed])
        np.add.at(Gin, s.fixed[fixed], np.pad(G[fixed], ((0, 0), (0, self.m - G.shape[1]))))
        for o in np.flatnonzero(s.fixed < 0):
            cand = s.windows[o][s.windows[o] >= 0]
            g = np.zeros(self.m)
            g[:G.shape[1]] = G[o]
            self._match(cand, cv[o], g, w[o], cin, Gin, win)
        self._add(s.inputs[0], cin, Gin[:, :self.used], win)

    def _match(self, cand, c, g, w, cin, Gin, win) -> None:
        """Route the form (c, g, w) to one of ``cand``: halves A, B get (1 + eta)/2 and (1 - eta)/2 of it."""
        if cand.size == 1:
            cin[cand[0]] += c
            Gin[cand[0]] += g
            win[cand[0]] += w
            return
        col = self._new(2)
        half = cand.size // 2
        for part, sign in ((cand[:half], 1.0), (cand[half:], -1.0)):
            gp = 0.5 * g
            if col is None:   # eta (c + g e) to the box part
                wp = w + 0.5 * abs(c) + 0.5 * np.abs(g).sum()
            else:
                gp = gp.copy()
                gp[col] += sign * 0.5 * c
                gp[col + 1] += sign * 0.5 * np.abs(g).sum()
                wp = w
            self._match(part, 0.5 * c, gp, wp, cin, Gin, win)
        if col is None:
            self.boxed += 1


def path_magnitudes(steps: list[Step], c: np.ndarray) -> np.ndarray:
    """Absolute path sums to the input: |c| through |W|^T, max(|lo|, |hi|), and every input of a free
    window (the selected one of a fixed window): bounds every quantity of the pass."""
    mag = {len(steps) - 1: np.abs(np.asarray(c, dtype=np.float64))}
    for i in range(len(steps) - 1, 0, -1):
        v, s = mag.pop(i, None), steps[i]
        if v is None:
            continue
        if s.kind == "affine":
            parts = [np.asarray(abs(s.W).T @ v).ravel()]
        elif s.kind == "act":
            parts = [v * np.maximum(np.abs(s.lo), np.abs(s.hi))]
        elif s.kind == "add":
            parts = [v] * len(s.inputs)
        elif s.kind == "concat":
            parts = np.split(v, np.cumsum([steps[t].size for t in s.inputs])[:-1])
        else:
            out = np.zeros(steps[s.inputs[0]].size)
            free = s.fixed < 0
            for col in range(s.windows.shape[1]):
                ok = free & (s.windows[:, col] >= 0)
                np.add.at(out, s.windows[ok, col], v[ok])
            np.add.at(out, s.fixed[~free], v[~free])
            parts = [out]
        for t, part in zip(s.inputs, parts):
            mag[t] = part if t not in mag else mag[t] + part
    return next_up(mag.get(0, np.zeros(steps[0].size)) * (1 + 1e-12))


def _norm_bound(c: np.ndarray, G: np.ndarray, w: np.ndarray, err: np.ndarray, norm: str) -> float:
    """max ||c + G e + d||_q over e in [-1, 1]^m, |d| <= w, every coordinate also off by at most err."""
    absG = np.abs(G)
    rad = absG.sum(axis=1) + w
    margin = err + next_up(gamma(G.shape[1] + 3) * (rad + np.abs(c)))
    lo, hi = widen_down(c - rad, margin), widen_up(c + rad, margin)
    if norm == "1":
        return up(float(np.maximum(np.abs(lo), np.abs(hi)).max(initial=0.0)))
    a, b = chords(lo, hi, "abs" if norm == "inf" else "square")
    aa = np.abs(a)
    terms = a * c + b + aa * (w + err)
    h = a @ G
    slack = [gamma(4) * (np.abs(a * c) + np.abs(b) + 2 * aa * (w + err)), gamma(c.size + 2) * (aa @ absG)]
    total = sum_up(np.concatenate([terms, np.abs(h), 2 * slack[0], 2 * slack[1]]))
    return total if norm == "inf" else up(math.sqrt(max(total, 0.0)))
