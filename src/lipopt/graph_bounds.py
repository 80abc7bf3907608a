"""Derivative boxes, interval bounds and the product bound over a GraphNetwork.

``GraphSlopes`` is the SlopeBox of a graph: per activation node (in node order, so ``lo``/``hi`` line up with
``GraphNetwork.act_nodes``) the interval of sigma' of every neuron, and per max-pool node the windows whose
argmax is certain over the domain (``fixed[node][w]`` = the selected input index, -1 when free) and the
inputs that can be a window's maximum (``windows``, ``pool_windows``: the others marked -1).

Interval bounds (outward rounded, ``domain``'s helpers): affine by |W| radius, activations monotone,
add by a sum rounded outward, concat by stacking, max pooling by [max of lowers, max of uppers]; a window is
fixed when one input's lower bound beats every other input's upper bound (locally, ``pool_windows`` drops
more inputs that cannot be the maximum).

Product bound: B(v) >= ||J_{x -> v}||_{p->p} in topological order, every step rounded up:
affine ||W||_p B(u); activation max|sigma'| B(u); add sum B(u_i); concat max B(u_i) (p = inf) or
(sum B(u_i)^p)^(1/p); max pooling m^(1/p) B(u) with m the largest number of windows that can select one input
(the Jacobian picks one input per window: ||J h||_p^p <= m ||h||_p^p). The output: ||c^T J||_q through the
last affine map exactly (||W^T c||_q B(u)), through an add summed, else B ||c||_q.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .domain import _act_interval, _affine_interval
from .errors import InvalidInputError
from .exact.enumerate import dual_norm
from .model.activations import slope_range
from .pool_windows import fixed_inputs, interval_candidates, window_values
from .model.graph import GraphNetwork
from .rounding import gamma_float, gamma_loose, relative_up, sum_up, up, widen_down, widen_up
from .baselines.product import _REL, _op_norm

ENUMERATION_LIMIT = 2 ** 16     # vertices at most for the brute-force FGL over a graph


@dataclass(frozen=True)
class GraphSlopes:
    lo: tuple[np.ndarray, ...]      # per activation node
    hi: tuple[np.ndarray, ...]
    fixed: dict                     # maxpool node id -> (n_windows,) selected input index or -1 (free)
    windows: dict = field(default_factory=dict)   # maxpool node id -> its candidates (``pool_windows``)

    def free_windows(self) -> int:
        return int(sum(np.count_nonzero(f < 0) for f in self.fixed.values()))

    def magnitude(self, k: int) -> np.ndarray:
        """max |slope| of each neuron of activation node k (in ``act_nodes`` order)."""
        return np.maximum(np.abs(self.lo[k]), np.abs(self.hi[k]))

    def taps(self, g: GraphNetwork, i: int) -> np.ndarray:
        """Pool node i's windows as the domain leaves them: inputs that cannot be the maximum are -1."""
        return self.windows.get(i, g.nodes[i].windows)


def global_graph_slopes(g: GraphNetwork) -> GraphSlopes:
    acts = [g.nodes[i] for i in g.act_nodes]
    return GraphSlopes(tuple(np.full(n.size, n.act.slope_lo) for n in acts),
                       tuple(np.full(n.size, n.act.slope_hi) for n in acts),
                       {i: np.full(g.nodes[i].size, -1, dtype=np.int64) for i in g.pool_nodes})


def check_dimension(g: GraphNetwork, domain) -> None:
    if domain.dim != g.input_size:
        raise InvalidInputError(f"the domain has dimension {domain.dim} but the network has {g.input_size} inputs")


def interval_bounds(g: GraphNetwork, domain) -> list[tuple[np.ndarray, np.ndarray]]:
    """[lo, hi] of every node's value over ``domain`` (outward rounded)."""
    check_dimension(g, domain)
    out = []
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(len(g.nodes)):
            out.append(node_interval(g, i, out, domain))
    return out


def node_interval(g: GraphNetwork, i: int, out: list, domain) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi] of node i's value from its inputs' enclosures ``out[j]`` (outward rounded)."""
    n = g.nodes[i]
    if n.kind == "input":
        return tuple(np.asarray(v, dtype=np.float64) for v in domain.bounding_box())
    ins = [out[j] for j in n.inputs]
    if n.kind == "affine" and n.inputs[0] == 0:  # the domain's support function: exact for balls
        slo, shi = domain.support(n.W.toarray())
        m = gamma_loose(2) * (np.maximum(np.abs(slo), np.abs(shi)) + np.abs(n.b))
        return widen_down(slo + n.b, m), widen_up(shi + n.b, m)
    if n.kind == "affine":
        return _affine_interval(n.W, n.b, *ins[0])
    if n.kind == "act":
        return _act_interval(n.act, *ins[0])
    if n.kind == "add":
        lo, hi = sum(a for a, _ in ins), sum(b for _, b in ins)
        m = gamma_loose(len(ins)) * sum(np.maximum(np.abs(a), np.abs(b)) for a, b in ins)
        return widen_down(lo, m), widen_up(hi, m)
    if n.kind == "concat":
        return np.concatenate([a for a, _ in ins]), np.concatenate([b for _, b in ins])
    lo, hi = ins[0]  # maxpool: max is monotone and exact in floating point
    return window_values(lo, n.windows).max(axis=1), window_values(hi, n.windows).max(axis=1)


def local_graph_slopes(g: GraphNetwork, domain, preactivation: str = "linear", seconds: float | None = None) -> GraphSlopes:
    """Derivative ranges over the node bounds of ``domain`` ("linear": back-substituted, ``graph_linear``,
    within a share of ``seconds``, never looser than "interval"); each max-pool window's candidates
    (``pool_windows``), fixed where one is left."""
    from .graph_linear import graph_linear_bounds
    windows = {}
    if preactivation == "linear":
        bounds = graph_linear_bounds(g, domain, seconds, windows)
    else:
        bounds = interval_bounds(g, domain)
        windows = {i: interval_candidates(g.nodes[i].windows, *bounds[g.nodes[i].inputs[0]]) for i in g.pool_nodes}
    los, his = [], []
    for i in g.act_nodes:
        n = g.nodes[i]
        zl, zh = bounds[n.inputs[0]]
        known = np.isfinite(zl) & np.isfinite(zh) & (zl <= zh)  # overflowed bounds leave the neuron free
        s, t = slope_range(n.act, np.where(known, zl, 0.0), np.where(known, zh, 0.0))
        los.append(np.where(known, s, n.act.slope_lo))
        his.append(np.where(known, t, n.act.slope_hi))
    fixed = {i: fixed_inputs(w) for i, w in windows.items()}
    return GraphSlopes(tuple(los), tuple(his), fixed, windows)


def graph_slopes(g: GraphNetwork, domain=None, preactivation: str = "linear", seconds: float | None = None) -> GraphSlopes:
    return global_graph_slopes(g) if domain is None else local_graph_slopes(g, domain, preactivation, seconds)


# -- product bound ---------------------------------------------------------------------------------

def _pool_multiplicity(windows: np.ndarray, fixed: np.ndarray, size: int) -> int:
    """Largest number of windows that can select one input: free windows having it as a candidate +
    fixed ones selecting it."""
    count = np.zeros(size, dtype=np.int64)
    free = fixed < 0
    idx = windows[free]
    np.add.at(count, idx[idx >= 0], 1)
    np.add.at(count, fixed[~free], 1)
    return int(count.max()) if size else 0


def node_norm_bounds(g: GraphNetwork, norm: str, slopes: GraphSlopes, selections: bool = False,
                     seconds: float = 0.0, upto: int | None = None) -> list[float]:
    """B[v] >= ||J_{x -> v}||_{p->p} for the nodes up to ``upto`` (every node by default), rounded up.
    With ``selections``, a max pool reading act o affine also takes ``pool_norms``' bound over its
    selections (l1 / l_inf: exact and cheap; l2: a search sharing ``seconds``, none when 0)."""
    p = {"inf": math.inf, "2": 2.0, "1": 1.0}[norm]
    deadline = time.perf_counter() + seconds
    last = len(g.nodes) - 1 if upto is None else upto
    pools = [i for i in g.pool_nodes if i <= last]
    smax = {i: float(max(np.abs(lo).max(initial=0.0), np.abs(hi).max(initial=0.0)))
            for i, lo, hi in zip(g.act_nodes, slopes.lo, slopes.hi)}
    B = []
    for i, n in enumerate(g.nodes[:last + 1]):
        ins = [B[j] for j in n.inputs]
        if n.kind == "input":
            b = 1.0
        elif n.kind == "affine":
            key = ("op_norm", i, norm)  # weights never change: spectral norms (svds) computed once
            if key not in g._cache:
                g._cache[key] = _op_norm(n.W, norm)
            b = relative_up(g._cache[key] * ins[0], 2)
        elif n.kind == "act":
            b = relative_up(smax[i] * ins[0], 2)
            u = g.nodes[n.inputs[0]]
            k = g.act_nodes.index(i)
            s = slopes.magnitude(k)
            if u.kind == "affine" and np.any(s < smax[i]):  # ||diag(s) W||_p B(input of W): per-neuron
                # slopes (dead rows vanish); with every |s_i| = max|s| this is the product already
                DW = sp.csr_array(sp.diags_array(s) @ u.W)
                b = min(b, relative_up(relative_up(_op_norm(DW, norm), 2) * B[u.inputs[0]], 2))
        elif n.kind == "add":
            b = sum_up(ins)
        elif n.kind == "concat":
            b = max(ins) if p == math.inf else sum_up(ins) if p == 1 else relative_up(math.sqrt(sum_up(
                [relative_up(v * v, 2) for v in ins])), 4)
        else:
            m = _pool_multiplicity(slopes.taps(g, i), slopes.fixed[i], g.nodes[n.inputs[0]].size)
            factor = 1.0 if p == math.inf else float(m) if p == 1 else up(math.sqrt(m))
            b = relative_up(factor * ins[0], 2)
            if selections:   # each pool: an equal share of the time the earlier ones left
                left = max(0.0, deadline - time.perf_counter()) / (len(pools) - pools.index(i))
                sel = _selection_bound(g, i, norm, slopes, left)
                if sel is not None:
                    b = min(b, relative_up(sel[0] * B[sel[1]], 2))
        B.append(b)
    return B


def _selection_bound(g: GraphNetwork, i: int, norm: str, slopes: GraphSlopes, seconds: float):
    """(bound, node) with sup ||J_{node -> pool i}||_p <= bound over the pool's selections, when pool i
    reads an affine node, directly or through an activation; None otherwise."""
    from .pool_norms import candidates, channel_groups, selection_norm_1_inf, selection_norm_upper
    n = g.nodes[i]
    u = g.nodes[n.inputs[0]]
    if u.kind == "act" and g.nodes[u.inputs[0]].kind == "affine":
        k = g.act_nodes.index(n.inputs[0])
        r = slopes.magnitude(k)
        u = g.nodes[u.inputs[0]]
    elif u.kind == "affine":
        r = np.ones(u.size)
    else:
        return None
    cand = candidates(slopes.taps(g, i), slopes.fixed[i])
    if norm != "2":
        return selection_norm_1_inf(u.W, r, cand, norm), u.inputs[0]
    value = selection_norm_upper(u.W, r, cand, channel_groups(n.shape, n.size), seconds, cache=g._cache)
    return None if value is None else (value, u.inputs[0])


def graph_product_bound(g: GraphNetwork, c: np.ndarray, norm: str, slopes: GraphSlopes | None = None) -> float:
    """Upper bound on sup ||grad c^T f||_q over the slope box (valid in exact arithmetic)."""
    slopes = slopes if slopes is not None else global_graph_slopes(g)
    B = node_norm_bounds(g, norm, slopes)
    q = {"inf": 1, "2": 2, "1": np.inf}[norm]
    budget = [64]  # recursion through adds: at most this many calls, then the plain bound

    def out(i: int, vec: np.ndarray) -> float:
        n = g.nodes[i]
        budget[0] -= 1
        if budget[0] > 0 and n.kind == "affine":
            WT = n.W.T
            gv = np.abs(WT @ vec) + 2 * gamma_float(len(vec) + 2) * (abs(WT) @ np.abs(vec))
            return relative_up(float(np.linalg.norm(gv, q)) * (1 + _REL) * B[n.inputs[0]], 4)
        if budget[0] > 0 and n.kind == "add":
            return sum_up([out(j, vec) for j in n.inputs])
        if budget[0] > 0 and n.kind == "concat":
            cuts = np.cumsum([g.nodes[j].size for j in n.inputs])[:-1]
            return sum_up([out(j, v) for j, v in zip(n.inputs, np.split(vec, cuts))])
        return relative_up(float(np.linalg.norm(vec, q)) * (1 + _REL) * B[i], 4)

    return out(len(g.nodes) - 1, np.asarray(c, dtype=np.float64))


# -- brute force: the FGL over the slope box and the pool simplices (tiny graphs, the tests' reference) --

def jacobian_at(g: GraphNetwork, c: np.ndarray, slopes: list, picks: dict, start: tuple | None = None) -> np.ndarray:
    """Rows c^T J for V given derivative choices: ``slopes`` one (V, size) array per act node, ``picks``
    per pool node the (V, n_windows) selected input indices (either may have one row for all); reverse
    mode with these derivatives. ``start`` = (node, rows): the pass from those adjoint rows at that node
    instead of from c (only the nodes below it are read)."""
    if start is None:
        V = slopes[0].shape[0] if slopes else next(iter(picks.values())).shape[0] if picks else 1
        top, rows = len(g.nodes) - 1, np.tile(np.asarray(c, dtype=np.float64), (V, 1))
    else:
        top, rows = start
        V = rows.shape[0]
    adj = [None] * len(g.nodes)
    adj[top] = rows
    act_pos = {i: k for k, i in enumerate(g.act_nodes)}
    for i in range(top, 0, -1):
        v, n = adj[i], g.nodes[i]
        if v is None:
            continue
        if n.kind == "affine":
            parts = [(n.W.T @ v.T).T]
        elif n.kind == "act":
            parts = [v * slopes[act_pos[i]]]
        elif n.kind == "add":
            parts = [v] * len(n.inputs)
        elif n.kind == "concat":
            parts = np.split(v, np.cumsum([g.nodes[j].size for j in n.inputs])[:-1], axis=1)
        else:
            w = np.zeros((V, g.nodes[n.inputs[0]].size))
            np.add.at(w, (np.repeat(np.arange(V), v.shape[1]), np.broadcast_to(picks[i], v.shape).ravel()), v.ravel())
            parts = [w]
        for j, p in zip(n.inputs, parts):
            adj[j] = p if adj[j] is None else adj[j] + p
    return adj[0] if adj[0] is not None else np.zeros((V, g.input_size))


def enumerate_fgl(g: GraphNetwork, c: np.ndarray, norm: str, slopes: GraphSlopes | None = None,
                  limit: int = ENUMERATION_LIMIT) -> float:
    """max ||c^T J||_q over every vertex: each free neuron at an end of its slope interval, each free
    pool window at one of its inputs (J is multilinear in these; the norm is convex, so a vertex attains
    the maximum over the box x simplices). Float arithmetic: a reference for tests, not a certificate."""
    slopes = slopes if slopes is not None else global_graph_slopes(g)
    free_s = [(k, j) for k, (lo, hi) in enumerate(zip(slopes.lo, slopes.hi)) for j in np.flatnonzero(lo < hi)]
    free_w = [(i, w) for i in g.pool_nodes for w in np.flatnonzero(slopes.fixed[i] < 0)]
    choices = [(0, 1)] * len(free_s) + [[int(t) for t in slopes.taps(g, i)[w] if t >= 0] for i, w in free_w]
    total = math.prod(len(ch) for ch in choices)
    if total > limit:
        raise InvalidInputError(f"{total} vertices exceed the enumeration limit {limit}")
    combos = np.array(list(itertools.product(*choices)), dtype=np.int64).reshape(total, len(choices))
    s = [np.tile(np.asarray(lo, dtype=np.float64), (total, 1)) for lo in slopes.lo]
    for col, (k, j) in enumerate(free_s):
        s[k][:, j] = np.where(combos[:, col] == 1, slopes.hi[k][j], slopes.lo[k][j])
    picks = {i: np.tile(slopes.fixed[i], (total, 1)) for i in g.pool_nodes}
    for col, (i, w) in enumerate(free_w, start=len(free_s)):
        picks[i][:, w] = combos[:, col]
    return float(dual_norm(jacobian_at(g, c, s, picks), norm).max(initial=0.0))


# -- interval Jacobian bound: the backward pass c^T J as intervals over the slope box and pool simplices --

def graph_jacobian_interval(g: GraphNetwork, c: np.ndarray, slopes: GraphSlopes, keep: dict | None = None
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Rigorous enclosure [lo, hi] of every reachable c^T J (relaxations.lifted's directed rounding):
    affine W^T [l, u]; activation [s_lo, s_hi] * [l, u]; add passes the adjoint to every input; concat
    splits it; a free max-pool window may send its adjoint to any of its inputs, or none (hull with 0),
    a fixed one to its selected input. Adjoints meeting at a node are summed, widened by
    gamma_loose(k) times their mass."""
    from .relaxations.lifted import product_interval, transpose_interval
    parts: list = [[] for _ in g.nodes]
    c = np.asarray(c, dtype=np.float64)
    parts[-1].append((c, c))
    act_pos = {i: k for k, i in enumerate(g.act_nodes)}
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(len(g.nodes) - 1, -1, -1):
            n = g.nodes[i]
            if not parts[i]:
                if i == 0:
                    return np.zeros(g.input_size), np.zeros(g.input_size)
                continue
            lo, hi = _interval_sum(parts[i])
            if keep is not None:  # every node's adjoint enclosure (graph_interval_bound's cuts)
                keep[i] = (lo, hi)
            if i == 0:
                return lo, hi
            if n.kind == "affine":
                out = [transpose_interval(n.W, lo, hi)]
            elif n.kind == "act":
                k = act_pos[i]
                out = [product_interval(np.asarray(slopes.lo[k], float), np.asarray(slopes.hi[k], float), lo, hi)]
            elif n.kind == "add":
                out = [(lo, hi)] * len(n.inputs)
            elif n.kind == "concat":
                cuts = np.cumsum([g.nodes[j].size for j in n.inputs])[:-1]
                out = list(zip(np.split(lo, cuts), np.split(hi, cuts)))
            else:
                out = [_pool_adjoint(slopes.taps(g, i), slopes.fixed[i], lo, hi, g.nodes[n.inputs[0]].size)]
            for j, p in zip(n.inputs, out):
                parts[j].append(p)
    raise AssertionError("unreachable")  # pragma: no cover


def _interval_sum(items) -> tuple[np.ndarray, np.ndarray]:
    if len(items) == 1:
        return items[0]
    lo, hi = sum(a for a, _ in items), sum(b for _, b in items)
    m = gamma_loose(len(items)) * sum(np.maximum(np.abs(a), np.abs(b)) for a, b in items)
    return widen_down(lo, m), widen_up(hi, m)


def _pool_adjoint(W: np.ndarray, fixed: np.ndarray, lo: np.ndarray, hi: np.ndarray, size: int):
    free = fixed < 0
    rows, taps = np.nonzero(free[:, None] & (W >= 0))
    idx = np.concatenate([W[rows, taps], fixed[~free]])
    a = np.concatenate([np.minimum(lo[rows], 0.0), lo[~free]])
    b = np.concatenate([np.maximum(hi[rows], 0.0), hi[~free]])
    out_lo, out_hi, mass, count = np.zeros(size), np.zeros(size), np.zeros(size), np.zeros(size)
    np.add.at(out_lo, idx, a)
    np.add.at(out_hi, idx, b)
    np.add.at(mass, idx, np.maximum(np.abs(a), np.abs(b)))
    np.add.at(count, idx, 1.0)
    m = gamma_loose(int(count.max(initial=0.0)) + 1) * mass
    return widen_down(out_lo, m), widen_up(out_hi, m)


def _dual_norm_up(lo: np.ndarray, hi: np.ndarray, norm: str) -> float:
    """max ||a||_q over the box [lo, hi] (q dual to ``norm``), rounded up."""
    a = np.maximum(np.abs(lo), np.abs(hi))
    if norm == "inf":
        return sum_up(a)
    if norm == "2":
        return up(math.sqrt(sum_up(np.nextafter(a * a, np.inf))))
    return float(a.max(initial=0.0))


def cut_nodes(g: GraphNetwork) -> list[int]:
    """Nodes every input-output path passes through (the input and the output included)."""
    cons = g.consumers()
    out = []
    for v in range(len(g.nodes)):
        seen, stack = {v}, [0] if v != 0 else []
        while stack:
            u = stack.pop()
            for w in cons[u]:
                if w not in seen:
                    seen.add(w)
                    stack.append(w)
        if v == 0 or len(g.nodes) - 1 not in seen or v == len(g.nodes) - 1:
            out.append(v)
    return out


def graph_interval_bound(g: GraphNetwork, c: np.ndarray, norm: str, slopes: GraphSlopes | None = None) -> float:
    """min over cut nodes v of B(v) max ||a_v||_q: c^T J = a_v^T J_{x->v} when every path passes v, with
    the adjoint a_v in its interval enclosure and ||J_{x->v}||_{p->p} <= B(v) (node_norm_bounds). v = the
    input is the plain interval bound (B = 1); later cuts trade the interval tail for a norm head. For
    l_inf also sum_i |a_v,i| r_v,i with per-row head bounds (row_norm_bounds)."""
    slopes = slopes if slopes is not None else global_graph_slopes(g)
    keep: dict = {}
    lo, hi = graph_jacobian_interval(g, c, slopes, keep)
    best = _dual_norm_up(lo, hi, norm)
    B = node_norm_bounds(g, norm, slopes, selections=norm != "2")   # l1 / l_inf selections: exact, cheap
    R = row_norm_bounds(g, slopes) if norm == "inf" else None
    for v in cut_nodes(g):
        if v in keep and v > 0:
            best = min(best, relative_up(B[v] * _dual_norm_up(*keep[v], norm), 2))
            if R is not None:  # ||a^T J||_1 <= sum_i |a_i| ||J_i||_1 (rows of the head)
                a = np.maximum(np.abs(keep[v][0]), np.abs(keep[v][1]))
                best = min(best, sum_up(np.nextafter(a * R[v], np.inf)))
    return best


def row_norm_bounds(g: GraphNetwork, slopes: GraphSlopes) -> list[np.ndarray]:
    """r[v]_i >= ||row i of J_{x -> v}||_1 over the slope box and pool simplices (the l_inf head of
    graph_interval_bound): input 1; affine |W| r; activation max|s_i| r_i; add the sum; concat stacks;
    max pooling the largest r of a free window (a convex combination of its rows), the fixed input's r.
    Nonnegative sums: float results widened by gamma_loose of their length, then one ulp up."""
    act_pos = {i: k for k, i in enumerate(g.act_nodes)}
    R: list = []
    with np.errstate(over="ignore", invalid="ignore"):
        for i, n in enumerate(g.nodes):
            ins = [R[j] for j in n.inputs]
            if n.kind == "input":
                r = np.ones(n.size)
            elif n.kind == "affine":
                k = int(np.diff(n.W.indptr).max(initial=0)) + 2
                r = np.nextafter((abs(n.W) @ ins[0]) * (1 + gamma_loose(k)), np.inf)
            elif n.kind == "act":
                k = act_pos[i]
                r = np.nextafter(slopes.magnitude(k) * ins[0], np.inf)
            elif n.kind == "add":
                r = np.nextafter(sum(ins) * (1 + gamma_loose(len(ins))), np.inf)
            elif n.kind == "concat":
                r = np.concatenate(ins)
            else:
                f = slopes.fixed[i]
                free = window_values(ins[0], slopes.taps(g, i)).max(axis=1)
                r = np.where(f >= 0, ins[0][np.maximum(f, 0)], free)
            R.append(r)
    return R
