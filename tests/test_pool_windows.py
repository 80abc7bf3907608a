"""pool_windows: a max-pool window keeps only the inputs that can be its maximum over the domain (intervals,
then back-substituted differences of the values or of the pre-activations of a nondecreasing activation)."""
from __future__ import annotations

import numpy as np
import pytest

from graph_nets import random_pool, random_two_pools, vertex_count
from lipopt import upper_bound
from lipopt.domain import Ball, Box
from lipopt.exact.enumerate import dual_norm
from lipopt.graph_bounds import enumerate_fgl, graph_interval_bound, graph_slopes
from lipopt.model.conv import Activation as ActLayer
from lipopt.model.graph import GraphBuilder, pool_values
from lipopt.pool_windows import drop_dominated, fixed_inputs, interval_candidates, window_pairs

ACTS = ("relu", "leaky_relu", "hardtanh", "tanh", "gelu", "sigmoid", "elu")


def _cases(n: int, seed0: int = 0):
    for s in range(seed0, seed0 + n):
        g = (random_pool, random_two_pools)[s % 2](s, ACTS[s % len(ACTS)])
        rng = np.random.default_rng(s)
        x0 = rng.normal(size=g.input_size)
        r = (0.05, 0.2, 0.6)[s % 3]
        domain = (Ball(x0, r, "inf"), Ball(x0, r, "2"), Box(x0 - r, x0 + 0.5 * r))[s // 3 % 3]
        yield s, g, rng.normal(size=g.output_size), ("inf", "2", "1")[s % 3], domain


def _points(domain, rng, n=384):
    X = domain.sample(n, rng)
    lo, hi = domain.bounding_box()
    corners = np.where(rng.random((64, lo.size)) < 0.5, lo, hi)   # vertices of the box: extreme differences
    return np.vstack([X, corners[domain.contains(corners)]])


def test_candidates_attain_every_window_maximum_and_fgl_covers_gradients(n: int = 120):
    """On 120 random pool graphs (300: -m slow) (seven activations, monotone or not; three domains and radii): at sampled
    points and box vertices every window's maximum is attained by one of its candidates, and the FGL over
    the candidates is >= every sampled gradient norm. Differences drop inputs intervals keep."""
    dropped, checked = {"interval": 0, "linear": 0}, 0
    for s, g, c, norm, domain in _cases(n):
        rng = np.random.default_rng(s + 1)
        X = _points(domain, rng)
        vals = g.values(X)
        slopes = graph_slopes(g, domain)
        for i in g.pool_nodes:
            full, eff = g.nodes[i].windows, slopes.taps(g, i)
            v = vals[g.nodes[i].inputs[0]]
            assert np.array_equal(pool_values(v, eff).max(axis=2), pool_values(v, full).max(axis=2)), s
            assert np.all((eff == full) | (eff == -1)) and np.all((eff >= 0).sum(axis=1) >= 1)
            assert np.array_equal(slopes.fixed[i], fixed_inputs(eff))
            dropped["linear"] += int(((full >= 0) & (eff < 0)).sum())
        for i in g.pool_nodes:
            eff = graph_slopes(g, domain, "interval").taps(g, i)
            dropped["interval"] += int(((g.nodes[i].windows >= 0) & (eff < 0)).sum())
        if vertex_count(g, slopes) > 1 << 14:
            continue
        fgl = enumerate_fgl(g, c, norm, slopes, limit=1 << 14)
        checked += 1
        grads = dual_norm(g.gradient(X, c), norm)
        assert grads.max() <= fgl * (1 + 1e-9) + 1e-12, (s, grads.max(), fgl)
        assert graph_interval_bound(g, c, norm, slopes) >= fgl * (1 - 1e-12)
    assert dropped["linear"] > dropped["interval"] > 0 and checked > 0.8 * n, (dropped, checked)


@pytest.mark.slow
def test_candidates_attain_every_window_maximum_more():
    test_candidates_attain_every_window_maximum_and_fgl_covers_gradients(300)


def _two_inputs(shift: float, act: str = "relu"):
    """x in R -> (x, x + shift) as a (1, 2) tensor -> act -> max pool of both -> y."""
    b = GraphBuilder((1,))
    z = b.affine(0, np.array([[1.0], [1.0]]), np.array([0.0, shift]), (1, 2))
    p = b.maxpool(b.layer(z, ActLayer("act", act)), 2, 2)
    return b.finish(b.affine(p, np.array([[1.0]]), None, (1,)))


@pytest.mark.parametrize("act", ["relu", "hardtanh", "tanh", "elu"])
def test_differences_fix_a_window_intervals_cannot(act):
    """x in [-1, 1]: x and x + 1e-9 overlap as intervals, yet x + 1e-9 is always larger: through a
    nondecreasing activation the window is fixed to it (the pre-activations' difference is exact here);
    with the shift 0 (always tied) or -1e-9 the decision keeps both or flips."""
    box = Box(np.array([-1.0]), np.array([1.0]))

    def fixed(shift, how="linear"):
        g = _two_inputs(shift, act)
        return int(graph_slopes(g, box, how).fixed[g.pool_nodes[0]][0])
    assert (fixed(1e-9), fixed(1e-9, "interval"), fixed(0.0), fixed(-1e-9)) == (1, -1, -1, 0)


def test_window_helpers():
    W = np.array([[0, 1, 2], [3, -1, 4], [5, -1, -1]])
    lo, hi = np.arange(6.0), np.arange(6.0) + 1.5
    eff = interval_candidates(W, lo, hi)
    assert eff.tolist() == [[-1, 1, 2], [3, -1, 4], [5, -1, -1]]   # hi 1.5 < best lo 2 is dropped
    assert fixed_inputs(eff).tolist() == [-1, -1, 5]
    w, a, b = window_pairs(eff)
    assert sorted(zip(w.tolist(), a.tolist(), b.tolist())) == [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0)]
    first = (w == 0) & (a == 1)       # sup(v_1 - v_2) < 0 drops input 1 of window 0
    assert drop_dominated(eff, w, a, np.where(first, -1.0, 0.5)).tolist() == [[-1, -1, 2], [3, -1, 4], [5, -1, -1]]
    # a rounding mishap that would drop both is ignored (the window stays whole)
    assert drop_dominated(eff, w, a, np.where(w == 0, -1.0, 0.5))[0].tolist() == [-1, 1, 2]


def test_lenet_like_local_bound_below_interval_only_pruning():
    """On a LeNet-like graph the local bound with pruned windows is never above the one without (the
    candidates are a subset), and the zonotope through the API stays >= sampled gradients."""
    for s in range(12):
        g = random_two_pools(100 + s, "relu")
        rng = np.random.default_rng(s)
        x0 = rng.normal(size=g.input_size)
        domain = Ball(x0, 0.4, "inf")
        c = rng.normal(size=g.output_size)
        full = graph_slopes(g, domain, "interval")
        pruned = graph_slopes(g, domain)
        assert graph_interval_bound(g, c, "inf", pruned) <= graph_interval_bound(g, c, "inf", full) * (1 + 1e-12)
        ub = upper_bound(g, norm="inf", c=c, domain=domain, method="zonotope", lower=False).upper_bound
        X = _points(domain, rng)
        assert dual_norm(g.gradient(X, c), "inf").max() <= ub


def test_pool_first_zonotope_sound_and_tighter(n: int = 120):
    """The zonotope with act -> max pool pairs swapped (one derivative per window whose candidates share
    a box) on 120 random pool graphs (240: -m slow) with nondecreasing activations: never below the FGL enumerated on the
    graph as it is, nor below sampled gradients; below the unswapped pass on some."""
    from lipopt.relaxations import jacobian_zonotope as Z
    tighter = checked = 0
    for s in range(n):
        act = ("relu", "leaky_relu", "hardtanh", "tanh", "elu", "sigmoid")[s % 6]
        g = (random_pool, random_two_pools)[s % 2](1000 + s, act)
        rng = np.random.default_rng(s)
        x0 = rng.normal(size=g.input_size)
        domain = (Ball(x0, (0.1, 0.4)[s % 2], "inf"), Box(x0 - 0.3, x0 + 0.2), None)[s % 3]
        c, norm = rng.normal(size=g.output_size), ("inf", "2", "1")[s % 3]
        slopes = graph_slopes(g, domain)
        if vertex_count(g, slopes) > 1 << 14:
            continue
        checked += 1
        fgl = enumerate_fgl(g, c, norm, slopes, limit=1 << 14)
        fused = Z.zonotope_bound(Z.graph_steps(g, slopes), c, norm).value
        plain = Z.zonotope_bound(Z.graph_steps(g, slopes, pool_first=False), c, norm).value
        assert fused >= fgl * (1 - 1e-12), (s, fused, fgl)
        if domain is not None:
            X = _points(domain, rng, 128)
            assert dual_norm(g.gradient(X, c), norm).max() <= fused
        tighter += fused < plain * (1 - 1e-9)
    assert checked > 0.8 * n and tighter > n // 20, (checked, tighter)


@pytest.mark.slow
def test_pool_first_zonotope_sound_and_tighter_more():
    test_pool_first_zonotope_sound_and_tighter(240)


@pytest.mark.parametrize("budget", [0.25, 1e-12])
def test_pool_first_sound_on_random_boxes(budget, monkeypatch):
    """The swapped steps against the enumerated FGL on arbitrary derivative boxes ({0}, {1}, [0, 1],
    [0.2, 0.7] mixed within windows, overlapping windows, random candidates), with symbols and with none
    (every term in the box part: no slack hides a missing Jacobian)."""
    from lipopt.graph_bounds import GraphSlopes
    from lipopt.relaxations import jacobian_zonotope as Z
    monkeypatch.setattr(Z, "SYMBOL_SHARE", budget)
    boxes = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.2, 0.7]])
    checked = 0
    for s in range(300):
        g = (random_pool, random_two_pools)[s % 2](2000 + s, ("relu", "hardtanh", "sigmoid")[s % 3])
        rng = np.random.default_rng(s)
        lo, hi = [], []
        for i in g.act_nodes:
            pick = boxes[rng.integers(0, 4, g.nodes[i].size)]
            lo.append(pick[:, 0].copy()), hi.append(pick[:, 1].copy())
        windows = {}
        for i in g.pool_nodes:
            W = g.nodes[i].windows.copy()
            drop = (rng.random(W.shape) < 0.3) & (W >= 0)
            drop[np.arange(W.shape[0]), np.argmax(W >= 0, axis=1)] = False   # keep one input per window
            windows[i] = np.where(drop, -1, W)
        slopes = GraphSlopes(tuple(lo), tuple(hi), {i: fixed_inputs(w) for i, w in windows.items()}, windows)
        if vertex_count(g, slopes) > 1 << 12:
            continue
        checked += 1
        c, norm = rng.normal(size=g.output_size), ("inf", "2", "1")[s % 3]
        fgl = enumerate_fgl(g, c, norm, slopes, limit=1 << 12)
        assert Z.zonotope_bound(Z.graph_steps(g, slopes), c, norm).value >= fgl * (1 - 1e-12), s
    assert checked > 200, checked
