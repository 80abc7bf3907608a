"""Model summary: layers, sparsity, paths, certificate cliques and estimated LP size per degree."""
from __future__ import annotations

import numpy as np

from .model.network import Network
from .polynomial import MAX_PATHS, build_polynomial, global_slopes, path_count
from .relaxations.cliques import network_cliques
from .relaxations.krivine import estimate_size


def summarize(net: Network, c: np.ndarray, degrees=(2, 3, 4, 5), cliques: str = "inputs") -> dict:
    layers = []
    for l, W in enumerate(net.weights):
        size = W.shape[0] * W.shape[1]
        layers.append({"layer": l, "shape": [int(W.shape[0]), int(W.shape[1])], "nonzeros": int(W.nnz),
                       "density": W.nnz / size,
                       "activation": net.activations[l].name if l < net.depth else "affine (output)"})
    out = {"widths": list(net.widths), "depth": net.depth, "parameters": net.n_params, "layers": layers,
           "paths": path_count(net)}
    if out["paths"] > MAX_PATHS:
        return out
    slopes = global_slopes(net)
    poly = build_polynomial(net, c, slopes)
    qs = network_cliques(net, c, slopes, poly, cliques)
    sizes = np.array([len(q) for q in qs])
    out.update({"variables": poly.n_vars, "monomials": poly.n_monomials, "cliques": len(qs),
                "clique_size": {"min": int(sizes.min()), "mean": float(sizes.mean()), "max": int(sizes.max())},
                "lp_columns_estimate": {int(k): estimate_size(qs, k) for k in degrees if k >= poly.degree}})
    return out
