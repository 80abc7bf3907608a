"""relaxations.jacobian_zonotope (method ``zonotope``): soundness against the exact FGL on random chains
(dense, banded, conv; depth 1-5; relu, tanh, gelu, leaky; global and local; every norm) and graphs (residual,
DAGs, max pools), exactness and rounding at a fixed derivative box (exact rationals), the symbol budget, the
deadline, and the method through the API and auto."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from helpers import small_network
from graph_nets import random_dag, random_graph, random_two_pools, vertex_count
from lipopt import api, upper_bound
from lipopt.domain import Ball, Box
from lipopt.errors import OutOfTime
from lipopt.exact import exact_fgl
from lipopt.graph_bounds import enumerate_fgl, global_graph_slopes, graph_interval_bound, graph_slopes
from lipopt.polynomial import SlopeBox
from lipopt.relaxations import jacobian_zonotope as Z
from test_lifted import _net, _slopes

NORMS = ("inf", "2", "1")
REL = 1e-12   # the enumerated FGL is a float maximum


@pytest.mark.parametrize("act", ["relu", "tanh", "gelu", "leaky_relu"])
def test_chains_sound_against_enumeration(act):
    for seed in range(20):
        net = _net(seed, act)
        slopes, _ = _slopes(net, seed)
        c = np.array([1.0, -1.0])
        for norm in NORMS:
            exact = exact_fgl(net, c, norm, slopes).value
            z = Z.zonotope_bound(Z.chain_steps(net, slopes), c, norm)
            assert z.value >= exact * (1 - REL), (seed, act, norm, exact, z.value)


def _graph_problems(n: int, seed0: int):
    out, s = [], seed0
    makers = (random_graph, random_dag, random_two_pools)
    while len(out) < n:
        g = makers[s % 3](s, ("relu", "leaky_relu", "tanh")[s % 5 % 3])
        s += 1
        if vertex_count(g, global_graph_slopes(g)) > 4096:
            continue
        rng = np.random.default_rng(s)
        c, x0 = rng.normal(size=g.output_size), rng.normal(size=g.input_size)
        domain = [None, Ball(x0, 0.3, "inf"), Ball(x0, 0.5, "2"), Box(x0 - 0.2, x0 + 0.4)][s % 4]
        out.append((g, c, NORMS[s % 3], domain))
    return out


def test_graphs_sound_against_enumeration_and_often_below_interval():
    """300 random graphs: never below the enumerated FGL; below the interval bound on most (shared symbols
    cancel where intervals cannot), so the comparison is not vacuous."""
    below = 0
    for g, c, norm, domain in _graph_problems(300, 100):
        s = graph_slopes(g, domain)
        fgl = enumerate_fgl(g, c, norm, s, limit=4096)
        z = Z.zonotope_bound(Z.graph_steps(g, s), c, norm).value
        assert z >= fgl * (1 - REL), (norm, domain, z, fgl)
        below += z < graph_interval_bound(g, c, norm, s)
    assert below > 150


def _exact_gradient(net, c, slopes):
    """c^T J in rationals at a fixed derivative box (lo == hi)."""
    v = [Fraction(float(x)) for x in c]
    for l in range(net.depth, -1, -1):
        W = net.weights[l].toarray() if hasattr(net.weights[l], "toarray") else np.asarray(net.weights[l])
        v = [sum(Fraction(float(W[r, q])) * v[r] for r in range(W.shape[0])) for q in range(W.shape[1])]
        if l > 0:
            v = [a * Fraction(float(s)) for a, s in zip(v, slopes.lo[l - 1])]
    return v


@pytest.mark.parametrize("seed", range(12))
def test_fixed_box_is_the_gradient_norm_and_covers_it_exactly(seed):
    """With every derivative fixed there are no symbols: the bound is ||c^T J||_q up to its rounding margin,
    and at least the exact rational value (the margins, chords and final sums are tested where tight)."""
    net = _net(seed, "relu")
    rng = np.random.default_rng(seed)
    s = [rng.uniform(-1.5, 2.0, n) * 10.0 ** rng.integers(-3, 4) for n in net.widths[1:-1]]
    box = SlopeBox(tuple(s), tuple(s))
    c = rng.normal(size=net.widths[-1]) * 10.0 ** rng.integers(-3, 4, net.widths[-1])
    g = _exact_gradient(net, c, box)
    exact = {"inf": sum(abs(x) for x in g), "1": max(abs(x) for x in g), "2": sum(x * x for x in g)}
    for norm in NORMS:
        z = Z.zonotope_bound(Z.chain_steps(net, box), c, norm)
        assert z.symbols == 0
        val = Fraction(z.value) ** 2 if norm == "2" else Fraction(z.value)
        assert val >= exact[norm], (norm, float(val), float(exact[norm]))
        assert float(val) <= float(exact[norm]) * (1 + 1e-9) + 1e-300


def test_symbol_budget_boxes_units_and_stays_sound(monkeypatch):
    monkeypatch.setattr(Z, "SYMBOL_SHARE", 1e-12)
    boxed = 0
    for g, c, norm, domain in _graph_problems(60, 5000):
        s = graph_slopes(g, domain)
        z = Z.zonotope_bound(Z.graph_steps(g, s), c, norm)
        assert z.symbols == 0
        boxed += z.boxed
        assert z.value >= enumerate_fgl(g, c, norm, s, limit=4096) * (1 - REL)
    assert boxed > 0


def test_deadline_and_registry():
    g, c, norm, domain = _graph_problems(1, 7)[0]
    with pytest.raises(OutOfTime):
        Z.zonotope_bound(Z.graph_steps(g, graph_slopes(g, domain)), c, norm, deadline=0.0)
    r = upper_bound(g, norm=norm, c=c, domain=domain, method="zonotope", lower=False, time_limit=5)
    assert r.upper_bound >= enumerate_fgl(g, c, norm, graph_slopes(g, domain), limit=4096) * (1 - REL)
    assert r.sizes["symbols"] >= 0
    net = _net(4, "relu")
    from lipopt.methods.registry import METHODS
    est = METHODS["zonotope"].estimate
    assert est(api.make_problem(net, np.array([1.0, -1.0]), "inf", None, "linear", {}), {}) is None  # all free
    x0 = np.zeros(net.widths[0])
    assert est(api.make_problem(net, np.array([1.0, -1.0]), "inf", Ball(x0, 1e-6, "inf"), "linear", {}), {}) > 0
    deep, c = small_network([4, 16, 16, 16, 2], 3), np.array([1.0, -1.0])
    for r in (0.05, 0.1, 0.2, 0.4, 0.8, 1.6):   # more than auto's 16 enumeration bits, under 90 % free
        dom = Ball(np.full(4, 0.3), r, "inf")
        if 16 < api.make_problem(deep, c, "inf", dom, "linear", {}).free_neurons < 0.9 * 48:
            break
    a = upper_bound(deep, norm="inf", c=c, domain=dom, method="auto", lower=False, time_limit=2)
    z = [t for t in a.details["attempts"] if t["method"] == "zonotope"]
    assert z and z[0]["value"] >= a.upper_bound
