"""Cliques of the sparse Krivine certificate, read off the network's connectivity.

A product h may only involve variables of one clique. Coverage needs every monomial of P (a sub-path
of a nonzero input->output path) inside some clique; all strategies here guarantee it:
- ``inputs``: per input i, t_i and every free hidden neuron on a path from i to the output (the
  original LiPopt code's choice);
- ``units``: per neuron of the last hidden layer, its receptive field (inputs and free hidden neurons
  with a path to it) and itself (the paper's choice);
- ``dense``: one clique with every variable (exact at degree = number of variables, tiny nets only).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from ..model.network import Network
from ..polynomial import NormGradientPolynomial
from ..slopes import SlopeBox

STRATEGIES = ("inputs", "units", "dense")


def network_cliques(net: Network, c: np.ndarray, slopes: SlopeBox, poly: NormGradientPolynomial,
                    strategy: str = "inputs") -> list[np.ndarray]:
    """Cliques (sorted arrays of polynomial variable ids) for ``strategy``."""
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"unknown clique strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if strategy == "dense":
        return [np.arange(poly.n_vars)]
    d = net.depth
    n0 = net.widths[0]
    if d == 0:  # linear network: every monomial is a single t_i
        return [np.array([i]) for i in range(n0)]
    var_ids = _hidden_var_ids(poly, net)
    pattern, on_path = _paths(net, c, slopes)
    if strategy == "inputs":
        # reach[l][u, i] != 0 iff neuron u of hidden layer l+1 lies on a path from input i to the output
        reach, blocks = sp.identity(n0, format="csr"), []
        for l in range(d):
            reach = sp.csr_array(sp.diags_array(on_path[l].astype(float)) @ (pattern[l] @ reach))
            blocks.append(reach)
        members = sp.csc_array(sp.vstack(blocks))
        ids_all = np.concatenate(var_ids)
        cliques = []
        for i in range(n0):
            ids = ids_all[members.indices[members.indptr[i]:members.indptr[i + 1]]]
            cliques.append(np.unique(np.concatenate([[i], ids[ids >= 0]])))
        return _dedupe(cliques)
    # units: receptive field of each live neuron of the last hidden layer
    last = np.flatnonzero(on_path[d - 1])
    field = sp.csr_array(sp.identity(net.widths[d], format="csr")[last])
    parts = [field]  # rows: last-layer neurons; columns: neurons of layer d
    for l in range(d - 1, -1, -1):
        field = sp.csr_array(field @ pattern[l])  # columns: neurons of layer l (0 = inputs)
        if l:
            field = sp.csr_array(field @ sp.diags_array(on_path[l - 1].astype(float)))
        parts.append(field)
    parts = parts[::-1]  # layer 0 (inputs) ... layer d
    cliques = []
    for r in range(len(last)):
        members = []
        for l, part in enumerate(parts):
            cols = part.indices[part.indptr[r]:part.indptr[r + 1]]
            members.append(cols if l == 0 else var_ids[l - 1][cols])
        ids = np.concatenate(members)
        cliques.append(np.unique(ids[ids >= 0]))
    return _dedupe(cliques)


def _hidden_var_ids(poly: NormGradientPolynomial, net: Network) -> list[np.ndarray]:
    """Per hidden layer, the polynomial variable of each neuron (-1 where its derivative is fixed)."""
    out = []
    for l in range(1, net.depth + 1):
        ids = np.full(net.widths[l], -1, dtype=np.int64)
        v = poly.variables_of_layer(l)
        ids[poly.unit[v]] = v
        out.append(ids)
    return out


def _dedupe(cliques: list[np.ndarray]) -> list[np.ndarray]:
    seen, out = set(), []
    for q in cliques:
        key = q.tobytes()
        if len(q) and key not in seen:
            seen.add(key)
            out.append(q)
    return out


def clique_sizes(net: Network, c: np.ndarray, slopes: SlopeBox, strategy: str = "inputs") -> np.ndarray:
    """Sizes of ``network_cliques``' cliques (before de-duplication, so never smaller in total), from the
    weight patterns alone: used to refuse an LP before the polynomial is built."""
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"unknown clique strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    d, n0 = net.depth, net.widths[0]
    free = [np.asarray(lo) < np.asarray(hi) for lo, hi in zip(slopes.lo, slopes.hi)]
    if strategy == "dense":
        return np.array([n0 + int(sum(f.sum() for f in free))])
    if d == 0:
        return np.ones(n0, dtype=np.int64)
    pattern, on_path = _paths(net, c, slopes)
    if strategy == "inputs":
        W0 = pattern[0]
        counted = np.repeat(on_path[0] & free[0], np.diff(W0.indptr))  # no copy of the first layer
        sizes = 1 + np.bincount(W0.indices[counted], minlength=n0).astype(np.int64)
        rows = np.flatnonzero(on_path[0])
        reach = sp.csr_array(W0[rows]) if d > 1 else None  # rows: live neurons of layer 1
        for l in range(1, d):
            reach = sp.csr_array(pattern[l][np.flatnonzero(on_path[l])][:, rows] @ reach)
            reach.data[:] = 1.0
            rows = np.flatnonzero(on_path[l])
            counted = sp.csr_array(reach[np.flatnonzero(free[l][rows])])
            sizes += np.bincount(counted.indices, minlength=n0).astype(np.int64)
        return sizes
    last = np.flatnonzero(on_path[d - 1])
    field = sp.csr_array(sp.identity(net.widths[d], format="csr")[last])
    sizes = np.asarray(free[d - 1][last], dtype=np.int64)
    for l in range(d - 1, -1, -1):
        field = sp.csr_array(field @ pattern[l])
        field.data[:] = 1.0
        if l:
            field = sp.csr_array(field @ sp.diags_array(on_path[l - 1].astype(float)))
            sizes += np.asarray((field[:, free[l - 1]] != 0).sum(axis=1)).ravel().astype(np.int64)
        else:
            sizes += np.diff(field.indptr)
    return sizes


def _paths(net: Network, c: np.ndarray, slopes: SlopeBox):
    """(0/1 weight patterns, on_path) with on_path[l] the neurons of hidden layer l+1 that are alive
    (derivative not identically 0) and have a path to the selected output."""
    d = net.depth
    alive = [(lo != 0) | (hi != 0) for lo, hi in zip(slopes.lo, slopes.hi)]
    pattern = [_pattern(W) for W in net.weights]
    back = (pattern[d].T @ (np.abs(c) > 0).astype(float)) > 0
    on_path = [None] * d
    for l in range(d - 1, -1, -1):
        on_path[l] = back & alive[l]
        if l:
            back = (pattern[l].T @ on_path[l].astype(float)) > 0
    return pattern, on_path


def _pattern(W) -> sp.csr_array:
    """0/1 matrix of W's nonzeros, sharing W's index arrays when it stores no explicit zeros."""
    W = sp.csr_array(W)
    keep = W.data != 0
    if not keep.all():
        W = W.copy()
        W.eliminate_zeros()
    return sp.csr_array((np.ones(W.nnz), W.indices, W.indptr), shape=W.shape)
