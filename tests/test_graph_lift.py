"""model.graph_lift: a graph of affine / act / add / concat nodes and its lifted chain (identity neurons
carry skips) have the same Jacobian for every slope choice, hence the same FGL over the lifted box."""
from __future__ import annotations

import numpy as np
import pytest

from graph_nets import random_dag, random_residual
from lipopt.domain import Ball, Box
from lipopt.exact.enumerate import exact_fgl
from lipopt.graph_bounds import enumerate_fgl, graph_slopes, jacobian_at
from lipopt.model.graph_lift import POOL_RELU, lift, liftable, lifted_slopes

ACTS = ("relu", "leaky_relu", "tanh", "gelu")


def _graph(seed):
    act = ACTS[seed % 4]
    return random_dag(seed, act) if seed % 3 else random_residual(seed, act)


def _chain_jacobian(net, c, s):
    """c^T J of the chain for slope vectors s (one per hidden layer)."""
    v = np.asarray(c, float)
    for l in range(net.depth, 0, -1):
        v = (net.weights[l].T @ v) * s[l - 1]
    return net.weights[0].T @ v


@pytest.mark.parametrize("seed", range(60))
def test_lifted_jacobian_equals_the_graphs(seed):
    g = _graph(seed)
    assert liftable(g)
    lifted = lift(g)
    rng = np.random.default_rng(seed)
    c = rng.normal(size=g.output_size)
    for _ in range(5):
        s = [rng.uniform(-0.5, 1.5, size=g.nodes[i].size) for i in g.act_nodes]
        box = lifted_slopes(g, lifted, s, s)
        assert all(np.all(lo == hi) for lo, hi in zip(box.lo, box.hi))
        Jg = jacobian_at(g, c, [x[None, :] for x in s], {})[0]
        Jc = _chain_jacobian(lifted.net, c, box.lo)
        np.testing.assert_allclose(Jc, Jg, rtol=1e-12, atol=1e-12)
    # identity neurons are exactly the rows the box fixes at [1, 1] outside the graph's activations
    assert lifted.n_identity == sum(s for layer in lifted.parts for j, s in layer if j < 0)


@pytest.mark.parametrize("seed", range(40))
def test_lifted_fgl_equals_the_graphs(seed):
    g = _graph(seed)
    lifted = lift(g)
    rng = np.random.default_rng(seed + 3)
    c = rng.normal(size=g.output_size)
    x0 = rng.normal(size=g.input_size)
    domain = [None, Ball(x0, 0.3, "inf"), Box(x0 - 0.2, x0 + 0.4)][seed % 3]
    for norm, a, b in _fgl_pairs(g, lifted, c, domain):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-12), (seed, norm)


def _fgl_pairs(g, lifted, c, domain):
    """(norm, the graph's enumerated FGL, the lifted chain's exact FGL) for l2, l_inf, l1."""
    sl = graph_slopes(g, domain)
    box = lifted_slopes(g, lifted, sl.lo, sl.hi)
    for norm in ("2", "inf", "1"):
        b = exact_fgl(lifted.net, c, norm, box)
        yield norm, enumerate_fgl(g, c, norm, sl), getattr(b, "value", b)


def test_pools_lift_only_when_asked():
    from graph_nets import random_pool
    g = random_pool(1)
    assert liftable(g) and not liftable(g, pools=False)


def _pool_case(seed):
    from graph_nets import random_pool
    g = random_pool(seed, ACTS[seed % 4])
    rng = np.random.default_rng(seed + 5)
    x0 = rng.normal(size=g.input_size)
    domain = [None, Ball(x0, 0.3, "inf"), Box(x0 - 0.2, x0 + 0.4)][seed % 3]
    return g, rng.normal(size=g.output_size), domain


def _enumerable(seed) -> bool:
    from graph_nets import vertex_count
    g, _, domain = _pool_case(seed)
    sl = graph_slopes(g, domain)
    box = lifted_slopes(g, lift(g), sl.lo, sl.hi)
    free = sum(int(np.count_nonzero(lo < hi)) for lo, hi in zip(box.lo, box.hi))
    return free <= 16 and vertex_count(g, sl) <= 2 ** 16


POOL_SEEDS = [s for s in range(40) if _enumerable(s)]


def test_pool_seeds_cover_every_domain():
    assert len(POOL_SEEDS) >= 30 and {s % 3 for s in POOL_SEEDS} == {0, 1, 2}


@pytest.mark.parametrize("seed", POOL_SEEDS)
def test_pool_tournaments_keep_the_fgl(seed):
    """Max pools lift as tournaments b + relu(a - b): at the [0, 1] box's vertices the chain's Jacobians are
    the graph's window selections, so globally the FGLs are equal; a local domain can fix a window's
    maximum, which the chain does not know: never below there."""
    g, c, domain = _pool_case(seed)
    lifted = lift(g)
    assert any(j == POOL_RELU for layer in lifted.parts for j, _ in layer)
    for norm, a, b in _fgl_pairs(g, lifted, c, domain):
        if domain is None:
            assert b == pytest.approx(a, rel=1e-9, abs=1e-12), (seed, norm)
        else:
            assert b >= a * (1 - 1e-9) - 1e-12, (seed, norm)
