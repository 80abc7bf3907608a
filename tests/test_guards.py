"""Size and memory guards (estimates from shapes, refusals before allocation) and option validation."""
from __future__ import annotations

import tracemalloc
from collections import Counter

import numpy as np
import pytest

import lipopt
from lipopt import memory, options
from lipopt.domain import Ball, local_slopes
from lipopt.errors import InvalidInputError
from lipopt.inspect import summarize
from lipopt.model import build_network, output_vector
from lipopt.model.random import random_network
from lipopt.polynomial import build_polynomial, global_slopes
from lipopt.relaxations.cliques import STRATEGIES, clique_sizes, network_cliques
from lipopt.relaxations.krivine import columns_for_sizes, estimate_size


def _dense(widths, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    Ws = [scale * rng.standard_normal((widths[i + 1], widths[i])) / np.sqrt(widths[i]) for i in range(len(widths) - 1)]
    bs = [0.1 * rng.standard_normal(w) for w in widths[1:]]
    return build_network(Ws, bs, None)


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "dense"])
@pytest.mark.parametrize("seed", range(12))
def test_clique_sizes_cover_the_built_cliques(strategy, seed):
    """The shape-only sizes are the built cliques' sizes before de-duplication: every built clique's size
    appears among them, so the column estimate never undercounts."""
    rng = np.random.default_rng(seed)
    depth = 1 + seed % 3
    widths = [int(rng.integers(2, 7)) for _ in range(depth + 1)] + [int(rng.integers(1, 3))]
    net = random_network(widths, band=int(rng.integers(1, 4)) if seed % 2 else None, seed=seed)
    c = output_vector(net, 0)
    slopes = global_slopes(net)
    if seed % 3 == 0:  # local slopes: fixed neurons are constants, dead ones leave the paths
        slopes = local_slopes(net, Ball(np.zeros(widths[0]), 0.3))
    poly = build_polynomial(net, c, slopes)
    built = network_cliques(net, c, slopes, poly, strategy)
    sizes = clique_sizes(net, c, slopes, strategy)
    sizes = sizes[sizes > 0]
    assert not Counter(len(q) for q in built) - Counter(sizes.tolist())
    for k in (net.depth + 1, net.depth + 2):
        assert columns_for_sizes(sizes, k) >= estimate_size(built, k)


def test_large_dense_lp_refused_before_building():
    """A dense 2048-2048-1 net at LiPopt-2: refused from the clique sizes, without building the
    4.2 M-path polynomial (its path table alone would take hundreds of MB)."""
    net = _dense([2048, 2048, 1])
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInputError, match="LP columns"):
            lipopt.upper_bound(net, method="lp", degree=2, lower=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200e6


def test_degree_below_depth_refused_before_building():
    net = _dense([5, 4, 3, 1])
    with pytest.raises(InvalidInputError, match="--degree 3"):
        lipopt.upper_bound(net, method="lp", degree=2, lower=False)


def test_local_lipsdp_products_refused_under_memory_limit():
    """Locally most neurons are fixed, so each LipSDP neuron constraint becomes a dense outer product
    (the 10-16 GB runs of the issue): refused from the product count, before the arrays exist."""
    net = _dense([300, 200, 10], seed=1)
    x0 = np.full(300, 0.5)
    dom = Ball(x0, 0.01, p="2", clip=(0, 1))
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInputError, match="memory limit"):
            lipopt.upper_bound(net, norm="2", method="lipsdp", output=0, domain=dom, lower=False,
                               memory_limit="500MB")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100e6


def test_memory_limit_applies_to_every_sdp_and_is_reset():
    net = _dense([30, 20, 1])
    for method, norm in (("sdp", "inf"), ("lipsdp", "2"), ("sdp", "2")):
        with pytest.raises(InvalidInputError, match="memory limit"):
            lipopt.upper_bound(net, norm=norm, method=method, lower=False, memory_limit="1MB")
    assert memory.current() == options.default_memory_limit()
    assert lipopt.upper_bound(net, norm="2", method="lipsdp", lower=False).upper_bound > 0


def test_inspect_skips_big_polynomials():
    net = _dense([1500, 1500, 1])
    info = summarize(net, output_vector(net, 0))
    assert info["paths"] == 1500 * 1500 and "monomials" not in info
    assert info["clique_size"]["max"] == 1501
    assert info["lp_columns_estimate"][2] == 1500 * columns_for_sizes([1501], 2)
    small = random_network([6, 5, 1], band=2, seed=3)
    info = summarize(small, output_vector(small, 0))
    assert info["monomials"] == build_polynomial(small, output_vector(small, 0)).n_monomials


def test_zero_polynomial_with_unit_cliques():
    """c^T W_d = 0: P is identically zero; the unit-clique family is empty and the LP still answers."""
    net = build_network([np.ones((3, 2)), np.zeros((1, 3))], [np.zeros(3), np.zeros(1)], None)
    for cliques in STRATEGIES:
        r = lipopt.upper_bound(net, method="lp", cliques=cliques)
        assert 0 <= r.upper_bound < 1e-300 and r.lower_bound == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"samples": 0}, "samples"),
    ({"samples": 10**9}, "samples"), ({"time_limit": -1}, "time_limit"), ({"time_limit": float("nan")}, "time_limit"),
    ({"time_limit": 0}, "time_limit"), ({"degree": 0}, "degree"), ({"degree": 99}, "degree"),
    ({"clique_size": 0}, "clique_size"), ({"max_columns": 0}, "max_columns"), ({"memory_limit": "abc"}, "memory_limit"),
    ({"memory_limit": 10}, "memory_limit"), ({"solver": "gurobi"}, "solver"), ({"lp_method": "barrier"}, "lp_method"),
    ({"sdp_solver": "mosek"}, "sdp_solver"), ({"preactivation": "crown"}, "preactivation"),
    ({"coverage": "loose"}, "coverage"), ({"method": "magic"}, "method"),
])
def test_upper_bound_options_checked_up_front(kwargs, match):
    net = random_network([3, 3, 1], seed=0)
    with pytest.raises(InvalidInputError, match=match):
        lipopt.upper_bound(net, **kwargs)


@pytest.mark.parametrize("kwargs", [{"seed": -1}, {"samples": 0}, {"time_limit": -1}, {"time_limit": 0},
                                    {"method": "exact"}, {"memory_limit": "0GB"}])
def test_lower_bound_options_checked_up_front(kwargs):
    net = random_network([3, 3, 1], seed=0)
    with pytest.raises(InvalidInputError):
        lipopt.lower_bound(net, **kwargs)


def test_memory_limit_parsing():
    assert options.memory_limit("4GB") == 4_000_000_000
    assert options.memory_limit("512 mb") == 512_000_000
    assert options.memory_limit(2e9) == 2_000_000_000
    assert options.memory_limit(None) == options.default_memory_limit() > 0


def test_input_shape_must_match_the_inputs():
    assert options.input_shape((1, 2, 3), 6) == (1, 2, 3)
    for bad in [(0,), (-3, 4), (), (2.5,), ("a",)]:
        with pytest.raises(InvalidInputError):
            options.input_shape(bad)
    with pytest.raises(InvalidInputError, match="6 entries"):
        options.input_shape((2, 3), 5)


def test_lower_bound_label_names_the_witness_source():
    """The MIP's own witness, when better than sampling, is labelled as such (it used to be
    overwritten with "sampling")."""
    from lipopt.domain import Box
    labels = set()
    for seed in range(4):
        net = random_network([3, 6, 1], seed=seed)
        r = lipopt.upper_bound(net, method="exact", domain=Box(-np.ones(3), np.ones(3)), samples=1, seed=seed)
        label = r.details["lower_bound_method"]
        labels.add(label)
        assert label in ("sampling", "exact witness")
        if label == "exact witness":
            assert r.lower_bound == r.details["bracket"][0]
    assert "exact witness" in labels
