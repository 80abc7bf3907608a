"""Activation-consistent exact local Lipschitz constant (lipopt.exact.mip) against brute force.

Reference: depth-first enumeration of the activation regions of tiny ReLU / leaky-ReLU networks inside a
box (neurons fixed layer by layer; a prefix is kept only if an LP finds a ball of radius > 1e-9 inside
its region, so only full-dimensional regions count), the gradient of every region, max norm. The MIP
must bracket it (lower <= ref <= upper), be tight (upper - lower tiny) and its lower must reach it.
Also: the encoding admits every real point (row residuals of point_to_columns), MIP <= FGL on the same
local slope box, MIP >= sampled lower bounds, the l1 norm, time limits, bad input.
"""
import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from lipopt.baselines.ascent import local_lower_bound
from lipopt.domain import Ball, Box, local_slopes
from lipopt.errors import InvalidInputError
from lipopt.exact.enumerate import dual_norm, exact_fgl
from lipopt.exact.mip import build_mip, exact_lipschitz_mip, point_to_columns
from lipopt.model.network import build_network

from helpers import small_network

ALPHA = {"relu": 0.0, "leaky_relu": 0.01}


def enumerate_regions(net, c, lo, hi, norm, min_radius=1e-9):
    """max over full-dimensional activation regions in [lo, hi] of ||pattern gradient||_q."""
    n0 = net.widths[0]
    Ws = [W.toarray() for W in net.weights]
    best = [-np.inf, 0]

    def interior(rows, rhs):
        if not rows:
            return True
        A = np.array(rows)
        cost = np.zeros(n0 + 1)
        cost[-1] = -1.0
        res = linprog(cost, A_ub=A, b_ub=np.array(rhs), bounds=list(zip(lo, hi)) + [(None, 1.0)],
                      method="highs")
        best[1] += 1
        return res.status == 0 and -res.fun > min_radius

    def rec(l, j, A, a, slopes, rows, rhs):
        # A, a: affine map of layer l's pre-activation (z = A x + a); slopes: chosen so far in layer l
        if l == net.depth:
            g = c
            for k in range(net.depth, -1, -1):
                g = Ws[k].T @ g
                if k > 0:
                    g = g * all_slopes[k - 1]
            best[0] = max(best[0], float(dual_norm(g[None, :], norm)[0]))
            return
        if j == A.shape[0]:
            s = np.array(slopes)
            all_slopes[l] = s
            if l + 1 < net.depth:
                A2, a2 = Ws[l + 1] @ (s[:, None] * A), Ws[l + 1] @ (s * a) + net.biases[l + 1]
            else:
                A2, a2 = np.zeros((0, n0)), np.zeros(0)
            rec(l + 1, 0, A2, a2, [], rows, rhs)
            return
        nrm = np.linalg.norm(A[j])
        alpha = ALPHA[net.activations[l].name]
        for sign, slope in ((1.0, 1.0), (-1.0, alpha)):
            if nrm == 0:
                if sign * a[j] < 0:
                    continue
                rec(l, j + 1, A, a, slopes + [slope], rows, rhs)
                continue
            # sign (A x + a) >= r ||A||  <=>  -sign A x / ||A|| + r <= sign a / ||A||
            row = list(-sign * A[j] / nrm) + [1.0]
            r2, h2 = rows + [row], rhs + [sign * a[j] / nrm]
            if interior(r2, h2):
                rec(l, j + 1, A, a, slopes + [slope], r2, h2)

    all_slopes = [None] * net.depth
    W0, b0 = Ws[0], net.biases[0]
    rec(0, 0, W0, b0.copy(), [], [], [])
    return best[0], best[1]


def grid_lower(net, c, lo, hi, norm, n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = lo + (hi - lo) * rng.random((4000, lo.size))
    if lo.size == 2:
        g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
        X = np.vstack([X, np.column_stack([g1.ravel(), g2.ravel()])])
    return float(dual_norm(net.gradient(X, c), norm).max())


def leaky(net):
    return build_network(net.weights, net.biases, ["leaky_relu"] * net.depth)


SIZES = [(2, 3, 1), (2, 6, 1), (3, 5, 1), (2, 4, 3, 1), (2, 5, 4, 1), (3, 4, 4, 1), (2, 3, 3, 2)]
RADII = [0.3, 1.0, 3.0]
CASES = [(w, r, seed) for w, r, seed in itertools.product(SIZES, RADII, range(3))]


@pytest.mark.parametrize("widths,radius,seed", [c if c[2] == 0 else pytest.param(*c, marks=pytest.mark.slow)
                                                for c in CASES])   # seeds 1 and 2: under -m slow
def test_equals_region_enumeration(widths, radius, seed):
    net = small_network(widths, seed)
    rng = np.random.default_rng(100 + seed)
    center = rng.uniform(-0.5, 0.5, widths[0])
    lo, hi = center - radius, center + radius
    c = np.ones(widths[-1]) if widths[-1] == 1 else np.array([1.0, -1.0])
    dom = Box(lo, hi)
    for norm in ("inf", "1") if seed == 0 else ("inf",):
        ref, _ = enumerate_regions(net, c, lo, hi, norm)
        r = exact_lipschitz_mip(net, c, dom, norm)
        tol = 1e-9 * max(1.0, ref)
        assert r.status == "optimal"
        assert r.lower - tol <= ref <= r.upper + tol, (r.lower, ref, r.upper)
        assert r.lower >= ref * (1 - 2e-6) - 2e-6, (r.lower, ref)        # within HiGHS' gap
        assert r.upper - r.lower <= 1e-4 * max(1.0, ref)
        assert r.upper - ref <= r.info["margin"] + r.info["gap_allowance"] + 2e-6 * max(1.0, ref)
        assert dom.contains(r.x)[0]
        g = net.gradient(r.x[None, :], c)
        assert dual_norm(g, norm)[0] == pytest.approx(r.lower, rel=1e-12, abs=1e-12)
        assert r.lower >= grid_lower(net, c, lo, hi, norm) - tol


@pytest.mark.parametrize("widths,seed", [((2, 4, 1), 0), ((2, 4, 3, 1), 1), ((3, 4, 4, 1), 2), ((2, 5, 1), 3)])
def test_leaky_relu_equals_region_enumeration(widths, seed):
    net = leaky(small_network(widths, seed))
    lo, hi = -np.ones(widths[0]), np.ones(widths[0])
    c = np.ones(1)
    for norm in ("inf", "1"):
        ref, _ = enumerate_regions(net, c, lo, hi, norm)
        r = exact_lipschitz_mip(net, c, Box(lo, hi), norm)
        tol = 1e-9 * max(1.0, ref)
        assert r.lower - tol <= ref <= r.upper + tol
        assert r.lower >= ref * (1 - 2e-6) - 2e-6
        assert r.upper - r.lower <= 1e-4 * max(1.0, ref)


@pytest.mark.parametrize("widths,seed", [((2, 6, 1), 0), ((3, 5, 4, 1), 1), ((2, 8, 8, 1), 2),
                                         ((6, 10, 1), 3), ((4, 6, 6, 2), 4)])
def test_encoding_admits_every_real_point(widths, seed):
    """point_to_columns(x) satisfies every row and bound: the big-M encoding cuts off no real input."""
    net = small_network(widths, seed)
    c = np.ones(widths[-1])
    lo, hi = -np.ones(widths[0]), 2 * np.ones(widths[0])
    for norm in ("inf", "1"):
        model = build_mip(net, c, Box(lo, hi), norm)
        X = Box(lo, hi).sample(200, np.random.default_rng(seed))
        for x in X:
            col = point_to_columns(model, net, c, x)
            act = model.A @ col
            scale = 1e-9 * (1 + abs(model.A) @ np.abs(col))
            assert np.all(act >= model.row_lo - scale) and np.all(act <= model.row_hi + scale)
            assert np.all(col >= model.lb) and np.all(col <= model.ub)
            assert col @ model.cost == pytest.approx(dual_norm(net.gradient(x[None, :], c), norm)[0])


@pytest.mark.parametrize("widths,seed,radius", [((2, 8, 8, 1), 0, 1.0), ((4, 10, 1), 1, 0.5),
                                                ((3, 6, 6, 1), 2, 2.0), ((5, 8, 4, 2), 3, 0.2),
                                                ((6, 8, 6, 1), 4, 1.0)])
def test_between_sampling_and_fgl(widths, seed, radius):
    net = small_network(widths, seed)
    c = np.ones(widths[-1]) if widths[-1] == 1 else np.array([1.0, -1.0])
    dom = Ball(np.zeros(widths[0]), radius, "inf")
    for norm in ("inf", "1"):
        r = exact_lipschitz_mip(net, c, dom, norm)
        fgl = exact_fgl(net, c, norm, slopes=local_slopes(net, dom)).value
        samp = local_lower_bound(net, c, dom, norm).value
        assert r.status == "optimal"
        assert samp <= r.upper + 1e-12
        assert r.lower <= fgl * (1 + 1e-12)
        assert r.upper <= fgl + r.info["margin"] + r.info["gap_allowance"] + 1e-9 * max(1.0, fgl)
        assert r.lower <= r.upper


def test_time_limit_gives_bracket():
    net = small_network((12, 40, 40, 1), 0)
    dom = Box(-np.ones(12), np.ones(12))
    r = exact_lipschitz_mip(net, np.ones(1), dom, "inf", time_limit=0.3)
    assert r.status == "time_limit"
    assert 0 < r.lower <= r.upper < np.inf
    assert r.upper <= r.info["trivial_bound"]
    assert local_lower_bound(net, np.ones(1), dom, "inf").value <= r.upper
    assert dom.contains(r.x)[0]


def test_degenerate_network_is_bracketed():
    """f = relu(x) - relu(x) is 0: the pattern (1, 0) at x = 0 gives the MIP value 1 (not general
    position), but the bracket [lower, upper] still contains the true constant 0."""
    net = build_network([np.array([[1.0], [1.0]]), np.array([[1.0, -1.0]])], [np.zeros(2), np.zeros(1)])
    r = exact_lipschitz_mip(net, np.ones(1), Box([-1.0], [1.0]), "inf")
    assert r.lower == 0.0
    assert r.upper >= 0.0
    assert r.info["trivial_bound"] >= r.upper


def test_bad_input():
    net = small_network((2, 3, 1), 0)
    dom = Box(-np.ones(2), np.ones(2))
    tanh = build_network(net.weights, net.biases, ["tanh"])
    with pytest.raises(InvalidInputError, match="tanh"):
        exact_lipschitz_mip(tanh, np.ones(1), dom)
    with pytest.raises(InvalidInputError, match="bounded"):
        exact_lipschitz_mip(net, np.ones(1), None)
    with pytest.raises(InvalidInputError, match="l2"):
        exact_lipschitz_mip(net, np.ones(1), Ball(np.zeros(2), 1.0, "2"))
    with pytest.raises(InvalidInputError, match="norm"):
        exact_lipschitz_mip(net, np.ones(1), dom, norm="2")
    with pytest.raises(InvalidInputError, match="dimension"):
        exact_lipschitz_mip(net, np.ones(1), Box(-np.ones(3), np.ones(3)))
    with pytest.raises(InvalidInputError):
        exact_lipschitz_mip(net, np.ones(2), dom)
    with pytest.raises(InvalidInputError, match="time_limit"):
        exact_lipschitz_mip(net, np.ones(1), dom, time_limit=-1)


# -------------------------------------------------------------------------------------------------
# fgl_mip: the FGL (no activation consistency) against vertex enumeration

from lipopt.exact.mip import fgl_mip  # noqa: E402
from lipopt.polynomial import SlopeBox  # noqa: E402


def slope_box(net, kind, seed):
    if kind == "global":
        return None
    rng = np.random.default_rng(seed)
    lo, hi = [], []
    for n in net.widths[1:-1]:
        if kind == "shifted":
            a = rng.choice([-0.5, 0.0, 0.1, 0.3], n)
            w = rng.choice([0.0, 0.5, 1.0], n)
        else:  # local: free, fixed off or fixed on
            k = rng.integers(0, 3, n)
            a, w = np.where(k == 2, 1.0, 0.0), np.where(k == 0, 1.0, 0.0)
        lo.append(a)
        hi.append(a + w)
    return SlopeBox(tuple(lo), tuple(hi))


FGL_CASES = [(w, kind, seed) for w in [(3, 5, 1), (4, 6, 5, 1), (3, 4, 4, 4, 1), (5, 4, 3, 2)]
             for kind in ("global", "shifted", "local") for seed in range(2)]


@pytest.mark.parametrize("widths,kind,seed", FGL_CASES)
def test_fgl_mip_equals_enumeration(widths, kind, seed):
    net = small_network(widths, seed)
    c = np.ones(widths[-1]) if widths[-1] == 1 else np.array([1.0, -1.0])
    box = slope_box(net, kind, seed)
    for norm in ("inf", "1"):
        ref = exact_fgl(net, c, norm, slopes=box).value
        r = fgl_mip(net, c, box, norm=norm)
        tol = 1e-9 * max(1.0, ref)
        assert r.status == "optimal"
        assert r.lower - tol <= ref <= r.upper + tol, (r.lower, ref, r.upper)
        assert r.lower >= ref * (1 - 2e-6) - 2e-6
        assert r.upper - r.lower <= 1e-4 * max(1.0, ref)


def test_mip_below_fgl_mip():
    """Activation consistency can only lower the value: exact_lipschitz_mip <= fgl_mip (same slopes)."""
    for seed in range(3):
        net = small_network((3, 6, 6, 1), seed)
        dom = Box(-np.ones(3), np.ones(3))
        r = exact_lipschitz_mip(net, np.ones(1), dom)
        f = fgl_mip(net, np.ones(1), local_slopes(net, dom))
        assert r.lower <= f.upper and r.lower <= f.lower * (1 + 1e-9)


def test_badly_scaled_instance_stays_tight():
    """Pre-activations ~1e6: HiGHS' integrality tolerance admits patterns no input realises; they are
    proven empty by LP duality and cut off, so the value still matches the region enumeration."""
    net = small_network((2, 4, 4, 4, 1), 1, scale=30.0)
    lo, hi = np.full(2, -99.8), np.full(2, 100.2)
    ref, _ = enumerate_regions(net, np.ones(1), lo, hi, "inf")
    r = exact_lipschitz_mip(net, np.ones(1), Box(lo, hi), "inf")
    assert r.lower - 1e-9 * ref <= ref <= r.upper + 1e-9 * ref
    assert r.upper - r.lower <= 1e-4 * ref


def test_pattern_emptiness_proof():
    from lipopt.exact.mip import _pattern_interior
    net = build_network([np.array([[1.0], [1.0]]), np.array([[1.0, 1.0]])], [np.array([0.0, -5.0]), np.zeros(1)])
    lo, hi = np.array([-1.0]), np.array([1.0])
    _, delta, proof = _pattern_interior(net, [np.array([0.0, 1.0])], lo, hi)   # x <= 0 and x >= 5
    assert delta < 0 and proof < 0
    x, delta, proof = _pattern_interior(net, [np.array([1.0, 0.0])], lo, hi)   # 0 <= x <= 1
    assert delta > 0 and proof >= delta and 0 < x[0] <= 1


def test_tiny_coefficients_become_row_slack():
    """Entries below HiGHS' small_matrix_value leave the matrix and widen their rows by their range over
    the column box: every point that satisfies the original rows satisfies the new ones exactly."""
    import scipy.sparse as sp
    from lipopt.exact.mip import TINY_COEFFICIENT, _tiny_into_rows
    rng = np.random.default_rng(0)
    for trial in range(20):
        m, n = 30, 200
        A = rng.normal(size=(m, n)) * (rng.random((m, n)) < 0.3)
        A[rng.random((m, n)) < 0.5] = rng.uniform(-1, 1, (m, n))[rng.random((m, n)) < 0.5].mean() * 1e-10
        A[:, :3] *= 1e-12
        lb, ub = -rng.uniform(0, 3, n), rng.uniform(0, 3, n)
        ub[5] = np.inf          # an unbounded column keeps its tiny entries
        X = rng.uniform(lb, np.where(np.isinf(ub), 5.0, ub), (50, n))
        act = X @ A.T
        row_lo, row_hi = act.min(axis=0), act.max(axis=0)
        row_lo[::7] = -np.inf
        A2, lo2, hi2 = _tiny_into_rows(sp.csc_array(A), row_lo, row_hi, lb, ub)
        kept = np.abs(A2.toarray())
        assert np.all((kept == 0) | (kept >= TINY_COEFFICIENT) | (np.arange(n) == 5)[None, :])
        new = X @ A2.toarray().T
        assert np.all(new >= lo2) and np.all(new <= hi2)
        assert np.all(lo2 <= row_lo) and np.all(hi2 >= row_hi)


def test_zoo_mlp64_with_tiny_weights_solves():
    """The zoo's 784-64-10 net at r = 0.01 (first-layer weights down to 1e-14): HiGHS declared the feasible
    model infeasible before its tiny entries went into the row bounds; now it proves the value, within the
    FGL (here equal to it)."""
    import lipopt
    from lipopt.datasets import mnist_test, zoo_model_path
    net = lipopt.load(zoo_model_path("mlp64", "npz"))
    X, y = mnist_test(1)
    lg = net.forward(X)[0]
    j = int([k for k in np.argsort(-lg) if k != y[0]][0])
    c = np.zeros(10)
    c[int(y[0])], c[j] = 1.0, -1.0
    dom = Ball(X[0], 0.01, "inf", clip=(0.0, 1.0))
    r = exact_lipschitz_mip(net, c, dom, "inf", time_limit=30)
    fgl = lipopt.upper_bound(net, norm="inf", c=c, domain=dom, method="exact-fgl", lower=False).upper_bound
    assert r.status == "optimal" and r.lower <= r.upper <= fgl * (1 + 1e-4)   # the upper end adds its margins
    assert r.upper - r.lower <= 1e-4 * r.upper
