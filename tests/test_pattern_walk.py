"""The walk over activation regions (baselines.pattern_walk) and the ascent lower bound that uses it:
every value is a gradient norm at a point of the domain, never above the exact MIP value, and the walk
raises the local search's value on deep nets."""
from __future__ import annotations

import numpy as np

from lipopt.baselines.ascent import ascent_lower_bound, local_lower_bound
from lipopt.baselines.pattern_walk import pattern_walk
from lipopt.domain import Ball, Box
from lipopt.exact.enumerate import dual_norm
from lipopt.exact.mip import exact_lipschitz_mip
from lipopt.model.network import build_network


def _net(rng, widths, act):
    Ws = [rng.standard_normal((widths[i + 1], widths[i])) for i in range(len(widths) - 1)]
    bs = [0.5 * rng.standard_normal(widths[i + 1]) for i in range(len(widths) - 1)]
    return build_network(Ws, bs, [act] * (len(widths) - 2))


def _domain(rng, n, kind):
    c = np.round(rng.uniform(-1, 1, n), 2)
    if kind == "box":
        lo = c - np.round(rng.uniform(0.05, 1, n), 2)
        return Box(lo, lo + np.round(rng.uniform(0.1, 2, n), 2))
    if kind == "clipped":
        return Ball(c, 0.6, "inf", clip=(c - 0.2, c + 1.0))
    return Ball(c, float(rng.uniform(0.1, 1.5)), "inf")


def test_ascent_never_exceeds_the_exact_mip_value():
    """Depth 1-3, ReLU and leaky ReLU, boxes, l_inf balls (clipped or not), norms l_inf and l1."""
    rng = np.random.default_rng(11)
    checked = 0
    for trial in range(24):
        n = int(rng.integers(2, 5))
        widths = [n] + [int(rng.integers(2, 6)) for _ in range(1 + trial % 3)] + [1]
        net = _net(rng, widths, ["relu", "leaky_relu"][trial % 2])
        dom = _domain(rng, n, ["box", "clipped", "ball"][trial % 3])
        norm = ["inf", "1"][(trial // 3) % 2]
        m = exact_lipschitz_mip(net, np.ones(1), dom, norm)
        a = ascent_lower_bound(net, np.ones(1), norm, dom, samples=128, seed=trial)
        assert dom.contains_exact(a.point)
        assert a.value <= m.upper * (1 + 1e-9) + 1e-12, (trial, a.value, m.upper)
        g = dual_norm(net.gradient(a.point[None, :], np.ones(1)), norm)[0]
        assert abs(g - a.value) <= 1e-9 * max(1.0, g)
        checked += 1
    assert checked == 24


def test_walk_points_are_in_the_domain_and_values_are_their_gradient_norms():
    rng = np.random.default_rng(5)
    moved = 0
    for trial in range(12):
        n = int(rng.integers(3, 7))
        net = _net(rng, [n] + [10] * 5 + [1], ["relu", "leaky_relu"][trial % 2])
        dom = _domain(rng, n, ["box", "clipped", "ball"][trial % 3])
        c = np.ones(1)
        start = local_lower_bound(net, c, dom, "inf", samples=16, restarts=1, steps=0, seed=trial)
        pts, vals = pattern_walk(net, c, "inf", dom, start.point, start.value)
        again = pattern_walk(net, c, "inf", dom, start.point, start.value)
        np.testing.assert_array_equal(pts, again[0])
        if vals.size == 0:
            continue
        moved += 1
        assert np.all(dom.contains_exact(pts))
        np.testing.assert_allclose(vals, dual_norm(net.gradient(pts, c), "inf"), rtol=1e-12)
        assert vals.max() > start.value
        assert np.all(np.diff(vals) > 0)          # every move raises the value
    assert moved >= 6                             # from a weak start the walk nearly always moves


def test_walk_drops_overflowing_crossings(monkeypatch):
    """A nearly flat row puts its hyperplane crossing at an overflowing distance (inf * 0 = NaN in the
    step; forced here by an infinite step multiple): the walk drops such points before any arithmetic
    on them (no floating-point warning), returns finite points, and still moves."""
    import warnings

    import lipopt.baselines.pattern_walk as walk
    monkeypatch.setattr(walk, "CROSSING_STEPS", np.array([np.inf, 1.001, 2.0]))
    rng = np.random.default_rng(9)
    moved = 0
    for trial in range(6):
        Ws = [rng.standard_normal((8, 3)), rng.standard_normal((8, 8)), rng.standard_normal((1, 8))]
        Ws[0][:, 1] = 0.0                  # every first-layer step has a zero coordinate: inf * 0
        net = build_network(Ws, [0.5 * rng.standard_normal(8), 0.5 * rng.standard_normal(8), np.zeros(1)],
                            ["relu", "relu"])
        dom = Box(np.full(3, -1.0), np.full(3, 1.0))
        start = local_lower_bound(net, np.ones(1), dom, "inf", samples=4, restarts=1, steps=0, seed=trial)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            pts, vals = pattern_walk(net, np.ones(1), "inf", dom, start.point, start.value)
        assert np.all(np.isfinite(pts)) and np.all(np.isfinite(vals))
        assert np.all(dom.contains_exact(pts))
        moved += vals.size > 0
    assert moved >= 3
