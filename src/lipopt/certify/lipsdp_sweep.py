"""The closed-form LipSDP-Neuron multipliers picked inside their own certificate: one sweep, not two.

With tau = rho t the LMI of ``relaxations.lipsdp_layers`` is Z(rho, rho t) = rho Z'(t), Z' = Z(1, t) except
its last block T_d - u u^T / rho. ECLipsE-Fast picks t_l from K_l = M_l W_{l-1} Y_{l-1}^{-1} W_{l-1}^T M_l,
Y_{l-1} the pivot of block l-1 (before layer l's p term). With R the float Cholesky factor of that pivot
(shifted as ``block_chol`` shifts it), X = M_l W_{l-1} R^-T gives K = X X^T, and H = -T_l X is a valid
subdiagonal factor of ``block_chol``'s certificate, with H H^T = T K T up to a rounding bounded a priori
from |X| (|fl(t_i fl(K_ij) t_j) - (HH^T)_ij| <= gamma_{a+4} t_i t_j (|X||X|^T)_ij). So the sweep that
picks the multipliers also factors and proves every pivot; only the last block depends on rho =
F (1 + margin), F = u^T Y_d^{-1} u. Layers with a p term (narrow slopes) take t_l from a separate
factorisation of the pivot before the p term (a heuristic: any t is valid), as ``closed_form`` does.

Bound: block_chol gives x^T Z' x >= sum_l nu_l ||x_l||^2, so with ||dx_l||^2 <= growth_l ||dx_0||^2,
L^2 <= rho (1 + sum_l max(0, -nu_l) growth_l) (LipSDP's R^2 argument, block by block).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg as sla

from ..errors import SolverFailure
from ..relaxations.lipsdp_layers import LayerData, multiplier_rule, sandwich_w, times_w
from ..rounding import TINY, U, gamma, next_up, sum_up, up
from .block_chol import block_deficits, factor_pivot, sub_residual
from .row_sums import add_bounds, chain_bound, err_sums, row_sum, symmetrise

MARGINS = (1e-9, 1e-6, 1e-3)   # relative increases of rho tried until the last pivot is proved


def u_outer(data, rho: float):
    """fl(fl(u u^T) / rho) and row sums bounding its distance to the exact (u + e)(u + e)^T / rho (e the
    error of the computed u, |e| <= u_err): |u||e|^T + |e||u|^T + |e||e|^T + 2 U |u u^T|, over rho, and
    the division's rounding."""
    au, eu = np.abs(data.u), data.u_err
    su, se = float(sum_up(au)), float(sum_up(eu))
    uu = np.outer(data.u, data.u)
    if rho != 1.0:
        uu /= rho
    return uu, next_up((au * se + eu * su + eu * se + 3 * U * au * su) / rho * (1 + 4 * U) + TINY)


def p_term(data: LayerData, l: int, tp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W_l^T diag(tp) W_l (float) and row sums of a symmetric bound on its rounding (each entry a length-k
    dot product of rounded scaled entries: 4 gamma_{k+4} |W|^T |tp| |W|, sparse or dense product alike)."""
    W = data.W[l]
    aW = np.abs(W)
    rows = 4 * gamma(W.shape[0] + 4) * chain_bound([aW.T], np.abs(tp) * chain_bound([aW], np.ones(W.shape[1])))
    return sandwich_w(data, l, tp), rows


def sub_block(data: LayerData, l: int, tau: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Z_{l,l-1} = -T_l M_l W_{l-1} (float) and (row, column) sums of a bound on its rounding."""
    O = -(tau * data.m[l - 1])[:, None] * data.W[l - 1]
    return O, err_sums(2 * gamma(4) * np.abs(O))


def certified_closed_form(data: LayerData, boost: bool = True, margins: tuple = MARGINS):
    """(t, F, L, info): the closed-form multipliers t (rho normalised to 1), F(t), and the certified bound L
    on the Lipschitz constant of c^T f from the same sweep."""
    d = len(data.W)
    n0 = data.W[0].shape[1]
    pend = np.eye(n0)                        # the pending pivot (float) and its error bound's row / column sums
    prow = pcol = np.zeros(n0)
    alphas, E_diag, E_sub, t = [], [], [], []
    known = 0.0
    for l in range(1, d + 1):
        W, m, p = data.W[l - 1], data.m[l - 1], data.p[l - 1]
        V = m[:, None] * W
        a = W.shape[1]
        if not np.any(p):
            R, alpha, Erows = factor_pivot(pend, prow, pcol, known)
            X = sla.solve_triangular(R, V.T, lower=True, check_finite=False).T      # M W R^-T
            K = X @ X.T                                                              # a SYRK: exactly symmetric
            tl = multiplier_rule(K, m, p, boost)
            H = -(tl[:, None] * X)
            S = (tl[:, None] * K) * tl[None, :]
            absX = np.abs(X)
            # |fl(t_i fl(K_ij) t_j) - (H H^T)_ij| <= gamma_{a+4} t_i t_j (|X||X|^T)_ij (see module doc), doubled
            Sbound = 2 * gamma(a + 4) * tl * chain_bound([absX, absX.T], tl)
            del absX, X, K
            O, O_err = sub_block(data, l, tl)
        else:
            A, _ = symmetrise(pend, prow, pcol)
            try:
                cf = sla.cho_factor(A, lower=True, check_finite=False)
            except np.linalg.LinAlgError:
                raise SolverFailure("the closed-form multipliers lost positive definiteness") from None
            K = m[:, None] * times_w(data, l - 1, sla.cho_solve(cf, V.T, check_finite=False))
            del A, cf
            tl = multiplier_rule(K, m, p, boost)
            P, prod = p_term(data, l - 1, tl * p)
            pend = pend + P
            del P
            prow = add_bounds(prow, prod, U * row_sum(np.abs(pend), 1))
            pcol = add_bounds(pcol, prod, U * row_sum(np.abs(pend), 0))
            R, alpha, Erows = factor_pivot(pend, prow, pcol, known)
            O, O_err = sub_block(data, l, tl)
            H = sla.solve_triangular(R, O.T, lower=True, check_finite=False).T       # O R^-T
            S = H @ H.T
            absH = np.abs(H)
            Sbound = 2 * gamma(a + 2) * chain_bound([absH, absH.T], np.ones(H.shape[0]))
            del absH
        if alpha < 0:     # a pivot that is not definite: these multipliers are not a feasible point
            raise SolverFailure("the closed-form multipliers lost positive definiteness")
        if not np.all(np.isfinite(H)):
            raise SolverFailure("the closed-form multipliers are not finite")
        alphas.append(alpha)
        E_diag.append(Erows)
        E_sub.append(sub_residual(O, O_err, R, H))
        del O, H, R
        known = float(E_sub[-1][0].max(initial=0.0))
        pend = -S
        pend[np.diag_indices_from(pend)] += tl
        rs = U * row_sum(np.abs(pend), 1)
        prow = pcol = add_bounds(Sbound, rs)
        t.append(tl)
        del S
    Yd, yrows = symmetrise(pend, prow, pcol)
    del pend
    try:
        cf = sla.cho_factor(Yd, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        raise SolverFailure("the closed-form multipliers lost positive definiteness") from None
    F = float(data.u @ sla.cho_solve(cf, data.u, check_finite=False))
    del cf
    best = None
    for i, margin in enumerate(margins):
        rho = up(F * (1 + margin))
        uu, uterm = u_outer(data, rho)
        B = Yd - uu
        del uu
        rows = add_bounds(yrows, uterm, U * row_sum(np.abs(B), 1))
        Rd, alpha_d, Erows_d = factor_pivot(B, rows, rows, known)
        del B, Rd
        nus, residual = block_deficits(alphas + [alpha_d], E_diag + [Erows_d], E_sub)
        terms = [up(-nu * g) for nu, g in zip(nus, data.growth) if nu < 0]
        deficit = sum_up(terms) if terms else 0.0
        rho_c = sum_up([rho, up(rho * deficit)]) if deficit > 0 else rho
        L = up(math.sqrt(rho_c))
        info = {"rho": rho, "rho_certified": rho_c, "nu": min(nus), "nu_blocks": min(alphas + [alpha_d]),
                "residual": residual, "rho_margin": margin}
        if best is None or L < best[0]:
            best = (L, info)
        if deficit == 0 or i + 1 == len(margins) or rho_c <= F * (1 + margins[i + 1]):
            break
    return t, F, best[0], best[1]
