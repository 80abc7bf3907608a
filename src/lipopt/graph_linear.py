"""Back-substituted (CROWN-style) bounds on a graph's node values over a domain.

Every activation's input node T is written as a linear form in the input, for each bound direction:
from Lambda_T = I, nodes are substituted in decreasing order (an affine node by W x + b, an add by its
terms, a concat by its parts, an activation sigma(z) by its linear relaxation aL z + bL <= sigma(z) <=
aU z + bU on the bounds of z, chosen by the sign of each coefficient, a max pool by y_w >= x_j* (the
window's input with the largest lower bound) and y_w <= max hi (= x_j* when the window is decided)),
down to Lambda_0 x + const, bounded by the domain's support function. Each float product and sum is
charged gamma_loose(k) times the magnitudes it combined (values bounded by the enclosures already
computed), so the bounds hold in exact arithmetic. Every node's enclosure is intersected with its
interval one (``graph_bounds.node_interval``): never looser.
"""
from __future__ import annotations

import numpy as np

from .domain import relaxation
from .pool_windows import drop_dominated, fixed_inputs, interval_candidates, window_pairs, window_values
from .model.graph import GraphNetwork
from .rounding import gamma_loose as _gamma
from .rounding import widen_down, widen_up

SECONDS_PER_UNIT = 1.2e-9    # one target row times one weight (or one entry of a node) below it, both directions:
                             # resnet_cnn's four targets, 3.7e9 units, took 4.3 s
DOMAIN_SHARE = 0.35          # of a time limit, for back-substitution (a 15 s call back-substitutes all of
                             # resnet_cnn; shorter ones keep interval bounds on its later blocks and their time)
MAX_ENTRIES = 8_000_000    # dense Lambda entries per target and node (64 MB; a few such matrices and their
                           # temporaries are alive at once, well under a GB): larger targets keep interval bounds


def graph_linear_bounds(g: GraphNetwork, domain, seconds: float | None = None,
                        windows: dict | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """[lo, hi] of every node's value over ``domain``; the activations' inputs back-substituted, in order,
    while the estimated time (``target_seconds``, from shapes) fits DOMAIN_SHARE of ``seconds``: the
    targets after that keep their interval bounds (the same ones for the same budget). Max-pool windows
    lose the inputs that cannot be their maximum (``pool_windows``; differences back-substituted within
    the same allowance); ``windows``, if given, receives them (pool node -> effective windows)."""
    from .graph_bounds import check_dimension, node_interval
    check_dimension(g, domain)
    cost = target_seconds(g)
    allowance = None if seconds is None else DOMAIN_SHARE * float(seconds)
    spent = 0.0
    out = []
    parts = _Parts(g, out)
    below = _below_units(g)
    with np.errstate(over="ignore", invalid="ignore"):
        for i, n in enumerate(g.nodes):
            if n.kind == "maxpool":
                left = None if allowance is None else allowance - spent
                eff, used = _pool_candidates(g, i, out, domain, parts, below, left)
                spent += used
                parts.windows[i] = eff
                if windows is not None:
                    windows[i] = eff
                lo = window_values(out[n.inputs[0]][0], n.windows).max(axis=1)
                hi = window_values(out[n.inputs[0]][1], eff).max(axis=1)
                out.append((lo, hi))
                continue
            lo, hi = node_interval(g, i, out, domain)
            if i in cost and (allowance is None or spent + cost[i] <= allowance):
                spent += cost[i]
                blo, bhi = _back_substitute(g, i, out, domain, parts)
                ok = np.isfinite(blo) & np.isfinite(bhi)
                lo = np.where(ok, np.maximum(lo, blo), lo)
                hi = np.where(ok, np.minimum(hi, bhi), hi)
            out.append((lo, hi))
    return out


def _nnz(W) -> int:
    return W.nnz if hasattr(W, "nnz") else int(np.size(W))


class _Parts:
    """What every target's back-substitution reuses, computed once per call: an affine node's W^T, |W| and
    longest column (its products' length), an activation's relaxation on its input's final enclosure."""

    def __init__(self, g: GraphNetwork, out: list):
        self.g, self.out, self.cache = g, out, {}
        self.windows = {}                    # pool node -> effective windows (``pool_windows``)

    def affine(self, j: int):
        if j not in self.cache:
            W = self.g.nodes[j].W
            k = int(np.diff(W.tocsc().indptr).max(initial=0)) if hasattr(W, "tocsc") else W.shape[0]
            self.cache[j] = (W.T.tocsr() if hasattr(W, "tocsr") else W.T, abs(W), k + 2)
        return self.cache[j]

    def relaxation(self, j: int):
        if j not in self.cache:
            n = self.g.nodes[j]
            self.cache[j] = relaxation(n.act, *self.out[n.inputs[0]])
        return self.cache[j]


def target_seconds(g: GraphNetwork) -> dict:
    """{target node: estimated seconds of its back-substitution} for the activations' inputs that are
    back-substituted (not one affine map of the input, whose support is already exact; within
    MAX_ENTRIES)."""
    biggest = max((n.size for n in g.nodes), default=0)
    below = _below_units(g)
    out = {}
    for i in sorted({g.nodes[a].inputs[0] for a in g.act_nodes}):
        n = g.nodes[i]
        if i > 0 and n.kind != "act" and not (n.kind == "affine" and n.inputs[0] == 0) and n.size * biggest <= MAX_ENTRIES:
            out[i] = SECONDS_PER_UNIT * 2 * n.size * (below[i] + (_nnz(n.W) if n.kind == "affine" else 0))
    return out


def _below_units(g: GraphNetwork) -> list:
    """Cost units of the nodes before each one (a weight, or 8 per entry of other nodes)."""
    below, units = [], 0.0
    for n in g.nodes:
        below.append(units)
        units += _nnz(n.W) if n.kind == "affine" else 8 * n.size
    return below


def _pool_candidates(g: GraphNetwork, i: int, out: list, domain, parts: _Parts, below: list,
                     allowance: float | None) -> tuple[np.ndarray, float]:
    """(effective windows of pool node i, estimated seconds spent): the interval test, then the
    back-substituted differences of the remaining pairs (of the pre-activations when the pool reads a
    nondecreasing activation) when their estimated time fits ``allowance``."""
    n = g.nodes[i]
    src = n.inputs[0]
    eff = interval_candidates(n.windows, *out[src])
    W, A, B = window_pairs(eff)
    if W.size == 0:
        return eff, 0.0
    m = g.nodes[src]
    T = m.inputs[0] if m.kind == "act" and m.act.nondecreasing else src
    seconds = SECONDS_PER_UNIT * W.size * (below[T] + (_nnz(g.nodes[T].W) if g.nodes[T].kind == "affine" else 0))
    if allowance is not None and seconds > allowance:
        return eff, 0.0
    k, j = eff[W, A], eff[W, B]
    chunk = max(1, MAX_ENTRIES // max(nd.size for nd in g.nodes))
    upper = np.empty(W.size)
    for a in range(0, W.size, chunk):
        rows = np.arange(a, min(a + chunk, W.size))
        D = np.zeros((rows.size, g.nodes[T].size))
        D[np.arange(rows.size), k[rows]] = 1.0
        D[np.arange(rows.size), j[rows]] = -1.0
        upper[rows] = _substitute(g, T, out, domain, parts, D, upper=True)
    return drop_dominated(eff, W, A, upper), seconds


def _mag(b: tuple) -> np.ndarray:
    return np.maximum(np.abs(b[0]), np.abs(b[1]))


def _back_substitute(g: GraphNetwork, T: int, out: list, domain, parts: _Parts) -> tuple[np.ndarray, np.ndarray]:
    I = np.eye(g.nodes[T].size)
    return (_substitute(g, T, out, domain, parts, I, upper=False),
            _substitute(g, T, out, domain, parts, I, upper=True))


def _substitute(g: GraphNetwork, T: int, out: list, domain, parts: _Parts, rows: np.ndarray,
                upper: bool) -> np.ndarray:
    """Rigorous upper (or lower) bounds over ``domain`` of rows @ (node T's value), back-substituted."""
    m = rows.shape[0]
    pend = {T: [rows]}                   # node -> coefficient matrices still to be summed
    const, err = np.zeros(m), np.zeros(m)

    def push(j, M):
        pend.setdefault(j, []).append(M)

    def add_const(v):
        nonlocal const
        const = const + v
        return _gamma(2) * np.abs(const)
    for j in range(T, -1, -1):
        if j not in pend:
            continue
        terms = pend.pop(j)
        L = terms[0] if len(terms) == 1 else sum(terms[1:], terms[0])
        if len(terms) > 1:               # the float sum of the terms
            err += _gamma(len(terms)) * (sum(np.abs(t) for t in terms) @ _mag(out[j]))
        if j == 0:
            smin, smax = domain.support(L)
            v, s = (smax, smax) if upper else (smin, smin)
            total = v + const
            e = err + _gamma(2) * (np.abs(s) + np.abs(const))
            return widen_up(total, e) if upper else widen_down(total, e)
        n = g.nodes[j]
        if n.kind == "affine":
            src = n.inputs[0]
            WT, absW, k = parts.affine(j)
            M = np.asarray((WT @ L.T).T)
            err += _gamma(k) * (np.abs(L) @ (absW @ _mag(out[src])))   # (|L| |W|) |x|
            err += _gamma(L.shape[1]) * (np.abs(L) @ np.abs(n.b)) + add_const(L @ n.b)
            push(src, M)
        elif n.kind == "act":
            src = n.inputs[0]
            aL, bL, aU, bU = parts.relaxation(j)
            P, N = np.maximum(L, 0.0), np.minimum(L, 0.0)
            a_p, b_p, a_n, b_n = (aU, bU, aL, bL) if upper else (aL, bL, aU, bU)
            Lz = P * a_p + N * a_n
            err += _gamma(1) * (np.abs(Lz) @ _mag(out[src]))
            err += _gamma(L.shape[1]) * (np.abs(L) @ np.maximum(np.abs(bL), np.abs(bU))) + add_const(P @ b_p + N @ b_n)
            push(src, Lz)
        elif n.kind == "add":
            for k_ in n.inputs:
                push(k_, L)
        elif n.kind == "concat":
            at = 0
            for k_ in n.inputs:
                size = g.nodes[k_].size
                push(k_, L[:, at:at + size])
                at += size
        else:
            _pool(n, parts.windows.get(j, n.windows), L, upper, out, push, add_const, err)
    raise AssertionError("back-substitution did not reach the input")


def _pool(n, W, L, upper: bool, out: list, push, add_const, err) -> None:
    """y_w >= x_j* always; y_w <= max_i hi_i over the candidates W (``pool_windows``), or = x_j* when
    x_j* is the window's only candidate."""
    src = n.inputs[0]
    lo, hi = out[src]
    Lw = window_values(lo, W)
    Hw = window_values(hi, W)
    rows = np.arange(W.shape[0])
    best = np.argmax(Lw, axis=1)
    star = W[rows, best]
    decided = fixed_inputs(W) >= 0
    top = np.where(decided, 0.0, Hw.max(axis=1))
    P, N = np.maximum(L, 0.0), np.minimum(L, 0.0)
    via_x, via_c = (N, P) if upper else (P, N)       # the side bounded by x_j* / by the window's top
    coef = via_x + np.where(decided[None, :], via_c, 0.0)
    const_part = np.where(decided[None, :], 0.0, via_c)
    M = np.zeros((L.shape[0], lo.shape[0]))
    np.add.at(M.T, star, coef.T)
    shared = int(np.bincount(star, minlength=lo.shape[0]).max(initial=1))
    err += _gamma(shared) * (np.abs(coef) @ _mag(out[src])[star])
    err += _gamma(L.shape[1]) * (np.abs(const_part) @ np.abs(top)) + add_const(const_part @ top)
    push(src, M)
