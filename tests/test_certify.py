"""Soundness rule 2: the certified value is an upper bound for ANY nonnegative multipliers."""
import numpy as np
import pytest

from lipopt.certify import certify_krivine
from lipopt.exact import exact_fgl
from lipopt.polynomial import SlopeBox, build_polynomial, global_slopes
from lipopt.relaxations.cliques import network_cliques
from lipopt.relaxations.krivine import covering_structure, krivine_lp
from lipopt.solvers import solve_lp

from helpers import small_network


def setup(seed, widths=(5, 6, 1), degree=3, slopes=None):
    net = small_network(widths, seed)
    slopes = slopes or global_slopes(net)
    poly = build_polynomial(net, np.ones(1), slopes)
    structure, _ = covering_structure(poly, network_cliques(net, np.ones(1), slopes, poly), degree)
    return net, poly, structure


@pytest.mark.parametrize("seed", range(20))
def test_any_nonnegative_point_certifies(seed):
    net, poly, structure = setup(seed)
    exact = exact_fgl(net, np.ones(1)).value
    rng = np.random.default_rng(seed)
    x = rng.exponential(0.01, structure.A.shape[1]) - 0.002  # some negatives: clipped
    cert = certify_krivine(poly, structure, x, raw_value=0.0)
    assert cert.clipped > 0
    assert cert.upper_bound >= exact


@pytest.mark.parametrize("seed", range(20))
def test_perturbed_optimum_still_certifies(seed):
    """A solver answer with large errors loses tightness, never soundness."""
    net, poly, structure = setup(seed)
    exact = exact_fgl(net, np.ones(1)).value
    out = solve_lp(krivine_lp(poly, structure), "highs", method="simplex")
    rng = np.random.default_rng(seed)
    x = out.x * (1 + 1e-3 * rng.standard_normal(len(out.x)))
    cert = certify_krivine(poly, structure, x, out.objective)
    assert cert.upper_bound >= exact
    exact_cert = certify_krivine(poly, structure, out.x, out.objective)
    assert exact_cert.upper_bound >= out.objective
    assert exact_cert.upper_bound == pytest.approx(out.objective, rel=1e-8)


@pytest.mark.parametrize("seed", range(15))
def test_general_slope_boxes(seed):
    """Derivative boxes with lo != 0 and fixed neurons (lo == hi): LP >= exact over the same box."""
    net = small_network((4, 5, 4, 1), seed)
    rng = np.random.default_rng(100 + seed)
    lo, hi = [], []
    for n in net.widths[1:-1]:
        a = rng.uniform(-0.3, 0.5, n)
        b = a + rng.uniform(0, 1, n) * (rng.random(n) < 0.7)  # about 30 % fixed
        lo.append(a)
        hi.append(b)
    slopes = SlopeBox(tuple(lo), tuple(hi))
    net_, poly, structure = setup(seed, (4, 5, 4, 1), degree=4, slopes=slopes)
    exact = exact_fgl(net, np.ones(1), slopes=slopes).value
    out = solve_lp(krivine_lp(poly, structure), "highs", method="simplex")
    assert certify_krivine(poly, structure, out.x, out.objective).upper_bound >= exact


@pytest.mark.parametrize("seed", range(10))
def test_polynomial_matches_network_gradient(seed):
    """At a vertex, P(t, s) = t^T W_0^T diag(s_1) ... W_d^T c, computed directly."""
    net = small_network((4, 5, 3, 2), seed)
    c = np.array([1.0, -2.0])
    poly = build_polynomial(net, c)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, poly.n_vars).astype(float)
    x = poly.offset + poly.scale * y
    t = x[poly.layer == 0]
    s1, s2 = x[poly.layer == 1], x[poly.layer == 2]
    W = [w.toarray() for w in net.weights]
    g = W[0].T @ (s1 * (W[1].T @ (s2 * (W[2].T @ c))))
    assert poly.evaluate(y[None, :])[0] == pytest.approx(t @ g, rel=1e-12)
