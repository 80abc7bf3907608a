"""Text drawing of a GraphNetwork for ``lipopt inspect``: nodes in topological order with their tensor
shapes, inputs, and skip edges (an input that is not the node just before) marked."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .graph_bounds import global_graph_slopes
from .model.graph import GraphNetwork


def path_count(g: GraphNetwork) -> int:
    """Nonzero input-output paths (max pooling: one per window entry), as a float-free integer count."""
    counts = [np.ones(g.input_size, dtype=object)]
    for n in g.nodes[1:]:
        ins = [counts[j] for j in n.inputs]
        if n.kind == "affine":
            P = sp.csr_array(n.W != 0).astype(np.int64)
            v = np.array([sum(ins[0][P.indices[P.indptr[r]:P.indptr[r + 1]]]) for r in range(P.shape[0])], dtype=object)
        elif n.kind == "act":
            v = ins[0]
        elif n.kind == "add":
            v = sum(ins[1:], ins[0])
        elif n.kind == "concat":
            v = np.concatenate(ins)
        else:
            v = np.array([sum(ins[0][w[w >= 0]]) for w in n.windows], dtype=object)
        counts.append(v)
    return int(sum(counts[-1]))


def graph_summary(g: GraphNetwork) -> dict:
    lines, depth = [], []
    for i, n in enumerate(g.nodes):  # activation depth: activations on the longest path from the input
        depth.append(max((depth[j] for j in n.inputs), default=0) + (n.kind == "act"))
    for i, n in enumerate(g.nodes):
        shape = "x".join(map(str, n.shape)) if n.shape else str(n.size)
        # a skip edge: the input of an add / concat passing fewer activations than the others
        least = min((depth[j] for j in n.inputs), default=0)
        skip = n.kind in ("add", "concat") and len({depth[j] for j in n.inputs}) > 1
        srcs = ", ".join(f"n{j}" + (" (skip)" if skip and depth[j] == least else "") for j in n.inputs)
        what = {"affine": lambda: f"affine {n.W.shape[0]} x {n.W.shape[1]}, {n.W.nnz:,} nonzeros",
                "act": lambda: n.act.name,
                "maxpool": lambda: f"maxpool, {n.windows.shape[0]} windows of {n.windows.shape[1]}",
                "add": lambda: f"add of {len(n.inputs)}",
                "concat": lambda: f"concat of {len(n.inputs)}",
                "input": lambda: "input"}[n.kind]()
        lines.append(f"n{i:<4} {what:<40} {shape:>14}" + (f"  <- {srcs}" if srcs else "")
                     + (f"  [{n.label}]" if n.label and n.kind != "input" else ""))
    slopes = global_graph_slopes(g)
    return {"widths": list(g.widths), "depth": g.depth, "parameters": g.n_params, "layers": [],
            "paths": path_count(g), "graph": lines, "nodes": len(g.nodes), "kinds": sorted(g.kinds),
            "variables": int(g.input_size + sum(np.count_nonzero(lo < hi) for lo, hi in zip(slopes.lo, slopes.hi)))}
