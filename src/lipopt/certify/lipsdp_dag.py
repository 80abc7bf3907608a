"""Certified bound from multipliers of the carry-free LMI of ``relaxations.lipsdp_dag``.

Z(rho, tau) is assembled in float with rounding bounds per block, scaled blockwise by powers of 2 (exact),
and bounded by ``block_sparse`` (x^T Z x >= nu sum_k 4^-s_k ||x_k||^2); then LipSDP's R^2 argument:
(u^T xi)^2 <= rho ||x_0||^2 - x^T Z x <= (rho + max(0, -nu) sum_k growth_k 4^-s_k) ||x_0||^2.
Any tau >= 0 is a valid multiplier, so only the products of the assembly are rounded: -T M A
(2 gamma_4 |.|, as ``lipsdp_sweep.sub_block``), A^T T P A' (4 gamma_{n+4} |A|^T |T P| |A'|, as ``p_term``), the
sums of terms per block (2 U per term on the sum of their magnitudes) and u u^T (``lipsdp_sweep.u_outer``,
its whole row's bound put on the diagonal block: Gershgorin needs only each row's total).
"""
from __future__ import annotations

import math

import numpy as np

from ..relaxations.lipsdp_dag import DagData
from ..rounding import TINY, U, gamma, next_up, sum_up, up
from .block_sparse import sparse_block_lambda_min
from .row_sums import chain_bound, lmi_bound, over_margins, row_sum

MARGINS = (1e-9, 1e-6, 1e-3)   # relative increases of rho tried until the certificate is nonnegative


class _Acc:
    """A float block, the row / column sums of its rounding bound, and the magnitudes summed into it."""
    def __init__(self, shape):
        self.B = np.zeros(shape)
        self.absum = np.zeros(shape)
        self.rows = np.zeros(shape[0])
        self.cols = np.zeros(shape[1])
        self.terms = 0

    def add(self, T, rows, cols):
        self.B += T
        self.absum += np.abs(T)
        self.rows = self.rows + rows
        self.cols = self.cols + cols
        self.terms += 1

    def done(self):
        """(B, (rows, cols)): the terms' bounds plus 2 U per float addition on the sum of magnitudes."""
        k = 2 * U * max(self.terms, 1) * (1 + 4 * U)
        rows = next_up((self.rows + k * row_sum(self.absum, 1)) * (1 + 4 * U) + TINY)
        cols = next_up((self.cols + k * row_sum(self.absum, 0)) * (1 + 4 * U) + TINY)
        return self.B, (rows, cols)


def assemble(data: DagData, rho: float, tau: list) -> tuple[dict, dict]:
    """Float blocks of Z(rho, tau) (including -u u^T) and their rounding bounds."""
    n = data.sizes
    acc = {}

    def get(i, j):
        if (i, j) not in acc:
            acc[(i, j)] = _Acc((n[i], n[j]))
        return acc[(i, j)]

    for k in range(len(n)):
        if n[k]:
            get(k, k).add(np.diag(np.full(n[k], rho) if k == 0 else np.asarray(tau[k - 1], float)),
                          np.zeros(n[k]), np.zeros(n[k]))
    for k in range(1, len(n)):
        tk = np.asarray(tau[k - 1], float)
        for j, A in data.inputs[k]:
            O = A.multiply((-tk * data.m[k])[:, None]).toarray()
            aO = 2 * gamma(4) * np.abs(O)
            get(k, j).add(O, row_sum(aO, 1), row_sum(aO, 0))
        tp = tk * data.p[k]
        if np.any(tp):
            g = 4 * gamma(n[k] + 4)
            atp = np.abs(tp)
            for x, (j, A) in enumerate(data.inputs[k]):
                for j2, A2 in data.inputs[k][:x + 1]:
                    hi, lo, Ah, Al = (j, j2, A, A2) if j >= j2 else (j2, j, A2, A)
                    T = (Ah.T @ Al.multiply(tp[:, None])).toarray()
                    aH, aL = abs(Ah), abs(Al)
                    rows = g * chain_bound([aH.T], atp * chain_bound([aL], np.ones(n[lo])))
                    cols = g * chain_bound([aL.T], atp * chain_bound([aH], np.ones(n[hi])))
                    get(hi, lo).add(T, rows, cols)
    # u u^T over the output's support, each row's whole bound (all columns) on its diagonal block
    sup = data.support
    au = np.concatenate([np.abs(data.u[j]) for j in sup])
    eu = np.concatenate([data.u_err[j] for j in sup])
    su, se = float(sum_up(au)), float(sum_up(eu))
    total = next_up((au * se + eu * su + eu * se + 3 * U * au * su) * (1 + 4 * U) + TINY)
    off = np.cumsum([0] + [n[j] for j in sup])
    for x, i in enumerate(sup):
        for y, j in enumerate(sup[:x + 1]):
            T = -np.outer(data.u[i], data.u[j])
            z_i, z_j = np.zeros(n[i]), np.zeros(n[j])
            if i == j:
                z_i = z_j = total[off[x]:off[x + 1]]
            get(i, j).add(T, z_i, z_j)
    blocks, errs = {}, {}
    for key, a in acc.items():
        blocks[key], errs[key] = a.done()
    return blocks, errs


def certify_dag(data: DagData, F: float, t: list, margins: tuple = MARGINS) -> tuple[float, float, dict]:
    """Certified (rho', L) for Z(rho, rho t), rho = F (1 + margin) for the margins in turn."""
    def attempt(rho, margin):
        tau = [rho * x for x in t]
        blocks, errs = assemble(data, rho, tau)
        # unit pivots: block k scaled by 2^s_k (exact), so each block's rounding is relative to itself
        s = {k: -int(np.floor(np.log2(max(float(np.abs(np.diag(blocks[(k, k)])).max()), 1e-300)) / 2))
             for k in range(len(data.sizes)) if data.sizes[k]}
        blocks = {(a, b): np.ldexp(B, s[a] + s[b]) for (a, b), B in blocks.items()}
        errs = {(a, b): tuple(next_up(np.ldexp(e, s[a] + s[b]) + TINY) for e in E) for (a, b), E in errs.items()}
        R2s = sum_up([up(math.ldexp(data.growth[k], -2 * sk)) for k, sk in s.items()])
        bb, _ = sparse_block_lambda_min(data.sizes, data.nbrs, blocks, errs)
        del blocks, errs
        return lmi_bound(rho, bb, R2s, margin)

    return over_margins(F, margins, attempt)
