"""Regression: HiGHS' presolve declared the Lipschitz MIP of the zoo's pruned90 net (l_inf ball r = 0.1
around test image 0, margin 4 - 9) infeasible although a real input satisfies it, and with the warm
start the run ended "optimal" at 107.62, below a certified witness of gradient norm 109.79. The MIP's
upper end must never fall below a certified lower bound of the same function and domain."""
import numpy as np
import pytest

import lipopt
from lipopt.datasets import mnist_test, zoo_model_path
from lipopt.domain import Ball
from lipopt.exact.mip import build_mip, exact_lipschitz_mip, point_to_columns


@pytest.mark.slow   # a zoo model end to end (~14 s, mostly time limits): with the slow tests, which CI runs too
def test_mip_upper_never_below_a_certified_witness():
    net = lipopt.load(zoo_model_path("pruned90", "npz"))
    X, _ = mnist_test(1)
    dom = Ball(center=X[0], radius=0.1, p=np.inf, clip=(0.0, 1.0))
    low = lipopt.lower_bound(net, margin=(4, 9), domain=dom, method="ascent", time_limit=10, seed=0)
    c = np.zeros(10)
    c[4], c[9] = 1.0, -1.0
    w = np.asarray(low.details["witness"])
    # the witness is a feasible point of the encoding with that objective ...
    model = build_mip(net, c, dom, "inf")
    col = point_to_columns(model, net, c, w)
    Ax = model.A @ col
    assert np.all(Ax >= model.row_lo - 1e-9) and np.all(Ax <= model.row_hi + 1e-9)
    assert abs(model.cost @ col - low.lower_bound) <= 1e-9 * low.lower_bound
    # ... so no run of the MIP, finished or not, may report an upper end below it
    r = exact_lipschitz_mip(net, c, dom, "inf", time_limit=3.0)
    assert r.upper >= low.lower_bound * (1 - 1e-9)
    res = lipopt.upper_bound(net, margin=(4, 9), domain=dom, method="exact", time_limit=3.0, lower=False)
    assert res.upper_bound >= low.lower_bound * (1 - 1e-9)


@pytest.mark.slow   # a zoo model end to end (~30 s): with the slow tests, which CI runs too
def test_warm_started_optimum_needs_a_solvable_relaxation():
    # zoo mlp64, l_inf ball r = 0.01 around test image 0, margin 4 - 9: HiGHS declares the model's LP
    # relaxation infeasible (numerical trouble, presolve off) and, warm-started, ended "optimal" at the
    # start's 75.80 below a certified witness of gradient norm 76.10; auto then reported 78.28 < 78.55 at
    # r = 0.1. Now the MIP fails (SolverFailure) or stays above every witness, and auto above the lower bound
    from lipopt.errors import SolverFailure
    net = lipopt.load(zoo_model_path("mlp64", "npz"))
    X, _ = mnist_test(1)
    c = np.zeros(10)
    c[4], c[9] = 1.0, -1.0
    for r in (0.01, 0.1):
        dom = Ball(center=X[0], radius=r, p=np.inf, clip=(0.0, 1.0))
        low = lipopt.lower_bound(net, margin=(4, 9), domain=dom, method="ascent", time_limit=10, seed=0)
        try:
            ub = exact_lipschitz_mip(net, c, dom, "inf", time_limit=10.0).upper
        except SolverFailure:
            ub = np.inf
        assert ub >= low.lower_bound * (1 - 1e-9), (r, ub, low.lower_bound)
        auto = lipopt.upper_bound(net, margin=(4, 9), domain=dom, method="auto", time_limit=10, lower=False)
        assert auto.upper_bound >= low.lower_bound * (1 - 1e-9), (r, auto.upper_bound, low.lower_bound)
