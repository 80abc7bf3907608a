"""LipSDP-Neuron on a lifted graph's values without carries: a block-chordal LMI, one block per value.

The lifted chain (``model.graph_lift``) carries a value through later layers as identity neurons (slope
box [1, 1]) whose multipliers want t -> infinity. Here every value x_k (k = 0: the input, k >= 1: an
activation, tournament or materialised linear value) is one block and its pre-activation is
z_k = sum_j A_kj x_j over earlier values (``DagInputs``), so the carries are eliminated exactly. With
q_ki(xi) = x_ki^2 - 2 m_i x_ki z_ki + p_i z_ki^2 (<= 0 for every slope in [a_i, b_i], m = (a + b)/2,
p = a b) the LMI with rho = 1 is

    Z'(t) = E_0 + sum_ki t_ki q_ki,   Z(rho, rho t) = rho Z'(t) - u u^T,   F(t) = u^T Z'(t)^{-1} u,

u the output's gradient map over the values. Z' has blocks (k, k), (k, j) for j an input of k, (j, j')
for inputs of one value with p != 0 and (j, j') on the output's support; eliminated in the values' order
(topological) with the fill of a chordal completion (``pattern``). Restricted to the subspace where
every carry equals its origin, the lifted chain's LMI is this one with the same t on the kept neurons,
so F here is at most the chain's F at any multipliers. dF/dt_ki = -q_ki(v), v = Z'^{-1} u; the barrier
path of ``lipsdp_layers.refine`` uses log det Z' (its gradient tr(Z'^{-1} Q_ki) from the selected
inverse on the pattern).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dtrtri, dtrtrs

from ..rounding import TINY, gamma, next_up
from .lipsdp_layers import _chol


@dataclass
class DagData:
    sizes: list          # neurons per value (kept: slope box not [0, 0]); sizes[0] = the input's
    inputs: list         # inputs[k] (k >= 1): [(j, A_kj CSR on kept neurons), ...]; inputs[0] = []
    m: list              # per value k >= 1: (a + b) / 2 of its kept neurons (m[0] = None)
    p: list              # a * b
    u: list              # u[k]: the output's gradient map on value k (zeros off its support)
    u_err: list          # |u - fl(u)| bounds
    support: list        # values the output reads
    growth: list         # growth[k] >= ||x_k||^2 / ||x_0||^2 over the slope box (growth[0] = 1)
    nbrs: list           # nbrs[k]: later values adjacent to k in the chordal pattern (sorted)
    kept: list           # kept neuron indices per value (k >= 1)
    dense: dict = None   # {(k, j): A_kj as a dense array} for the small ones (``dense_copies``)


DENSE_MAX = 250_000       # entries: smaller input matrices are also kept dense (scipy.sparse's per-call
                          # overhead dominates the refinement on small graphs: 4x slower than the chain)


def dense_copies(inputs: list) -> dict:
    return {(k, j): A.toarray() for k, ins in enumerate(inputs) for j, A in ins
            if A.shape[0] * A.shape[1] <= DENSE_MAX}


def pattern(n_values: int, edges: set) -> list:
    """Neighbours after each value in the elimination order 0, 1, ... of the graph with ``edges`` (pairs
    (i, j), i > j) completed chordally: eliminating k joins all its later neighbours."""
    later = [set() for _ in range(n_values)]
    for i, j in edges:
        later[j].add(i)
    for k in range(n_values):
        nb = sorted(later[k])
        for a, i in enumerate(nb):
            for j in nb[:a]:
                later[j].add(i)
    return [sorted(x) for x in later]


def dag_data(dag, n0: int, box_lo: list, box_hi: list, growth: list, c: np.ndarray) -> DagData | None:
    """The LMI's data from ``DagInputs`` and the slope box of each value (box_lo[k-1], box_hi[k-1]);
    values whose slopes are all 0 output 0 and are dropped; None when the output reads none left."""
    d = len(dag.inputs)
    kept = [np.arange(n0)] + [np.flatnonzero((np.asarray(lo) != 0) | (np.asarray(hi) != 0))
                              for lo, hi in zip(box_lo, box_hi)]
    sizes = [len(k) for k in kept]
    inputs, m, p, edges = [[]], [None], [None], set()
    for k in range(1, d + 1):
        a = np.asarray(box_lo[k - 1], float)[kept[k]]
        b = np.asarray(box_hi[k - 1], float)[kept[k]]
        m.append(0.5 * (a + b))
        p.append(a * b)
        ins = []
        for j, A in dag.inputs[k - 1]:
            A = sp.csr_array(A)[kept[k]][:, kept[j]]
            if sizes[j] and sizes[k] and A.nnz:
                ins.append((j, sp.csr_array(A)))
                edges.add((k, j))
        if np.any(p[-1]):
            for x, (j, _) in enumerate(ins):
                for j2, _ in ins[:x]:
                    edges.add((max(j, j2), min(j, j2)))
        inputs.append(ins if sizes[k] else [])
    u, u_err, support = [np.zeros(s) for s in sizes], [np.zeros(s) for s in sizes], []
    for j, B in dag.output:
        B = sp.csr_array(B)[:, kept[j]]
        if sizes[j] == 0 or B.nnz == 0:
            continue
        support.append(j)
        u[j] = np.asarray(B.T @ c, float)
        u_err[j] = next_up(2 * gamma(B.shape[0] + 2) * (abs(B).T @ np.abs(c)) + TINY)
    if not support:
        return None
    for x, j in enumerate(support):
        for j2 in support[:x]:
            edges.add((max(j, j2), min(j, j2)))
    return DagData(sizes=sizes, inputs=inputs, m=m, p=p, u=u, u_err=u_err, support=support,
                   growth=list(growth), nbrs=pattern(d + 1, edges), kept=kept, dense=dense_copies(inputs))


def reduce_input(data: DagData) -> DagData:
    """The same F(t) with the input block reduced to the rows' span: x_0 enters only through
    A_0 = [A_k0 for its readers k] and ||x_0||^2, and eliminating it leaves A_0 (I + A_0^T D A_0)^{-1} A_0^T,
    a function of A_0 A_0^T only (push-through), so A_0 is replaced by a factor G with G G^T = A_0 A_0^T
    (float: for F and its gradient, never for the certificate, which assembles the exact data)."""
    readers = [(k, A) for k in range(1, len(data.sizes)) for j, A in data.inputs[k] if j == 0]
    rows = sum(A.shape[0] for _, A in readers)
    if 0 in data.support or not readers or rows >= data.sizes[0]:
        return data
    A0 = sp.vstack([A for _, A in readers], format="csr")
    K = (A0 @ A0.T).toarray()
    w, V = np.linalg.eigh(0.5 * (K + K.T))
    keep = w > w.max(initial=0.0) * 1e-13
    G = V[:, keep] * np.sqrt(w[keep])
    inputs = [list(x) for x in data.inputs]
    at = 0
    for k, A in readers:
        Gk = sp.csr_array(G[at:at + A.shape[0]])
        at += A.shape[0]
        inputs[k] = [(j, Gk if j == 0 else B) for j, B in inputs[k]]
    sizes = [int(keep.sum())] + list(data.sizes[1:])
    u = [np.zeros(sizes[0])] + list(data.u[1:])
    u_err = [np.zeros(sizes[0])] + list(data.u_err[1:])
    return DagData(sizes=sizes, inputs=inputs, m=data.m, p=data.p, u=u, u_err=u_err, support=data.support,
                   growth=data.growth, nbrs=data.nbrs, kept=data.kept, dense=dense_copies(inputs))


def blocks(data: DagData, tau: list, rho: float = 1.0) -> dict:
    """The float blocks {(i, j): dense, i >= j} of Z(rho, tau) without its -u u^T term (empty values skipped)."""
    n = data.sizes
    out = {(k, k): np.diag(np.asarray(tau[k - 1], float)) if k else rho * np.eye(n[0])
           for k in range(len(n)) if n[k]}
    D = data.dense or {}
    for k in range(1, len(n)):
        tk = np.asarray(tau[k - 1], float)
        for j, A in data.inputs[k]:
            Ad = D.get((k, j))
            O = (-tk * data.m[k])[:, None] * Ad if Ad is not None else A.multiply((-tk * data.m[k])[:, None]).toarray()
            out[(k, j)] = out.get((k, j), 0.0) + O
        tp = tk * data.p[k]
        if np.any(tp):
            for x, (j, A) in enumerate(data.inputs[k]):
                for j2, A2 in data.inputs[k][:x + 1]:
                    hi, lo, Ah, Al = (j, j2, A, A2) if j >= j2 else (j2, j, A2, A)
                    Dh, Dl = D.get((k, hi)), D.get((k, lo))
                    T = (Dh.T @ (Dl * tp[:, None]) if Dh is not None and Dl is not None else
                         (Ah.T @ Al.multiply(tp[:, None])).toarray())
                    out[(hi, lo)] = out.get((hi, lo), 0.0) + T
    return out


def factor(data: DagData, Z: dict):
    """Block Cholesky Z' = L L^T in the values' order: (R, H) with R[k] lower factors of the pivots and
    H[(i, k)] = pending (i, k) R_k^-T; None when a pivot is not positive definite."""
    P = dict(Z)
    R, H = {}, {}
    for k in range(len(data.sizes)):
        if not data.sizes[k]:
            continue
        cf = _chol(P.pop((k, k)))
        if cf is None:
            return None
        R[k] = cf[0]
        nb = [i for i in data.nbrs[k] if data.sizes[i]]
        for i in nb:
            O = P.pop((i, k), None)
            H[(i, k)] = np.zeros((data.sizes[i], data.sizes[k])) if O is None else _trsolve(R[k], O.T).T
        for x, i in enumerate(nb):
            Hi = H[(i, k)]
            for i2 in nb[:x + 1]:
                upd = Hi @ H[(i2, k)].T
                P[(i, i2)] = P[(i, i2)] - upd if (i, i2) in P else -upd
    return R, H


def _trsolve(Rk: np.ndarray, B: np.ndarray, trans: int = 0) -> np.ndarray:
    """Rk^-1 B (trans 1: Rk^-T B) for the lower triangular Rk, by LAPACK trtrs: the refinement calls it
    thousands of times on small blocks, where scipy's wrapper costs more than the flops."""
    x, info = dtrtrs(Rk, B, lower=1, trans=trans)
    if info != 0:
        raise np.linalg.LinAlgError(f"trtrs: {info}")
    return x


def solve(data: DagData, R: dict, H: dict, u: list):
    """(y, v): L y = u and v = L^-T y = Z'^{-1} u (dicts over the non-empty values)."""
    keys = sorted(R)
    y = {}
    for k in keys:
        r = u[k].copy()
        for j in keys:
            if j >= k:
                break
            Hkj = H.get((k, j))
            if Hkj is not None:
                r -= Hkj @ y[j]
        y[k] = _trsolve(R[k], r)
    v = {}
    for k in reversed(keys):
        r = y[k].copy()
        for i in data.nbrs[k]:
            Hik = H.get((i, k))
            if Hik is not None:
                r -= Hik.T @ v[i]
        v[k] = _trsolve(R[k], r, trans=1)
    return y, v


def selected_inverse(data: DagData, R: dict, H: dict) -> dict:
    """Blocks of Z'^{-1} on the pattern: S[(i, k)], i >= k (Sigma_{N,k} = -Sigma_{N,N} L_{N,k} L_kk^-1)."""
    S = {}

    def get(i, j):
        return S[(i, j)] if i >= j else S[(j, i)].T

    for k in sorted(R, reverse=True):
        Ri, info = dtrtri(R[k], lower=1)
        if info != 0:
            raise ValueError(f"trtri: {info}")
        Ri = np.tril(Ri)
        nb = [i for i in data.nbrs[k] if (i, k) in H]
        G = {i: sum(get(i, i2) @ H[(i2, k)] for i2 in nb) for i in nb}
        for i in nb:
            S[(i, k)] = -G[i] @ Ri
        acc = Ri.T @ Ri
        if nb:
            acc = acc - sum(S[(i, k)].T @ H[(i, k)] for i in nb) @ Ri
        S[(k, k)] = 0.5 * (acc + acc.T)
    return S


def q_values(data: DagData, k: int, x: dict):
    """Per neuron of value k: q_ki(x) = x_ki^2 - 2 m x_ki z_ki + p z_ki^2 (z_k = sum_j A_kj x_j)."""
    D = data.dense or {}
    z = sum(((D[(k, j)] if (k, j) in D else A) @ x[j] for j, A in data.inputs[k] if j in x), np.zeros(data.sizes[k]))
    xk = x.get(k, np.zeros(data.sizes[k]))
    return xk * xk - 2 * data.m[k] * xk * z + data.p[k] * z * z


def trace_q(data: DagData, k: int, S: dict) -> np.ndarray:
    """tr(Z'^{-1} Q_ki) per neuron of value k, from the selected inverse."""
    def get(i, j):
        return S[(i, j)] if i >= j else S[(j, i)].T
    D = data.dense or {}
    out = np.diag(S[(k, k)]).copy()
    for j, A in data.inputs[k]:
        Ad = D.get((k, j))
        prod = (Ad * get(k, j)).sum(axis=1) if Ad is not None else np.asarray(A.multiply(get(k, j)).sum(axis=1)).ravel()
        out -= 2 * data.m[k] * prod
    if np.any(data.p[k]):          # p_i sum_{j, j'} (A_kj Sigma_jj' A_kj'^T)_ii
        for j, A in data.inputs[k]:
            for j2, A2 in data.inputs[k]:
                Ad, A2d = D.get((k, j)), D.get((k, j2))
                if Ad is not None and A2d is not None:
                    out += data.p[k] * (Ad * (A2d @ get(j, j2).T)).sum(axis=1)
                else:
                    out += data.p[k] * np.asarray(A.multiply(A2 @ get(j, j2).T).sum(axis=1)).ravel()
    return out


def dag_value(data: DagData, t: list, grad: bool = False, mu: float = 0.0):
    """F(t) = u^T Z'(t)^{-1} u (inf when Z'(t) is not positive definite), as ``lipsdp_layers.schur_value``:
    with ``grad`` also dF/dt; with ``mu`` > 0 (J, dJ/dt, F) for J = log F - mu (values / order) log det Z'."""
    Z = blocks(data, t)
    fac = factor(data, Z)
    del Z
    if fac is None:
        return (math.inf, None, math.inf) if grad and mu > 0 else (math.inf, None) if grad else math.inf
    R, H = fac
    y, v = solve(data, R, H, data.u)
    F = float(sum(float(yk @ yk) for yk in y.values()))
    if not grad:
        return F
    if mu > 0 and not F > 0:
        return math.inf, None, F
    g = [-q_values(data, k, v) for k in range(1, len(data.sizes))]
    if mu <= 0:
        return F, g
    S = selected_inverse(data, R, H)
    w = mu * (len(R) - 1) / max(1, sum(data.sizes[1:]))
    g = [gk / F - (w * trace_q(data, k, S) if data.sizes[k] else 0.0) for k, gk in zip(range(1, len(data.sizes)), g)]
    logdet = 2 * sum(float(np.log(np.diag(Rk)).sum()) for Rk in R.values())
    return math.log(F) - w * logdet, g, F
