"""l_inf and l1 Lipschitz bounds from the layer-structured LipSDP l2 bound, by a weighted Cauchy-Schwarz.

For every gradient g and exact powers of two s_i = 2^k_i:

    ||g||_1 = sum_i 2^-k_i |2^k_i g_i| <= sqrt(sum_i 4^-k_i) ||S g||_2,        ||g||_inf <= ||g||_2,

and S g is the gradient of c^T f(S x'), the network whose first weights are W_0 S (exact: a power-of-two
column scaling) over the same slope box (its pre-activations at x' are the original's at x = S x'). So
sup ||g||_1 <= sqrt(sum 4^-k) * (l2-opt's certified bound of the scaled network). Equality in the
Cauchy-Schwarz step needs |g_i| proportional to 4^-k_i: k_i is chosen from the input's weight column
norms, ||W_0 e_i||_2 (an input no weight reads costs nothing). Any depth, any activation; graphs through
``graph_l2``'s chain tail.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.sparse as sp

from ..errors import SolverFailure
from ..rounding import sum_up, up
from .base import MethodOutput, finite_upper

K_RANGE = 30        # |k_i| <= 30: the scaled weights stay normal floats, so the scaling is exact


def input_scaling(W0s: list, norm: str) -> np.ndarray:
    """k with s = 2^k ~ (column norm)^(-1/2) (norm "inf"), or k = 0 (norm "1": plain ||g||_inf <= ||g||_2)."""
    n = W0s[0].shape[1]
    if norm != "inf":
        return np.zeros(n, dtype=np.int64)
    col2 = sum(np.asarray(abs(sp.csr_array(W)).power(2).sum(axis=0)).ravel() for W in W0s)
    col = np.sqrt(col2)
    top = float(col.max(initial=0.0))
    if not top > 0:
        return np.zeros(n, dtype=np.int64)
    col = np.maximum(col, top * 2.0 ** (-2 * K_RANGE + 2))
    k = np.round(-0.5 * np.log2(col / top)).astype(np.int64)
    return np.clip(k - int(np.median(k)), -K_RANGE, K_RANGE)


def _scale_columns(W, k: np.ndarray):
    W = sp.csr_array(W, dtype=np.float64)
    out = sp.csr_array((np.ldexp(W.data, k[W.indices]), W.indices, W.indptr), shape=W.shape)
    if not np.array_equal(np.ldexp(out.data, -k[W.indices]), W.data):
        raise SolverFailure("the input scaling is not exact (weights too close to the float range's ends)")
    return out


def factor(k: np.ndarray, norm: str) -> float:
    """sqrt(sum 4^-k_i) rounded up (l_inf), 1 (l1)."""
    if norm != "inf":
        return 1.0
    return up(math.sqrt(sum_up(np.ldexp(1.0, -2 * k).tolist())))


def scaled_chain(net, k: np.ndarray):
    return dataclasses.replace(net, weights=(_scale_columns(net.weights[0], k),) + tuple(net.weights[1:]))


def scaled_graph(g, k: np.ndarray):
    """The graph with every affine node reading the input scaled; None when another node reads it."""
    readers = [i for i, n in enumerate(g.nodes) if 0 in n.inputs]
    if any(g.nodes[i].kind != "affine" for i in readers):
        return None
    nodes = list(g.nodes)
    for i in readers:
        nodes[i] = dataclasses.replace(nodes[i], W=_scale_columns(nodes[i].W, k))
    return dataclasses.replace(g, nodes=tuple(nodes), _cache={})


def _finish(out: MethodOutput, f: float, k: np.ndarray) -> MethodOutput:
    ub = finite_upper(up(out.upper * f))
    return dataclasses.replace(out, upper=ub, raw=None if out.raw is None else out.raw * f,
                               details={**out.details, "l2_bound": out.upper, "cauchy_schwarz_factor": f,
                                        "scaling_exponents": f"{int(k.min(initial=0))}..{int(k.max(initial=0))}"})


def run_l2_weighted(net, vec, norm: str, slopes, opts: dict) -> MethodOutput:
    """l2-opt on the input-scaled chain, times the Cauchy-Schwarz factor."""
    from .l2 import run_l2_opt
    k = input_scaling([net.weights[0]], norm)
    return _finish(run_l2_opt(scaled_chain(net, k), vec, "2", slopes, opts), factor(k, norm), k)


def run_graph_l2_weighted(g, vec, norm: str, slopes, opts: dict) -> MethodOutput:
    from .graph_l2 import graph_l2_runner
    k = input_scaling([n.W for n in g.nodes if 0 in n.inputs and n.kind == "affine"] or [sp.eye_array(
        g.input_size)], norm)
    scaled = scaled_graph(g, k)
    if scaled is None:
        k, scaled = np.zeros_like(k), g
    return _finish(graph_l2_runner("opt")(scaled, vec, "2", slopes, opts), factor(k, norm), k)
