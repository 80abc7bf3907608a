"""Fast exact l_inf FGL (DP over a path decomposition, branch and bound) against brute-force enumeration.

Every case: exact_fgl_auto, branch and bound (with and without its heuristic incumbent) and, for one
hidden layer, DP in its chosen and in a random input order all equal exact_fgl (relative 1e-9), and
the witness (t, s) lies in the box and attains the lower value. Larger cases compare the two exact
algorithms with each other; deadlines must give a bracket containing the true value.
"""
import itertools

import numpy as np
import pytest

from lipopt.errors import InvalidInputError
from lipopt.exact import BagTooLargeError, bnb_fgl, dp_fgl, exact_fgl, exact_fgl_auto, split_components
from lipopt.exact.bnb import evaluate_witness
from lipopt.model import build_network
from lipopt.model.random import random_network
from lipopt.polynomial import SlopeBox, global_slopes

from helpers import small_network

REL = 1e-9

ONE_HIDDEN = [(3, 4), (6, 5), (8, 10), (10, 12), (12, 9)]
TWO_HIDDEN = [(4, 5, 3), (6, 6, 4), (7, 5, 6), (8, 6, 6)]
BOXES = ["global", "shifted", "leaky", "local"]
CASES = (
    [((n0, n1, 1), band, box, seed)
     for (n0, n1), band, box, seed in itertools.product(ONE_HIDDEN, (None, 3, 5), BOXES, [0, 1, 2])]
    + [((n0, n1, n2, 1), band, box, seed)
       for (n0, n1, n2), band, box, seed in itertools.product(TWO_HIDDEN, (None, 3), BOXES, [0, 1, 2])]
    + [((5, 6, 2), None, box, seed) for box, seed in itertools.product(BOXES, [3, 4])]
    + [((5, 4, 4, 3), 3, box, seed) for box, seed in itertools.product(BOXES, [3, 4])]
)


def make_box(net, kind: str, seed: int) -> SlopeBox | None:
    """global: [0, 1]; shifted: lo in {-0.5, 0, 0.1, 0.3}, width in {0, 0.5, 1} (some lo == hi);
    leaky: [0.01, 1]; local: each neuron free, fixed off (0) or fixed on (1), as from domain bounds."""
    if kind == "global":
        return None
    rng = np.random.default_rng(1000 + seed)
    widths = net.widths[1:-1]
    if kind == "shifted":
        lo = [rng.choice([-0.5, 0.0, 0.1, 0.3], n) for n in widths]
        hi = [l + rng.choice([0.0, 0.5, 1.0], len(l)) for l in lo]
    elif kind == "leaky":
        lo = [np.full(n, 0.01) for n in widths]
        hi = [np.ones(n) for n in widths]
    else:
        state = [rng.choice([0, 1, 2], n, p=[0.6, 0.2, 0.2]) for n in widths]
        lo = [np.where(s == 2, 1.0, 0.0) for s in state]
        hi = [np.where(s == 1, 0.0, 1.0) for s in state]
    return SlopeBox(tuple(lo), tuple(hi))


def output_weights(widths, seed):
    return np.ones(1) if widths[-1] == 1 else np.random.default_rng(seed).standard_normal(widths[-1])


def close(a, b):
    return abs(a - b) <= REL * max(1.0, abs(b))


def check_witness(net, c, slopes, r):
    slopes = slopes or global_slopes(net)
    assert set(np.unique(r.t)) <= {-1.0, 1.0}
    for l, s in enumerate(r.s):
        assert np.all(s >= slopes.lo[l]) and np.all(s <= slopes.hi[l])
    assert close(evaluate_witness(net, c, r.t, r.s), r.lower)


def test_case_count():
    assert len(CASES) >= 200


@pytest.mark.parametrize("widths,band,box,seed", [c if c[3] in (0, 3) else pytest.param(*c, marks=pytest.mark.slow)
                                                   for c in CASES])   # seeds 1, 2, 4: under -m slow
def test_equals_enumeration(widths, band, box, seed):
    net = small_network(widths, seed, band=band, bias=seed % 2 == 0)
    c = output_weights(widths, seed)
    slopes = make_box(net, box, seed)
    ref = exact_fgl(net, c, slopes=slopes).value

    auto = exact_fgl_auto(net, c, slopes)
    assert auto.status == "optimal"
    assert close(auto.value, ref) and close(auto.lower, ref), (auto.algorithm, auto.value, ref)
    check_witness(net, c, slopes, auto)

    for starts in (24, 0):  # starts=0: incumbent = all-ones point, so the search must do the work
        r = bnb_fgl(net, c, slopes, starts=starts)
        assert r.status == "optimal"
        assert close(r.upper, ref) and close(r.lower, ref), (starts, r.upper, r.lower, ref)
        check_witness(net, c, slopes, r)
    if net.depth == 2:
        r = bnb_fgl(net, c, slopes, tau_first=False, starts=0)
        assert close(r.upper, ref) and close(r.lower, ref)
    if net.depth == 1:
        perm = np.random.default_rng(seed).permutation(widths[0])
        for order in (None, perm):
            r = dp_fgl(net, c, slopes, order=order)
            assert r.status == "optimal"
            assert close(r.upper, ref) and close(r.lower, ref), (order, r.upper, ref)
            check_witness(net, c, slopes, r)


CROSS = [((24, 24, 1), 5, s) for s in range(4)] + [((16, 20, 1), None, s) for s in range(3)] \
    + [((40, 30, 1), 7, s) for s in range(2)]


@pytest.mark.parametrize("widths,band,seed", CROSS)
def test_dp_equals_bnb_beyond_enumeration(widths, band, seed):
    net = random_network(widths, band=band, seed=seed)
    slopes = make_box(net, "shifted", seed) if seed % 2 else None
    dp = dp_fgl(net, np.ones(1), slopes)
    bb = bnb_fgl(net, np.ones(1), slopes, starts=0)
    assert dp.status == bb.status == "optimal"
    assert close(bb.upper, dp.upper) and close(bb.lower, dp.lower)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unit_side_branching(seed):
    # many inputs, few units: the search branches on the units' signs (rows of M)
    net = small_network((30, 9, 1), seed, band=None if seed % 2 else 25)
    slopes = make_box(net, "shifted", seed)
    ref = exact_fgl(net, np.ones(1), slopes=slopes).value
    r = bnb_fgl(net, np.ones(1), slopes, starts=0)
    assert r.info["branching"] == "rows of M" and r.status == "optimal"
    assert close(r.upper, ref) and close(r.lower, ref)
    check_witness(net, np.ones(1), slopes, r)


@pytest.mark.parametrize("seed", [0, 1])
def test_two_layer_orders_agree(seed):
    net = random_network((12, 10, 8, 1), band=5, seed=seed)
    a = bnb_fgl(net, np.ones(1), tau_first=True)
    b = bnb_fgl(net, np.ones(1), tau_first=False, starts=0)
    c = bnb_fgl(net, np.ones(1), russian_doll=False)
    assert a.status == b.status == c.status == "optimal"
    assert close(a.upper, b.upper) and close(a.upper, c.upper)


def contains(r, true):
    tol = 1e-9 * max(1.0, abs(true))
    return r.lower <= true + tol and true <= r.upper + tol


@pytest.mark.parametrize("kwargs", [{}, {"russian_doll": False}])
def test_time_limit_bracket_one_layer(kwargs):
    net = random_network((40, 40, 1), seed=0)
    true = bnb_fgl(net, np.ones(1)).upper
    for limit in (1e-4, 0.05):
        r = bnb_fgl(net, np.ones(1), time_limit=limit, **kwargs)
        assert contains(r, true), (limit, r.lower, true, r.upper)
        if r.status == "optimal":
            assert close(r.upper, true)
        else:
            assert r.status == "time_limit" and r.upper >= r.lower
    r = exact_fgl_auto(net, np.ones(1), time_limit=1e-4)
    assert r.status == "time_limit" and contains(r, true)


def test_time_limit_bracket_two_layers():
    net = random_network((30, 30, 10, 1), band=40, seed=1)
    true = bnb_fgl(net, np.ones(1)).upper
    for limit in (1e-4, 0.1):
        for kw in ({}, {"russian_doll": False}, {"tau_first": False}):
            r = bnb_fgl(net, np.ones(1), time_limit=limit, **kw)
            assert contains(r, true), (limit, kw, r.lower, true, r.upper)
            assert r.status in ("optimal", "time_limit")
            if r.status == "optimal":
                assert close(r.upper, true)


def test_time_limit_dp():
    net = random_network((80, 80, 1), band=20, seed=2)
    true = dp_fgl(net, np.ones(1)).upper
    r = dp_fgl(net, np.ones(1), time_limit=1e-6)
    assert r.status == "time_limit" and r.upper >= true - 1e-9 and r.t is None
    a = exact_fgl_auto(net, np.ones(1), time_limit=1e-6)
    assert a.algorithm == "dp" and a.status == "time_limit" and contains(a, true)


def test_auto_picks_dp_for_banded_and_bnb_for_dense():
    banded = random_network((80, 80, 1), band=10, seed=0)
    r = exact_fgl_auto(banded, np.ones(1))
    assert r.algorithm == "dp" and r.info["bag"] <= 10 and r.status == "optimal"
    dense = random_network((30, 30, 1), seed=0)
    r = exact_fgl_auto(dense, np.ones(1))
    assert r.algorithm == "bnb" and r.status == "optimal"
    assert close(r.value, bnb_fgl(dense, np.ones(1), starts=0).upper)
    small_dense = random_network((14, 14, 1), seed=0)  # bag 14: DP is cheap even for a dense layer
    r = exact_fgl_auto(small_dense, np.ones(1))
    assert r.algorithm == "dp" and close(r.value, bnb_fgl(small_dense, np.ones(1)).upper)


def test_dp_refuses_large_bags():
    net = random_network((30, 30, 1), seed=0)
    with pytest.raises(BagTooLargeError, match="bag"):
        dp_fgl(net, np.ones(1), max_bag=12)
    with pytest.raises(InvalidInputError):
        dp_fgl(random_network((4, 4, 4, 1), seed=0), np.ones(1))


def test_bad_input():
    net = small_network((4, 5, 1), 0)
    bad = SlopeBox((np.ones(5),), (np.zeros(5),))
    for call in (lambda: exact_fgl_auto(net, np.ones(1), bad), lambda: bnb_fgl(net, np.ones(1), bad),
                 lambda: dp_fgl(net, np.ones(1), bad), lambda: exact_fgl_auto(net, np.ones(2)),
                 lambda: exact_fgl_auto(net, np.ones(1), method="simplex"),
                 lambda: exact_fgl_auto(net, np.ones(1), time_limit=-1.0),
                 lambda: dp_fgl(net, np.ones(1), order=[0, 0, 1, 2])):
        with pytest.raises(InvalidInputError):
            call()
    deep = random_network((6, 10, 10, 10, 1), seed=0)
    with pytest.raises(InvalidInputError, match="hidden layers"):
        exact_fgl_auto(deep, np.ones(1))


def test_degenerate_networks():
    # no live path (zero output weights), a dead layer, and a purely linear network
    net = small_network((5, 6, 1), 0)
    zero = exact_fgl_auto(net, np.zeros(1), method="bnb")
    assert zero.value == 0.0 and zero.status == "optimal"
    assert dp_fgl(net, np.zeros(1)).upper == 0.0
    off = SlopeBox((np.zeros(6),), (np.zeros(6),))
    assert exact_fgl_auto(net, np.ones(1), off, method="bnb").value == 0.0
    two = small_network((5, 4, 3, 1), 1)
    off2 = SlopeBox((np.zeros(4), np.zeros(3)), (np.ones(4), np.zeros(3)))
    assert bnb_fgl(two, np.ones(1), off2).upper == 0.0
    lin = small_network((4, 2), 2)
    r = exact_fgl_auto(lin, np.array([1.0, -1.0]))
    assert close(r.value, float(np.abs(lin.weights[0].T @ np.array([1.0, -1.0])).sum()))


@pytest.mark.parametrize("seed", range(12))
def test_block_structured_nets_split_into_components(seed):
    """Block-diagonal hidden layers (as in non-overlapping convolutions): the FGL is the sum over the
    connected components, each solved on its own; equal to brute force and to the unsplit search."""
    rng = np.random.default_rng(seed)
    nb, n0, n1, n2 = 3, 4, 3, 2
    W0, W1 = np.zeros((nb * n1, nb * n0)), np.zeros((nb * n2, nb * n1))
    for b in range(nb):
        W0[b * n1:(b + 1) * n1, b * n0:(b + 1) * n0] = rng.standard_normal((n1, n0))
        W1[b * n2:(b + 1) * n2, b * n1:(b + 1) * n1] = rng.standard_normal((n2, n1))
    W1[:n2] *= (seed + 1) % 2  # odd seeds: the first block is cut off from the output and dropped
    net = build_network([W0, W1, rng.standard_normal((2, nb * n2))],
                        [rng.standard_normal(nb * n1), rng.standard_normal(nb * n2), np.zeros(2)])
    c = rng.standard_normal(2)
    parts = split_components(net, c, global_slopes(net))
    assert len(parts) == nb - seed % 2
    split, whole = exact_fgl_auto(net, c), exact_fgl_auto(net, c, split=False)
    brute = exact_fgl(net, c).value
    assert split.optimal and split.info["components"] == len(parts)
    assert split.upper == pytest.approx(brute, rel=1e-12) and whole.upper == pytest.approx(brute, rel=1e-12)
    assert split.lower == pytest.approx(brute, rel=1e-12)
    assert evaluate_witness(net, c, split.t, split.s) == pytest.approx(brute, rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_deadline_brackets_contain_the_exact_value(seed):
    """Stopped at any moment (heuristics, Russian-doll bounds left at +inf, the search itself), the
    two-layer bracket still contains the proved FGL."""
    net = random_network((14, 12, 6, 1), band=None if seed % 2 else 7, seed=seed)
    c = np.ones(1)
    exact = exact_fgl_auto(net, c)
    assert exact.optimal
    for limit in (1e-4, 1e-3, 5e-3, 2e-2):
        r = exact_fgl_auto(net, c, time_limit=limit, seed=seed)
        assert r.lower <= exact.upper + exact.rounding_error + 1e-12 * abs(exact.upper)
        assert r.upper + r.rounding_error >= exact.lower - 1e-12 * abs(exact.lower)
