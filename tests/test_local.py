"""Local LiPopt bounds: never below the exact local FGL nor the local lower bound; shrink to
||grad f(center)||_1 as the radius goes to 0; other activations through the LP."""
import itertools

import numpy as np
import pytest

import lipopt
from lipopt.domain import Ball, Box, local_slopes
from lipopt.exact import exact_fgl
from lipopt.model import build_network

from helpers import small_network

ACTS = ["relu", "leaky_relu", "elu", "tanh", "sigmoid", "softplus"]


def with_activation(net, act):
    return build_network(net.weights, net.biases, [act] * net.depth)


CASES = list(itertools.product([(4, 5, 1), (3, 4, 3, 1)], [0.05, 0.5, 2.0], range(6)))


@pytest.mark.parametrize("widths,radius,seed", CASES)
def test_local_lp_sound_relu(widths, radius, seed):
    net = small_network(widths, seed)
    rng = np.random.default_rng(seed)
    dom = Ball(rng.uniform(-1, 1, widths[0]), radius, "inf")
    r = lipopt.upper_bound(net, degree=len(widths), domain=dom, samples=500, seed=seed)
    exact = exact_fgl(net, np.ones(1), slopes=local_slopes(net, dom)).value
    assert r.upper_bound >= exact
    assert r.upper_bound >= r.lower_bound
    assert r.upper_bound <= lipopt.upper_bound(net, degree=len(widths), lower=False).upper_bound + 1e-9


@pytest.mark.parametrize("act,seed", list(itertools.product(ACTS, range(4))))
def test_local_and_global_lp_other_activations(act, seed):
    net = with_activation(small_network((4, 5, 4, 1), seed), act)
    rng = np.random.default_rng(seed)
    for dom in (None, Box(rng.uniform(-1, 0, 4), rng.uniform(0, 1, 4)), Ball(np.zeros(4), 0.3, "2")):
        slopes = None if dom is None else local_slopes(net, dom)
        r = lipopt.upper_bound(net, degree=3, domain=dom, samples=500, seed=seed)
        assert r.upper_bound >= exact_fgl(net, np.ones(1), slopes=slopes).value
        assert r.upper_bound >= r.lower_bound


@pytest.mark.parametrize("seed", range(5))
def test_radius_to_zero_gives_gradient_norm(seed):
    net = with_activation(small_network((5, 6, 1), seed), "tanh")
    x0 = np.random.default_rng(seed).uniform(-1, 1, 5)
    g = np.abs(net.gradient(x0[None, :], np.ones(1))[0]).sum()
    prev = np.inf
    for radius in (1.0, 1e-2, 1e-4, 1e-7):
        ub = lipopt.upper_bound(net, degree=3, domain=Ball(x0, radius), lower=False).upper_bound
        assert ub >= g * (1 - 1e-12)
        assert ub <= prev * (1 + 1e-7)
        prev = ub
    assert prev == pytest.approx(g, rel=1e-5)


def test_linear_preactivation_fixes_at_least_as_many_neurons():
    net = small_network((6, 8, 6, 1), 3)
    dom = Ball(np.zeros(6), 0.2)
    lin = lipopt.upper_bound(net, domain=dom, preactivation="linear", lower=False)
    box = lipopt.upper_bound(net, domain=dom, preactivation="interval", lower=False)
    assert lin.details["fixed_neurons"] >= box.details["fixed_neurons"]
    assert lin.upper_bound <= box.upper_bound * (1 + 1e-7)
