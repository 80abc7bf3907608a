"""Scale covariance (L(a f) = a L(f)) and overflow safety of every upper-bound method (lipopt.scaling)."""
import math
from fractions import Fraction

import numpy as np
import pytest
from helpers import small_network

import lipopt
from lipopt.domain import Box, PreactivationBounds, local_slopes, slope_box
from lipopt.errors import SolverFailure
from lipopt.model import build_network
from lipopt.scaling import exact_range, normalise, round_trips, scale_down, scale_up

DBL_MAX = float(np.finfo(np.float64).max)


def scaled(net, factors, running=True):
    """Layer l's weights times factors[l], biases times the running product (the same function up to
    the product of the factors for ReLU) or, running=False, times factors[l] too (the same weights-only
    bounds up to that product). Power-of-two factors are exact."""
    Ws, bs, run = [], [], 1.0
    for W, b, f in zip(net.weights, net.biases, factors):
        run = run * f if running else f
        Ws.append(W.toarray() * f)
        bs.append(b * run)
    return build_network(Ws, bs)


def random_relu(seed):
    rng = np.random.default_rng(seed)
    depth = 1 + seed % 3
    widths = tuple(int(w) for w in rng.integers(2, 7, depth + 1)) + (1,)
    return small_network(widths, seed)


# (method, norm, needs a box domain, only one hidden layer)
METHODS = [("product", "inf", False, False), ("lp", "inf", False, False), ("sdp", "inf", False, False),
           ("sdp", "2", False, False), ("sdp2", "inf", False, True), ("lipsdp", "2", False, False),
           ("exact-fgl", "inf", False, False), ("auto", "inf", False, False), ("exact", "inf", True, False)]


@pytest.mark.parametrize("seed", range(3))
def test_power_of_two_layer_scales_scale_every_bound_exactly(seed):
    """k_l in -60..60 per layer: every method's bound (and the lower bound and its witness) is the
    original one times 2^(sum k), bit for bit: both nets normalise to the same network."""
    net = random_relu(seed)
    rng = np.random.default_rng(100 + seed)
    ks = [int(k) for k in rng.integers(-60, 61, len(net.weights))]
    big = scaled(net, [2.0**k for k in ks])
    K = sum(ks)
    box = Box(-np.ones(net.widths[0]), np.ones(net.widths[0]))
    for method, norm, local, one_layer in METHODS:
        if one_layer and net.depth != 1:
            continue
        kw = {"norm": norm, "method": method, "time_limit": 30, "domain": box if local else None}
        a = lipopt.upper_bound(net, **kw)
        b = lipopt.upper_bound(big, **kw)
        assert math.ldexp(b.upper_bound, -K) == a.upper_bound, (method, norm)
        assert abs(math.ldexp(b.upper_bound, -K) - a.upper_bound) <= 1e-9 * abs(a.upper_bound)
        assert math.ldexp(b.lower_bound, -K) == a.lower_bound, (method, norm)
        assert b.details["lower_bound_witness"] == a.details["lower_bound_witness"]
        assert a.lower_bound <= a.upper_bound
        if "bracket" in a.details:
            assert [math.ldexp(v, -K) for v in b.details["bracket"]] == a.details["bracket"]
        if method == "exact":
            assert b.details["witness_x"] == a.details["witness_x"]


def test_normalised_network_is_the_original_scaled_exactly():
    net = scaled(small_network((4, 5, 3, 2), 7), [2.0**40, 2.0**-70, 3.0])
    sc = normalise(net, np.array([1.0, -1.0]), consistent=True)
    assert sc is not None and sc.consistent
    for W in sc.net.weights:
        assert 0.5 <= np.abs(W.data).max() < 1.0
    x = np.random.default_rng(0).standard_normal((50, 4))
    S = sum(sc.exponents)
    assert np.array_equal(np.ldexp(sc.net.forward(x), S), net.forward(x))
    assert np.array_equal(np.ldexp(sc.net.gradient(x, sc.vec), sc.exponent), net.gradient(x, [1.0, -1.0]))


def test_normalisation_never_loses_bits():
    """A subnormal weight next to a huge one: the exponent is lowered until the round trip is exact."""
    W0 = np.array([[1e300, 5e-324], [3.0, -2.0]])
    net = build_network([W0, np.array([[1.0, 1.0]])], [np.zeros(2), np.zeros(1)])
    sc = normalise(net)
    assert sc.exponents[0] == exact_range(W0)[1] == 0
    assert np.array_equal(np.ldexp(sc.net.weights[0].toarray(), sc.exponents[0]), W0)
    x = np.array([1e-300, 3e-310, 4.0])
    lo, hi = exact_range(x)
    assert round_trips(x, hi) and not round_trips(x, hi + 1)
    assert round_trips(x, lo) and not round_trips(x, lo - 1)


def test_scaling_back_rounds_outward():
    assert scale_up(1.5, 3) == 12.0 and scale_down(1.5, 3) == 12.0
    with pytest.raises(SolverFailure, match="float64 range"):
        scale_up(1.5, 2000)
    with pytest.raises(SolverFailure):
        scale_up(math.nan, 0)
    assert scale_down(1.5, 2000) == DBL_MAX
    x = 1.2345678901234567
    for K in (-1060, -1074, -1100):  # underflow into the subnormals or to zero
        u, d = scale_up(x, K), scale_down(x, K)
        exact = Fraction(x) * Fraction(2) ** K
        assert Fraction(d) <= exact <= Fraction(u) and u > 0


@pytest.mark.parametrize("s", [100.0, 1e3, 1e4])
def test_sdp_methods_survive_large_non_power_of_two_scales(s):
    net = small_network((2, 3, 1), 0)
    big = scaled(net, [s, s])
    for method, norm in [("lipsdp", "2"), ("sdp", "inf")]:
        a = lipopt.upper_bound(net, norm=norm, method=method, lower=False).upper_bound
        b = lipopt.upper_bound(big, norm=norm, method=method, lower=False).upper_bound
        assert b / (s * s) == pytest.approx(a, rel=1e-6), (method, s)


def test_lipsdp_with_opposite_layer_scales():
    """Scales 1e30 / 1e-30 leave f unchanged (up to rounding): LipSDP must not certify ~1e20."""
    net = small_network((2, 3, 1), 0)
    odd = scaled(net, [1e30, 1e-30])
    a = lipopt.upper_bound(net, norm="2", method="lipsdp", lower=False).upper_bound
    b = lipopt.upper_bound(odd, norm="2", method="lipsdp")
    assert b.upper_bound == pytest.approx(a, rel=1e-6)
    assert b.lower_bound <= b.upper_bound


@pytest.mark.parametrize("seed", range(2))
def test_huge_weights_give_a_bound_or_solver_failure(seed):
    """Weights ~1e150-1e200: the constant itself may exceed float64 (SolverFailure), never a traceback;
    lower bounds stay finite. With exponents that cancel (2^660, 2^660, 2^-1000) the bound is finite
    and exactly the original one times 2^320 (weights-only methods; biases do not enter)."""
    net = small_network((3, 4, 3, 1) if seed == 0 else (2, 3, 3, 3, 1), seed)
    rng = np.random.default_rng(seed)
    huge = scaled(net, [10.0 ** rng.uniform(150, 200) for _ in net.weights], running=False)
    for method in ("product", "exact-fgl", "auto"):
        try:
            r = lipopt.upper_bound(huge, method=method, time_limit=10)
        except SolverFailure as exc:
            assert "float64" in str(exc)
        else:
            assert math.isfinite(r.upper_bound) and 0 <= r.lower_bound <= r.upper_bound
    for method in ("sampling", "ascent"):
        lb = lipopt.lower_bound(huge, method=method).lower_bound
        assert math.isfinite(lb) and lb > 0
    ks = [660, 660, -1000, 0][:len(net.weights)]
    cancel = scaled(net, [2.0**k for k in ks], running=False)
    for method in ("product", "exact-fgl", "auto"):
        a = lipopt.upper_bound(net, method=method, time_limit=10)
        b = lipopt.upper_bound(cancel, method=method, time_limit=10)
        assert math.ldexp(b.upper_bound, -sum(ks)) == a.upper_bound
        assert math.isfinite(b.lower_bound) and b.lower_bound <= b.upper_bound


def test_overflowing_preactivation_bounds_leave_neurons_free():
    """inf / NaN pre-activation bounds (overflow) say nothing: full derivative range, never fixed."""
    net = small_network((2, 3, 1), 1)
    nan, inf = math.nan, math.inf
    bounds = PreactivationBounds((np.array([nan, -inf, 1.0]),), (np.array([nan, -2.0, inf]),))
    box = slope_box(net, bounds)
    assert box.lo[0].tolist() == [0.0, 0.0, 0.0] and box.hi[0].tolist() == [1.0, 1.0, 1.0]
    # a tanh net whose first pre-activations overflow (not homogeneous: no normalisation)
    W0 = np.full((3, 3), 1e308)
    tnet = build_network([W0, np.ones((2, 3)), np.ones((1, 2))], [np.zeros(3), np.zeros(2), np.zeros(1)],
                         ["tanh", "tanh"])
    slopes = local_slopes(tnet, Box(np.full(3, 0.5), np.ones(3)))
    assert slopes.lo[0].tolist() == [0.0] * 3 and slopes.hi[0].tolist() == [1.0] * 3
    # ReLU: the same overflow is avoided by the normalisation (all pre-activations provably positive)
    rnet = build_network([W0, np.ones((2, 3)), np.ones((1, 2))], [np.zeros(3), np.zeros(2), np.zeros(1)])
    slopes = local_slopes(rnet, Box(np.full(3, 0.5), np.ones(3)))
    assert all(s.tolist() == [1.0] * len(s) for s in slopes.lo + slopes.hi)
