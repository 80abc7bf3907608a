"""The FGL of any chain or graph by branch and bound over its derivative units, zonotope node bounds.

A unit is a free neuron (its derivative at either end of its interval) or a free max-pool window (one of its
inputs); the FGL max ||c^T J||_q over the box is attained at a vertex (multilinear, convex norm). A node fixes
the first units, output side first; its bound is the zonotope bound of its box (relaxations.
jacobian_zonotope: certified, exact up to rounding once every unit is fixed), so best first the first leaf
popped is the FGL. At a time limit the bracket is [the best vertex evaluated, the largest open bound]. The
search is kept between calls (``run(seconds)`` resumes it), as auto's returning search windows need.
"""
from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

from ..errors import OutOfTime
from ..exact.enumerate import dual_norm
from ..relaxations.jacobian_zonotope import chain_steps, graph_steps, zonotope_bound


MAX_UNITS = 256    # free units at most: beyond, a node bound costs seconds and the search gains nothing
                   # (resnet_cnn l_inf r=0.01, 322 units: 46 nodes in 15 s, 121.89 -> 121.55)


def refusal(n_units: int) -> str | None:
    if n_units > MAX_UNITS:
        return (f"branch and bound over the derivative box is limited to {MAX_UNITS} free units (neurons and "
                f"pool windows); this problem has {n_units}")
    return None


@dataclass(frozen=True)
class SearchResult:
    lower: float          # ||c^T J||_q at the best vertex evaluated (floats): the FGL is at least about this
    upper: float          # certified: the FGL is at most this
    optimal: bool
    nodes: int
    witness: tuple        # the best vertex's unit choices, in ``units`` order


class ZonotopeSearch:
    """Best-first branch and bound; ``graph`` selects GraphSlopes boxes (with pool windows) or SlopeBoxes."""

    def __init__(self, net, c: np.ndarray, norm: str, slopes, graph: bool):
        self.net, self.c, self.norm, self.slopes, self.graph = net, np.asarray(c, float), norm, slopes, graph
        self.units = _units(net, slopes, graph)
        self.count = itertools.count()
        self.nodes, self.best, self.witness = 0, -math.inf, ()
        self.heap, self.done = [], None

    def run(self, seconds: float | None, max_nodes: int | None = None) -> SearchResult:
        """Search until ``seconds`` have passed (None: to the end) or ``max_nodes`` more nodes are expanded;
        OutOfTime when not even the root's bound fits, else the bracket."""
        deadline = None if seconds is None else time.perf_counter() + seconds
        if not self.heap and self.done is None:
            self.heap.append((-self._bound((), deadline), next(self.count), ()))
        stop = None if max_nodes is None else self.nodes + max_nodes
        while self.done is None and self.heap:
            if (deadline is not None and time.perf_counter() >= deadline) or self.nodes == stop:
                break
            neg, _, assign = heapq.heappop(self.heap)
            if len(assign) == len(self.units):   # a leaf on top: nothing open can beat it
                self._evaluate(assign)
                self.done = (-neg, assign)
                break
            self.nodes += 1
            try:
                children = [(-self._bound(assign + (k,), deadline), next(self.count), assign + (k,))
                            for k in range(len(self.units[len(assign)][3]))]
            except OutOfTime:   # the node stays open
                heapq.heappush(self.heap, (neg, next(self.count), assign))
                self.nodes -= 1
                break
            for child in children:
                heapq.heappush(self.heap, child)
            self._evaluate(assign + tuple(len(u[3]) - 1 for u in self.units[len(assign):]))  # an incumbent
        if self.done is not None:
            return SearchResult(self.best, self.done[0], True, self.nodes, self.witness)
        return SearchResult(self.best, -self.heap[0][0], False, self.nodes, self.witness)

    def _box(self, assign):
        lo = [np.array(a, dtype=float) for a in self.slopes.lo]
        hi = [np.array(a, dtype=float) for a in self.slopes.hi]
        fixed = {i: f.copy() for i, f in getattr(self.slopes, "fixed", {}).items()}
        for (kind, a, b, ch), k in zip(self.units, assign):
            if kind == "act":
                lo[a][b] = hi[a][b] = ch[k]
            else:
                fixed[a][b] = int(ch[k])
        return lo, hi, fixed

    def _bound(self, assign, deadline=None) -> float:
        lo, hi, fixed = self._box(assign)
        if self.graph:
            from ..graph_bounds import GraphSlopes
            steps = graph_steps(self.net, GraphSlopes(tuple(lo), tuple(hi), fixed, self.slopes.windows))
        else:
            from ..slopes import SlopeBox
            steps = chain_steps(self.net, SlopeBox(tuple(lo), tuple(hi)))
        return zonotope_bound(steps, self.c, self.norm, deadline=deadline).value

    def _evaluate(self, assign) -> None:
        """||c^T J||_q at the vertex ``assign`` (every unit chosen), in floats."""
        lo, _, fixed = self._box(assign)
        if self.graph:
            from ..graph_bounds import jacobian_at
            g = jacobian_at(self.net, self.c, [s[None, :] for s in lo], {i: f[None, :] for i, f in fixed.items()})
        else:
            v = self.c
            for l in range(self.net.depth, 0, -1):
                v = (self.net.weights[l].T @ v) * lo[l - 1]
            g = (self.net.weights[0].T @ v)[None, :]
        value = float(dual_norm(g, self.norm)[0])
        if value > self.best:
            self.best, self.witness = value, tuple(assign)


def _units(net, slopes, graph: bool) -> list[tuple]:
    """(kind, layer or node, index, choices), output side first."""
    if graph:
        from .graph_fgl import units
        pos = {i: k for k, i in enumerate(net.act_nodes)}
        return [("act", pos[i], j, ch) if i in pos else ("pool", i, j, ch) for i, j, ch in units(net, slopes)]
    out = []
    for l in range(len(slopes.lo) - 1, -1, -1):
        lo, hi = np.asarray(slopes.lo[l], float), np.asarray(slopes.hi[l], float)
        out += [("act", l, int(j), np.array([lo[j], hi[j]])) for j in np.flatnonzero(lo < hi)]
    return out
