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
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..slopes import SlopeBox
from .graph import GraphNetwork
from .network import Network, build_network

_LINEAR = ("affine", "add", "concat")


@dataclass(frozen=True)
class LiftedChain:
    net: Network            # weights exact; its activations are placeholders (the slope box defines the LMI)
    parts: tuple            # per hidden layer: ((act node index or -1 for identity, size), ...) in row order
    n_identity: int         # identity neurons (carries and materialised linear nodes)


def liftable(g: GraphNetwork, start: int = 0) -> bool:
    """Nodes after ``start`` are affine / act / add / concat only and read nothing before ``start``."""
    return all(n.kind in _LINEAR + ("act",) and min(n.inputs) >= start for n in g.nodes[start + 1:])


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
        raise ValueError("the subgraph has a node the lift does not handle (max pool) or reads before start")
    nodes = g.nodes
    size = [n.size for n in nodes]
    mat = {}                               # materialised node -> its pre-activation expression
    expr = {start: {start: None}}          # node -> {source: matrix}; None = identity

    def materialise(j):
        if not _is_value(expr[j], j):
            mat[j] = expr[j]
            expr[j] = {j: None}

    for i in range(start + 1, len(nodes)):
        n = nodes[i]
        if n.kind == "act":
            mat[i] = expr[n.inputs[0]]
            expr[i] = {i: None}
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
    order = sorted(mat)
    last_use = {}
    for j in order:
        for s in mat[j]:
            last_use[s] = max(last_use.get(s, -1), j)
    for s in expr[out]:
        last_use[s] = len(nodes)
    layers = [[start]]
    for j in order:
        layers.append([s for s in layers[-1] if last_use.get(s, -1) > j] + [j])
    weights = []
    for prev, cur in zip(layers[:-1], layers[1:]):
        rows = [(j, mat[j] if j == cur[-1] else {j: None}) for j in cur]
        weights.append(_stack(rows, prev, size))
    weights.append(_stack([(out, expr[out])], layers[-1], size))
    parts = tuple(tuple((j if nodes[j].kind == "act" else -1, size[j]) if j == cur[-1] else (-1, size[j])
                        for j in cur) for cur in layers[1:])
    n_id = int(sum(s for layer in parts for j, s in layer if j < 0))
    net = build_network(weights, [np.zeros(W.shape[0]) for W in weights], ["relu"] * (len(weights) - 1),
                        source="the lifted graph")
    return LiftedChain(net=net, parts=parts, n_identity=n_id)


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
    rows, [1, 1] on identity rows."""
    pos = {i: k for k, i in enumerate(g.act_nodes)}
    L, H = [], []
    for layer in lifted.parts:
        L.append(np.concatenate([np.asarray(lo[pos[j]], float) if j >= 0 else np.ones(s) for j, s in layer]))
        H.append(np.concatenate([np.asarray(hi[pos[j]], float) if j >= 0 else np.ones(s) for j, s in layer]))
    return SlopeBox(tuple(L), tuple(H))
