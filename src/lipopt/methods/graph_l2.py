"""l2 over graphs: the chain after the last graph node by the layer-structured LipSDP, the rest by norms.

When the output is T(v_k), with v_k the last node that is not affine or an activation (a max pool, Add or
Concat) and T the chain of affine and activation nodes after it, the chain rule gives over the slope box

    sup ||grad c^T f||_2 <= sup ||grad c^T T||_2 * sup ||J_{x -> v_k}||_{2->2},

the first factor certified by ``l2-fast`` / ``l2-opt`` on T with T's slopes (a LipSDP-Neuron feasible point;
LeNet-5's dense head), the second ``graph_bounds.node_norm_bounds`` (operator norms node by node, a max
pool's sqrt(windows sharing an input)). Graphs whose chain tail has no affine layer followed by an
activation are refused by the registry (``tail_check``): their bound would be the product's.
"""
from __future__ import annotations

import time
from dataclasses import replace

from ..model.graph import GraphNetwork, Node
from ..rounding import relative_up
from ..slopes import SlopeBox
from .base import MethodOutput, finite_upper
from .graph import is_graph


def chain_tail(g: GraphNetwork) -> tuple[int, list[int]]:
    """(k, tail): the output is a chain of single-input affine / activation nodes ``tail`` applied to v_k."""
    i, tail = len(g.nodes) - 1, []
    while g.nodes[i].kind in ("affine", "act") and len(g.nodes[i].inputs) == 1:
        tail.append(i)
        i = g.nodes[i].inputs[0]
    return i, tail[::-1]


def tail_check(problem) -> str | None:
    """The registry's shape check: a graph needs an activation after its last Add / Concat / MaxPool."""
    if not is_graph(problem.net):
        return None
    _, tail = chain_tail(problem.net)
    kinds = [problem.net.nodes[i].kind for i in tail]
    if "affine" not in kinds or "act" not in kinds[kinds.index("affine"):]:
        # an activation first (identity weights before it) gives exactly the product of the norms after it
        return ("bounds graphs through the chain after the last Add / Concat / MaxPool node, which needs an "
                "affine layer followed by an activation; this network has none there (use product or interval)")
    return None


tail_check.graphs_only = True   # chains always pass; its refusals are tested on graphs (tests/test_graph_l2.py)


def _tail_network(g: GraphNetwork, k: int, tail: list[int]):
    pos = {k: 0}
    nodes = [Node("input", (), g.nodes[k].size, g.nodes[k].shape)]
    for i in tail:
        pos[i] = len(nodes)
        nodes.append(replace(g.nodes[i], inputs=(pos[g.nodes[i].inputs[0]],)))
    return GraphNetwork(tuple(nodes)).to_network("the graph's chain tail")


def graph_l2_runner(mode: str):
    def run(g: GraphNetwork, vec, norm: str, slopes, opts: dict) -> MethodOutput:
        from ..graph_bounds import node_norm_bounds
        from .l2 import _with_deadline
        from .sdp import _sdp_output
        t0 = time.perf_counter()
        k, tail = chain_tail(g)
        net = _tail_network(g, k, tail)
        acts = [g.act_nodes.index(i) for i in tail if g.nodes[i].kind == "act"]
        box = SlopeBox(tuple(slopes.lo[a] for a in acts), tuple(slopes.hi[a] for a in acts))
        head = node_norm_bounds(g, "2", slopes)[k]
        out = _sdp_output(_with_deadline(net, vec, box, mode, opts.get("time_limit")))
        ub = finite_upper(relative_up(out.upper * head, 2))
        return replace(out, upper=ub, raw=None if out.raw is None else out.raw * head,
                       timings={**out.timings, "total": time.perf_counter() - t0},
                       details={**out.details, "graph_head_norm": head, "tail_widths": "-".join(map(str, net.widths))})
    run.__name__ = f"run_graph_l2_{mode}"
    return run
