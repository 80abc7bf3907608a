"""Exact maximum of the norm-gradient polynomial (the FGL).

* ``exact_fgl``: vertex enumeration over the derivative variables (any depth and norm, <= 24 free neurons);
  beyond, ``zonotope_bnb`` (branch and bound with zonotope node bounds), and ``graph_fgl`` for graphs.
* ``exact_fgl_auto``: the l_inf FGL for one or two hidden layers at realistic sizes: dynamic programming
  over a path decomposition when the inputs' interaction graph is narrow (banded / convolutional single
  layers), otherwise branch and bound with closed-form node bounds; enumeration for tiny cases.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ..errors import InvalidInputError
from ..model.network import Network
from ..polynomial import SlopeBox
from .bnb import (BnBResult, bnb_fgl, bnb_one_layer, bnb_search, check_inputs, evaluate_witness,
                  rounding_bound)
from .dp import MAX_BAG, BagTooLargeError, DPResult, dp_fgl, dp_plan
from .enumerate import MAX_ENUMERATION_BITS, ExactResult, exact_fgl

ENUMERATE_BITS = 10  # at most 2^10 vertices: enumeration is instantaneous and needs no search

__all__ = ["MAX_BAG", "MAX_ENUMERATION_BITS", "BagTooLargeError", "BnBResult", "DPResult", "ExactFGLResult",
           "ExactResult", "ExactSearch", "bnb_fgl", "dp_fgl", "exact_fgl", "exact_fgl_auto", "split_components"]


@dataclass
class ExactFGLResult:
    """The l_inf FGL: lower <= FGL <= upper, equal (up to ``rounding_error``) when status == "optimal".

    ``lower`` is P at the witness (t, s), evaluated on the network; ``upper`` is a proven bound in
    exact arithmetic. ``rounding_error`` is an a priori bound (standard summation error bounds,
    ~ 4 (n + 4) eps * sum of |terms|) on the floating-point error of the sums: add it when a certified
    number is needed. With status "time_limit" the pair is a valid bracket, never a claimed optimum.
    ``nodes`` counts branch-and-bound nodes, DP table entries or enumerated vertices.
    """
    upper: float
    lower: float
    status: str            # "optimal" | "time_limit"
    algorithm: str         # "dp" | "bnb" | "enumerate"
    t: np.ndarray
    s: list[np.ndarray]
    nodes: int
    seconds: float
    rounding_error: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def value(self) -> float:
        """The upper end of the bracket (the FGL itself when optimal)."""
        return self.upper

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"


def exact_fgl_auto(net: Network, c, slopes: SlopeBox | None = None, time_limit: float | None = None, *,
                   method: str = "auto", max_bag: int = MAX_BAG, seed: int = 0,
                   split: bool = True) -> ExactFGLResult:
    """max over t in {-1,1}^n0 and vertices s of P(t, s) (the l_inf FGL of c^T f), by the fastest exact method.

    auto: enumeration when at most ENUMERATE_BITS derivatives are free (or for >= 3 hidden layers, up
    to MAX_ENUMERATION_BITS); one hidden layer: DP if the path decomposition's bag is <= ``max_bag``,
    else branch and bound; two hidden layers: branch and bound. ``time_limit`` (seconds, whole call)
    turns an unfinished search into a bracket with status "time_limit". With ``split`` the network is
    first cut into the connected components of its interaction graph (inputs and hidden units linked
    by nonzero weights): P is then a sum of polynomials in disjoint variables, so the FGL is the sum
    of the components' FGLs (e.g. 49 independent blocks for a 2x2-stride-2 convolutional net).
    One run of ``ExactSearch``, whose later runs resume an unfinished search instead of restarting it.
    """
    return ExactSearch(net, c, slopes, method=method, max_bag=max_bag, seed=seed, split=split).run(time_limit)


class ExactSearch:
    """The l_inf FGL search of ``exact_fgl_auto``, resumable: ``run(time_limit)`` returns the bracket so far;
    a later ``run`` continues the branch and bound (open nodes, incumbent, Russian-doll bounds) and every
    unfinished component, instead of starting again. The DP is not resumable and is rerun; enumeration
    always finishes."""

    def __init__(self, net: Network, c, slopes: SlopeBox | None = None, *, method: str = "auto",
                 max_bag: int = MAX_BAG, seed: int = 0, split: bool = True):
        c, slopes = check_inputs(net, c, slopes)
        if method not in ("auto", "dp", "bnb", "enumerate"):
            raise InvalidInputError(f"unknown method {method!r}; choose auto, dp, bnb or enumerate")
        self.net, self.c, self.slopes, self.max_bag, self.seed = net, c, slopes, max_bag, seed
        self.parts = split_components(net, c, slopes) if split else []
        self.subs = None
        self.last: ExactFGLResult | None = None
        if len(self.parts) > 1:
            self.subs = []
            for inputs, hidden in self.parts:
                sub, sub_slopes = _subnetwork(net, c, slopes, inputs, hidden)
                self.subs.append(ExactSearch(sub, np.ones(1), sub_slopes, method=method, max_bag=max_bag,
                                             seed=seed, split=False))
            self.method = "components"
            return
        bits = int(sum(np.count_nonzero(lo < hi) for lo, hi in zip(slopes.lo, slopes.hi)))
        d = net.depth
        if method == "auto":
            if d == 0 or bits <= ENUMERATE_BITS or (d >= 3 and bits <= MAX_ENUMERATION_BITS):
                method = "enumerate"
            elif d >= 3:
                raise InvalidInputError(
                    f"exact FGL: {d} hidden layers with {bits} free neurons is beyond enumeration "
                    f"(limit {MAX_ENUMERATION_BITS}); DP and branch and bound handle 1 or 2 hidden layers")
            elif d == 1:
                method = "dp" if dp_plan(net, c, slopes)[1].bag <= max_bag else "bnb"
            else:
                method = "bnb"
        self.method, self.bits = method, bits
        self.bnb = bnb_search(net, c, slopes, seed=seed) if method == "bnb" else None

    def run(self, time_limit: float | None = None) -> ExactFGLResult:
        t0 = time.perf_counter()
        if time_limit is not None and not (np.isfinite(time_limit) and time_limit > 0):
            raise InvalidInputError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
        if self.subs is None and self.last is not None and self.last.optimal:
            return self.last  # proved: nothing left to search
        net, c, slopes = self.net, self.c, self.slopes
        if self.method == "components":
            return self._run_components(time_limit, t0)
        if self.method == "enumerate":
            r = exact_fgl(net, c, norm="inf", slopes=slopes)
            t = np.where(r.gradient >= 0, 1.0, -1.0)
            lower = evaluate_witness(net, c, t, r.slopes)
            self.last = ExactFGLResult(upper=max(r.value, lower), lower=lower, status="optimal",
                                       algorithm="enumerate", t=t, s=r.slopes, nodes=r.vertices,
                                       seconds=time.perf_counter() - t0,
                                       rounding_error=_path_rounding(net, c, slopes), info={"free_neurons": self.bits})
            return self.last
        if self.method == "dp":
            r = dp_fgl(net, c, slopes, max_bag=self.max_bag, time_limit=time_limit)
            info = {"bag": r.bag, "side": r.side}
            if r.status == "optimal":
                self.last = ExactFGLResult(upper=r.upper, lower=r.lower, status="optimal", algorithm="dp", t=r.t,
                                           s=r.s, nodes=r.entries, seconds=time.perf_counter() - t0,
                                           rounding_error=r.rounding_error, info=info)
                return self.last
            # Out of time: the partial table still bounds the FGL; the heuristic supplies the witness.
            h = bnb_one_layer(net, c, slopes, deadline=time.perf_counter(), seed=self.seed)
            return ExactFGLResult(upper=max(min(r.upper, h.upper), h.lower), lower=h.lower, status="time_limit",
                                  algorithm="dp", t=h.t, s=h.s, nodes=0, seconds=time.perf_counter() - t0,
                                  rounding_error=max(r.rounding_error, h.rounding_error), info=info)
        remaining = None if time_limit is None else max(1e-3, time_limit - (time.perf_counter() - t0))
        r = self.bnb.run(None if remaining is None else time.perf_counter() + remaining)
        self.last = ExactFGLResult(upper=r.upper, lower=r.lower, status=r.status, algorithm="bnb", t=r.t, s=r.s,
                                   nodes=r.nodes, seconds=r.seconds, rounding_error=r.rounding_error,
                                   info=dict(r.info))
        return self.last

    def _run_components(self, time_limit, t0) -> ExactFGLResult:
        """Sum of the components' exact FGLs; every unfinished component gets the time still left (at least
        1 ms, so an expired budget still yields each component's bracket); finished ones are reused."""
        net, c, slopes = self.net, self.c, self.slopes
        d = net.depth
        t = np.ones(net.widths[0])
        s = [np.array(lo, dtype=np.float64) for lo in slopes.lo]
        uppers, nodes, err, optimal, algorithms = [], 0, 0.0, True, set()
        for (inputs, hidden), sub in zip(self.parts, self.subs):
            left = None if time_limit is None else max(1e-3, time_limit - (time.perf_counter() - t0))
            r = sub.run(left)
            uppers.append(r.upper)
            nodes += r.nodes
            err += r.rounding_error
            optimal &= r.optimal
            algorithms.add(r.algorithm)
            t[inputs] = r.t
            for l in range(d):
                s[l][hidden[l]] = r.s[l]
        upper = math.fsum(uppers)
        # the sum, and c' = W_d^T c being rounded before the components saw it (covered by the path bound)
        err += rounding_bound(float(np.sum(np.abs(uppers))), len(uppers)) + _path_rounding(net, c, slopes)
        lower = evaluate_witness(net, c, t, s)
        return ExactFGLResult(upper=max(upper, lower), lower=lower, status="optimal" if optimal else "time_limit",
                              algorithm="+".join(sorted(algorithms)), t=t, s=s, nodes=nodes,
                              seconds=time.perf_counter() - t0, rounding_error=err,
                              info={"components": len(self.parts),
                                    "largest_component": max(len(i) + sum(map(len, h)) for i, h in self.parts)})


def _path_rounding(net: Network, c: np.ndarray, slopes: SlopeBox) -> float:
    """rounding_bound with mass = sum over paths of |weights| * max |slope| (bounds every |term| of P)."""
    g = np.abs(c)
    for l in range(net.depth, -1, -1):
        g = abs(net.weights[l]).T @ g
        if l > 0:
            g = g * np.maximum(np.abs(slopes.lo[l - 1]), np.abs(slopes.hi[l - 1]))
    return rounding_bound(float(g.sum()), sum(net.widths))


def split_components(net: Network, c: np.ndarray, slopes: SlopeBox) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Connected components (input ids, hidden ids per layer) of the graph of inputs and live hidden
    units joined by nonzero weights (the output layer is folded into c' = W_d^T c, so it joins
    nothing). Components without a last-layer unit of nonzero c' contribute 0 and are dropped."""
    d = net.depth
    if d == 0:
        return []
    sizes = net.widths[:d + 1]
    offs = np.concatenate([[0], np.cumsum(sizes)])
    alive = [np.ones(sizes[0], bool)] + [(slopes.lo[l] != 0) | (slopes.hi[l] != 0) for l in range(d)]
    rows, cols = [], []
    for l in range(d):
        W = net.weights[l].tocoo()
        keep = (W.data != 0) & alive[l + 1][W.row] & alive[l][W.col]
        rows.append(W.row[keep] + offs[l + 1])
        cols.append(W.col[keep] + offs[l])
    n = int(offs[-1])
    r, q = np.concatenate(rows), np.concatenate(cols)
    graph = sp.coo_array((np.ones(len(r)), (r, q)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    weight_last = np.abs(net.weights[d].T @ c) > 0
    useful = np.unique(label[offs[d]:offs[d + 1]][weight_last & alive[d]])
    parts = []
    for comp in useful:
        ids = [np.flatnonzero(label[offs[l]:offs[l + 1]] == comp) for l in range(d + 1)]
        if len(ids[0]):  # a component without inputs has P = 0
            parts.append((ids[0], ids[1:]))
    return parts


def _subnetwork(net: Network, c: np.ndarray, slopes: SlopeBox, inputs, hidden):
    d = net.depth
    keep = [inputs] + list(hidden)
    Ws = [net.weights[l][keep[l + 1]][:, keep[l]] for l in range(d)]
    last = sp.csr_array((net.weights[d].T @ c)[hidden[-1]][None, :])
    sub = Network(tuple(sp.csr_array(W) for W in Ws) + (last,),
                  tuple(np.zeros(len(h)) for h in hidden) + (np.zeros(1),), net.activations)
    sub_slopes = SlopeBox(tuple(slopes.lo[l][hidden[l]] for l in range(d)),
                          tuple(slopes.hi[l][hidden[l]] for l in range(d)))
    return sub, sub_slopes
