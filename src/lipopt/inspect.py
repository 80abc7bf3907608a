"""Model summary: layers, sparsity, paths, certificate cliques and estimated LP size per degree.

Everything is read off the weight patterns (clique sizes by sparse reachability), so a summary costs
about as much as loading the model; the polynomial itself is only built (for its monomial count) when
it is small.
"""
from __future__ import annotations

import numpy as np

from .model.network import Network
from .polynomial import build_polynomial, global_slopes, path_count
from .relaxations.cliques import clique_sizes
from .relaxations.krivine import columns_for_sizes

MONOMIAL_COUNT_PATHS = 2_000_000  # build the polynomial for its exact monomial count up to this many paths


def summarize(net: Network, c: np.ndarray, degrees=(2, 3, 4, 5), cliques: str = "inputs") -> dict:
    if not isinstance(net, Network):  # a GraphNetwork: its nodes drawn as text (graph_inspect)
        from .graph_inspect import graph_summary
        return graph_summary(net)
    layers = []
    for l, W in enumerate(net.weights):
        size = W.shape[0] * W.shape[1]
        layers.append({"layer": l, "shape": [int(W.shape[0]), int(W.shape[1])], "nonzeros": int(W.nnz),
                       "density": W.nnz / size,
                       "activation": net.activations[l].name if l < net.depth else "affine (output)"})
    out = {"widths": list(net.widths), "depth": net.depth, "parameters": net.n_params, "layers": layers,
           "paths": path_count(net)}
    slopes = global_slopes(net)
    sizes = clique_sizes(net, c, slopes, cliques)
    sizes = sizes[sizes > 0]
    out["variables"] = int(net.widths[0] + sum(np.count_nonzero(lo < hi) for lo, hi in zip(slopes.lo, slopes.hi)))
    if out["paths"] <= MONOMIAL_COUNT_PATHS:
        out["monomials"] = build_polynomial(net, c, slopes).n_monomials
    if len(sizes):
        out.update({"cliques": int(len(sizes)),
                    "clique_size": {"min": int(sizes.min()), "mean": float(sizes.mean()), "max": int(sizes.max())},
                    "lp_columns_estimate": {int(k): columns_for_sizes(sizes, k) for k in degrees
                                            if k >= net.depth + 1}})
    return out
