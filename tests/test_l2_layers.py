"""Layer-structured LipSDP (l2-fast, l2-opt): soundness against the exact l2 FGL, feasible-point sanity
against LipSDP-Neuron, the product bound, scale covariance and the shifted block Cholesky certificate."""
from __future__ import annotations

import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from helpers import margin_c, random_domain, small_network
import lipopt
from lipopt import upper_bound
from lipopt.baselines.product import product_bound
from lipopt.certify.block_chol import block_cholesky_lambda_min
from lipopt.certify.row_sums import err_sums
from lipopt.domain import Ball, local_slopes
from lipopt.errors import InvalidInputError
from lipopt.exact.enumerate import exact_fgl
from lipopt.methods.sdp import lipsdp_neuron
from lipopt.model import build_network
from lipopt.methods.l2 import lipsdp_layers
from lipopt.certify.lipsdp_sweep import certified_closed_form
from lipopt.relaxations.lipsdp_layers import layer_data, refine, schur_value


def closed_form(data, boost=True):
    t, F, _, _ = certified_closed_form(data, boost=boost)
    return t, F

SHAPES = [(3, 4, 2), (4, 6, 1), (3, 4, 3, 2), (2, 3, 3, 3, 1), (3, 3, 2, 3, 2, 2)]   # depth 1-4


def _net(widths, seed, act):
    base = small_network(widths, seed)
    return build_network([W.toarray() for W in base.weights], list(base.biases), [act] * base.depth)


def _cases(count, mode_seed=0):
    out = []
    for i in range(count):
        widths = SHAPES[i % len(SHAPES)]
        act = ("relu", "tanh")[(i // len(SHAPES)) % 2]
        kind = (None, "box", "inf-ball", "2-ball")[(i // (2 * len(SHAPES))) % 4]
        out.append((widths, 7 * i + mode_seed, act, kind))
    return out


def _check_sound(cases, mode):
    for widths, seed, act, kind in cases:
        net = _net(widths, seed, act)
        c = margin_c(net)
        slopes = None if kind is None else local_slopes(net, random_domain(net, seed, kind))
        exact = exact_fgl(net, c, "2", slopes).value
        b = lipsdp_layers(net, c, slopes, mode=mode)
        assert b.upper >= exact * (1 - 1e-12) - 1e-300, (widths, seed, act, kind, b.upper, exact)
        assert math.isfinite(b.upper)


def test_fast_never_below_exact_fgl_200_nets():
    _check_sound(_cases(200), "fast")


def test_opt_never_below_exact_fgl():
    _check_sound(_cases(16, mode_seed=3), "opt")


@pytest.mark.slow
def test_opt_never_below_exact_fgl_200_nets():
    _check_sound(_cases(200, mode_seed=5), "opt")


def test_feasible_point_not_below_lipsdp_optimum():
    # any (rho, tau) of the same LMI is feasible for LipSDP-Neuron, so our value >= its optimum; the SDP's
    # raw objective is within solver tolerance of the optimum
    for widths in ((4, 6, 1), (3, 5, 4, 2), (5, 8, 8, 8, 3)):
        for seed in range(3 if len(widths) < 5 else 2):   # SDPA reports 5-8-8-8-3 seed 2 infeasible
            net = small_network(widths, seed)
            c = margin_c(net)
            ls = lipsdp_neuron(net, c)
            for mode in ("fast", "opt"):
                b = lipsdp_layers(net, c, mode=mode)
                assert b.upper >= ls.raw * (1 - 1e-5), (widths, seed, mode, b.upper, ls.raw)
                assert b.raw >= ls.raw * (1 - 1e-5)
            # the refined multipliers (barrier path) reach LipSDP-Neuron's certified value
            assert b.upper <= ls.upper * (1 + 1e-3), (widths, seed, b.upper, ls.upper)


def test_opt_never_worse_than_fast_and_fast_below_product_globally():
    # global slopes [0, 1] (m = 1/2): the closed form keeps Y_l >= t_l I / 2, whence F <= prod ||W_l||^2
    for i, (widths, seed, act, _) in enumerate(_cases(20)):
        net = _net(widths, seed, act)
        c = margin_c(net)
        f = lipsdp_layers(net, c, mode="fast")
        o = lipsdp_layers(net, c, mode="opt")
        assert o.upper <= f.upper
        assert f.upper <= product_bound(net, c, "2") * (1 + 1e-9), (widths, seed, act)


def test_scale_covariance_through_registry():
    net = small_network((5, 8, 8, 8, 3), 1)
    c = margin_c(net)
    ref = lipsdp_neuron(net, c).raw
    fast = upper_bound(net, norm="2", method="l2-fast", c=c, lower=False).upper_bound
    for alpha in (3.0, 1e-3, 2.0 ** 40):
        Ws = [W.toarray() for W in net.weights]
        Ws[0] = alpha * Ws[0]
        scaled = build_network(Ws, list(net.biases))
        # the closed form is homogeneous: equal up to rounding
        v = upper_bound(scaled, norm="2", method="l2-fast", c=c, lower=False).upper_bound
        assert abs(v - alpha * fast) <= 1e-9 * alpha * fast, (alpha, v, alpha * fast)
        # the refinement's end point moves with the residual (non power-of-two) scale (it stalls near the
        # boundary of the definite region, see lipsdp_layers.refine): it stays between LipSDP's optimum
        # and the closed form, in the scaled units
        o = upper_bound(scaled, norm="2", method="l2-opt", c=c, lower=False).upper_bound
        assert alpha * ref * (1 - 1e-5) <= o <= alpha * fast * (1 + 1e-9), (alpha, o, alpha * ref, alpha * fast)


def test_local_bound_on_784_256_256_10_where_lipsdp_is_refused():
    # issue 18 item 2: local LipSDP on this shape is refused by the memory guard (fixed neurons give dense
    # constraint products); the layer-structured method handles it and never exceeds its global bound
    from lipopt.datasets import mnist_test, zoo_model_path
    net = lipopt.load(zoo_model_path("mlp256x2", "npz"))
    X, _ = mnist_test(1)
    c = np.zeros(10)
    c[7], c[3] = 1.0, -1.0
    dom = Ball(X[0], 0.02, "inf")
    with pytest.raises(InvalidInputError):
        upper_bound(net, norm="2", method="lipsdp", c=c, domain=dom, lower=False)
    with threadpool_limits(1):   # 3 s on one thread; BLAS threads on a shared 2-core machine took 70 s
        glob = upper_bound(net, norm="2", method="l2-fast", c=c, lower=False).upper_bound
        r = upper_bound(net, norm="2", method="l2-fast", c=c, domain=dom, samples=64)
    assert r.lower_bound is not None and r.lower_bound <= r.upper_bound <= glob


@pytest.mark.parametrize("widths,seed,act,kind", _cases(20, mode_seed=3))
def test_closed_form_value_is_the_schur_value(widths, seed, act, kind):
    # the start's F comes from the closed form's own sweep; it must be F(t) of the multipliers it returns
    # (certify then starts just above it), for both boosts, global and local slope boxes
    net = _net(widths, seed, act)
    dom = None if kind is None else random_domain(net, seed, kind)
    slopes = None if dom is None else local_slopes(net, dom)
    data = layer_data(net, margin_c(net), slopes)
    if data is None:
        return
    for boost in (True, False):
        try:
            t, F = closed_form(data, boost=boost)
        except lipopt.errors.SolverFailure:
            continue
        ref = schur_value(data, t)
        assert F == pytest.approx(ref, rel=1e-9, abs=1e-12) or (math.isinf(F) and math.isinf(ref))
        # and the same sweep's certificate is within a margin of sqrt(F)
        L = certified_closed_form(data, boost=boost)[2]
        assert math.sqrt(F) <= L <= math.sqrt(F) * (1 + 1e-3) + 1e-12


@pytest.mark.parametrize("widths,seed,act,kind", _cases(12, mode_seed=5))
def test_schur_gradients_match_finite_differences(widths, seed, act, kind):
    # refine follows these gradients: dF/dt and, on the barrier path, dJ/dt with J = log F - mu sum log
    # det(Y_l)/n_l, whose evaluation also returns F itself (refine keeps the smallest F it sees)
    net = _net(widths, seed, act)
    dom = None if kind is None else random_domain(net, seed, kind)
    data = layer_data(net, margin_c(net), None if dom is None else local_slopes(net, dom))
    if data is None:
        return
    try:
        t, F0 = closed_form(data)
    except lipopt.errors.SolverFailure:
        return
    t = [1.05 * x for x in t]              # off the closed form's point, still inside the definite region
    rng = np.random.default_rng(seed)
    for mu in (0.0, 1e-2):
        out = schur_value(data, t, grad=True, mu=mu)
        if not math.isfinite(out[0]):
            continue
        if mu > 0:
            assert out[2] == schur_value(data, t)
        val = lambda tt: schur_value(data, tt, grad=True, mu=mu)[0] if mu > 0 else schur_value(data, tt)
        g = np.concatenate(out[1])
        d = [rng.normal(size=len(x)) * x for x in t]
        h = 1e-6
        fd = (val([a + h * b for a, b in zip(t, d)]) - val([a - h * b for a, b in zip(t, d)])) / (2 * h)
        assert g @ np.concatenate(d) == pytest.approx(fd, rel=1e-4, abs=1e-8 * (1 + abs(out[0])))


def test_dead_layer_gives_zero_and_refusals():
    net = small_network((3, 4, 2), 0)
    c = margin_c(net)
    data = layer_data(net, c, None)
    t, _ = closed_form(data)
    assert math.isfinite(schur_value(data, t))
    # a slope box with a whole layer fixed at 0: c^T f is constant
    from lipopt.slopes import SlopeBox
    zero = SlopeBox((np.zeros(4),), (np.zeros(4),))
    assert lipsdp_layers(net, c, zero).upper == 0.0
    with pytest.raises(InvalidInputError):
        upper_bound(net, norm="inf", method="l2-fast", c=c, lower=False)
    with pytest.raises(InvalidInputError):
        lipsdp_layers(net, c, mode="nope")


def test_block_cholesky_certificate_matches_dense_lambda_min():
    rng = np.random.default_rng(0)
    sizes = [4, 3, 5]
    for shift in (-0.5, 0.0, 0.5):
        A = rng.standard_normal((12, 12))
        Z = A @ A.T / 12
        # keep only the block tridiagonal part, then shift
        off = np.concatenate([[0], np.cumsum(sizes)])
        mask = np.zeros_like(Z, dtype=bool)
        for i in range(3):
            for j in range(3):
                if abs(i - j) <= 1:
                    mask[off[i]:off[i + 1], off[j]:off[j + 1]] = True
        Z = np.where(mask, Z, 0.0) + shift * np.eye(12)
        Z = 0.5 * (Z + Z.T)
        lam = np.linalg.eigvalsh(Z)[0]
        diag = [Z[off[i]:off[i + 1], off[i]:off[i + 1]] for i in range(3)]
        sub = [Z[off[i]:off[i + 1], off[i - 1]:off[i]] for i in (1, 2)]
        bb = block_cholesky_lambda_min(diag, [err_sums(np.zeros_like(D)) for D in diag], sub,
                                       [err_sums(np.zeros_like(S)) for S in sub])
        assert bb.nu <= lam + 1e-12
        if lam > 0:
            assert bb.nu >= -1e-10      # a definite matrix is certified up to rounding


@pytest.mark.parametrize("seed", range(20))
def test_block_cholesky_covers_data_errors_given_as_row_and_column_sums(seed):
    # the float blocks differ from the exact Z by asymmetric perturbations within asymmetric bounds E (given
    # to the certificate as row / column sums only), and by a diagonal push that hides Z's smallest
    # eigenvalue from the float data: the bound must stay below lambda_min of the exact Z, and must not
    # be loose by more than the errors allow
    rng = np.random.default_rng(seed)
    sizes = list(rng.integers(2, 6, size=rng.integers(2, 5)))
    n = int(sum(sizes))
    off = np.concatenate([[0], np.cumsum(sizes)])
    A = rng.standard_normal((n, n))
    Z = A @ A.T / n
    mask = np.zeros_like(Z, dtype=bool)
    for i in range(len(sizes)):
        for j in range(len(sizes)):
            if abs(i - j) <= 1:
                mask[off[i]:off[i + 1], off[j]:off[j + 1]] = True
    Z = np.where(mask, Z, 0.0)
    Z = 0.5 * (Z + Z.T)
    Z -= (np.linalg.eigvalsh(Z)[0] - 1e-3) * np.eye(n)       # lambda_min(Z) = 1e-3
    lam = np.linalg.eigvalsh(Z)[0]
    scale = 10.0 ** rng.uniform(-6, -3)
    E = scale * rng.uniform(0, 1, size=(n, n))               # asymmetric entrywise bounds
    P = E * rng.uniform(-1, 1, size=(n, n))
    P[np.diag_indices(n)] = E[np.diag_indices(n)]            # the float data looks more definite than Z
    F = Z + P
    blocks = lambda M, i, j: M[off[i]:off[i + 1], off[j]:off[j + 1]]
    k = range(len(sizes))
    bb = block_cholesky_lambda_min([blocks(F, i, i) for i in k], [err_sums(blocks(E, i, i)) for i in k],
                                   [blocks(F, i, i - 1) for i in k[1:]], [err_sums(blocks(E, i, i - 1)) for i in k[1:]])
    assert bb.nu <= lam + 1e-13
    # ignoring the errors would certify the float data's larger lambda_min
    assert np.linalg.eigvalsh(0.5 * (F + F.T))[0] > lam or scale < 1e-5
    # the residual is the row-sum bound of the data errors (diagonal blocks symmetrised, the upper blocks
    # the transposed lower ones) plus rounding: every error counted once, none dropped
    blk = np.repeat(np.arange(len(sizes)), sizes)
    low = np.where(blk[:, None] == blk[None, :] + 1, E, 0.0)
    same = np.where((blk[:, None] == blk[None, :]), 0.5 * (E + E.T), 0.0)
    expected = float((same + low + low.T).sum(axis=1).max())
    assert expected <= bb.residual <= expected * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize("shift", [-0.3, 1e-3, 0.2])
def test_large_order_lambda_min_estimate_stays_rigorous(shift):
    # above DENSE_EIG_ORDER the shift is picked by inverse iteration on a Cholesky factor (or eigvalsh for
    # indefinite matrices); the certificate is still the shifted Cholesky: never above the true lambda_min
    from lipopt.certify.gram import DENSE_EIG_ORDER, lambda_min_lower_bound
    rng = np.random.default_rng(3)
    n = DENSE_EIG_ORDER + 50
    A = rng.standard_normal((n, n))
    Z = A @ A.T / n
    Z = Z - (np.linalg.eigvalsh(Z)[0] - shift) * np.eye(n)
    Z = 0.5 * (Z + Z.T)
    lam = np.linalg.eigvalsh(Z)[0]
    nu = lambda_min_lower_bound(Z).nu
    assert nu <= lam
    if lam > 0:
        assert nu >= 0.1 * lam          # a definite matrix keeps a positive certified margin


def test_time_limit_kills_the_dense_factorisations():
    # the closed form and its certificate cannot be interrupted: above IN_PROCESS_FLOPS they run in a
    # child process killed at the limit (SolverFailure), and the value does not change when they finish
    import time
    from lipopt.errors import SolverFailure
    from lipopt.methods.l2 import IN_PROCESS_FLOPS, _flops, _with_deadline
    net = small_network((600, 600, 600, 1), 1)
    assert _flops(net.widths) > IN_PROCESS_FLOPS
    c = np.ones(1)
    t0 = time.perf_counter()
    with pytest.raises(SolverFailure, match="did not finish"):
        _with_deadline(net, c, None, "fast", 0.02)
    assert time.perf_counter() - t0 < 2.0
    assert _with_deadline(net, c, None, "fast", 300.0).upper == lipsdp_layers(net, c, None, "fast").upper
    # a refusal raised inside the child keeps its type
    with pytest.raises(InvalidInputError):
        _with_deadline(net, c, None, "nope", 300.0)


def _integer_block_gram(rng, sizes):
    """Z = M M^T for a block lower-bidiagonal integer M with two equal rows: block tridiagonal, every entry
    an exact float, lambda_min(Z) = 0 exactly (the float data is the exact matrix)."""
    n = int(sum(sizes))
    off = np.concatenate([[0], np.cumsum(sizes)])
    M = np.zeros((n, n))
    for i in range(len(sizes)):
        M[off[i]:off[i + 1], off[i]:off[i + 1]] = rng.integers(-3, 4, size=(sizes[i], sizes[i]))
        if i:
            M[off[i]:off[i + 1], off[i - 1]:off[i]] = rng.integers(-3, 4, size=(sizes[i], sizes[i - 1]))
    M[off[-1] - 1] = 0.0
    M[off[-1] - 1, off[-3]:off[-1]] = M[off[-1] - 2, off[-3]:off[-1]]      # two equal rows in the last block row
    return M @ M.T, off


@pytest.mark.parametrize("seed", range(12))
def test_block_cholesky_exact_on_singular_integer_matrices(seed):
    # lambda_min(Z + s I) = s exactly: the bound must never exceed it, whatever the sign of s and however
    # close to 0 (the float Cholesky of a singular Z may well succeed), and must prove a positive s
    rng = np.random.default_rng(seed)
    sizes = [int(x) for x in rng.integers(8, 40, size=rng.integers(2, 5))]
    Z, off = _integer_block_gram(rng, sizes)
    assert np.array_equal(Z, Z.T) and np.abs(Z).max() < 2 ** 12
    k = range(len(sizes))
    for s in (-2.0 ** -10, -2.0 ** -30, -2.0 ** -38, 0.0, 2.0 ** -38, 2.0 ** -20, 2.0 ** -4):
        Zs = Z + s * np.eye(len(Z))
        assert np.array_equal(Zs - Z, s * np.eye(len(Z)))     # the shift is exact
        bb = block_cholesky_lambda_min([Zs[off[i]:off[i + 1], off[i]:off[i + 1]].copy() for i in k],
                                       [err_sums(np.zeros((a, a))) for a in sizes],
                                       [Zs[off[i]:off[i + 1], off[i - 1]:off[i]].copy() for i in k[1:]],
                                       [err_sums(np.zeros((sizes[i], sizes[i - 1]))) for i in k[1:]])
        assert bb.nu <= s
        if s >= 2.0 ** -20:
            # proved up to rounding (the shifts that absorb it are picked before the next block's share is
            # known, so nu may end a few ulps of ||Z|| below 0: LipSDP's R^2 argument pays that)
            assert bb.nu >= -1e-12 * np.abs(Z).max() * len(Z)


def test_sparse_weight_products_sound_and_equal_to_dense(monkeypatch):
    # conv layers go through CSR copies of W (times_w / sandwich_w): forced on for every layer here, the
    # bounds stay above the exact FGL and the multipliers' values match the dense products'
    import lipopt.relaxations.lipsdp_layers as ll
    cases = _cases(40, mode_seed=5)
    dense = []
    for widths, seed, act, kind in cases:
        net = _net(widths, seed, act)
        slopes = None if kind is None else local_slopes(net, random_domain(net, seed, kind))
        data = layer_data(net, margin_c(net), slopes)
        assert data is None or all(w is None for w in data.Ws)
        dense.append(None if data is None else closed_form(data)[1])
    monkeypatch.setattr(ll, "SPARSE_DENSITY", 2.0)
    for (widths, seed, act, kind), F in zip(cases, dense):
        net = _net(widths, seed, act)
        slopes = None if kind is None else local_slopes(net, random_domain(net, seed, kind))
        data = layer_data(net, margin_c(net), slopes)
        if data is None:
            continue
        assert all(w is not None for w in data.Ws)
        t, Fs = closed_form(data)
        assert Fs == pytest.approx(F, rel=1e-9) and schur_value(data, t) == pytest.approx(F, rel=1e-9)
    _check_sound(cases, "fast")
    _check_sound(cases[:8], "opt")


def test_refinement_starts_no_evaluation_that_would_end_past_its_deadline():
    # the first evaluation has no measured cost: the caller's estimate decides (a gradient evaluation
    # on conv-layer orders takes ~11 s; starting one 1 s before the deadline broke l2-opt's budget)
    import time
    from lipopt.relaxations.lbfgs import lbfgs
    calls = []

    def fun(x):
        calls.append(x)
        return float(x @ x), 2 * x

    x0 = np.ones(3)
    soon = time.perf_counter() + 0.5
    x, f = lbfgs(fun, x0, soon, 50, cost=5.0)
    assert not calls and f == math.inf and np.array_equal(x, x0)
    x, f = lbfgs(fun, x0, soon + 60, 50, cost=5.0)
    assert calls and f < 1e-12
    net = _net((3, 4, 3, 2), 1, "relu")
    data = layer_data(net, margin_c(net), None)
    t0, _ = closed_form(data)
    assert refine(data, t0, time.perf_counter() + 0.5, sweep=5.0) is t0
    assert schur_value(data, refine(data, t0, None, sweep=5.0)) <= schur_value(data, t0)


@pytest.mark.parametrize("seed", range(24))
def test_certified_sweep_sound_across_badly_scaled_layers(seed):
    # layers scaled by 1e-4 .. 1e4 make the blocks' scales (and growth_l) differ by many orders: the
    # per-block Gershgorin deficits and the last block's margins must still give a bound >= the exact FGL,
    # and the bound must scale with the weights (c^T f of 2^k W_l has 2^k times the constant)
    rng = np.random.default_rng(500 + seed)
    widths, act, kind = SHAPES[seed % len(SHAPES)], ("relu", "tanh")[seed % 2], (None, "box", "inf-ball")[seed % 3]
    base = _net(widths, seed, act)
    scales = [float(2.0 ** rng.integers(-13, 14)) for _ in base.weights]
    net = build_network([W.toarray() * s if hasattr(W, "toarray") else np.asarray(W) * s
                         for W, s in zip(base.weights, scales)], list(base.biases), [act] * base.depth)
    c = margin_c(net)
    slopes = None if kind is None else local_slopes(net, random_domain(net, seed, kind))
    exact = exact_fgl(net, c, "2", slopes).value
    data = layer_data(net, c, slopes)
    if data is None:
        return
    for boost in (True, False):
        try:
            t, F, L, info = certified_closed_form(data, boost=boost)
        except lipopt.errors.SolverFailure:
            continue
        assert L >= exact * (1 - 1e-12) - 1e-300, (widths, seed, scales, L, exact)
        assert math.isfinite(L) and L <= math.sqrt(F) * (1 + 1e-3) + 1e-300
        # the last layer's weights (the output map, no slope box) scaled by 2: exactly twice the bound's data
        net2 = build_network([np.asarray(W.toarray() if hasattr(W, "toarray") else W) * (2.0 if i == net.depth else 1.0)
                              for i, W in enumerate(net.weights)], list(net.biases), [act] * net.depth)
        L2 = certified_closed_form(layer_data(net2, c, slopes), boost=boost)[2]
        assert L2 == pytest.approx(2 * L, rel=1e-6)


def test_lipsdp_neuron_certified_layer_by_layer_stays_sound():
    # LipSDP-Neuron's solver point is certified twice (the dense Gram test with the whole R^2, and the
    # block Cholesky with R^2 per block); the smaller is kept: never below the exact FGL, never above the
    # dense certificate, and at most a margin above the solver's raw value when the layers prove it
    for i, (widths, seed, act, kind) in enumerate(_cases(15, mode_seed=11)):
        net = _net(widths, seed, act)
        c = margin_c(net)
        slopes = None if kind is None else local_slopes(net, random_domain(net, seed, kind))
        exact = exact_fgl(net, c, "2", slopes).value
        try:
            ls = lipsdp_neuron(net, c, slopes)
        except lipopt.errors.SolverFailure:
            continue
        assert ls.upper >= exact * (1 - 1e-12) - 1e-300, (widths, seed, act, kind, ls.upper, exact)
        d = ls.details
        assert d["rho"] <= d["rho_dense"]
        if d["rho_layers"] is not None and d["rho_layers"] < d["rho_dense"]:
            assert d["rho"] == d["rho_layers"] >= d["rho_raw"]
