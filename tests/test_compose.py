"""compose (compositional blocks): soundness against vertex enumeration, never above the product bound,
tight on one block, monotone under a shrinking slope box, sound at any deadline, registry refusals."""
from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from lipopt import InvalidInputError, api
from lipopt.baselines import product_bound
from lipopt.domain import Ball, Box
from lipopt.exact import exact_fgl
from lipopt.methods import METHODS
from lipopt.methods.base import normalised
from lipopt.methods.compose import run_compose
from lipopt.model import build_network, output_vector
from lipopt.model.random import band_mask
from lipopt.polynomial import SlopeBox, global_slopes
from lipopt.relaxations.compose import beam_plan, compose_bound, forward_chain, plan_blocks, transposed_chain
from lipopt.slopes import local_slopes

REL = 1e-12   # a float-evaluated vertex value next to its exact value (widths <= 4, depth <= 5)


def _net(seed: int, depth: int, act: str, banded: bool, max_width: int = 4):
    rng = np.random.default_rng(seed)
    widths = [int(w) for w in rng.integers(2, max_width + 1, size=depth + 1)] + [2]
    Ws = []
    for l in range(depth + 1):
        W = rng.standard_normal((widths[l + 1], widths[l])) / np.sqrt(widths[l])
        if banded and l < depth:
            W = W * band_mask(widths[l + 1], widths[l], 3)
        Ws.append(W)
    bs = [0.5 * rng.standard_normal(widths[l + 1]) for l in range(depth + 1)]
    return build_network(Ws, bs, [act] * depth)


def _slopes(net, local: bool, seed: int):
    if not local:
        return global_slopes(net)
    rng = np.random.default_rng(1000 + seed)
    n = net.widths[0]
    dom = Box(-np.ones(n), rng.uniform(-0.5, 1.0, n)) if seed % 2 else Ball(rng.standard_normal(n), 0.5, "inf")
    return local_slopes(net, dom)


def _cases(n_seeds: int):
    grid = itertools.product((2, 3, 4, 5), ("relu", "tanh"), (False, True), (False, True), ("inf", "1", "2"))
    for k, (depth, act, banded, local, norm) in enumerate(grid):
        for s in range(n_seeds):
            yield 97 * k + s, depth, act, banded, local, norm


def _check(seed, depth, act, banded, local, norm):
    net = _net(seed, depth, act, banded)
    c = output_vector(net, margin=(0, 1)) if seed % 2 else output_vector(net, output=1)
    slopes = _slopes(net, local, seed)
    out = normalised(run_compose)(net, c, norm, slopes, {"time_limit": 10.0})
    fgl = exact_fgl(net, c, norm, slopes).value
    prod = product_bound(net, c, norm, slopes)
    assert out.upper >= fgl * (1 - REL) - 1e-300, (out.upper, fgl)
    assert out.upper <= prod * (1 + 1e-12) + 1e-300   # both rounded up; the scale-back adds ulps
    # the recursion itself (before the min with the product) is never above the product bound
    for p in out.details["plans"]:
        assert p["vs_product"] is None or p["vs_product"] <= 1 + 1e-9 or prod < 1e-290, (p, prod)
    if norm == "2":
        return out.upper, fgl, prod
    # every plan on its own, closed-form rows only (absolute masses, interval rows), on the raw network
    ch = forward_chain(net, slopes) if norm == "inf" else transposed_chain(net, c, slopes)
    for h, at_output in ((0, True), (1, True), (1, False), (2, True), (depth, True)):
        r = compose_bound(ch, c if norm == "inf" else None, plan_blocks(len(ch.weights), h, at_output), None,
                          search=False)
        assert r.upper >= fgl * (1 - REL) - 1e-300, (h, at_output, r.upper, fgl)
    value, blocks = beam_plan(ch, c if norm == "inf" else None, None, beam=3, max_len=3)
    assert value >= fgl * (1 - REL) - 1e-300
    assert value == compose_bound(ch, c if norm == "inf" else None, blocks, None, search=False).upper
    return out.upper, fgl, prod


def test_sound_and_below_product_quick():
    """48 nets: half of the depth 2-5 x relu/tanh x dense/banded x global/local x l_inf/l_1/l_2 grid."""
    ratios = [_check(*case) for case in list(_cases(2))[::4]]
    ups, fgls, prods = map(np.array, zip(*ratios))
    assert len(ups) >= 48
    # on these small nets compose is strictly tighter than the product on most cases
    assert np.mean(ups < prods * (1 - 1e-6)) > 0.5


@pytest.mark.slow
def test_sound_and_below_product_many():
    """>= 300 nets: 96 configurations x 4 seeds, every sixth left out."""
    n = 0
    for case in (case for i, case in enumerate(_cases(4)) if i % 6 != 5):
        _check(*case)
        n += 1
    assert n >= 300


def test_one_block_is_the_exact_fgl():
    """A 2-hidden-layer net with 2-layer blocks is one block: the value is the exact FGL (closed search)."""
    for seed in range(6):
        net = _net(seed, 2, "relu", seed % 2 == 1)
        c = output_vector(net, output=0)
        sl = global_slopes(net)
        out = normalised(run_compose)(net, c, "inf", sl, {"time_limit": 10.0, "block_layers": 2})
        fgl = exact_fgl(net, c, "inf", sl).value
        assert fgl * (1 - REL) <= out.upper <= fgl * (1 + 1e-9) + 1e-300


def test_recursion_beats_diagonal_scalings():
    """The per-neuron recursion is at most the scaled product of block inf-norms for random power-of-two
    diagonal scalings D (here with single-weight blocks, whose row bounds are exact absolute sums)."""
    rng = np.random.default_rng(5)
    for seed in range(10):
        net = _net(seed, 3, "relu", False, max_width=5)
        c = output_vector(net, output=0)
        sl = global_slopes(net)
        ch = forward_chain(net, sl)
        value = compose_bound(ch, c, plan_blocks(len(ch.weights), 0), None).upper
        Ws = [np.abs(W.toarray()) for W in net.weights]
        for _ in range(20):
            Ds = [2.0 ** rng.integers(-3, 4, size=W.shape[0]) for W in Ws[:-1]]
            prod, prev = 1.0, np.ones(Ws[0].shape[1])
            for W, D in zip(Ws[:-1], Ds):
                prod *= float((D[:, None] * W / prev[None, :]).sum(axis=1).max())
                prev = D
            prod *= float((np.abs(net.weights[-1].T @ c) / prev).sum())
            assert value <= prod * (1 + 1e-9)


def test_monotone_under_shrinking_box():
    """Exact row bounds: a sub-box of slopes never gives a larger value."""
    rng = np.random.default_rng(3)
    for seed in range(12):
        net = _net(seed, 3 + seed % 2, "tanh", seed % 3 == 0)
        c = output_vector(net, output=1)
        sl = global_slopes(net)
        lo = [rng.uniform(0, 0.5, len(x)) for x in sl.lo]
        hi = [np.maximum(l_, rng.uniform(0.3, 1.0, len(l_))) for l_ in lo]
        inner = SlopeBox(tuple(lo), tuple(hi))
        for norm in ("inf", "1"):
            for h in (1, 2):
                vals = []
                for box in (sl, inner):
                    ch = forward_chain(net, box) if norm == "inf" else transposed_chain(net, c, box)
                    r = compose_bound(ch, c if norm == "inf" else None, plan_blocks(len(ch.weights), h), None,
                                      stall=False)
                    assert r.fallback_rows == 0 and r.proved_rows == r.rows
                    vals.append(r.upper)
                assert vals[1] <= vals[0] * (1 + 1e-12)


def test_sound_at_any_deadline():
    """A wider 4-hidden-layer net under tiny budgets (rows fall back to brackets or absolute masses):
    above sampled gradient norms, below the product bound, on time."""
    rng = np.random.default_rng(0)
    widths = [12, 10, 10, 10, 10, 3]
    Ws = [rng.standard_normal((widths[l + 1], widths[l])) for l in range(5)]
    net = build_network(Ws, [rng.standard_normal(w) for w in widths[1:]])
    c = output_vector(net, margin=(0, 2))
    x = rng.uniform(-3, 3, (4000, 12))
    g = net.gradient(x, c)
    best = {"inf": np.abs(g).sum(axis=1).max(), "1": np.abs(g).max()}
    best["2"] = np.linalg.norm(g, axis=1).max()
    for limit in (0.005, 0.05, 2.0):
        for norm in ("inf", "1", "2"):
            t0 = time.perf_counter()
            out = normalised(run_compose)(net, c, norm, global_slopes(net), {"time_limit": limit})
            assert time.perf_counter() - t0 < limit + 1.0
            assert out.upper >= best[norm]
            assert out.upper <= product_bound(net, c, norm, global_slopes(net))


def test_registry_entry_and_refusals():
    net = _net(1, 3, "relu", False)
    r = api.upper_bound(net, method="compose", output=0, lower=False, time_limit=5)
    assert r.upper_bound >= exact_fgl(net, output_vector(net, output=0), "inf", global_slopes(net)).value * (1 - REL)
    assert "compose" in METHODS and METHODS["compose"].estimate is not None
    r2 = api.upper_bound(net, norm=2, method="compose", output=0, lower=False, time_limit=5)
    assert r2.upper_bound <= api.upper_bound(net, norm=2, method="product", output=0, lower=False).upper_bound
    with pytest.raises(InvalidInputError, match="hidden layer"):
        api.upper_bound(_net(1, 1, "relu", False), method="compose", output=0, lower=False)
    with pytest.raises(InvalidInputError, match="block_layers"):
        run_compose(net, output_vector(net, output=0), "inf", global_slopes(net), {"block_layers": 3})


def test_dense_blocks_take_branch_and_bound_soundly():
    """A dense block with > 4096 nonzeros goes to branch and bound without DP planning: compose (one
    two-layer block, its one search) stays above the exact search's witness value P(t, s) (realised, so
    at most the FGL that compose bounds) and the sampled gradient norms, and at most the product."""
    rng = np.random.default_rng(7)
    widths = [70, 40, 40, 3]
    net = build_network([rng.standard_normal((widths[l + 1], widths[l])) / np.sqrt(widths[l]) for l in range(3)],
                        [0.1 * rng.standard_normal(w) for w in widths[1:]])
    assert sum(W.nnz for W in net.weights[:2]) > 4096
    c = output_vector(net, margin=(0, 2))
    sl = global_slopes(net)
    out = normalised(run_compose)(net, c, "inf", sl, {"time_limit": 1.5, "block_layers": 2})
    searched = [p for p in out.details["plans"] if p["search"]]
    assert searched and searched[0]["row_searches"] == 1
    witness = api.upper_bound(net, method="exact-fgl", margin=(0, 2), lower=False,
                              time_limit=1).details["bracket"][0]
    assert out.upper >= witness > 0
    g = net.gradient(rng.uniform(-2, 2, (4000, widths[0])), c)
    assert out.upper >= np.abs(g).sum(axis=1).max()
    assert out.upper <= product_bound(net, c, "inf", sl) * (1 + 1e-12)
