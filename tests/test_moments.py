"""Sparse order-2 SDP (relaxations.moments): Shor >= order-2 >= exact, monotone in the clique size,
certified for any multipliers, exact with one clique holding every variable on tiny nets."""
from __future__ import annotations

import numpy as np
import pytest

import lipopt
from helpers import small_network
from lipopt.certify.moments import certify_moments
from lipopt.domain import Box, local_slopes
from lipopt.errors import InvalidInputError
from lipopt.exact.enumerate import exact_fgl
from lipopt.model.random import random_network
from lipopt.polynomial import global_slopes
from lipopt.methods.sdp import order2_bound, shor_bound
from lipopt.relaxations.moments import moment_system, neuron_cliques, sign_polynomial, to_sdp
from lipopt.solvers.sdp import solve_sdp


def _tol(x):
    return 1e-12 * max(1.0, abs(x))


def _c(net):
    m = net.widths[-1]
    if m == 1:
        return np.ones(1)
    c = np.zeros(m)
    c[0], c[1] = 1.0, -1.0
    return c


def _local(net, seed, r=0.3):
    x0 = np.random.default_rng(100 + seed).standard_normal(net.widths[0])
    return local_slopes(net, Box(x0 - r, x0 + r))


CASES = [((4, 6, 1), s) for s in range(6)] + [((3, 7, 3), s) for s in range(6)] + [((6, 9, 1), s) for s in range(4)]


@pytest.mark.parametrize("widths,seed", CASES)
def test_shor_ge_order2_ge_exact_and_monotone(widths, seed):
    net = small_network(widths, seed)
    c = _c(net)
    for slopes in (None, _local(net, seed)):
        exact = exact_fgl(net, c, "inf", slopes).value
        shor = shor_bound(net, c, slopes=slopes).upper
        values = [order2_bound(net, c, slopes, clique_size=q).upper for q in (1, 2, 3, 4)]
        for q, v in zip((1, 2, 3, 4), values):
            assert v >= exact - _tol(exact), (widths, seed, q, v, exact)
            assert v <= shor * (1 + 1e-6) + 1e-9, (widths, seed, q, v, shor)
        # q = 1 is the Shor bound (on +-1 variables); larger cliques contain the smaller ones' blocks
        assert abs(values[0] - shor) <= 1e-5 * max(1.0, shor)
        for a, b in zip(values, values[1:]):
            assert b <= a * (1 + 1e-6) + 1e-9, (widths, seed, values)


def test_order2_strictly_tighter_than_shor_on_random_nets():
    gains = []
    for seed in range(4):
        net = random_network((10, 12, 1), seed=seed)
        c = np.ones(1)
        exact = exact_fgl(net, c).value
        shor = shor_bound(net, c).upper
        o2 = order2_bound(net, c, clique_size=4).upper
        assert exact - _tol(exact) <= o2 <= shor
        gains.append((shor - o2) / (shor - exact))
    # the cliques close a real part of the Shor gap on every seed
    assert min(gains) > 0.1, gains


def test_one_clique_with_every_variable_is_exact_on_tiny_nets():
    for seed in range(6):
        net = small_network((2, 3, 1), seed)
        c = np.ones(1)
        exact = exact_fgl(net, c).value
        n = 2 + 3
        b = order2_bound(net, c, cliques=[tuple(range(n))])
        assert b.upper >= exact - _tol(exact)
        assert b.upper <= exact + 1e-6 * max(1.0, exact), (seed, b.upper, exact)


def test_perturbed_multipliers_still_certify():
    rng = np.random.default_rng(0)
    for seed in range(4):
        net = small_network((5, 7, 1), seed)
        c = np.ones(1)
        exact = exact_fgl(net, c).value
        poly = sign_polynomial(net, c, global_slopes(net))
        system = moment_system(poly, neuron_cliques(poly, 3))
        sol = solve_sdp(to_sdp(system))
        for scale in (0.0, 1e-6, 1e-2, 1.0):
            y = sol.y + scale * rng.standard_normal(sol.y.shape)
            cert = certify_moments(system, y)
            assert cert.upper >= exact - _tol(exact), (seed, scale, cert.upper, exact)
            if scale == 0.0:
                assert cert.upper <= cert.lam + 1e-6 * max(1.0, exact)


def test_fixed_neurons_and_local_domains():
    """Local boxes fix some derivatives: they leave the polynomial's linear part, not the +-1 variables."""
    for seed in range(4):
        net = small_network((4, 8, 1), seed)
        c = np.ones(1)
        slopes = _local(net, seed, r=0.05)
        poly = sign_polynomial(net, c, slopes)
        assert poly.m < 8  # some neurons are fixed at a small radius
        exact = exact_fgl(net, c, "inf", slopes).value
        assert order2_bound(net, c, slopes).upper >= exact - _tol(exact)


def test_api_and_auto_use_it():
    net = random_network((12, 16, 1), seed=1)
    r = lipopt.upper_bound(net, method="sdp2", lower=False)
    s = lipopt.upper_bound(net, method="sdp", lower=False)
    assert r.upper_bound <= s.upper_bound
    assert r.sizes["cliques"] == 16 and r.sizes["clique_block"] == 11
    r2 = lipopt.upper_bound(net, method="sdp2", lower=False, clique_size=2)
    assert r2.sizes["clique_block"] == 4 and r2.upper_bound >= r.upper_bound * (1 - 1e-6)


@pytest.mark.parametrize("kwargs,match", [
    ({"norm": "2"}, "l_inf"),
    ({"clique_size": 0}, "clique_size"),
    ({"clique_size": 7}, "clique_size"),
    ({"clique_size": True}, "clique_size"),
    ({"cliques": [(0, 99)]}, "clique"),
    ({"cliques": [(1, 1)]}, "clique"),
])
def test_bad_input(kwargs, match):
    net = small_network((3, 4, 1), 0)
    with pytest.raises(InvalidInputError, match=match):
        order2_bound(net, np.ones(1), **kwargs)


def test_deeper_nets_are_refused():
    net = small_network((3, 4, 4, 1), 0)
    with pytest.raises(InvalidInputError, match="one hidden layer"):
        order2_bound(net, np.ones(1))


@pytest.mark.slow   # subprocess / solver heavy (5-7 s); CI runs -m slow too
def test_cli_sdp2_bound_and_errors():
    import json
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]

    def run(*args):
        return subprocess.run([sys.executable, "-m", "lipopt.cli", *map(str, args)], capture_output=True,
                              text=True, cwd=root, timeout=120)

    example = root / "examples" / "banded_10_10_1.npz"
    p = run("bound", example, "--method", "sdp2", "--clique-size", "3", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    exact = exact_fgl(lipopt.load(example), np.ones(1)).value
    assert d["method"] == "sdp2" and d["lower_bound"] <= exact <= d["upper_bound"]
    assert d["sizes"]["clique_block"] == 7
    for args, word in ((("--clique-size", "9"), "--clique-size"), (("--norm", "2"), "supports norms inf")):
        p = run("bound", example, "--method", "sdp2", *args)
        assert p.returncode == 2 and word in p.stderr and "Traceback" not in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    p = run("bound", root / "examples" / "dense_8_12_6_1.npz", "--method", "sdp2")
    assert p.returncode == 2 and "needs 1 hidden layer" in p.stderr
