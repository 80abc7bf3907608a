"""graph_linear: back-substituted bounds on a graph's node values contain every value reached in the
domain (sampled points, a quarter on vertices, and every corner of small boxes), are never looser than
the interval bounds, and are tighter on residual and pooled ReLU graphs."""
from __future__ import annotations

import numpy as np
import pytest

from graph_nets import random_dag, random_pool, random_residual, random_two_pools
from lipopt.domain import Ball, Box
from lipopt.graph_bounds import interval_bounds
from lipopt.graph_linear import graph_linear_bounds

ACTS = ("relu", "leaky_relu", "tanh", "gelu", "sigmoid")
MAKERS = (random_dag, random_residual, random_pool, random_two_pools)


def _case(seed):
    g = MAKERS[seed % 4](seed, ACTS[(seed // 4) % 5])
    rng = np.random.default_rng(seed + 21)
    x0 = rng.normal(size=g.input_size)
    domain = [Ball(x0, 0.3, "inf"), Box(x0 - 0.2, x0 + 0.5), Ball(x0, 0.4, "2"), Ball(x0, 1.5, "inf")][(seed // 20) % 4]
    return g, domain, rng


def _points(g, domain, rng, n=400):
    lo, hi = domain.bounding_box()
    pts = [domain.sample(n, rng)]
    if g.input_size <= 6:                  # corners of the bounding box that lie in the domain
        corners = np.array(np.meshgrid(*zip(lo, hi))).reshape(g.input_size, -1).T
        pts.append(corners[domain.contains(corners)])
    return np.vstack(pts)


def _check(seed):
    g, domain, rng = _case(seed)
    lin = graph_linear_bounds(g, domain)
    box = interval_bounds(g, domain)
    X = _points(g, domain, rng)
    vals = [np.atleast_2d(v) for v in g.values(X)]
    tighter = 0.0
    for (lo, hi), (ilo, ihi), v in zip(lin, box, vals):
        assert np.all(lo >= ilo) and np.all(hi <= ihi)
        assert np.all(v >= lo) and np.all(v <= hi), seed
        tighter += float(np.sum((ihi - ilo) - (hi - lo)))
    return tighter


@pytest.mark.parametrize("seed", range(80))
def test_linear_bounds_contain_every_value(seed):
    _check(seed)


@pytest.mark.slow
def test_linear_bounds_contain_every_value_many():
    assert sum(_check(seed) > 0 for seed in range(80, 600)) > 100


def test_linear_bounds_tighter_on_deep_graphs():
    """On residual and two-pool graphs with ReLU, some node's enclosure shrinks on most seeds."""
    gains = [_check(seed) for seed in range(0, 80) if seed % 4 in (1, 3) and (seed // 4) % 5 == 0]
    assert sum(x > 1e-9 for x in gains) >= len(gains) // 2


def test_targets_above_the_size_cap_keep_interval_bounds(monkeypatch):
    import lipopt.graph_linear as gl
    g, domain, _ = _case(1)
    monkeypatch.setattr(gl, "MAX_ENTRIES", 0)
    for (lo, hi), (ilo, ihi) in zip(graph_linear_bounds(g, domain), interval_bounds(g, domain)):
        assert np.array_equal(lo, ilo) and np.array_equal(hi, ihi)


def test_a_small_budget_keeps_the_later_targets_interval():
    """Back-substitution takes DOMAIN_SHARE of the budget, by shape-based estimates: none with no time,
    all with no limit, and the same bounds for the same budget."""
    import lipopt.graph_linear as gl
    g, domain, _ = _case(1)
    cost = gl.target_seconds(g)
    assert len(cost) >= 2
    box = interval_bounds(g, domain)
    none = graph_linear_bounds(g, domain, seconds=0.0)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(none, box))
    full = graph_linear_bounds(g, domain)
    first = min(cost)
    some = graph_linear_bounds(g, domain, seconds=cost[first] / gl.DOMAIN_SHARE * (1 + 1e-9))
    assert np.array_equal(some[first][0], full[first][0]) and np.array_equal(some[first][1], full[first][1])
    again = graph_linear_bounds(g, domain, seconds=cost[first] / gl.DOMAIN_SHARE * (1 + 1e-9))
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(some, again))
