"""Local bounds: domains, interval / linear pre-activation bounds, slope ranges, local lower bounds."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import small_network
from lipopt.baselines.ascent import local_lower_bound
from lipopt.domain import Ball, Box, interval_bounds, linear_bounds, relaxation
from lipopt.errors import InvalidInputError
from lipopt.exact import exact_fgl
from lipopt.exact.enumerate import dual_norm
from lipopt.model import build_network
from lipopt.model.activations import ACTIVATIONS, slope_range
from lipopt.model.network import activation_slope, activation_value
from lipopt.model.smooth import CRITICAL
from lipopt.slopes import count_fixed, local_slopes, slope_box

ACTS = sorted(ACTIVATIONS)
WIDTHS = [3, 5, 5, 4, 2]
SEEDS = range(12)


def _net(seed, act="relu", widths=WIDTHS, scale=1.0):
    base = small_network(widths, seed, scale=scale)
    return build_network(base.weights, base.biases, [act] * base.depth)


def _domains(seed, n):
    rng = np.random.default_rng(1000 + seed)
    x0 = rng.uniform(-0.5, 0.5, n)
    r = rng.uniform(0.05, 1.0)
    return [Box(x0 - r, x0 + 0.5 * r),
            Ball(x0, r, "inf"),
            Ball(x0, r, "inf", clip=(-0.6, 0.6)),
            Ball(x0, r, "2"),
            Ball(x0, r, "2", clip=(x0 - 0.3 * r, 0.6))]


# ---------------------------------------------------------------------------------------------------
# (c) slope ranges

def _intervals(rng, k=300):
    c = rng.standard_normal(k) * rng.choice([0.1, 1.0, 5.0, 40.0], k)
    w = np.abs(rng.standard_normal(k)) * rng.choice([1e-6, 0.01, 0.5, 3.0, 30.0], k)
    return c - w, c + w


@pytest.mark.parametrize("name", ACTS)
def test_slope_range_exact_and_sound(name):
    act = ACTIVATIONS[name]
    rng = np.random.default_rng(7)
    lo, hi = _intervals(rng)
    slo, shi = slope_range(act, lo, hi)
    t = np.linspace(0.0, 1.0, 4001)
    z = lo[:, None] + t[None, :] * (hi - lo)[:, None]
    z[:, -1] = hi
    z = np.hstack([z, np.clip(0.0, lo, hi)[:, None]])  # the peak of tanh' / sigmoid'
    peaks = [v for c in CRITICAL.values() for v in (c, -c)]  # the extrema of gelu' / silu'
    z = np.hstack([z] + [np.clip(p, lo, hi)[:, None] for p in peaks])
    d = activation_slope(act, z)
    assert np.all(slo[:, None] <= d) and np.all(d <= shi[:, None])
    np.testing.assert_allclose(slo, d.min(axis=1), rtol=0, atol=1e-6)
    np.testing.assert_allclose(shi, d.max(axis=1), rtol=0, atol=1e-6)
    assert np.all(act.slope_lo <= slo) and np.all(shi <= act.slope_hi)


@pytest.mark.parametrize("name", ACTS)
def test_slope_range_extremes_and_points(name):
    act = ACTIVATIONS[name]
    z = np.array([-1e308, -800.0, -30.0, -1e-300, 0.0, 1e-300, 2.0, 30.0, 800.0, 1e308])
    slo, shi = slope_range(act, z, z)  # degenerate intervals: contain sigma'(z)
    d = activation_slope(act, z)
    assert np.all(slo <= d) and np.all(d <= shi)
    with pytest.raises(InvalidInputError):
        slope_range(act, np.array([1.0]), np.array([0.0]))


@pytest.mark.parametrize("name", ACTS)
def test_relaxation_lines_enclose_activation(name):
    act = ACTIVATIONS[name]
    lo, hi = _intervals(np.random.default_rng(11))
    aL, bL, aU, bU = relaxation(act, lo, hi)
    t = np.linspace(0.0, 1.0, 2001)
    z = np.hstack([lo[:, None] + t[None, :] * (hi - lo)[:, None], hi[:, None]])
    v = activation_value(act, z)
    assert np.all(aL[:, None] * z + bL[:, None] <= v) and np.all(v <= aU[:, None] * z + bU[:, None])


@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
def test_kink_touching_zero_is_free(name):
    act = ACTIVATIONS[name]
    slo, shi = slope_range(act, np.array([-1.0, 0.0, -2.0, 0.5, -3.0]), np.array([0.0, 1.0, 3.0, 2.0, -1.0]))
    left = act.slope_lo
    np.testing.assert_array_equal(slo, [left, left, left, 1.0, left])
    np.testing.assert_array_equal(shi, [1.0, 1.0, 1.0, 1.0, left])


# ---------------------------------------------------------------------------------------------------
# (a), (b) pre-activation bounds

@pytest.mark.parametrize("act", ACTS)
def test_samples_inside_bounds_and_linear_tighter(act):
    for seed in range(6):
        net = _net(seed, act)
        for dom in _domains(seed, WIDTHS[0]):
            ib, lb = interval_bounds(net, dom), linear_bounds(net, dom)
            x = dom.sample(400, np.random.default_rng(seed))
            assert np.all(dom.contains(x))
            _, zs = net.forward_with_preactivations(x)
            for z, il, ih, ll, lh in zip(zs, ib.lo, ib.hi, lb.lo, lb.hi):
                assert np.all(il <= z) and np.all(z <= ih)
                assert np.all(ll <= z) and np.all(z <= lh)
                assert np.all(il <= ll) and np.all(lh <= ih)   # never looser


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "softplus", "elu"])
def test_bounds_sound_with_saturated_units(act):
    for seed in range(4):
        net = _net(seed, act, widths=[4, 8, 8, 8, 1], scale=4.0)
        dom = Ball(np.zeros(4), 2.0, "2")
        lb = linear_bounds(net, dom)
        _, zs = net.forward_with_preactivations(dom.sample(2000, np.random.default_rng(seed)))
        for z, l, h in zip(zs, lb.lo, lb.hi):
            assert np.all(l <= z) and np.all(z <= h)
        sb = slope_box(net, lb)
        for z, act_, s_lo, s_hi in zip(zs, net.activations, sb.lo, sb.hi):
            d = activation_slope(act_, z)
            assert np.all(s_lo <= d) and np.all(d <= s_hi)


def test_linear_strictly_tighter_on_most_seeds():
    tighter = 0
    for seed in SEEDS:
        net = _net(seed, "relu")
        dom = Ball(np.zeros(WIDTHS[0]), 1.0, "inf")
        ib, lb = interval_bounds(net, dom), linear_bounds(net, dom)
        wi = sum(float(np.sum(h - l)) for l, h in zip(ib.lo[1:], ib.hi[1:]))
        wl = sum(float(np.sum(h - l)) for l, h in zip(lb.lo[1:], lb.hi[1:]))
        tighter += wl < wi * (1 - 1e-6)
    assert tighter >= 0.8 * len(SEEDS)


def test_l2_first_layer_uses_row_norm():
    net = _net(0)
    dom = Ball(np.zeros(WIDTHS[0]), 0.3, "2")
    ib = interval_bounds(net, dom)
    W = net.weights[0].toarray()
    rad = 0.3 * np.linalg.norm(W, axis=1)
    np.testing.assert_allclose(ib.hi[0], net.biases[0] + rad, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ib.lo[0], net.biases[0] - rad, rtol=0, atol=1e-10)


def test_domain_errors():
    net = _net(0)
    with pytest.raises(InvalidInputError, match="dimension"):
        interval_bounds(net, Box(np.zeros(2), np.ones(2)))
    with pytest.raises(InvalidInputError, match="empty box"):
        Box(np.ones(3), np.zeros(3))
    with pytest.raises(InvalidInputError, match="radius"):
        Ball(np.zeros(3), -1.0)
    with pytest.raises(InvalidInputError, match="norm"):
        Ball(np.zeros(3), 1.0, "1")
    with pytest.raises(InvalidInputError, match="clip"):
        Ball(np.full(3, 2.0), 1.0, "2", clip=(0, 1))
    with pytest.raises(InvalidInputError):
        linear_bounds(net, "not a domain")


# ---------------------------------------------------------------------------------------------------
# (d), (e) local lower and upper bounds

@pytest.mark.parametrize("act", ["relu", "tanh", "elu"])
def test_local_lower_bound_witness(act):
    for seed in range(4):
        net = _net(seed, act)
        c = np.array([1.0, -1.0])
        for dom in _domains(seed, WIDTHS[0])[::2]:
            for norm in ("inf", "2"):
                r = local_lower_bound(net, c, dom, norm=norm, samples=256, restarts=3, steps=15, seed=seed)
                assert dom.contains(r.point[None, :])[0]
                assert r.value == float(dual_norm(net.gradient(r.point[None, :], c), norm)[0])


@pytest.mark.parametrize("act", ACTS)
def test_local_fgl_dominates_local_gradients(act):
    for seed in range(5):
        net = _net(seed, act)
        c = np.array([1.0, -1.0])
        for dom in _domains(seed, WIDTHS[0])[1::2]:
            sb = slope_box(net, linear_bounds(net, dom))
            ub = exact_fgl(net, c, slopes=sb).value
            glob = exact_fgl(net, c).value
            x = dom.sample(500, np.random.default_rng(seed))
            grads = dual_norm(net.gradient(x, c), "inf")
            lb = local_lower_bound(net, c, dom, samples=256, restarts=2, steps=10, seed=seed).value
            assert grads.max() <= ub * (1 + 1e-12) and lb <= ub * (1 + 1e-12)  # exact_fgl: float sums
            assert ub <= glob * (1 + 1e-9)
            ib_ub = exact_fgl(net, c, slopes=local_slopes(net, dom, "interval")).value
            assert ub <= ib_ub * (1 + 1e-9)


@pytest.mark.parametrize("act", ACTS)
def test_local_fgl_tends_to_gradient_norm(act):
    for seed in range(4):
        net = _net(seed, act)
        c = np.array([1.0, -1.0])
        x0 = np.random.default_rng(seed).uniform(-1, 1, WIDTHS[0])
        g = float(dual_norm(net.gradient(x0[None, :], c), "inf")[0])
        prev = {"inf": np.inf, "2": np.inf}
        for r in (1e-1, 1e-3, 1e-6, 1e-9):
            for p in ("inf", "2"):
                sb = slope_box(net, linear_bounds(net, Ball(x0, r, p)))
                v = exact_fgl(net, c, slopes=sb).value
                assert v >= g * (1 - 1e-12)
                assert v <= prev[p] * (1 + 1e-9)  # nested balls: the local FGL does not increase
                prev[p] = v
        assert v == pytest.approx(g, rel=1e-6)
        if act in ("relu", "leaky_relu"):
            assert count_fixed(sb) == sum(WIDTHS[1:-1])
