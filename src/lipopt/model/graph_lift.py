"""A graph of affine / act / add / concat nodes as an equivalent chain, for the layer-structured LipSDP.

Every activation output (and the input) is a *materialised* value; every other node is a linear expression
sum_j M_j v_j of materialised values v_j, built from the graph's own matrices without any arithmetic (an
affine node contributes its W, an add stacks terms with distinct sources, a concat stacks rows), so the
expressions are exact. Where exactness would need a float matrix product or sum (an affine map reading
an add, a concat or another affine map; an add whose terms share a source) the node read is materialised
too, as an *identity* activation: slope box [1, 1]. Chain hidden layer k then holds the k-th materialised
value and every earlier one still read later, carried through identity neurons (weight I, slopes [1, 1]).

For every slope choice of the graph's activations the chain, with slope 1 on the identity neurons, has the
same Jacobian (the identity neurons only copy), so its gradient set over the lifted slope box equals the
graph's: every LipSDP-Neuron bound of the chain bounds the graph (residual blocks: one layer per branch).

A max pool becomes a tournament: max(a, b) = b + relu(a - b), the differences materialised round by round
as *tournament* neurons (slope box [0, 1], any activation before the pool), so the chain computes the
same function. At the box's vertices its Jacobians are exactly the graph's window selections; inside it
they are their convex combinations, so the chain's gradient set contains the graph's and has the same
FGL globally (above it where a local domain fixes a window's maximum).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..slopes import SlopeBox
from .graph import GraphNetwork
from .network import Network, build_network

_LINEAR = ("affine", "add", "concat")
POOL_RELU = -2          # parts marker: a max pool's tournament neuron relu(a - b), slopes [0, 1]


@dataclass(frozen=True)
class LiftedChain:
    net: Network            # weights exact; its activations are placeholders (the slope box defines the LMI)
    parts: tuple            # per hidden layer: ((act node index or -1 for identity, size), ...) in row order
    n_identity: int         # identity neurons (carries and materialised linear nodes)
    dag: tuple = ()         # (inputs, output): the same map without carries (``DagInputs``)


@dataclass(frozen=True)
class DagInputs:
    """The lifted chain without its carries: hidden layer l's *new* value (the last part of ``parts[l-1]``)
    has pre-activation sum_j A_j x_j over earlier values x_j (j = 0: the start, j = k: layer k's new
    value), exact matrices from the lift; the output is sum_j B_j x_j. A carry only copies a value, so
    substituting it changes no gradient: the LMI on these values is the chain's restricted to the
    subspace where every carry equals its origin."""
    inputs: tuple           # per hidden layer l = 1..d: ((j, A_j as CSR), ...), j < l
    output: tuple           # ((j, B_j as CSR), ...)


def liftable(g: GraphNetwork, start: int = 0, pools: bool = True) -> bool:
    """Nodes after ``start`` are affine / act / add / concat (/ max pool with ``pools``) and read nothing
    before ``start``."""
    kinds = _LINEAR + ("act", "maxpool") if pools else _LINEAR + ("act",)
    return all(n.kind in kinds and min(n.inputs) >= start for n in g.nodes[start + 1:])


def _is_value(e: dict, j: int) -> bool:
    return len(e) == 1 and j in e and e[j] is None


def _expr_sum(terms: list[dict]) -> dict | None:
    """Sum of expressions with pairwise distinct sources (None on overlap)."""
    out = {}
    for t in terms:
        for j, M in t.items():
            if j in out:
                return None
            out[j] = M
    return out


def lift(g: GraphNetwork, start: int = 0) -> LiftedChain:
    """The chain equivalent to the subgraph from node ``start`` (its input) to the output (module doc)."""
    key = ("lift", start)
    if key not in g._cache:       # weights never change: lifted once per graph
        g._cache[key] = _lift(g, start)
    return g._cache[key]


def _lift(g: GraphNetwork, start: int) -> LiftedChain:
    if not liftable(g, start):
        raise ValueError("the subgraph has a node the lift does not handle or reads before start")
    nodes = g.nodes
    size = [n.size for n in nodes]         # grows by the max pools' tournament neurons (ids >= len(nodes))
    mat = {}                               # materialised node -> its pre-activation expression
    key = {}                               # materialised node -> its place in the chain
    expr = {start: {start: None}}          # node -> {source: matrix}; None = identity

    def materialise(j):
        if not _is_value(expr[j], j):
            mat[j], key[j] = expr[j], j
            expr[j] = {j: None}

    for i in range(start + 1, len(nodes)):
        n = nodes[i]
        if n.kind == "act":
            mat[i], key[i] = expr[n.inputs[0]], i
            expr[i] = {i: None}
        elif n.kind == "maxpool":
            materialise(n.inputs[0])       # the tournament reads single entries of one value
            expr[i] = _tournament(i, n, size, mat, key)
        elif n.kind == "affine":
            materialise(n.inputs[0])       # W reads one value: no product of matrices
            expr[i] = {n.inputs[0]: n.W}
        elif n.kind == "add":
            e = _expr_sum([expr[j] for j in n.inputs])
            if e is None:                  # shared sources: each term becomes a value of its own
                for j in n.inputs:
                    materialise(j)
                e = _expr_sum([expr[j] for j in n.inputs])
            if e is None:                  # a value added to itself: an exact integer multiple of I
                e = {j: sp.eye_array(size[j], format="csr") * float(n.inputs.count(j)) for j in set(n.inputs)}
            expr[i] = e
        else:                              # concat: rows stacked, zero blocks where a part does not read a source
            srcs = sorted({s for j in n.inputs for s in expr[j]})
            expr[i] = {s: sp.csr_array(sp.vstack([_block(expr[j].get(s, False), size[j], size[s])
                                                  for j in n.inputs], format="csr")) for s in srcs}
    out = len(nodes) - 1
    order = sorted(mat, key=key.get)
    last_use = {}                          # value -> key of its last reader
    for j in order:
        for s in mat[j]:
            last_use[s] = max(last_use.get(s, -1), key[j])
    for s in expr[out]:
        last_use[s] = np.inf
    layers = [[start]]
    for j in order:
        layers.append([s for s in layers[-1] if last_use.get(s, -1) > key[j]] + [j])
    weights = []
    for prev, cur in zip(layers[:-1], layers[1:]):
        rows = [(j, mat[j] if j == cur[-1] else {j: None}) for j in cur]
        weights.append(_stack(rows, prev, size))
    weights.append(_stack([(out, expr[out])], layers[-1], size))
    parts = tuple(tuple((_part(nodes, j), size[j]) if j == cur[-1] else (-1, size[j])
                        for j in cur) for cur in layers[1:])
    n_id = int(sum(s for layer in parts for j, s in layer if j == -1))
    net = build_network(weights, [np.zeros(W.shape[0]) for W in weights], ["relu"] * (len(weights) - 1),
                        source="the lifted graph")
    pos = {start: 0, **{j: i + 1 for i, j in enumerate(order)}}

    def terms(e):
        return tuple((pos[s], sp.csr_array(_block(e[s], size[s] if e[s] is None else e[s].shape[0], size[s])))
                     for s in sorted(e, key=pos.get))
    dag = DagInputs(inputs=tuple(terms(mat[j]) for j in order), output=terms(expr[out]))
    return LiftedChain(net=net, parts=parts, n_identity=n_id, dag=dag)


def _part(nodes, j: int) -> int:
    if j >= len(nodes):
        return POOL_RELU
    return j if nodes[j].kind == "act" else -1


def _tournament(i: int, n, size: list, mat: dict, key: dict) -> dict:
    """Max pool node i (node n) over its input value as rounds of max(a, b) = b + relu(a - b): each round pairs the candidates
    of every window and materialises their differences as tournament neurons (ids appended to ``size``).
    Returns the pool's expression. Candidates are rows of an expression whose matrices have entries in
    {-1, 0, 1} (disjoint supports within a window), so every row operation below is exact."""
    cand = [[int(r) for r in w if r >= 0] for w in n.windows]
    if not all(cand):
        raise ValueError("a max pool window has no input (all padding)")
    rounds = int(np.ceil(np.log2(max(map(len, cand)))))
    j = n.inputs[0]
    E = {j: sp.eye_array(size[j], format="csr")}        # candidate rows over the sources
    for t in range(1, rounds + 1):
        a = [c[p] for c in cand for p in range(0, len(c) - 1, 2)]
        b = [c[p + 1] for c in cand for p in range(0, len(c) - 1, 2)]
        d = len(size)
        size.append(len(a))
        mat[d] = {s: sp.csr_array(M[a] - M[b]) for s, M in E.items()}
        key[d] = i - 1 + t / (rounds + 1)        # after the pool's input, before any reader of the pool
        n_rows = next(iter(E.values())).shape[0]
        E = {s: sp.csr_array(sp.vstack([M, M[b]], format="csr")) for s, M in E.items()}
        E[d] = sp.csr_array(sp.vstack([sp.csr_array((n_rows, len(a))), sp.eye_array(len(a), format="csr")],
                                      format="csr"))
        new, k = [], 0
        for c in cand:
            pairs = len(c) // 2
            new.append([n_rows + k + q for q in range(pairs)] + ([c[-1]] if len(c) % 2 else []))
            k += pairs
        cand = new
    rows = [c[0] for c in cand]
    return {s: sp.csr_array(M[rows]) for s, M in E.items()}


def _stack(rows, prev, size):
    """The matrix mapping the values ``prev`` (stacked) to the rows' expressions (stacked)."""
    return sp.csr_array(sp.block_array([[_block(e.get(s, False), size[j], size[s]) for s in prev]
                                        for j, e in rows], format="csr"))


def _block(M, n_out: int, n_in: int):
    if M is False:
        return sp.csr_array((n_out, n_in))
    return sp.eye_array(n_in, format="csr") if M is None else sp.csr_array(M)


def lifted_slopes(g: GraphNetwork, lifted: LiftedChain, lo: tuple, hi: tuple) -> SlopeBox:
    """The chain's slope box: the graph's box (lo/hi per act node, in g.act_nodes order) on activation
    rows, [1, 1] on identity rows, [0, 1] on tournament rows."""
    pos = {i: k for k, i in enumerate(g.act_nodes)}
    L, H = [], []
    for layer in lifted.parts:
        L.append(np.concatenate([np.asarray(lo[pos[j]], float) if j >= 0 else np.full(s, 0.0 if j == POOL_RELU else 1.0)
                                 for j, s in layer]))
        H.append(np.concatenate([np.asarray(hi[pos[j]], float) if j >= 0 else np.ones(s) for j, s in layer]))
    return SlopeBox(tuple(L), tuple(H))
