"""Soundness rule 1: every monomial of P needs an equality row.

Regression: on the 10-10-1 banded network (s=4) at k=4, a certificate whose cliques miss monomials
bounds a different polynomial if the uncovered monomials are dropped — below the exact maximum.
lipopt detects them: coverage="strict" raises, the default enlarges the certificate.
"""
import numpy as np
import pytest

import lipopt
from lipopt.exact import exact_fgl
from lipopt.model.random import random_network
from lipopt.monomials import lookup
from lipopt.polynomial import build_polynomial
from lipopt.relaxations.krivine import krivine_structure, uncovered_monomials
from lipopt.solvers import LinearProgram, solve_lp


def one_sided_cliques(n):
    """Per hidden unit j: s_j with inputs j-1 and j only; the band also links input j+1 (missed)."""
    return [np.array(sorted({n + j} | {i for i in (j - 1, j) if i >= 0})) for j in range(n)]


def value_dropping_uncovered(poly, structure):
    """What an implementation that silently drops uncovered monomials would report."""
    rows = lookup(structure.row_keys, poly.keys)
    nonconst = poly.monomials[:, 0] >= 0
    keep = nonconst & (rows >= 0)
    b = np.zeros(structure.A.shape[0])
    b[rows[keep]] = -poly.coef[keep]
    n = structure.A.shape[1]
    lp = LinearProgram(structure.objective, structure.A, b, np.zeros(n), np.full(n, np.inf),
                       float(poly.coef[~nonconst].sum()))
    return solve_lp(lp, "highs", method="simplex").objective


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 5, 8, 9])
def test_dropping_uncovered_monomials_is_unsound_here(seed):
    net = random_network((10, 10, 1), band=4, seed=seed)
    poly = build_polynomial(net, np.ones(1))
    structure = krivine_structure(one_sided_cliques(10), 4, poly.n_vars)
    assert len(uncovered_monomials(poly, structure)) == 9
    exact = exact_fgl(net, np.ones(1)).value
    assert value_dropping_uncovered(poly, structure) < exact - 1e-4


@pytest.mark.parametrize("seed", range(10))
def test_lipopt_detects_and_covers(seed):
    net = random_network((10, 10, 1), band=4, seed=seed)
    exact = exact_fgl(net, np.ones(1)).value
    with pytest.raises(lipopt.UncoveredMonomialError, match="9 monomial"):
        lipopt.upper_bound(net, degree=4, cliques=one_sided_cliques(10), coverage="strict", lower=False)
    r = lipopt.upper_bound(net, degree=4, cliques=one_sided_cliques(10), lower=False)
    assert r.sizes["added_cliques"] == 9
    assert r.upper_bound >= exact
    for strategy in ("inputs", "units"):
        r = lipopt.upper_bound(net, degree=4, cliques=strategy, lower=False)
        assert r.sizes["added_cliques"] == 0
        assert r.upper_bound >= exact


def test_degree_below_polynomial_degree_is_refused():
    net = random_network((4, 4, 4, 1), seed=0)
    with pytest.raises(lipopt.InvalidInputError, match="below the polynomial's degree 3"):
        lipopt.upper_bound(net, degree=2, lower=False)
