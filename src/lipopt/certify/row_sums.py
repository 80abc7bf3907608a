"""Rigorous rounding-error bounds carried as row and column sums (only row sums enter a Gershgorin or
||E||_2 <= max row sum bound, so no error matrix is ever formed): every bound is a chain of mat-vecs with
nonnegative matrices, each within gamma(n) relative. Used by ``block_chol`` and the LMI assembly of
``methods.l2``; ``lipschitz_from_lmi`` turns a certified lambda_min into the Lipschitz bound.
"""
from __future__ import annotations

import math

import numpy as np

from ..rounding import TINY, U, gamma, next_up, sum_up, up


def err_sums(E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) with rows_i >= sum_j E_ij and cols_j >= sum_i E_ij for a nonnegative bound matrix E."""
    E = np.asarray(E, float)
    return next_up(row_sum(E, 1) + TINY), next_up(row_sum(E, 0) + TINY)


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


def row_sum(A: np.ndarray, axis: int) -> np.ndarray:
    """Sums of the nonnegative A along ``axis``, rounded up to within a final multiplication."""
    return A.sum(axis=axis) * (1 + 2 * gamma(A.shape[axis] + 2))


def symmetrise(A: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """S = fl((A + A^T)/2) and row sums of a symmetric bound on |S - X| for the symmetric exact X that A
    approximates (|A - X| <= B with row / column sums rows / cols, |A^T - X| <= B^T, so
    |S - X| <= (B + B^T)/2 + U |S|)."""
    S = 0.5 * (A + A.T)
    return S, add_bounds(0.5 * rows, 0.5 * cols, U * row_sum(np.abs(S), 1))


def lipschitz_from_lmi(rho: float, nu: float, R2: float) -> tuple[float, float]:
    """(certified rho', sqrt(rho') rounded up): rho' = rho + max(0, -nu) R^2 (lipsdp's theorem)."""
    rho_c = rho if nu >= 0 else sum_up([rho, up(-nu * R2)])
    return rho_c, up(math.sqrt(max(rho_c, 0.0)))


def lmi_bound(rho: float, bound, R2: float, margin: float) -> tuple[float, float, dict]:
    """(rho', L, info) from a block certificate ``bound`` (nu, nu_blocks, residual) of Z(rho, .)."""
    rho_c, L = lipschitz_from_lmi(rho, bound.nu, R2)
    return rho_c, L, {"rho": rho, "rho_certified": rho_c, "nu": bound.nu, "nu_blocks": bound.nu_blocks,
                      "residual": bound.residual, "rho_margin": margin}


def over_margins(F: float, margins: tuple, attempt) -> tuple[float, float, dict]:
    """The best (rho', L, info) of ``attempt(rho, margin)`` for rho = F (1 + margin), margins in turn: a
    larger margin starts at F (1 + next margin), so stop when that cannot beat the certificate so far."""
    last = None
    for i, margin in enumerate(margins):
        rho_c, L, info = attempt(up(F * (1 + margin)), margin)
        if last is None or L < last[1]:
            last = (rho_c, L, info)
        if info["nu"] >= 0 or i + 1 == len(margins) or rho_c <= F * (1 + margins[i + 1]):
            break
    return last
