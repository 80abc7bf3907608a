"""exact.graph_fgl: a graph's FGL by top-down vertex enumeration (the last activation's choices added after
one pass below it), certified; exact-fgl on graphs through the registry and auto."""
from __future__ import annotations

import numpy as np
import pytest

from graph_nets import random_dag, random_graph, random_two_pools, vertex_count
from lipopt import upper_bound
from lipopt.domain import Ball, Box
from lipopt.errors import InvalidInputError, OutOfTime
from lipopt.exact import graph_fgl as G
from lipopt.graph_bounds import enumerate_fgl, global_graph_slopes, graph_slopes

ACTS = ("relu", "leaky_relu", "tanh")
MAKERS = (random_graph, random_dag, random_two_pools)


def _problems(n: int, seed0: int, max_vertices: int = 4096):
    out, s = [], seed0
    while len(out) < n:
        g = MAKERS[s % 3](s, ACTS[s % 5 % 3])
        s += 1
        if vertex_count(g, global_graph_slopes(g)) > max_vertices:
            continue
        rng = np.random.default_rng(s)
        c, x0 = rng.normal(size=g.output_size), rng.normal(size=g.input_size)
        domain = [None, Ball(x0, 0.3, "inf"), Ball(x0, 0.5, "2"), Box(x0 - 0.2, x0 + 0.4)][s % 4]
        out.append((g, c, ("inf", "2", "1")[s % 3], domain))
    return out


@pytest.mark.parametrize("rows", [G.MAX_ROWS, 3])
def test_equals_brute_force_and_certifies_it(rows, monkeypatch):
    """The float maximum equals graph_bounds.enumerate_fgl (every vertex through the whole pass) on 150
    random graphs (residual, pools, DAGs; ReLU, leaky ReLU, tanh; four domains; three norms), also when
    batches are split down to 3 rows; the certified end is above it by a rounding margin only."""
    monkeypatch.setattr(G, "MAX_ROWS", rows)
    kinds = set()
    for g, c, norm, domain in _problems(150, 500):
        s = graph_slopes(g, domain)
        ref = enumerate_fgl(g, c, norm, s, limit=4096)
        r = G.graph_fgl(g, c, norm, s)
        assert r.vertices == vertex_count(g, s) == G.vertex_count(g, s)
        assert r.value == pytest.approx(ref, rel=1e-12, abs=1e-14), (norm, domain)
        assert ref <= r.upper <= ref * (1 + 1e-9) + 1e-12
        kinds.add((bool(g.pool_nodes), r.vertices > 1))
    assert kinds == {(True, True), (False, True), (True, False), (False, False)}


def test_certificate_covers_exact_rationals():
    """On tiny graphs the certified end is >= the maximum over vertices in exact rational arithmetic."""
    from fractions import Fraction
    for g, c, norm, domain in _problems(20, 900, max_vertices=64):
        if norm == "2":
            continue
        s = graph_slopes(g, domain)
        r = G.graph_fgl(g, c, norm, s)
        free = G.units(g, s)
        best = Fraction(0)
        for code in range(r.vertices):
            slopes = [np.array([Fraction(float(x)) for x in lo], dtype=object) for lo in s.lo]
            picks = {i: s.fixed[i].copy() for i in g.pool_nodes}
            rest = code
            for i, j, ch in free:
                k, rest = rest % len(ch), rest // len(ch)
                if i in g.act_nodes:
                    slopes[g.act_nodes.index(i)][j] = Fraction(float(ch[k]))
                else:
                    picks[i][j] = int(ch[k])
            grad = _exact_row(g, c, slopes, picks)
            val = sum(abs(x) for x in grad) if norm == "inf" else max(abs(x) for x in grad)
            best = max(best, val)
        assert Fraction(r.upper) >= best


def _exact_row(g, c, slopes, picks):
    """c^T J in Fractions: reverse mode with the given slopes and picks."""
    from fractions import Fraction
    adj = [None] * len(g.nodes)
    adj[-1] = [Fraction(float(x)) for x in c]
    acts = {i: k for k, i in enumerate(g.act_nodes)}
    for i in range(len(g.nodes) - 1, 0, -1):
        v, n = adj[i], g.nodes[i]
        if v is None:
            continue
        if n.kind == "affine":
            W = n.W.toarray()
            parts = [[sum(Fraction(float(W[r, q])) * v[r] for r in range(W.shape[0])) for q in range(W.shape[1])]]
        elif n.kind == "act":
            parts = [[a * b for a, b in zip(v, slopes[acts[i]])]]
        elif n.kind == "add":
            parts = [list(v)] * len(n.inputs)
        elif n.kind == "concat":
            cuts = np.cumsum([0] + [g.nodes[t].size for t in n.inputs])
            parts = [v[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
        else:
            w = [Fraction(0)] * g.nodes[n.inputs[0]].size
            for win, p in enumerate(picks[i]):
                w[int(p)] += v[win]
            parts = [w]
        for t, part in zip(n.inputs, parts):
            adj[t] = list(part) if adj[t] is None else [a + b for a, b in zip(adj[t], part)]
    return adj[0]


def test_refuses_beyond_the_vertex_limit_and_stops_at_the_deadline():
    g, c, norm, domain = next(p for p in _problems(40, 2000) if vertex_count(p[0], graph_slopes(p[0], p[3])) > 2)
    s = graph_slopes(g, domain)
    with pytest.raises(InvalidInputError, match="limited to 2"):
        G.graph_fgl(g, c, norm, s, max_vertices=2)
    with pytest.raises(OutOfTime):
        G.graph_fgl(g, c, norm, s, deadline=0.0)
    assert G.estimate_seconds(g, s) > 0


def test_registry_and_auto_on_graphs(monkeypatch):
    """exact-fgl through the API equals the certified enumeration; auto proves the FGL with it first on a
    small graph; beyond the vertex limit the branch and bound proves it; beyond its unit limit the registry
    refuses."""
    for g, c, norm, domain in _problems(12, 3000):
        ref = enumerate_fgl(g, c, norm, graph_slopes(g, domain), limit=4096)
        r = upper_bound(g, norm=norm, c=c, domain=domain, method="exact-fgl", lower=False, time_limit=10)
        assert ref <= r.upper_bound <= ref * (1 + 1e-9) + 1e-12
        assert r.status == "optimal"
        a = upper_bound(g, norm=norm, c=c, domain=domain, method="auto", lower=False, time_limit=10)
        assert a.details["best_method"] == "exact-fgl" and a.status == "optimal"
        assert a.upper_bound == r.upper_bound
    monkeypatch.setattr(G, "MAX_VERTICES", 1)   # beyond the enumeration: the zonotope branch and bound
    g, c, norm, domain = next(p for p in _problems(40, 4000) if vertex_count(p[0], graph_slopes(p[0], p[3])) > 1)
    ref = enumerate_fgl(g, c, norm, graph_slopes(g, domain), limit=4096)
    r = upper_bound(g, norm=norm, c=c, domain=domain, method="exact-fgl", lower=False, time_limit=10)
    assert r.details["algorithm"].startswith("bnb") and ref <= r.upper_bound <= ref * (1 + 1e-9) + 1e-12
    monkeypatch.setattr("lipopt.exact.zonotope_bnb.MAX_UNITS", 0)
    with pytest.raises(InvalidInputError, match="limited to 0 free units"):
        upper_bound(g, norm=norm, c=c, domain=domain, method="exact-fgl", lower=False)
