"""Certified upper bound from any nonnegative Krivine multipliers (soundness rule 2).

For c >= 0 (the solver's point, clipped) let q = P + sum_h c_h h = sum_mu q_mu y^mu. Since every
h >= 0 on [0,1]^n and every monomial y^mu lies in [0, 1] there,

    max P  <=  max q  <=  q_0 + sum_{mu != 0} max(0, q_mu).

This holds for every c >= 0, optimal or not, so the solver's accuracy affects tightness only. The
q_mu are sums of float products; each is enlarged by a rigorous a-priori rounding bound
4 gamma_K sum|terms| (gamma_K = K u / (1 - K u), u = 2^-53, K = terms + factors per term + 2,
Higham's inner-product bound with a factor-2 margin for the computed masses), and every final
operation rounds upwards, so the reported value is an upper bound in exact arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..monomials import lookup
from ..polynomial import NormGradientPolynomial
from ..relaxations.krivine import KrivineStructure
from ..rounding import U as UNIT_ROUNDOFF
from ..rounding import gamma_float, next_up, sum_up, up


@dataclass(frozen=True)
class Certificate:
    upper_bound: float      # valid in exact arithmetic
    raw_value: float        # the solver's objective (P_0 + o^T x), not certified
    residual_mass: float    # sum over nonconstant mu of max(0, q_mu): what the solver left uncovered
    rounding_margin: float  # total rigorous rounding enlargement
    clipped: int            # number of negative multipliers set to zero


def certify_krivine(poly: NormGradientPolynomial, structure: KrivineStructure, x: np.ndarray,
                    raw_value: float) -> Certificate:
    c = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
    clipped = int(np.count_nonzero(x < 0))
    A = structure.A
    rows = lookup(structure.row_keys, poly.keys)
    nonconst = poly.monomials[:, 0] >= 0
    if np.any(rows[nonconst] < 0):
        raise AssertionError("certify called with a structure that does not cover the polynomial")

    q = A @ c
    mass = abs(A) @ c
    terms = np.diff(A.tocsr().indptr).astype(np.float64)
    r = rows[nonconst]
    np.add.at(q, r, poly.coef[nonconst])
    np.add.at(mass, r, poly.abs_mass[nonconst])
    np.add.at(terms, r, poly.n_terms[nonconst])

    const = ~nonconst
    q0 = float(structure.objective @ c) + float(poly.coef[const].sum())
    mass0 = float(structure.objective @ c) + float(poly.abs_mass[const].sum())
    terms0 = float(np.count_nonzero(structure.objective)) + float(poly.n_terms[const].sum())

    K = max(float(terms.max(initial=0.0)), terms0) + poly.max_factors + 2
    if K * UNIT_ROUNDOFF >= 0.01:
        raise AssertionError("rounding bound undefined: too many terms per row")
    gamma = gamma_float(K)  # the factor 4 below covers its own rounding and that of the masses
    err = next_up(4.0 * gamma * mass)
    err0 = up(4.0 * gamma * mass0)
    pos = np.maximum(0.0, next_up(q + err))
    head = up(q0 + err0)
    upper = sum_up([head, *pos.tolist()])
    return Certificate(upper_bound=upper, raw_value=float(raw_value),
                       residual_mass=float(np.maximum(q, 0.0).sum()),
                       rounding_margin=float(err.sum() + err0), clipped=clipped)
