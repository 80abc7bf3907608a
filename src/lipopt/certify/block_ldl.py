"""Rigorous lambda_min bound for a symmetric block-tridiagonal matrix via a float block LDL^T.

**Theorem.** Let Z be symmetric block tridiagonal (diagonal blocks Z_l, subdiagonal blocks O_l = Z_{l,l-1}),
L the unit block lower-bidiagonal matrix with subdiagonal blocks G_l and D = blockdiag(D_0, ..., D_d), where
G_l and D_l are ANY float matrices (D_l symmetric). With E = Z - L D L^T (exactly; block tridiagonal:
E_{l,l-1} = O_l - G_l D_{l-1}, E_ll = Z_l - D_l - G_l D_{l-1} G_l^T) and nu_D <= min_l lambda_min(D_l):

    lambda_min(Z) >= min(0, nu_D) ||L||_2^2 - ||E||_2,      ||L||_2 <= 1 + max_l ||G_l||_2.

(L D L^T >= nu_D L L^T, and ||N||_2 = max_l ||G_l||_2 for the block-subdiagonal N = L - I.) When nu_D > 0,
also lambda_min(Z) >= nu_D / ||L^{-1}||_2^2 - ||E||_2 with ||L^{-1}||_2 <= sum_{k=0}^{d} ||N||_2^k (N^{d+1} = 0). We take
G_l = fl(O_l D_{l-1}^{-1}) and D_l = sym(fl(Z_l - G_l D_{l-1} G_l^T)) (a block Schur-complement sweep), so
E is rounding only; its entries are bounded a priori (Higham: a length-k dot product errs by at most
gamma_k times the dot product of the absolute values, computed here as float products of nonnegative
matrices and doubled to cover their own rounding), ||E||_2 <= max row sum of the bound (symmetric E), and
nu_D comes from ``gram.lambda_min_lower_bound`` (Rump's Cholesky test) on each block. The data Z_l, O_l
are given as floats with error bounds in row- and column-sum form (see ``err_sums``): only row sums of
the entrywise bound on |E| enter ||E||_2, so no error matrix is formed and every error term is a chain of
mat-vecs with nonnegative matrices. Cost: about 6.7 n^3 flops per block of order n (factor, solve, two
products) plus Rump's test, no matrix of the total order formed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from ..errors import SolverFailure
from ..rounding import TINY, U, gamma, next_up, sum_down, sum_up, up
from .gram import lambda_min_lower_bound


@dataclass(frozen=True)
class BlockBound:
    nu: float            # nu <= lambda_min(Z) in exact arithmetic
    nu_blocks: float     # min_l of the rigorous lambda_min bounds of the pivots D_l
    residual: float      # bound on ||Z - L D L^T||_2
    L_norm: float        # bound on ||L||_2


def err_sums(E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) with rows_i >= sum_j E_ij and cols_j >= sum_i E_ij for a nonnegative bound matrix E."""
    E = np.asarray(E, float)
    return next_up(_rowsum(E, 1) + TINY), next_up(_rowsum(E, 0) + TINY)


def chain_bound(mats: list, v: np.ndarray) -> np.ndarray:
    """An upper bound on M_1 ... M_k v (nonnegative M_i, v): float mat-vecs from the right, each within
    gamma(n) relative (no cancellation), so (1 + 2 gamma)^k covers them."""
    n = 2
    for M in reversed(mats):
        v = M @ v
        n = max(n, M.shape[1])
    return next_up(v * (1 + 2 * gamma(n + 2)) ** len(mats) + TINY)


def add_bounds(*terms) -> np.ndarray:
    """An upper bound on the exact sum of nonnegative upper-bound vectors, each computed with at most two
    rounded multiplications: the float sum's k - 1 roundings and theirs are covered by (1 + 4 k U), TINY
    covers underflow (one per row: far more than every product of a row could lose)."""
    return next_up(sum(terms) * (1 + 4 * len(terms) * U) + TINY)


def _rowsum(A: np.ndarray, axis: int) -> np.ndarray:
    """Sums of the nonnegative A along ``axis``, rounded up to within a final multiplication."""
    return A.sum(axis=axis) * (1 + 2 * gamma(A.shape[axis] + 2))


def _sym(A: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """S = fl((A + A^T)/2) and row sums of a symmetric bound on |S - X| for the symmetric exact X that A
    approximates (|A - X| <= B with row / column sums rows / cols, |A^T - X| <= B^T, so
    |S - X| <= (B + B^T)/2 + U |S|)."""
    S = 0.5 * (A + A.T)
    return S, add_bounds(0.5 * rows, 0.5 * cols, U * _rowsum(np.abs(S), 1))


def block_tridiagonal_lambda_min(diag: list[np.ndarray], diag_err: list[tuple], sub: list[np.ndarray],
                                 sub_err: list[tuple]) -> BlockBound:
    """Rigorous nu <= lambda_min(Z) for the exact block-tridiagonal Z whose blocks Z_l, Z_{l,l-1} differ from
    diag[l], sub[l-1] by at most nonnegative bound matrices with (row sums, column sums) diag_err[l] and
    sub_err[l-1] (see module doc)."""
    d = len(diag) - 1
    if len(sub) != d:
        raise AssertionError("block_tridiagonal_lambda_min needs one subdiagonal block per pivot after the first")
    D, Drow = _sym(np.asarray(diag[0], float), *diag_err[0])
    pivots = [D]
    E_diag = [Drow]                     # row sums of the (symmetric) bounds on |E_ll|
    E_sub = []                          # (row sums, column sums) of the bounds on |E_{l,l-1}|
    G_norm = 0.0
    for l in range(1, d + 1):
        O = np.asarray(sub[l - 1], float)
        n_prev = D.shape[0]
        try:
            cf = sla.cho_factor(D, check_finite=False)
            G = sla.cho_solve(cf, O.T, check_finite=False).T          # O D^{-1}
        except np.linalg.LinAlgError:
            G = np.linalg.lstsq(D, O.T, rcond=None)[0].T              # any G is valid; this one is close
        if not np.all(np.isfinite(G)):
            raise SolverFailure("the block LDL^T certificate met a non-finite pivot solve")
        absG, absD = np.abs(G), np.abs(D)
        GD = G @ D
        g = gamma(n_prev + 2)
        # E_{l,l-1} = O_exact - G D: |O - fl(O)| + |fl(GD) - GD| (<= g |G||D|, doubled) + the subtraction's U
        R = np.abs(O - GD)
        ones_r, ones_c = np.ones(G.shape[0]), np.ones(G.shape[1])
        E_sub.append((add_bounds(_rowsum(R, 1) * (1 + 2 * U), sub_err[l - 1][0], 2 * g * chain_bound([absG, absD], ones_c)),
                      add_bounds(_rowsum(R, 0) * (1 + 2 * U), sub_err[l - 1][1], 2 * g * chain_bound([absD, absG.T], ones_r))))
        del R
        Draw = np.asarray(diag[l], float) - G @ GD.T                  # Z_l - G D G^T (D symmetric)
        # |fl(G fl(GD)^T) - G D G^T| <= 4 g |G||D||G|^T (symmetric: rows = columns), plus the subtraction
        prod = 4 * g * chain_bound([absG, absD, absG.T], ones_r)
        aD = np.abs(Draw)
        D, Drow = _sym(Draw, add_bounds(diag_err[l][0], prod, 2 * U * _rowsum(aD, 1)),
                       add_bounds(diag_err[l][1], prod, 2 * U * _rowsum(aD, 0)))
        del aD, absD
        pivots.append(D)
        E_diag.append(Drow)
        G_norm = max(G_norm, up(math.sqrt(up(float((G * G).sum()) * (1 + 2 * gamma(G.size + 1))))))
    row_sums = []
    for l in range(d + 1):
        s = E_diag[l]
        if l >= 1:
            s = s + E_sub[l - 1][0]
        if l < d:
            s = s + E_sub[l][1]
        row_sums.append(float(s.max(initial=0.0)))
    residual = up(max(row_sums) * (1 + 4 * U))     # two float additions per row
    nu_blocks = min(lambda_min_lower_bound(P).nu for P in pivots)
    L_norm = up(1.0 + G_norm)
    shift = 0.0 if nu_blocks >= 0 else up(up(-nu_blocks * L_norm) * L_norm)
    nu = sum_down([-shift, -residual])
    if nu_blocks > 0 and G_norm < 1e30:
        # L D L^T >= nu_D sigma_min(L)^2 I and ||L^{-1}||_2 = ||sum_{k<=d} (-N)^k||_2 <= sum_k ||N||_2^k
        inv_norm = sum_up([up(G_norm ** k) for k in range(d + 1)])
        nu_pos = sum_down([nu_blocks / up(inv_norm * inv_norm) * (1 - 4 * U), -residual])
        nu = max(nu, nu_pos)
    return BlockBound(nu=nu, nu_blocks=nu_blocks, residual=residual, L_norm=L_norm)


def lipschitz_from_lmi(rho: float, nu: float, R2: float) -> tuple[float, float]:
    """(certified rho', sqrt(rho') rounded up): rho' = rho + max(0, -nu) R^2 (lipsdp's theorem)."""
    rho_c = rho if nu >= 0 else sum_up([rho, up(-nu * R2)])
    return rho_c, up(math.sqrt(max(rho_c, 0.0)))
