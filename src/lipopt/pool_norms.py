"""The spectral norm of max pool o activation o affine over every selection of the pool, certified.

Window w of the pool outputs sigma'_k (W x)_k for one candidate k in K_w (the one attaining the maximum;
|sigma'_k| <= r_k on the slope box), so its Jacobian is S D W, one row r_k w_k^T per window, and

    sup_{S, D} ||S D W||_2^2 = sup_{||x||_2 = 1} sum_w max_{k in K_w} (r_k w_k^T x)^2.

For any H_w with H_w >= e_k e_k^T for every slot k of the window, R_w H_w R_w^T >= r_k^2 w_k w_k^T
(R_w = [r_k w_k]_k), so the sum is at most x^T (sum_w R_w H_w R_w^T) x = ||B x||^2 with
B = blockdiag_w(L_w^T) R^T, H_w = L_w L_w^T: sup_S ||S D W||_2 <= ||B||_2. H_w = I gives ||D W||_2, the
plain bound. One H per channel, found by L-BFGS on lambda_max(B^T B) over H = K^{-1}, K a correlation
matrix (so (H^{-1})_kk = 1: H on the boundary of the feasible set). LeNet-5's stages: 4.04 -> 2.85 and
4.57 -> 3.56, where greedy selections reach 2.59 and 3.23 (plain power iterations over S).

Certificate: H = L L^T with the float L; (H^{-1})_kk = ||L^{-1} e_k||^2 <= 1 is checked in exact rational
arithmetic; ||B||_2 <= ``spectral_upper`` of the float B plus the Frobenius norm of its rounding error.
"""
from __future__ import annotations

import hashlib
import math
import time
from fractions import Fraction

import numpy as np
import scipy.optimize as so
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .baselines.product import MAX_GRAM, spectral_upper
from .rounding import gamma, sum_up, up

MAX_SLOTS = 16          # window sizes up to 4 x 4 (the exact check solves k triangular systems of order k)
MAX_EVALS = 40          # L-BFGS evaluations (a count, not a clock: deterministic): LeNet-5's stages are within
                        # 0.05 % of their 80-evaluation values (1.5 s and 0.5 s)
DENSE_BELOW = 24        # top singular triple by a dense SVD below this order (ARPACK needs k < min(shape))


def candidates(taps: np.ndarray, fixed: np.ndarray | None) -> np.ndarray:
    """(windows, slots) input indices a window may select, -1 for none: the pool's taps (each input once),
    a fixed window's one input."""
    cand = np.sort(np.array(taps, dtype=np.int64), axis=1)
    cand[:, 1:][cand[:, 1:] == cand[:, :-1]] = -1
    if fixed is not None and np.any(fixed >= 0):
        f = fixed >= 0
        cand[f] = -1
        cand[f, 0] = fixed[f]
    return cand


def channel_groups(shape: tuple, m: int) -> np.ndarray:
    """Window -> channel for a (C, ...) pool output of m windows; one group when the shape does not say."""
    per = int(np.prod(shape[1:])) if len(shape) >= 2 else m
    if per <= 0 or m % per:
        return np.zeros(m, dtype=np.int64)
    return np.arange(m, dtype=np.int64) // per


def selection_norm_upper(W, r: np.ndarray, cand: np.ndarray, groups: np.ndarray,
                         seconds: float, cache: dict | None = None) -> float | None:
    """Certified upper bound on sup ||S diag(sigma') W||_2 over the selections S of ``cand`` and
    |sigma'| <= r (module docstring); None when the shapes are out of range or ``seconds`` run out first."""
    W = sp.csr_array(W)
    m, k = cand.shape
    if seconds <= 0 or m == 0 or k > MAX_SLOTS or min(W.shape) == 0 or W.shape[1] > MAX_GRAM:
        return None
    key = None
    if cache is not None:
        h = hashlib.blake2b(digest_size=16)
        for a in (W.data, W.indices, W.indptr, np.asarray(r, dtype=np.float64), cand, groups):
            h.update(np.ascontiguousarray(a).tobytes())
        key = ("selection_norm", h.hexdigest())
        if key in cache:
            return cache[key]
    R = sp.csr_array(sp.diags_array(np.asarray(r, dtype=np.float64)) @ W)
    L = _optimise(R, cand, groups, time.perf_counter() + seconds)
    value = None if L is None else _certify(R, W, r, cand, groups, L)
    if cache is not None and L is not None:
        cache[key] = value
    return value


def selection_norm_1_inf(W, r: np.ndarray, cand: np.ndarray, norm: str) -> float:
    """sup ||S diag(sigma') W||_{p->p} over the selections, exactly, rounded up: p = 1 (the largest column
    sum) max_j sum_w max_{k in K_w} r_k |W_kj|, the windows choosing per column; p = inf (the largest row
    sum) max over the candidate rows."""
    A = sp.csr_array(sp.diags_array(np.abs(np.asarray(r, dtype=np.float64))) @ abs(sp.csr_array(W)))
    A = sp.vstack([A, sp.csr_array((1, A.shape[1]))]).tocsr()     # row -1: an empty slot
    rows = np.where(cand >= 0, cand, A.shape[0] - 1)
    if norm == "inf":
        return up(float(A.sum(axis=1)[np.unique(rows)].max(initial=0.0)) * (1 + gamma(A.shape[1] + 2)))
    M = A[rows[:, 0]]
    for a in range(1, cand.shape[1]):
        M = M.maximum(A[rows[:, a]])
    # each product r_k |W_kj| and each column sum of m terms: gamma_{m+2} covers both
    return up(float(M.sum(axis=0).max(initial=0.0)) * (1 + gamma(cand.shape[0] + 2)))


def _factor_matrix(L: np.ndarray, cand: np.ndarray, groups: np.ndarray, n: int) -> sp.csr_array:
    """T with B = T R: row (w, a) of T is sum_b L_g[b, a] e_{cand[w, b]}^T (g = the window's group)."""
    m, k = cand.shape
    Lt = np.transpose(L, (0, 2, 1))[groups]                  # (m, a, b) = L_g[b, a]
    rows = np.broadcast_to((np.arange(m)[:, None, None] * k + np.arange(k)[None, :, None]), (m, k, k))
    cols = np.broadcast_to(cand[:, None, :], (m, k, k))
    keep = (cols >= 0) & (Lt != 0)
    return sp.csr_array((Lt[keep], (rows[keep], cols[keep])), shape=(m * k, n))


def _top(B, v0):
    """Largest singular value and right singular vector of B (float estimates)."""
    if min(B.shape) < DENSE_BELOW:
        _, s, vt = np.linalg.svd(B.toarray(), full_matrices=False)
        return float(s[0]), vt[0]
    _, s, vt = spla.svds(B, k=1, v0=v0, tol=1e-5, maxiter=2000)
    return float(s[0]), vt[0]


class _OutOfTime(Exception):
    pass


def _optimise(R: sp.csr_array, cand: np.ndarray, groups: np.ndarray, deadline: float) -> np.ndarray | None:
    """Per-group lower Cholesky factors L of H = K^{-1} minimising lambda_max(B^T B) (float), the best
    evaluated; the identity (the plain norm) when nothing beats it; None when not even that fits in time."""
    m, k = cand.shape
    G = int(groups.max()) + 1
    n = R.shape[0]
    state = {"v": np.ones(R.shape[1]) / math.sqrt(R.shape[1]), "best": (math.inf, None)}
    padded = np.where(cand >= 0, cand, n)

    def f(p):
        if time.perf_counter() > deadline:
            raise _OutOfTime
        V = p.reshape(G, k, k)
        nr = np.linalg.norm(V, axis=2, keepdims=True)
        Vn = V / nr
        K = Vn @ np.transpose(Vn, (0, 2, 1))
        try:
            H = np.linalg.inv(K)
            L = np.linalg.cholesky(H)
        except np.linalg.LinAlgError:
            return 1e300, np.zeros_like(p)
        s, v = _top(_factor_matrix(L, cand, groups, n) @ R, state["v"])
        state["v"] = v
        lam = s * s
        if lam < state["best"][0]:
            state["best"] = (lam, L)
        y = np.append(R @ v, 0.0)[padded]                      # R_w^T v, (m, k)
        Gm = np.zeros((G, k, k))
        np.add.at(Gm, groups, y[:, :, None] * y[:, None, :])  # d lambda / d H_g
        dK = -H @ Gm @ H
        dVn = 2.0 * dK @ Vn
        dV = (dVn - Vn * np.sum(dVn * Vn, axis=2, keepdims=True)) / nr
        return lam, dV.reshape(-1)

    try:
        so.minimize(f, np.tile(_start(k), (G, 1, 1)).reshape(-1), jac=True, method="L-BFGS-B",
                    options={"maxfun": MAX_EVALS, "maxiter": MAX_EVALS, "ftol": 1e-6})
    except _OutOfTime:
        pass
    return state["best"][1]


def _start(k: int) -> np.ndarray:
    """Rows V of K = V V^T for H = K^{-1} = 2 (I - 11^T / k) + 2 11^T / k^2 (each row r_k = a + d_k, a the
    window's mean: r r^T <= 2 a a^T + 2 d d^T), K scaled to a unit diagonal."""
    one = np.ones((k, k)) / k
    K = np.linalg.inv(2.0 * (np.eye(k) - one) + 2.0 * one / k)
    return np.linalg.cholesky(K / np.sqrt(np.outer(np.diag(K), np.diag(K))))


def _exact_inverse_diagonal_ok(L: np.ndarray) -> bool:
    """||L^{-1} e_j||_2^2 <= 1 for every j, in exact rational arithmetic (L lower triangular, float)."""
    k = L.shape[0]
    F = [[Fraction(float(L[i, j])) for j in range(i + 1)] for i in range(k)]
    if any(F[i][i] <= 0 for i in range(k)):
        return False
    for j in range(k):
        z = [Fraction(0)] * k
        for i in range(j, k):   # forward substitution of L z = e_j
            acc = Fraction(1 if i == j else 0) - sum((F[i][t] * z[t] for t in range(j, i)), Fraction(0))
            z[i] = acc / F[i][i]
        if sum(v * v for v in z) > 1:
            return False
    return True


def _certify(R: sp.csr_array, W: sp.csr_array, r: np.ndarray, cand: np.ndarray, groups: np.ndarray,
             L: np.ndarray) -> float | None:
    """A rigorous ||B||_2 for H = L L^T scaled into the feasible set, or None when the check fails."""
    L = np.array(L, dtype=np.float64, copy=True)
    for g in range(L.shape[0]):
        q = float(np.max(np.sum(np.linalg.inv(L[g]) ** 2, axis=0)))   # max_j ||L^{-1} e_j||^2 (float)
        L[g] = np.tril(L[g]) * (math.sqrt(max(q, 1.0)) * (1 + 1e-10))
        if not _exact_inverse_diagonal_ok(L[g]):
            return None
    T = _factor_matrix(L, cand, groups, R.shape[0])
    B = T @ R
    # exact B = T diag(r) W: R = fl(diag(r) W) and B = fl(T R) (at most k terms a row) differ from it by
    # <= gamma_{k+2} |T| |diag(r)| |W| entrywise; its Frobenius norm, computed in float, enlarged
    E = abs(T) @ sp.csr_array(sp.diags_array(np.abs(np.asarray(r, dtype=np.float64))) @ abs(W))
    fro = math.sqrt(float(np.sum(E.data ** 2)))
    err = up(gamma(cand.shape[1] + 2) * fro * (1 + gamma(E.nnz + cand.shape[1] + 4)))
    return sum_up([spectral_upper(B), err])
