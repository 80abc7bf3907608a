"""Rigorous lambda_min bound for a symmetric block matrix with a chordal block pattern (``block_chol``'s
theorem, blocks eliminated in order with their fill instead of a tridiagonal sweep).

**Theorem** (as in ``block_chol``). For ANY float block lower-triangular C (diagonal blocks R_k, blocks
H_ik for the later neighbours i of k) and ANY reals alpha_k, E = Z - C C^T - A (A = blockdiag(alpha_k I))
is symmetric and lambda_min(Z) >= min_k (alpha_k - max_{rows of block k} sum_j |E_rj|). Eliminating k:
R_k is the float Cholesky factor of its shifted pending pivot, H_ik = fl(pending_ik R_k^-T), and every
pending (i, i') of two later neighbours loses fl(H_ik H_i'k^T): the pending blocks are Z's minus the
products so far, each with a rounding bound carried as (row sums, column sums). E's block (i, k) is
pending_ik (exact) - H_ik R_k^T, bounded by ``sub_residual``; E's diagonal block by ``factor_pivot``.
The neighbours of k must be pairwise adjacent (a chordal completion, ``relaxations.lipsdp_dag.pattern``)
so that every product lands on a block of the pattern.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from ..errors import SolverFailure
from ..rounding import U, gamma, sum_down, up
from .block_chol import BlockBound, factor_pivot, sub_residual
from .row_sums import add_bounds, chain_bound, row_sum


def sparse_block_lambda_min(sizes: list, nbrs: list, blocks: dict, errs: dict) -> tuple[BlockBound, dict]:
    """(bound, nu per block): rigorous nu <= lambda_min(Z) for the exact Z whose blocks (i, j), i >= j, differ
    from the float ``blocks`` by bounds with (row sums, column sums) ``errs``; absent blocks are exact zeros.
    Blocks are eliminated in the order 0, 1, ...; ``nbrs[k]`` lists k's later neighbours (chordal)."""
    pend, perr = dict(blocks), dict(errs)
    alphas, E_diag, E_off = {}, {}, {}
    live = [k for k in range(len(sizes)) if sizes[k]]
    for k in live:
        Zk = np.asarray(pend.pop((k, k)), float)
        rows, cols = perr.pop((k, k))
        left = [E_off[key][0] for key in E_off if key[0] == k]
        known = float(add_bounds(*left).max(initial=0.0)) if left else 0.0
        R, alpha, Erows = factor_pivot(Zk, rows, cols, known)
        del Zk
        alphas[k], E_diag[k] = alpha, Erows
        nb = [i for i in nbrs[k] if sizes[i]]
        H = {}
        for i in nb:
            O = pend.pop((i, k), None)
            O = np.zeros((sizes[i], sizes[k])) if O is None else np.asarray(O, float)
            O_err = perr.pop((i, k), (np.zeros(sizes[i]), np.zeros(sizes[k])))
            H[i] = sla.solve_triangular(R, O.T, lower=True, check_finite=False).T      # H R^T ~ O
            if not np.all(np.isfinite(H[i])):
                raise SolverFailure("the block certificate met a non-finite pivot solve")
            E_off[(i, k)] = sub_residual(O, O_err, R, H[i])
        g = 2 * gamma(sizes[k] + 2)
        absH = {i: np.abs(H[i]) for i in nb}
        for x, i in enumerate(nb):
            for i2 in nb[:x + 1]:
                new = pend.get((i, i2), 0.0) - H[i] @ H[i2].T      # i == i2: a SYRK, exactly symmetric
                r0, c0 = perr.get((i, i2), (np.zeros(sizes[i]), np.zeros(sizes[i2])))
                pr = g * chain_bound([absH[i], absH[i2].T], np.ones(sizes[i2]))
                pc = g * chain_bound([absH[i2], absH[i].T], np.ones(sizes[i]))
                an = np.abs(new)
                pend[(i, i2)] = new
                perr[(i, i2)] = (add_bounds(r0, pr, U * row_sum(an, 1)), add_bounds(c0, pc, U * row_sum(an, 0)))
        del H, absH, R
    nus, residual = {}, 0.0
    for k in live:
        terms = [E_diag[k]] + [e[0] for key, e in E_off.items() if key[0] == k] + \
                [e[1] for key, e in E_off.items() if key[1] == k]
        r = up(float(add_bounds(*terms).max(initial=0.0)))
        residual = max(residual, r)
        nus[k] = sum_down([alphas[k], -r])
    return BlockBound(nu=min(nus.values()), nu_blocks=min(alphas.values()), residual=residual), nus
