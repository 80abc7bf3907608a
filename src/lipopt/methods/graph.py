"""Methods over GraphNetworks (residual Add, Concat, MaxPool): the registry's runners dispatch here.

``GRAPH_LAYERS`` is the ``Capabilities.layers`` value of a method that handles every graph node kind;
``graph_aware(chain_runner, graph_runner)`` is the registry's runner that sends a GraphNetwork to the
graph implementation and everything else to the chain one, unchanged.
"""
from __future__ import annotations

import functools
import math
import time

from ..errors import SolverFailure
from ..model.graph import GRAPH_KINDS, GraphNetwork
from .base import MethodOutput, finite_upper

GRAPH_LAYERS = frozenset({"chain"}) | GRAPH_KINDS
KIND_NAMES = {"add": "residual Add", "concat": "Concat", "maxpool": "MaxPool"}


def is_graph(net) -> bool:
    return isinstance(net, GraphNetwork)


def describe_kinds(kinds) -> str:
    return ", ".join(KIND_NAMES.get(k, k) for k in sorted(kinds))


def graph_aware(chain_runner, graph_runner):
    @functools.wraps(chain_runner)
    def run(net, vec, norm, slopes, opts):
        return (graph_runner if is_graph(net) else chain_runner)(net, vec, norm, slopes, opts)
    return run


def run_graph_product(net: GraphNetwork, vec, norm: str, slopes, opts: dict) -> MethodOutput:
    """Node-by-node operator-norm propagation (graph_bounds.graph_product_bound), rounded up."""
    from ..graph_bounds import graph_product_bound
    t0 = time.perf_counter()
    ub = finite_upper(graph_product_bound(net, vec, norm, slopes))
    return MethodOutput(ub, timings={"bound": time.perf_counter() - t0},
                        details={"fixed_pool_windows": int(sum((f >= 0).sum() for f in slopes.fixed.values()))})


def graph_lower_runner(name: str):
    def run(net: GraphNetwork, vec, norm: str, slopes, opts: dict) -> MethodOutput:
        from ..baselines.graph_lower import graph_lower_bound
        limit = opts.get("time_limit")
        value, point, details = graph_lower_bound(net, vec, norm, opts.get("domain"), opts.get("samples", 4096),
                                                  opts.get("seed", 0), ascent=name == "ascent",
                                                  time_limit=5.0 if limit is None else limit)
        return MethodOutput(None, lower=value, point=point, details=details)
    return run


def layers_refusal(layers, kinds) -> str | None:
    """The registry's sentence when a method's ``layers`` do not cover the network's graph node kinds."""
    if kinds <= layers:
        return None
    if layers <= {"chain"}:
        return f"supports chain networks only; the network has {describe_kinds(kinds)} nodes"
    return (f"supports {describe_kinds(layers - {'chain'})} nodes; the network has "
            f"{describe_kinds(kinds - layers)} nodes")


def run_graph_interval(net: GraphNetwork, vec, norm: str, slopes, opts: dict) -> MethodOutput:
    """Interval enclosure of the backward pass over the graph (graph_bounds.graph_interval_bound)."""
    from ..graph_bounds import graph_interval_bound
    t0 = time.perf_counter()
    ub = graph_interval_bound(net, vec, norm, slopes)
    if not math.isfinite(ub):
        raise SolverFailure("the interval Jacobian bounds overflow the float64 range")
    return MethodOutput(ub, raw=ub, timings={"bound": time.perf_counter() - t0},
                        sizes={"hidden": int(sum(net.widths[1:-1])), "weights": int(sum(W.nnz for W in net.weights))})


def run_graph_exact_fgl(net: GraphNetwork, vec, norm: str, slopes, opts: dict) -> MethodOutput:
    """The graph's FGL by enumerating every vertex of its derivative box (exact.graph_fgl), certified;
    beyond MAX_VERTICES vertices branch and bound with zonotope node bounds (a bracket at the time limit)."""
    from ..exact.graph_fgl import MAX_VERTICES, graph_fgl, vertex_count
    t0 = time.perf_counter()
    limit = opts.get("time_limit")
    free = int(sum((lo < hi).sum() for lo, hi in zip(slopes.lo, slopes.hi)))
    if vertex_count(net, slopes) > MAX_VERTICES:
        from ..exact.zonotope_bnb import ZonotopeSearch
        from .exact import bnb_output
        return bnb_output(ZonotopeSearch(net, vec, norm, slopes, graph=True).run(limit), free, t0)
    r = graph_fgl(net, vec, norm, slopes, deadline=None if limit is None else t0 + limit)
    return MethodOutput(finite_upper(r.upper), raw=r.value, status="optimal", timings={"search": time.perf_counter() - t0},
                        sizes={"nodes": r.vertices, "free_neurons": free},
                        details={"algorithm": "enumerate (graph)", "exact_status": "optimal",
                                 "bracket": [r.value, r.upper], "free_pool_windows": slopes.free_windows()})
