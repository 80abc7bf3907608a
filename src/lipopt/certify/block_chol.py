"""Rigorous lambda_min bound for a symmetric block-tridiagonal matrix via a shifted float block Cholesky.

**Theorem.** Let Z be symmetric block tridiagonal (diagonal blocks Z_l, subdiagonal blocks O_l = Z_{l,l-1}),
C the block lower-bidiagonal matrix with diagonal blocks R_l and subdiagonal blocks H_l (ANY float
matrices) and A = blockdiag(alpha_l I) for ANY reals alpha_l. Then E = Z - C C^T - A is symmetric and, since
C C^T >= 0, Gershgorin's theorem on A + E gives

    lambda_min(Z) >= min_l ( alpha_l - max_{i in block l} sum_j |E_ij| ).

We take H_l = fl(O_l R_{l-1}^-T) (a triangular solve) and R_l the float Cholesky factor of
B_l = fl(Z_l - H_l H_l^T - alpha_l I), so E is rounding only: E_{l,l-1} = O_l - H_l R_{l-1}^T (its float
value computed by a triangular product, plus that product's a-priori error), E_ll = Z_l - H_l H_l^T - alpha_l I
- R_l R_l^T, bounded by the data error, the a-priori errors of the product H H^T and of the subtractions, and
Demmel's Cholesky backward error R R^T = B + dB, |dB| <= gamma_{n+1} |R||R|^T (Higham, Thm 10.3; any
summation order, no Strassen-type products, as assumed by ``gram``). Every bound is a row sum, computed as a
chain of mat-vecs with nonnegative matrices (``row_sums.chain_bound``). alpha_l > 0 absorbs the rounding
(then Z >= 0 outright); a pivot that is not definite gets alpha_l < 0 (a negative, still rigorous, bound).
Cost per block of order b after one of order a: a triangular solve and a triangular product (a^2 b each),
one symmetric product (a b^2) and one Cholesky (b^3 / 3), about half of a block
LDL^T sweep followed by a definiteness test per pivot.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
from scipy.linalg.blas import dtrmm

from ..errors import SolverFailure
from ..rounding import U, gamma, sum_down, up
from .row_sums import add_bounds, chain_bound, row_sum, symmetrise

SHIFT_FACTOR = 4.0     # alpha_l = this x the rounding bound predicted for block l (absorbs the next block's share)
MAX_SHIFTS = 30        # Cholesky attempts per pivot (the downward shift grows 8x per failure)


@dataclass(frozen=True)
class BlockBound:
    nu: float            # nu <= lambda_min(Z) in exact arithmetic
    nu_blocks: float     # min_l alpha_l: the smallest pivot shift
    residual: float      # max row sum of the bound on |E|


def _cholesky_row_bound(B: np.ndarray) -> float:
    """A-priori max_i of gamma_{n+1} (|R||R|^T 1)_i for the Cholesky factor of B (Cauchy-Schwarz:
    (|R||R|^T)_ij <= ||R_i|| ||R_j||, ||R_i||^2 <= B_ii / (1 - gamma)): picks the shift before factoring."""
    n = B.shape[0]
    g = gamma(n + 1)
    s = np.sqrt(np.maximum(np.diag(B), 0.0))
    return g / (1 - g) * float(s.max(initial=0.0)) * float(s.sum()) * 1.01


def _factor(A: np.ndarray, known: float, scale: float) -> tuple[np.ndarray, float]:
    """(R, alpha): R the float Cholesky factor of fl(A - alpha I); alpha > 0 when A is safely definite."""
    n = A.shape[0]
    idx = np.arange(n)
    d0 = A[idx, idx].copy()
    alpha = SHIFT_FACTOR * (known + _cholesky_row_bound(A)) + 1e-300
    step = max(alpha, 1e-15 * scale)
    for _ in range(MAX_SHIFTS):
        A[idx, idx] = d0 - alpha
        try:
            return np.linalg.cholesky(A), alpha
        except np.linalg.LinAlgError:
            alpha = -step if alpha > 0 else alpha - step
            step *= 8.0
    A[idx, idx] = d0
    raise SolverFailure("the block Cholesky certificate could not factor a shifted pivot")


def sub_residual(O: np.ndarray, O_err: tuple, R: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row sums, column sums) of a bound on |E_{l,l-1}| = |O_exact - H R^T|: the data error O_err, the
    computed |O - fl(H R^T)| (a triangular product) and that product's a-priori error."""
    a = R.shape[0]
    P = dtrmm(1.0, R, H.T, lower=1).T                                    # fl(H R^T)
    Dif = np.abs(O - P)
    del P
    absH, absR = np.abs(H), np.abs(R)
    g = 2 * gamma(a + 2)    # doubled: covers the rounding of the bound's own float products
    return (add_bounds(row_sum(Dif, 1) * (1 + 2 * U), O_err[0], g * chain_bound([absH, absR.T], np.ones(a))),
            add_bounds(row_sum(Dif, 0) * (1 + 2 * U), O_err[1], g * chain_bound([absR, absH.T], np.ones(H.shape[0]))))


def factor_pivot(Zl: np.ndarray, rows: np.ndarray, cols: np.ndarray, known: float = 0.0):
    """(R, alpha, row sums of the bound on |E_ll|) for the float pivot Zl whose exact value differs from it
    by a bound with (rows, cols) sums: symmetrised, shifted by alpha (> 0 when it is safely definite; picked
    from these rows, ``known`` more of the row and the Cholesky error's a-priori bound), then factored."""
    A, rows = symmetrise(Zl, rows, cols)
    scale = float(np.abs(np.diag(A)).max(initial=0.0))
    R, alpha = _factor(A, float(rows.max(initial=0.0)) + known, scale)
    # |B - (A - alpha I)| <= U |B_ii| on the diagonal; R R^T = B + dB, |dB| <= gamma_{n+1} |R||R|^T
    absR = np.abs(R)
    n = R.shape[0]
    chol = gamma(n + 1) * chain_bound([absR, absR.T], np.ones(n))
    return R, alpha, add_bounds(rows, U * np.abs(np.diag(A)), chol)


def block_deficits(alphas: list, E_diag: list, E_sub: list) -> tuple[list, float]:
    """Per block l, nu_l <= alpha_l - max row sum of |E| over block l's rows (Gershgorin; also
    x^T (A + E) x >= sum_l nu_l ||x_l||^2 for the symmetric E), and the largest row sum."""
    d = len(alphas) - 1
    nus, residual = [], 0.0
    for l in range(d + 1):
        s = E_diag[l]
        if l >= 1:
            s = s + E_sub[l - 1][0]
        if l < d:
            s = s + E_sub[l][1]
        r = up(float(s.max(initial=0.0)) * (1 + 4 * U))     # two float additions per row
        residual = max(residual, r)
        nus.append(sum_down([alphas[l], -r]))
    return nus, residual


def block_cholesky_lambda_min(diag: list[np.ndarray], diag_err: list[tuple], sub: list[np.ndarray],
                              sub_err: list[tuple]) -> BlockBound:
    """Rigorous nu <= lambda_min(Z) for the exact block-tridiagonal Z whose blocks Z_l, Z_{l,l-1} differ from
    diag[l], sub[l-1] by at most nonnegative bound matrices with (row sums, column sums) diag_err[l] and
    sub_err[l-1] (see module doc)."""
    d = len(diag) - 1
    if len(sub) != d:
        raise AssertionError("block_cholesky_lambda_min needs one subdiagonal block per pivot after the first")
    R = None
    alphas, E_diag, E_sub = [], [], []       # E_sub[l-1]: (row sums, column sums) of the bound on |E_{l,l-1}|
    for l in range(d + 1):
        Zl = np.asarray(diag[l], float)
        rows, cols = diag_err[l]
        if l >= 1:
            O = np.asarray(sub[l - 1], float)
            H = sla.solve_triangular(R, O.T, lower=True, check_finite=False).T    # H R^T ~ O
            if not np.all(np.isfinite(H)):
                raise SolverFailure("the block Cholesky certificate met a non-finite pivot solve")
            E_sub.append(sub_residual(O, sub_err[l - 1], R, H))
            Zl = Zl - H @ H.T                                                      # a SYRK: exactly symmetric
            absH = np.abs(H)
            prod = 2 * gamma(R.shape[0] + 2) * chain_bound([absH, absH.T], np.ones(H.shape[0]))
            rows = add_bounds(rows, prod, U * row_sum(np.abs(Zl), 1))
            cols = add_bounds(cols, prod, U * row_sum(np.abs(Zl), 0))
            del absH, H
        # the rows known now: this block's data and product errors and E_{l,l-1}; E_{l+1,l} comes later
        R, alpha, Erows = factor_pivot(Zl, rows, cols, float(E_sub[-1][0].max(initial=0.0)) if l >= 1 else 0.0)
        del Zl
        E_diag.append(Erows)
        alphas.append(alpha)
    nus, residual = block_deficits(alphas, E_diag, E_sub)
    return BlockBound(nu=min(nus), nu_blocks=min(alphas), residual=residual)
