"""LipSDP-Neuron (Fazlyab, Robey, Hassani, Morari & Pappas 2019): l2 Lipschitz bound of c^T f by an SDP.

Stack xi = (dx_0, dx_1, ..., dx_d) (input difference and the differences of every hidden layer's
outputs). Each activation is slope-restricted on the domain: dx_lj = s dz_lj with s in [a_lj, b_lj]
(the SlopeBox: [0, 1] for ReLU globally, a local derivative range otherwise), i.e.
q_lj(xi) = (dx_lj - a dz_lj)(b dz_lj - dx_lj) >= 0 with dz_l = W_{l-1} dx_{l-1}. With multipliers
tau >= 0 (the diagonal T of the paper) the LMI

    Z = rho * diag(I_{n_0}, 0) - u u^T - sum_j tau_j sym(a_j b_j^T)  >= 0,   u = (0, ..., W_d^T c)

gives (c^T W_d dx_d)^2 <= rho ||dx_0||^2, so L_2(c^T f) <= sqrt(rho); we minimise rho.

Certification (same theorem as ``certify.gram``): for the solver's (rho, tau) with tau clipped to >= 0,
a rigorous nu <= lambda_min(Z) gives (u^T xi)^2 <= (rho + max(0, -nu) R^2) ||dx_0||^2 with
R^2 >= ||xi||^2 / ||dx_0||^2 = 1 + sum_l prod_{k <= l} (kappa_k ||W_{k-1}||_2)^2, kappa_k = max |slope|,
||W||_2 <= min(||W||_F, sqrt(||W||_1 ||W||_inf)) (all rounded up). The reported bound is the square
root of that, rounded up.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from .. import memory
from ..errors import InvalidInputError
from ..model.network import Network
from ..rounding import TINY, U, gamma, sum_up, up
from ..slopes import SlopeBox
from .quadratic import Affine, GramSystem, _stack, check_c, check_slopes, products
from .shor import MAX_ORDER


def _norm2_upper(W: sp.csr_array) -> float:
    """min(||W||_F, sqrt(||W||_1 ||W||_inf)) >= ||W||_2, rounded up: each sum of n terms is within a
    factor 1 + 2 gamma(n) of its float value. Sums straight from the CSR arrays (sparse reductions cost
    more than the flops on small layers)."""
    A = W if sp.issparse(W) and W.format == "csr" else sp.csr_array(W)
    a = np.abs(A.data)
    rows, cols = A.shape
    g = 1 + 2 * gamma(max(A.shape) + 2)
    fro = up(math.sqrt(up(float((a * a).sum()) * g)))
    one = up(float(np.bincount(A.indices, weights=a, minlength=cols).max(initial=0.0)) * g)
    inf = up(float(np.bincount(np.repeat(np.arange(rows), np.diff(A.indptr)), weights=a,
                               minlength=rows).max(initial=0.0)) * g)
    return min(fro, up(math.sqrt(up(one * inf))))


def lipsdp_system(net: Network, c, slopes: SlopeBox | None = None) -> tuple[GramSystem, int]:
    """The LipSDP-Neuron LMI as a GramSystem in xi (rho on the dx_0 block via ``lead``), and the number of
    neuron multipliers; ``methods.sdp.lipsdp_neuron`` solves and certifies it."""
    c = check_c(net, c)
    slopes = check_slopes(net, slopes)
    d = net.depth
    if d == 0:
        raise InvalidInputError("LipSDP needs at least one hidden layer (an affine map has L = ||W^T c||_2)")
    widths = net.widths[:d + 1]
    offs = np.concatenate([[0], np.cumsum(widths)])
    N = int(offs[-1])
    if N > MAX_ORDER:
        raise InvalidInputError(f"the LipSDP matrix would have order {N} (limit {MAX_ORDER})")
    memory.require(float(N) * N * memory.BYTES_PER_SDP_ENTRY, f"the LipSDP SDP (matrix order {N:,})",
                   "a smaller network or --method product fit")

    # neuron constraints: a = e_{x_lj} - alpha W_{l-1}[j, :] (on x_{l-1}), b = beta W_{l-1}[j, :] - e_{x_lj}
    A_parts, B_parts = [], []
    for l in range(1, d + 1):
        W = sp.csr_array(net.weights[l - 1])
        n = W.shape[0]
        al, be = np.asarray(slopes.lo[l - 1], float), np.asarray(slopes.hi[l - 1], float)
        Wp = sp.csr_array((W.data, W.indices + offs[l - 1], W.indptr), shape=(n, N))  # W on x_{l-1}
        E = sp.csr_array((np.ones(n), (np.arange(n), offs[l] + np.arange(n))), shape=(n, N))
        aW = sp.csr_array(sp.diags_array(al) @ Wp)
        bW = sp.csr_array(sp.diags_array(be) @ Wp)
        # alpha*W and beta*W are one rounding each: |err| <= u |value| (charged as 2u)
        errA = sp.csr_array(2 * U * abs(aW))
        errB = sp.csr_array(2 * U * abs(bW))
        A_parts.append(Affine(sp.csr_array(E - aW), errA))
        B_parts.append(Affine(sp.csr_array(bW - E), errB))
    A, B = _stack(A_parts), _stack(B_parts)
    m = A.F.shape[0]
    G = products(A, B, np.arange(m), m, N)

    # objective (u^T xi)^2 with u = W_d^T c on x_d
    Wd = sp.csr_array(net.weights[d])
    u = Wd.T @ c
    u_err = 2 * gamma(Wd.shape[0] + 2) * (abs(Wd).T @ np.abs(c)) + TINY
    nz = np.flatnonzero((u != 0) | (u_err > 0))
    Uf = Affine(sp.csr_array((u[nz], (np.zeros(len(nz), np.int64), offs[d] + nz)), shape=(1, N)),
                sp.csr_array((u_err[nz], (np.zeros(len(nz), np.int64), offs[d] + nz)), shape=(1, N)))
    Q = products(Uf, Uf, np.zeros(1, np.int64), 1, N)

    lead = sp.csr_array((np.ones(widths[0]), (np.zeros(widths[0], np.int64), np.arange(widths[0]) * (N + 1))),
                        shape=(1, N * N))
    # R^2 >= ||xi||^2 / ||dx_0||^2
    terms, growth = [1.0], 1.0
    for l in range(1, d + 1):
        kappa = float(max(np.abs(slopes.lo[l - 1]).max(), np.abs(slopes.hi[l - 1]).max()))
        growth = up(growth * up(up(kappa * _norm2_upper(net.weights[l - 1])) ** 2))
        terms.append(growth)
    R2 = sum_up(terms)
    system = GramSystem(order=N, Q=Q[0], Q_err=Q[1], G=G[0], G_err=G[1],
                        H=sp.csr_array((0, N * N)), H_err=sp.csr_array((0, N * N)), R2=R2, lead=lead)
    return system, m
