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
are given as floats with entrywise error bounds (|exact - float| <= err). Cost: O(sum n_l^3), no matrix
of the total order is formed.
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


def _sym(A: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A + A^T)/2 and an entrywise error bound against the (symmetric) exact matrix A approximates."""
    S = 0.5 * (A + A.T)
    return S, next_up(np.maximum(err, err.T) + U * np.abs(S) + TINY)


def block_tridiagonal_lambda_min(diag: list[np.ndarray], diag_err: list[np.ndarray],
                                 sub: list[np.ndarray], sub_err: list[np.ndarray]) -> BlockBound:
    """Rigorous nu <= lambda_min(Z) for the exact block-tridiagonal Z with |Z_l - diag[l]| <= diag_err[l]
    and |Z_{l,l-1} - sub[l-1]| <= sub_err[l-1] (see module doc)."""
    d = len(diag) - 1
    if len(sub) != d:
        raise AssertionError("block_tridiagonal_lambda_min needs one subdiagonal block per pivot after the first")
    D, Derr = _sym(np.asarray(diag[0], float), np.asarray(diag_err[0], float))
    pivots, row_sums = [D], []
    E_diag = [Derr]                     # bounds on |E_ll|
    E_sub = []                          # bounds on |E_{l,l-1}|
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
        A1 = absG @ absD                                               # |G||D|
        g = gamma(n_prev + 2)
        R = O - GD
        E_sub.append(next_up(np.abs(R) * (1 + 2 * U) + sub_err[l - 1] + 2 * g * A1 + TINY))
        P2 = G @ GD.T                                                  # G D G^T (D symmetric)
        Draw = np.asarray(diag[l], float) - P2
        err = diag_err[l] + 4 * g * (A1 @ absG.T) + 2 * U * np.abs(Draw) + TINY
        D, Derr = _sym(Draw, err)
        pivots.append(D)
        E_diag.append(Derr)
        G_norm = max(G_norm, up(math.sqrt(up(float((G * G).sum()) * (1 + 2 * gamma(G.size + 1))))))
    for l in range(d + 1):
        s = E_diag[l].sum(axis=1)
        if l >= 1:
            s = s + E_sub[l - 1].sum(axis=1)
        if l < d:
            s = s + E_sub[l].sum(axis=0)
        row_sums.append(float(s.max(initial=0.0)))
    n_tot = sum(P.shape[0] for P in pivots)
    residual = up(max(row_sums) * (1 + 4 * gamma(n_tot + 3)))
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
