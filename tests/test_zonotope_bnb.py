"""exact.zonotope_bnb: branch and bound over derivative units with zonotope node bounds, against enumeration
on random chains and graphs (all norms, activations, domains), resumed searches, brackets at a time limit,
the unit limit and the registry / auto wiring."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import small_network
from lipopt import InvalidInputError, api, upper_bound
from lipopt.domain import Ball
from lipopt.errors import OutOfTime
from lipopt.exact import exact_fgl
from lipopt.exact import zonotope_bnb as B
from lipopt.graph_bounds import enumerate_fgl, graph_slopes
from test_lifted import _net, _slopes
from test_zonotope import _graph_problems

NORMS = ("inf", "2", "1")


def _check(r, ref):
    assert r.lower <= ref * (1 + 1e-12) + 1e-300 and r.upper >= ref * (1 - 1e-12)
    if r.optimal:
        assert r.upper <= ref * (1 + 1e-9) + 1e-12


def _cases(n_graphs, seeds, acts):
    for g, c, norm, domain in _graph_problems(n_graphs, 300):
        s = graph_slopes(g, domain)
        yield g, c, norm, s, True, enumerate_fgl(g, c, norm, s, limit=4096)
    for act in acts:
        for seed in seeds:
            net = _net(seed, act)
            sl, _ = _slopes(net, seed)
            c = np.array([1.0, -1.0])
            for norm in NORMS:
                yield net, c, norm, sl, False, exact_fgl(net, c, norm, sl).value


def test_proves_the_enumerated_fgl():
    n = 0
    for net, c, norm, s, graph, ref in _cases(40, range(8), ("relu", "tanh")):
        r = B.ZonotopeSearch(net, c, norm, s, graph=graph).run(None)
        assert r.optimal
        _check(r, ref)
        n += 1
    assert n == 40 + 2 * 8 * 3


@pytest.mark.slow
def test_proves_the_enumerated_fgl_many():
    for net, c, norm, s, graph, ref in _cases(300, range(30), ("relu", "tanh", "leaky_relu", "gelu")):
        r = B.ZonotopeSearch(net, c, norm, s, graph=graph).run(None)
        assert r.optimal
        _check(r, ref)


def test_resumed_search_and_brackets_at_the_limit():
    """Stopped after one node and resumed: the same optimum; every intermediate bracket holds the FGL."""
    net = small_network([4, 6, 6, 6, 2], 5)
    c = np.array([1.0, -1.0])
    s = api.make_problem(net, c, "inf", Ball(np.full(4, 0.2), 0.3, "inf"), "linear", {}).slopes
    ref = exact_fgl(net, c, "inf", s).value
    search = B.ZonotopeSearch(net, c, "inf", s, graph=False)
    with pytest.raises(OutOfTime):
        search.run(0.0)          # not even the root's bound
    brackets = []
    while True:
        r = search.run(None, max_nodes=1)
        _check(r, ref)
        brackets.append(r)
        if r.optimal:
            break
    assert len(brackets) > 1 and not brackets[0].optimal
    assert [b.upper for b in brackets] == sorted([b.upper for b in brackets], reverse=True)
    whole = B.ZonotopeSearch(net, c, "inf", s, graph=False).run(None)
    assert whole.upper == r.upper and whole.lower == r.lower


def test_registry_limit_and_auto(monkeypatch):
    net, c = small_network([4, 16, 16, 16, 2], 6), np.array([1.0, -1.0])
    dom = Ball(np.full(4, 0.3), 0.3, "inf")
    p = api.make_problem(net, c, "inf", dom, "linear", {})
    assert 16 < p.free_neurons <= 20   # more than auto enumerates: its search is the B&B
    ref = exact_fgl(net, c, "inf", p.slopes).value
    a = upper_bound(net, norm="inf", c=c, domain=dom, method="auto", lower=False, time_limit=4)
    tried = [t for t in a.details["attempts"] if t["method"] == "exact-fgl"]
    assert tried and a.upper_bound >= ref * (1 - 1e-12)
    net = small_network([4, 6, 6, 6, 2], 5)
    dom = Ball(np.full(4, 0.2), 0.3, "inf")
    ref = exact_fgl(net, c, "inf", api.make_problem(net, c, "inf", dom, "linear", {}).slopes).value
    monkeypatch.setattr("lipopt.exact.enumerate.MAX_ENUMERATION_BITS", 4)
    monkeypatch.setattr("lipopt.methods.exact.MAX_ENUMERATION_BITS", 4)
    r = upper_bound(net, norm="inf", c=c, domain=dom, method="exact-fgl", lower=False, time_limit=10)
    assert r.details["algorithm"].startswith("bnb") and r.status == "optimal"
    assert ref * (1 - 1e-12) <= r.upper_bound <= ref * (1 + 1e-9)
    monkeypatch.setattr(B, "MAX_UNITS", 3)
    with pytest.raises(InvalidInputError, match="limited to 3 free units"):
        upper_bound(net, norm="inf", c=c, domain=dom, method="exact-fgl", lower=False)
