"""Interval Jacobian bound and lifted McCormick LP (methods.lifted): soundness against the exact FGL
(vertex enumeration over the same derivative box) on small dense, banded and convolutional nets of depth
1-5, global and local, every norm, relu and tanh; monotonicity in the slope box; interval <= product
(l_inf and l_1 input norms, where the theory says so); the certificates' pieces in exact arithmetic."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp

from helpers import small_network
from lipopt import InvalidInputError, api
from lipopt.baselines import product_bound
from lipopt.certify.lp_dual import dual_bound
from lipopt.domain import Ball, Box
from lipopt.exact import exact_fgl
from lipopt.methods.lifted import run_interval, run_lifted_lp
from lipopt.model import build_network
from lipopt.model.conv import conv_matrix
from lipopt.polynomial import SlopeBox, global_slopes
from lipopt.relaxations.lifted import chords, jacobian_box, lifted_lp
from lipopt.slopes import local_slopes

NORMS = ("inf", "2", "1")
REL = 1e-12  # float rounding of the enumerated FGL next to its exact value


def _net(seed: int, act: str):
    """Seeded small net: dense, banded or convolutional, depth 1-5, at most ~15 free neurons."""
    rng = np.random.default_rng(seed)
    kind = ("dense", "banded", "conv")[seed % 3]
    if kind == "conv":
        W1, b1, _ = conv_matrix(rng.standard_normal((2, 1, 2, 2)), (1, 3, 3), bias=rng.standard_normal(2))
        W2, b2, _ = conv_matrix(rng.standard_normal((1, 2, 2, 2)), (2, 2, 2), bias=rng.standard_normal(1))
        Ws = [W1, W2, rng.standard_normal((2, 1))]
        bs = [b1, b2, rng.standard_normal(2)]
        return build_network(Ws, bs, [act, act])
    depth = 1 + (seed // 3) % 5
    width = 3 if depth >= 3 else 4
    net = small_network([4] + [width] * depth + [2], seed, band=3 if kind == "banded" else None)
    return build_network(net.weights, net.biases, [act] * depth)


def _slopes(net, seed: int) -> tuple[SlopeBox, str]:
    rng = np.random.default_rng(1000 + seed)
    n0 = net.widths[0]
    kind = ("global", "box", "inf-ball", "2-ball")[seed % 4]
    if kind == "global":
        return global_slopes(net), kind
    x0 = rng.standard_normal(n0)
    r = float(rng.uniform(0.05, 1.5))
    dom = Box(x0 - r, x0 + r * rng.uniform(0.2, 1.0, n0)) if kind == "box" else Ball(x0, r, kind[:-5])
    return local_slopes(net, dom), kind


def _check(seed: int, act: str):
    net = _net(seed, act)
    slopes, _ = _slopes(net, seed)
    c = np.array([1.0, -1.0])
    for norm in NORMS:
        exact = exact_fgl(net, c, norm, slopes).value
        iv = run_interval(net, c, norm, slopes, {}).upper
        lp = run_lifted_lp(net, c, norm, slopes, {})
        assert iv >= exact * (1 - REL), (seed, act, norm, exact, iv)
        assert lp.upper >= exact * (1 - REL), (seed, act, norm, exact, lp.upper)
        assert lp.upper <= iv
        if norm != "2":  # || |W|^T a ||_q <= ||W^T||_{q->q} ||a||_q for q = 1, inf (not for q = 2)
            assert iv <= product_bound(net, c, norm, slopes) * (1 + 1e-9) + 1e-290, (seed, norm)  # TINY slack


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_sound_against_enumeration(act):
    for seed in range(16):
        _check(seed, act)


@pytest.mark.slow
@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_sound_against_enumeration_long(act):
    for seed in range(16, 276):
        _check(seed, act)


def test_lp_improves_on_interval_deep():
    """The LP's own certified value is at most the interval bound (chords <= the box maximum) and on
    deep random nets strictly below it."""
    gains = []
    for seed in range(6):
        net = small_network([5, 6, 6, 6, 6, 2], seed)
        slopes = global_slopes(net)
        c = np.array([1.0, -1.0])
        for norm in ("inf", "2"):
            # no time-bounded tightening: the LP is then the same on a loaded machine (with tightening
            # cut short mid-way under load, the boxes, and so the LP, depend on the machine's speed)
            out = run_lifted_lp(net, c, norm, slopes, {"obbt_seconds": 0.0})
            assert out.details["lp_bound"] <= out.details["interval_bound"] * (1 + 1e-7)
            gains.append(out.upper / out.details["interval_bound"])
    assert max(gains) < 1.0 and min(gains) < 0.97


def test_monotone_in_slope_box():
    """Shrinking every derivative interval never increases either bound (LP: up to solver tolerance)."""
    rng = np.random.default_rng(7)
    for seed in range(8):
        net = _net(seed, "relu")
        outer = global_slopes(net)
        cut = [np.sort(rng.uniform(lo, hi, (2, len(lo))), axis=0) for lo, hi in zip(outer.lo, outer.hi)]
        inner = SlopeBox(tuple(a[0] for a in cut), tuple(a[1] for a in cut))
        c = np.array([1.0, -1.0])
        for norm in NORMS:
            assert run_interval(net, c, norm, inner, {}).upper <= run_interval(net, c, norm, outer, {}).upper
            big = run_lifted_lp(net, c, norm, outer, {}).upper
            assert run_lifted_lp(net, c, norm, inner, {}).upper <= big * (1 + 1e-7) + 1e-12


def test_chords_valid_in_exact_arithmetic():
    rng = np.random.default_rng(3)
    lo = rng.standard_normal(400) * 10.0 ** rng.integers(-8, 8, 400)
    hi = lo + np.abs(rng.standard_normal(400)) * 10.0 ** rng.integers(-8, 8, 400)
    for kind, phi in (("abs", abs), ("square", lambda t: t * t)):
        a, b = chords(lo, hi, kind)
        for i in range(len(lo)):
            for end in (lo[i], hi[i]):
                e = Fraction(end)
                assert phi(e) <= Fraction(a[i]) * e + Fraction(b[i]), (kind, lo[i], hi[i])


def test_mccormick_rows_hold_at_every_corner_exactly():
    """Every row of the lifted LP holds, in rationals, at the corners (s, u, s u) of every neuron's box."""
    net = small_network([3, 4, 4, 2], 11)
    box = jacobian_box(net, np.array([1.0, -1.0]), global_slopes(net))
    lp = lifted_lp(net, box)
    A = lp.A_ub.tocsr()
    for row in range(A.shape[0]):
        cols = A.indices[A.indptr[row]:A.indptr[row + 1]]
        vals = A.data[A.indptr[row]:A.indptr[row + 1]]
        v_col = cols.max()  # layout per layer (s_l, u_l, v_l); v's coefficient is +-1, never dropped
        n = next(len(u) for u in lp.u_index if u[0] + len(u) <= v_col < u[0] + 2 * len(u))
        u_col, s_col = v_col - n, v_col - 2 * n
        for s in (lp.lb[s_col], lp.ub[s_col]):
            for u in (lp.lb[u_col], lp.ub[u_col]):
                point = {s_col: Fraction(s), u_col: Fraction(u), v_col: Fraction(s) * Fraction(u)}
                lhs = sum(Fraction(v) * point[c] for c, v in zip(cols, vals))
                assert lhs <= Fraction(lp.b_ub[row])


def test_dual_bound_any_multipliers():
    """Neumaier-Shcherbina: any y >= 0, z gives an upper bound on the LP's maximum (here max x_0 + x_1
    over x_0 + x_1 <= 1, x_0 - x_1 = 0, 0 <= x <= 3: exactly 1); zero duals give the box bound 6."""
    A = sp.csr_array(np.array([[1.0, 1.0]]))
    E = sp.csr_array(np.array([[1.0, -1.0]]))
    obj, lb, ub = np.array([1.0, 1.0]), np.zeros(2), np.full(2, 3.0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        y, z = rng.uniform(-1, 3, 1), rng.uniform(-3, 3, 1)
        assert dual_bound(obj, A, np.array([1.0]), E, np.zeros(1), lb, ub, y, z) >= 1.0
    assert dual_bound(obj, A, np.array([1.0]), E, np.zeros(1), lb, ub, np.zeros(1), np.zeros(1)) >= 6.0
    assert dual_bound(obj, A, np.array([1.0]), E, np.zeros(1), lb, ub, np.ones(1), np.zeros(1)) <= 1.0 + 1e-12


def test_unit_bounds_match_one_by_one_and_bound_the_lp():
    """DualCertifier.unit_bounds (many unit objectives at once, bound_propagation's batches) gives, for
    random multipliers (negative, NaN and huge entries included), the bound of ``bound`` up to the sums'
    rounding, and never less than the LP's optimum (HiGHS' value)."""
    from scipy.optimize import linprog
    from lipopt.certify.lp_dual import DualCertifier
    rng = np.random.default_rng(3)
    for trial in range(12):
        m, e, n = int(rng.integers(2, 8)), int(rng.integers(1, 4)), int(rng.integers(3, 9))
        A = sp.csr_array(rng.standard_normal((m, n)) * (rng.random((m, n)) < 0.6))
        E = sp.csr_array(rng.standard_normal((e, n)))
        lb, ub = -rng.uniform(0, 2, n), rng.uniform(0, 2, n)
        x0 = rng.uniform(lb, ub)
        b, f = A @ x0 + rng.uniform(0, 1, m), E @ x0       # feasible: x0 is inside
        cert = DualCertifier(A, b, E, f, lb, ub)
        T = 2 * n
        cols, signs = np.tile(np.arange(n), 2), np.repeat([1.0, -1.0], n)
        W = rng.standard_normal((T, m + e)) * np.exp(rng.uniform(-3, 3, (T, m + e)))
        W[0, 0], W[1, -1] = np.nan, 1e300
        got = cert.unit_bounds(cols, signs, W.copy())
        for i in range(T):
            obj = np.zeros(n)
            obj[cols[i]] = signs[i]
            one = cert.bound(obj, W[i].copy())
            assert got[i] >= one - 1e-9 * max(1.0, abs(one)) and got[i] <= one + 1e-9 * max(1.0, abs(one))
            opt = -linprog(-obj, A_ub=A.toarray(), b_ub=b, A_eq=E.toarray(), b_eq=f, bounds=list(zip(lb, ub)),
                           method="highs").fun
            assert got[i] >= opt - 1e-9


def test_api_and_refusal():
    net = small_network([6, 5, 5, 5, 5, 5, 3], 2)
    for method in ("interval", "lifted-lp"):
        res = api.upper_bound(net, method=method, output=0, lower=False)
        assert res.upper_bound <= api.upper_bound(net, method="product", output=0, lower=False).upper_bound
        shallow = build_network([np.ones((2, 3))], [np.zeros(2)])
        with pytest.raises(InvalidInputError, match="hidden layer"):
            api.upper_bound(shallow, method=method, output=0, lower=False)


def test_time_limit_keeps_the_box_bound():
    """No time for any LP: the (sound) interval bound is returned with status time_limit, never a
    failure or a smaller number; for the l1 input norm the coordinates left over keep their boxes."""
    net = small_network([4, 5, 5, 5, 2], 4)
    slopes, c = global_slopes(net), np.array([1.0, -1.0])
    for norm in NORMS:
        out = run_lifted_lp(net, c, norm, slopes, {"time_limit": 0.0})
        assert out.status == "time_limit"
        assert out.upper == run_interval(net, c, norm, slopes, {}).upper
        assert out.upper >= exact_fgl(net, c, norm, slopes).value * (1 - REL)


def test_tightened_boxes_contain_every_backward_pass():
    """After linear bound propagation and LP tightening, every (u, v, g) of the backward pass at random
    slope vectors in the box (vertices and interior points) lies in the enclosures; and they shrank."""
    from lipopt.methods.lifted import _obbt, _propagated
    rng = np.random.default_rng(5)
    for seed in range(6):
        net = small_network([5, 6, 6, 6, 6, 2], 100 + seed)
        slopes, c = global_slopes(net), np.array([1.0, -1.0])
        box = jacobian_box(net, c, slopes)
        tight, _ = _propagated(net, box, None)
        tight, _ = _obbt(net, tight, None)
        assert np.sum(tight.u_hi[0] - tight.u_lo[0]) < np.sum(box.u_hi[0] - box.u_lo[0])
        for trial in range(200):
            u = net.weights[-1].T @ c
            for l in range(net.depth - 1, -1, -1):
                lo, hi = slopes.lo[l], slopes.hi[l]
                s = rng.uniform(lo, hi) if trial % 2 else np.where(rng.random(len(lo)) < 0.5, lo, hi)
                tol = 1e-9 * (1 + np.abs(u))
                assert np.all(u >= tight.u_lo[l] - tol) and np.all(u <= tight.u_hi[l] + tol)
                u = net.weights[l].T @ (s * u)
            tol = 1e-9 * (1 + np.abs(u))
            assert np.all(u >= tight.g_lo - tol) and np.all(u <= tight.g_hi + tol)


def test_lp_after_a_mip_in_the_same_process():
    """HiGHS keeps one thread scheduler per process: a session asking for another thread count than the
    MIP's earlier instance got no duals (lp_bound inf) whenever the MIP ran first in the process."""
    from lipopt.domain import Box
    from lipopt.exact.mip import exact_lipschitz_mip
    exact_lipschitz_mip(small_network([5, 6, 6, 2], 0), np.array([1.0, -1.0]), Box(-np.ones(5), np.ones(5)),
                        "inf", time_limit=5)
    net = small_network([5, 6, 6, 6, 6, 2], 0)
    out = run_lifted_lp(net, np.array([1.0, -1.0]), "inf", global_slopes(net), {"obbt_seconds": 0.0})
    assert np.isfinite(out.details["lp_bound"]) and out.status == "ok"
