"""l2 over graphs: the part after a cut node by the layer-structured LipSDP, the rest by norms.

When the output is T(v_k) for a node v_k every input-output path passes through (a cut node; the input
itself when there is no max pool), the chain rule gives over the slope box

    sup ||grad c^T f||_2 <= sup ||grad c^T T||_2 * sup ||J_{x -> v_k}||_{2->2},

the first factor certified by ``l2-fast`` / ``l2-opt`` on T with T's slopes (a LipSDP-Neuron feasible point),
the second ``graph_bounds.node_norm_bounds`` (operator norms node by node, a max pool's sqrt(windows
sharing an input); 1 for the input). T is the part after the earliest cut node from which only affine,
activation, Add and Concat nodes follow, lifted to an equivalent chain (``model.graph_lift``: residual
blocks become layers with identity neurons carrying the skip). LeNet-5: its dense head after the last
max pool; residual nets: the whole graph. When that part has no affine layer followed by an activation
(conv -> act -> max pool -> dense), the max pools are lifted too, as tournaments of [0, 1] neurons
(``lift_start``). Graphs with no such part either are refused by the registry (``tail_check``): their
bound would be the product's. ``l2-fast`` / ``l2-opt`` on a lifted chain with carries start from
(and refine) the carry-free LMI of the same values instead (``methods.l2_dag``).
"""
from __future__ import annotations

import time
from dataclasses import replace

from ..model.graph import GraphNetwork
from ..model.graph_lift import lift, liftable, lifted_slopes
from ..rounding import relative_up
from .base import MethodOutput, finite_upper
from .graph import is_graph


SELECTION_SHARE, SELECTION_SECONDS = 0.3, 20.0   # of the time limit (or the default), for pool_norms' search


def lift_start(g: GraphNetwork) -> int:
    """The earliest cut node after which the graph lifts to a chain without max pools when that part has an
    affine layer followed by an activation (``_has_layer``); otherwise the earliest one after which it
    lifts with its max pools as tournaments, if that part has one. The output when neither exists.

    Pools are lifted only when needed: the tournament's carried values and [0, 1] neurons make the
    LMI larger and ``refine`` reaches its optimum less often (LeNet-5: 42.5 with the head's norms, 89.7 with
    the second pool lifted, though a full LipSDP solve of the lifted chain is tighter on small CNNs)."""
    from ..graph_bounds import cut_nodes
    cuts = cut_nodes(g)
    plain = next(k for k in cuts if liftable(g, k, pools=False))
    if _has_layer(g, plain):
        return plain
    pooled = next(k for k in cuts if liftable(g, k))
    return pooled if _has_layer(g, pooled) else plain


def _has_layer(g: GraphNetwork, k: int) -> bool:
    """The part after node k has an affine node followed (later) by an activation."""
    kinds = [n.kind for n in g.nodes[k + 1:]]
    return "affine" in kinds and "act" in kinds[kinds.index("affine"):]


def l2_widths(net) -> tuple:
    """The widths the layer-structured LipSDP works on: a chain's own, a graph's lifted part's."""
    if not is_graph(net):
        return tuple(net.widths)
    return tuple(lift(net, lift_start(net)).net.widths)


# SDPA on LipSDP-Neuron, about 23 interior-point iterations, each ~ nnz^2 (the Schur complement of the
# multipliers, one per neuron, whose matrices hold their weight rows) plus N^3 (the matrix order): fitted
# on 6 chains (widths 20-200, 2-4 hidden layers, dense) and a lifted max pool (sparse rows): 8-76 s, within
# a factor 1.5; LeNet-5's tail 77 s against 73 predicted (the chains' own estimate, in auto, sees only
# the order: off by 0.2-13x on the same runs)
SDPA_ITERATIONS, SDPA_PER_NNZ2, SDPA_PER_ORDER3 = 23, 2.5e-9, 2.2e-9
SDPA_SAFETY = 2.0   # the fit's spread and a loaded machine (LeNet-5's tail: over 120 s beside a test run)


def lipsdp_seconds(g: GraphNetwork) -> float:
    """auto's estimate for ``lipsdp`` on a graph: SDPA on the lifted chain's LipSDP-Neuron, from shapes, at
    the upper end (auto starts a method that stops by itself up to SKIP_FACTOR x its estimate early)."""
    net = lift(g, lift_start(g)).net
    nnz = float(sum(W.nnz for W in net.weights))
    order = 1.0 + sum(net.widths[:-1])
    return SDPA_SAFETY * SDPA_ITERATIONS * (SDPA_PER_NNZ2 * nnz ** 2 + SDPA_PER_ORDER3 * order ** 3)


def tail_check(problem) -> str | None:
    """The registry's shape check: a graph needs an affine layer then an activation after ``lift_start``."""
    if not is_graph(problem.net):
        return None
    g = problem.net
    if not _has_layer(g, lift_start(g)):
        # an activation first (identity weights before it) gives exactly the product of the norms after it
        return ("bounds graphs through a part every path passes through that lifts to a chain, which needs "
                "an affine layer followed by an activation; this network has none (use product or interval)")
    return None


tail_check.graphs_only = True   # chains always pass; its refusals are tested on graphs (tests/test_graph_l2.py)


def graph_l2_runner(mode: str):
    """The graph runner of ``l2-fast`` / ``l2-opt`` (``mode`` "fast" / "opt") and of ``lipsdp`` ("sdp": the
    full LipSDP-Neuron of the same lifted chain, solved by an SDP solver and certified like a chain's)."""
    def run(g: GraphNetwork, vec, norm: str, slopes, opts: dict) -> MethodOutput:
        from ..graph_bounds import node_norm_bounds
        from .l2 import _with_deadline
        from .sdp import _sdp_output, lipsdp_neuron
        t0 = time.perf_counter()
        k = lift_start(g)
        lifted = lift(g, k)
        net = lifted.net
        box = lifted_slopes(g, lifted, slopes.lo, slopes.hi)
        limit = opts.get("time_limit")
        head = 1.0 if k == 0 else node_norm_bounds(g, "2", slopes, selections=True, upto=k,
                                                    seconds=SELECTION_SHARE * (limit or SELECTION_SECONDS))[k]
        left = None if limit is None else max(0.0, float(limit) - (time.perf_counter() - t0))   # the lift's time counts
        if mode == "sdp":
            out = _sdp_output(lipsdp_neuron(net, vec, box, solver=opts.get("sdp_solver", "sdpa"), time_limit=left))
        elif lifted.n_identity:
            from .l2_dag import dag_with_deadline
            out = _sdp_output(dag_with_deadline(lifted, net.widths[0], vec, box, left, refine_starts=mode == "opt"))
        else:
            out = _sdp_output(_with_deadline(net, vec, box, mode, left))
        ub = finite_upper(relative_up(out.upper * head, 2))
        return replace(out, upper=ub, raw=None if out.raw is None else out.raw * head,
                       timings={**out.timings, "total": time.perf_counter() - t0},
                       details={**out.details, "graph_head_norm": head, "tail_widths": "-".join(map(str, net.widths)),
                                "lift_start": k, "identity_neurons": lifted.n_identity})
    run.__name__ = f"run_graph_l2_{mode}"
    return run
