"""The carry-free LipSDP of lifted graphs (relaxations.lipsdp_dag, certify.block_sparse / lipsdp_dag,
methods.l2_dag): the chain's LMI in the limit of infinite carry multipliers, exact gradients, a
lambda_min bound never above the true one, and l2-opt bounds never below the enumerated FGL."""
from __future__ import annotations

import math

import numpy as np
import pytest

from graph_nets import random_dag, random_graph, random_pool, random_residual
from lipopt.api import upper_bound
from lipopt.certify.block_sparse import sparse_block_lambda_min
from lipopt.certify.lipsdp_dag import certify_dag
from lipopt.certify.lipsdp_sweep import certified_closed_form
from lipopt.domain import Ball, Box
from lipopt.graph_bounds import enumerate_fgl, graph_slopes
from lipopt.methods.graph_l2 import lift_start
from lipopt.methods.l2_dag import _dag_start, _value_box
from lipopt.model.graph_lift import lift, lifted_slopes
from lipopt.relaxations.lipsdp_dag import dag_data, dag_value, pattern, reduce_input
from lipopt.relaxations.lipsdp_layers import layer_data, schur_value

MAKERS = (random_residual, random_dag, random_graph, random_pool)


def _setup(make, seed, domain_kind=0):
    g = make(seed)
    rng = np.random.default_rng(seed + 7)
    c = rng.normal(size=g.output_size)
    x0 = rng.normal(size=g.input_size)
    domain = [None, Ball(x0, 0.3, "inf"), Ball(x0, 0.5, "2"), Box(x0 - 0.2, x0 + 0.4)][domain_kind]
    sl = graph_slopes(g, domain)
    lifted = lift(g, lift_start(g))
    box = lifted_slopes(g, lifted, sl.lo, sl.hi)
    return g, c, domain, sl, lifted, box


def _carried(seeds):
    """(graph, c, lifted chain, its layer data, the DAG data, closed-form multipliers) with carries."""
    out = []
    for make in MAKERS:
        for s in seeds:
            g, c, _, _, lifted, box = _setup(make, s)
            if not lifted.n_identity:
                continue
            ld = layer_data(lifted.net, c, box, prune=False)    # t maps neuron by neuron onto the DAG
            if ld is None:
                continue
            lo, hi = _value_box(lifted, box)
            dd = dag_data(lifted.dag, lifted.net.widths[0], lo, hi, ld.growth, c)
            t, F, L, _ = certified_closed_form(ld)
            out.append((g, c, lifted, ld, dd, t))
    return out


def _with_carry_t(lifted, ld, t, value):
    """The chain's multipliers with every identity (carry or materialised) neuron's set to ``value``."""
    out = []
    for l, layer in enumerate(lifted.parts):
        mask = np.concatenate([np.full(s, j == -1 and k < len(layer) - 1) for k, (j, s) in enumerate(layer)])
        x = t[l].copy()
        x[mask[ld.kept[l]]] = value
        out.append(x)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_dag_value_is_the_chains_limit_with_exact_gradients(seed):
    cases = _carried([seed])
    assert cases, "every maker at this seed lifts without carries"
    for g, c, lifted, ld, dd, t in cases:
        rng = np.random.default_rng(seed)
        t = [x * np.exp(0.3 * rng.normal(size=len(x))) for x in t]
        t_dag = _dag_start(lifted, ld, t, dd)
        F = dag_value(dd, t_dag)
        assert math.isfinite(F)
        chain = [schur_value(ld, _with_carry_t(lifted, ld, t, v)) for v in (1.0, 1e3, 1e5)]
        # the chain's LMI restricted to carries equal to their origins is the DAG's: F_dag <= F_chain at
        # every carry multiplier, with equality in the limit (beyond 1e5 the chain's float F loses digits)
        assert all(F <= x * (1 + 1e-9) for x in chain), (F, chain)
        assert chain[-1] <= F * (1 + 1e-5), (F, chain)
        # the input reduction keeps F and its gradient
        red = reduce_input(dd)
        assert dag_value(red, t_dag) == pytest.approx(F, rel=1e-9)
        for mu in (0.0, 1e-2):
            out = dag_value(dd, t_dag, grad=True, mu=mu)
            g_red = dag_value(red, t_dag, grad=True, mu=mu)[1]
            fun = (lambda tt: dag_value(dd, tt)) if mu == 0 else (lambda tt: dag_value(dd, tt, grad=True, mu=mu)[0])
            for k, gk in enumerate(out[1]):
                np.testing.assert_allclose(g_red[k], gk, rtol=1e-6, atol=1e-9 * (1 + np.abs(gk).max(initial=0)))
                for i in range(min(2, len(gk))):
                    h = 1e-4 * t_dag[k][i]
                    up_, dn = [x.copy() for x in t_dag], [x.copy() for x in t_dag]
                    up_[k][i] += h
                    dn[k][i] -= h
                    fd = (fun(up_) - fun(dn)) / (2 * h)
                    # central differences: O(h^2) truncation, and F's rounding (~1e-13 |F|) over h
                    noise = 1e-7 * (1 + abs(fun(t_dag))) / t_dag[k][i]
                    assert fd == pytest.approx(gk[i], rel=1e-3, abs=noise), (k, i, fd, gk[i])


def _chordal_matrix(rng, sizes, edges):
    nbrs = pattern(len(sizes), edges)
    blocks = {}
    for k, n in enumerate(sizes):
        blocks[(k, k)] = np.zeros((n, n))
        for i in nbrs[k]:
            blocks[(i, k)] = rng.normal(size=(sizes[i], n))
    dense = np.zeros((sum(sizes), sum(sizes)))
    off = np.cumsum([0] + list(sizes))
    for (i, j), B in blocks.items():
        dense[off[i]:off[i + 1], off[j]:off[j + 1]] = B
        if i != j:
            dense[off[j]:off[j + 1], off[i]:off[i + 1]] = B.T
    return nbrs, blocks, dense, off


@pytest.mark.parametrize("seed", range(30))
def test_sparse_block_lambda_min_never_exceeds_the_true_one(seed):
    rng = np.random.default_rng(seed)
    sizes = [int(x) for x in rng.integers(1, 6, size=int(rng.integers(2, 6)))]
    edges = {(i, j) for i in range(len(sizes)) for j in range(i) if rng.random() < 0.5}
    nbrs, blocks, dense, off = _chordal_matrix(rng, sizes, edges)
    # the pattern's fill is zero in Z: a shift around lambda_min of the off-diagonal part
    lam = np.linalg.eigvalsh(dense)[0]
    for shift in (-lam + 1.0, -lam + 1e-6, -lam - 1e-3, -lam - 1.0):
        Z = {k: (B + shift * np.eye(len(B)) if k[0] == k[1] else B) for k, B in blocks.items()}
        errs = {k: (np.zeros(B.shape[0]), np.zeros(B.shape[1])) for k, B in Z.items()}
        bound, nus = sparse_block_lambda_min(sizes, nbrs, Z, errs)
        true = lam + shift
        assert bound.nu <= true + 1e-12 * max(1.0, abs(true)), (shift, bound.nu, true)
        if true >= 1.0 - 1e-9:    # definite: proved up to rounding (the pivot shifts are rounding-sized)
            assert bound.nu > -1e-12
        if true < 0:
            assert bound.nu < 0


def _sweep(seeds, kinds=range(4)):
    """l2-opt over lifted graphs with carries: never below the enumerated FGL, never above l2-fast."""
    ran = carry_free = 0
    for make in MAKERS:
        for s in seeds:
            kind = list(kinds)[s % len(kinds)]
            g, c, domain, sl, lifted, _ = _setup(make, s, kind)
            if not lifted.n_identity:
                continue
            fgl = enumerate_fgl(g, c, "2", sl)
            opt = upper_bound(g, norm="2", c=c, domain=domain, method="l2-opt", lower=False, time_limit=10)
            fast = upper_bound(g, norm="2", c=c, domain=domain, method="l2-fast", lower=False, time_limit=10)
            assert opt.upper_bound >= fgl, (make.__name__, s, opt.upper_bound, fgl)
            assert opt.upper_bound <= fast.upper_bound * (1 + 1e-9)
            carry_free += bool(opt.details.get("carry_free"))
            ran += 1
    return ran, carry_free


def test_carry_free_l2_opt_is_sound_on_lifted_graphs():
    ran, carry_free = _sweep(range(2))
    assert ran >= 4
    assert carry_free >= ran // 2      # the refined carry-free certificate wins on most of them


@pytest.mark.slow
def test_carry_free_l2_opt_is_sound_on_many_lifted_graphs():
    ran, carry_free = _sweep(range(2, 40))
    assert ran >= 100
    assert carry_free >= ran // 2


def test_carry_free_certificate_at_its_own_value():
    for g, c, lifted, ld, dd, t in _carried(range(3)):
        t_dag = _dag_start(lifted, ld, t, dd)
        F = dag_value(dd, t_dag)
        rho_c, L, info = certify_dag(dd, F, t_dag)
        assert math.sqrt(F) <= L <= math.sqrt(F) * (1 + 1e-3), (F, L, info)


def _wide_cases(seeds, acts=("relu", "tanh")):
    """(graph, c, domain, slopes, DAG data on the superset box [0, b]) for lifted graphs with carries."""
    from lipopt.relaxations.lipsdp_layers import growth_terms
    out = []
    for act in acts:
        for make in MAKERS:
            for s in seeds:
                g = make(s, act)
                rng = np.random.default_rng(s + 7)
                c = rng.normal(size=g.output_size)
                domain = [None, Ball(rng.normal(size=g.input_size), 0.4, "inf")][s % 2]
                sl = graph_slopes(g, domain)
                lifted = lift(g, lift_start(g))
                if not lifted.n_identity:
                    continue
                box = lifted_slopes(g, lifted, sl.lo, sl.hi)
                wide = [np.zeros_like(np.asarray(h, float)) for h in box.hi]
                from lipopt.slopes import SlopeBox
                lo, hi = _value_box(lifted, SlopeBox(tuple(wide), box.hi))
                dd = dag_data(lifted.dag, lifted.net.widths[0], lo, hi, growth_terms(lifted.net, box), c)
                if dd is not None:
                    out.append((g, c, domain, sl, dd))
    return out


def test_carry_free_closed_form_is_a_certified_feasible_point():
    """ECLipsE-Fast's rule on the carry-free LMI: its F is the LMI's F at its multipliers (one factorisation),
    every multiplier positive, and the certificate at that F never below the enumerated FGL (the superset
    box contains the slopes), within rounding of sqrt(F)."""
    from lipopt.relaxations.lipsdp_dag_start import dag_closed_form
    cases = _wide_cases(range(6))
    assert len(cases) >= 20
    for g, c, domain, sl, dd in cases:
        for data in (dd, reduce_input(dd)):
            t, F = dag_closed_form(data)
            assert all(np.all(np.isfinite(x)) and np.all(x > 0) for x in t)
            assert F == pytest.approx(dag_value(data, t), rel=1e-9)
        rho_c, L, info = certify_dag(dd, F, t)
        assert L >= enumerate_fgl(g, c, "2", sl) * (1 - 1e-12)
        assert math.sqrt(F) <= L <= math.sqrt(F) * (1 + 1e-3), (F, L, info)


def test_carry_free_closed_form_needs_the_superset_box():
    from lipopt.relaxations.lipsdp_dag_start import dag_closed_form
    for g, c, lifted, ld, dd, t in _carried(range(3)):
        if any(p is not None and np.any(p) for p in dd.p):
            with pytest.raises(ValueError, match="every p = 0"):
                dag_closed_form(dd)
            return
    pytest.fail("no lifted graph with a narrow slope box among the seeds")


@pytest.mark.slow   # 6-8 s; the carry-free sweep above stays in the fast suite
def test_l2_opt_on_lifted_graphs_from_the_carry_free_start_alone(monkeypatch):
    """With the lifted chain's starts skipped (as on large graphs under a budget) the carry-free closed form
    alone starts the refinement: l2-opt stays above the enumerated FGL (the chain's starts: the sweeps above)."""
    import lipopt.methods.l2_dag as l2_dag
    monkeypatch.setattr(l2_dag, "CHAIN_PER_DAG", math.inf)
    ran = 0
    for make in MAKERS:
        for s in range(4):
            g, c, domain, sl, lifted, _ = _setup(make, s, s % 4)
            if not lifted.n_identity:
                continue
            opt = upper_bound(g, norm="2", c=c, domain=domain, method="l2-opt", lower=False, time_limit=10)
            assert opt.upper_bound >= enumerate_fgl(g, c, "2", sl)
            assert opt.upper_bound == 0 or opt.details["start"] == "carry-free closed form"
            ran += 1
    assert ran >= 8
