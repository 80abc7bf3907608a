"""Exact FGL of a graph network: every vertex of its derivative box, enumerated top down, certified.

c^T J is multilinear in the free derivatives and linear in each free max-pool window's selection, and
||.||_q is convex, so max ||c^T J||_q over the box x window simplices is attained at a vertex: each free
neuron at an end of its slope interval, each free window at one of its inputs (``graph_bounds.
enumerate_fgl``, the float reference). Reverse mode visits the nodes from the output down and expands the
batch of partial choices at each free unit, so everything above a unit is computed once per prefix, not
once per vertex; batches beyond MAX_ROWS rows are split, depth first. The float maximum is certified as in
``methods.exact.exact_certified``: each entry of c^T J is a sum of path products, its rounding error is at
most gamma_K times the absolute path sum (every window sending its magnitude to all of its inputs, which
bounds every selection), and ||.||_q is monotone in |g|.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError, OutOfTime
from ..exact.enumerate import dual_norm
from ..graph_bounds import jacobian_at
from ..model.graph import GraphNetwork
from ..relaxations.jacobian_zonotope import graph_steps, path_magnitudes
from ..rounding import U, gamma_float, up

MAX_VERTICES = 2 ** 24        # vertices at most (the enumeration is exhaustive: no pruning)
MAX_ROWS = 4096               # partial choices expanded together (rows x node size floats per pending node)
DENSE_FRACTION, DENSE_BYTES = 0.25, 64 * 2 ** 20   # weights multiplied as dense arrays
SECONDS_PER_ENTRY = 4e-10     # auto's estimate: seconds per (row x weight) of the reverse pass (resmlp, 2^19
                              # vertices: 3.7 s measured and estimated)


@dataclass(frozen=True)
class GraphFGL:
    value: float           # the float maximum of ||c^T J||_q over the vertices
    upper: float           # value plus its rounding bound, rounded up: the certified FGL bound
    vertices: int


def units(g: GraphNetwork, slopes) -> list[tuple[int, int, np.ndarray]]:
    """The free units, output side first: (node, index, choices); choices are the two slope ends of a
    free neuron or the inputs of a free window."""
    acts = dict(zip(g.act_nodes, zip(slopes.lo, slopes.hi)))
    out = []
    for i in range(len(g.nodes) - 1, 0, -1):
        if i in acts:
            lo, hi = acts[i]
            out += [(i, int(j), np.array([lo[j], hi[j]], dtype=np.float64)) for j in np.flatnonzero(lo < hi)]
        elif i in slopes.fixed:
            win = slopes.taps(g, i)
            out += [(i, int(w), win[w][win[w] >= 0].astype(np.float64)) for w in np.flatnonzero(slopes.fixed[i] < 0)]
    return out


def vertex_count(g: GraphNetwork, slopes) -> int:
    return math.prod(len(ch) for _, _, ch in units(g, slopes))


def count_text(count: int) -> str:
    return f"{count:,}" if count < 10 ** 9 else f"about 2^{math.log2(count):.0f}"


def estimate_seconds(g: GraphNetwork, slopes) -> float:
    """Rows times weights of the reverse pass below each unit, summed over the units, plus the leaves'
    norms (the last activation's choices are added after the pass below it), from shapes."""
    free, below = units(g, slopes), _weights_below(g)
    last = free[-1][0] if free and free[-1][0] in g.act_nodes else None
    rows, cost = 1.0, float(below[len(g.nodes) - 1])   # floats: beyond 1e308 the estimate is inf
    for i, _, ch in free:
        if i == last:
            break
        rows *= len(ch)
        cost += rows * below[i]
    leaves = rows * 2 ** sum(1 for i, _, _ in free if i == last)
    return SECONDS_PER_ENTRY * (cost + leaves * g.input_size * (2 + sum(1 for i, _, _ in free if i == last)))


def _weights_below(g: GraphNetwork) -> list[int]:
    """Per node, the weights and sizes of the reverse pass from it to the input."""
    acc, total = [], 0
    for n in g.nodes:
        total += (n.W.nnz if n.W is not None else 0) + n.size
        acc.append(total)
    return acc


def graph_fgl(g: GraphNetwork, c: np.ndarray, norm: str, slopes, deadline: float | None = None,
              max_vertices: int = MAX_VERTICES) -> GraphFGL:
    """max ||c^T J||_q over every vertex of ``slopes`` (a GraphSlopes), with its certified upper end.
    Raises InvalidInputError beyond ``max_vertices`` vertices and OutOfTime at ``deadline``."""
    free = units(g, slopes)
    total = math.prod(len(ch) for _, _, ch in free)
    if total > max_vertices:
        raise InvalidInputError(f"the exact FGL of this graph has {count_text(total)} vertices ({len(free)} free units); "
                                f"the enumeration is limited to {max_vertices:,}")
    c = np.asarray(c, dtype=np.float64)
    acts = dict(zip(g.act_nodes, zip(slopes.lo, slopes.hi)))
    by_node: dict[int, list] = {}
    for i, j, ch in free:
        by_node.setdefault(i, []).append((j, ch))
    best = [-math.inf]
    dense = _dense_weights(g)
    # the last node with free units, when an activation: below it the pass is linear, so its 2^f choices
    # are added to one pass of the rest: g = base + sum_j s_j v_j L e_j (L the map from its input down)
    bottom = min(by_node) if by_node else 0
    lin = None
    if bottom in acts:
        cols = [j for j, _ in by_node[bottom]]
        unit = np.zeros((len(cols), g.nodes[bottom].size))
        unit[np.arange(len(cols)), cols] = 1.0
        lin = (cols, _fixed_pass(g, slopes, g.nodes[bottom].inputs[0], unit),
               np.array(np.meshgrid(*[ch for _, ch in by_node[bottom]], indexing="ij")).reshape(len(cols), -1).T)

    def finish(adj0: np.ndarray, deferred) -> None:
        if not adj0.shape[0]:
            return
        if deferred is None:
            best[0] = max(best[0], float(dual_norm(adj0, norm).max()))
            return
        _, L, combos = lin
        step = max(1, MAX_ROWS // combos.shape[0])
        for r in range(0, adj0.shape[0], step):
            coef = combos[None, :, :] * deferred[r:r + step, None, :]
            leaves = adj0[r:r + step, None, :] + coef @ L
            best[0] = max(best[0], float(dual_norm(leaves.reshape(-1, L.shape[1]), norm).max()))

    def descend(k: int, adj: dict, picks: dict, done: int) -> None:
        """Reverse mode from node k down; ``done`` free units of node k are already expanded."""
        if deadline is not None and time.perf_counter() >= deadline:
            raise OutOfTime("the exact FGL enumeration ran out of time")
        deferred = None
        for i in range(k, 0, -1):
            v = adj.get(i)
            if v is None:
                continue
            n, own = g.nodes[i], by_node.get(i, [])
            start = done if i == k else 0
            if lin is not None and i == bottom:
                deferred = v[:, lin[0]].copy()
                v[:, lin[0]] = 0.0
                start = len(own)
            for u in range(start, len(own)):
                j, ch = own[u]
                rows = v.shape[0]
                if rows * len(ch) > MAX_ROWS and rows > 1:
                    half = rows // 2
                    for part in (slice(0, half), slice(half, rows)):
                        descend(i, {key: a[part] for key, a in adj.items()},
                                {key: p[part] for key, p in picks.items()}, u)
                    return
                m = len(ch)
                adj = {key: np.repeat(a, m, axis=0) for key, a in adj.items()}
                picks = {key: np.repeat(p, m, axis=0) for key, p in picks.items()}
                v = adj[i]
                if i in acts:
                    v[:, j] *= np.tile(ch, rows)
                else:
                    picks[i][:, j] = np.tile(ch, rows).astype(np.int64)
            del adj[i]
            if n.kind == "affine":
                parts = [v @ dense[i] if i in dense else (n.W.T @ v.T).T]
            elif n.kind == "act":
                lo = acts[i][0]
                scale = lo.copy()
                for j, _ in own:
                    scale[j] = 1.0          # already multiplied by the chosen end
                parts = [v * scale]
            elif n.kind == "add":
                parts = [v] * len(n.inputs)
            elif n.kind == "concat":
                parts = np.split(v, np.cumsum([g.nodes[t].size for t in n.inputs])[:-1], axis=1)
            else:
                p = picks.pop(i) if i in picks else np.tile(slopes.fixed[i], (v.shape[0], 1))
                w = np.zeros((v.shape[0], g.nodes[n.inputs[0]].size))
                np.add.at(w, (np.repeat(np.arange(v.shape[0]), v.shape[1]), p.ravel()), v.ravel())
                parts = [w]
            for t, part in zip(n.inputs, parts):
                adj[t] = part.copy() if t not in adj else adj[t] + part
            for t in [t for t in n.inputs if t in slopes.fixed and t not in picks and t in by_node]:
                picks[t] = np.tile(slopes.fixed[t], (v.shape[0], 1))
        rows = next(iter(adj.values())).shape[0] if adj else 1
        finish(adj[0] if 0 in adj else np.zeros((rows, g.input_size)), deferred)

    picks0 = {}
    if len(g.nodes) - 1 in slopes.fixed and len(g.nodes) - 1 in by_node:
        picks0[len(g.nodes) - 1] = slopes.fixed[len(g.nodes) - 1][None, :].copy()
    descend(len(g.nodes) - 1, {len(g.nodes) - 1: c[None, :].copy()}, picks0, 0)
    value = max(best[0], 0.0)
    return GraphFGL(value, _certified(g, c, norm, slopes, value), total)


def _dense_weights(g: GraphNetwork) -> dict:
    """Dense copies of the affine weights at least DENSE_FRACTION full (BLAS beats sparse products there)."""
    return {i: n.W.toarray() for i, n in enumerate(g.nodes)
            if n.kind == "affine" and n.W.nnz >= DENSE_FRACTION * n.W.shape[0] * n.W.shape[1]
            and 8 * n.W.shape[0] * n.W.shape[1] <= DENSE_BYTES}


def _fixed_pass(g: GraphNetwork, slopes, start: int, V: np.ndarray) -> np.ndarray:
    """Rows V^T J_{x -> node start}: reverse mode below ``start``, where every unit is fixed."""
    return jacobian_at(g, None, [np.asarray(lo, dtype=np.float64)[None, :] for lo in slopes.lo],
                       {i: f[None, :] for i, f in slopes.fixed.items()}, start=(start, V))


def _certified(g: GraphNetwork, c: np.ndarray, norm: str, slopes, value: float) -> float:
    """``value`` plus gamma_K times the absolute path sums (K: summed node sizes and factors), rounded up."""
    mag = path_magnitudes(graph_steps(g, slopes), c)
    K = 2 * sum(n.size for n in g.nodes) + 4 * len(g.nodes) + 4   # 2x: the bottom node's choices are
    # added after the pass below it
    margin = float(dual_norm(4 * gamma_float(K) * mag[None, :], norm)[0])
    return up((value + margin) * (1 + 4 * U))
