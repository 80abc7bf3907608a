"""Layer-structured feasible points of the LipSDP-Neuron LMI (relaxations.lipsdp), certified blockwise.

The LMI Z(rho, tau) >= 0 of ``lipsdp.py`` is block tridiagonal in xi = (dx_0, ..., dx_d). Writing each
neuron's slope constraint as (dx - a dz)(b dz - dx) = -dx^2 + 2 m dx dz - p dz^2 (m = (a+b)/2, p = ab):

    Z_00 = rho I + W_0^T T_1 P_1 W_0,   Z_ll = T_l + W_l^T T_{l+1} P_{l+1} W_l,   Z_dd = T_d - u u^T,
    Z_{l,l-1} = -T_l M_l W_{l-1},       u = W_d^T c.

Z is linear in (rho, tau) except for u u^T, so with tau = rho t: Z >= 0 iff the Schur complements
Y_0 = I + W_0^T T_1 P_1 W_0, Y_l = T_l + W_l^T T_{l+1} P_{l+1} W_l - T_l M_l W_{l-1} Y_{l-1}^{-1} W_{l-1}^T M_l T_l
are positive definite and rho >= F(t) = u^T Y_d^{-1} u (sequential Schur complements, O(sum n_l^3)).

Multipliers: ``multiplier_rule`` (ECLipsE-Fast, Xu & Sivaranjani 2024, per-neuron slopes), applied inside
the certificate's own sweep (``certify.lipsdp_sweep``): t_l = 1 / (2 lambda_max of M W Y^{-1} W^T M),
larger for neurons with a narrow slope interval (where -p dz^2 penalises, a fixed neuron's multiplier is
best infinite); ``refine``: L-BFGS on log t with the adjoint gradient of F, along a
log-det barrier path first (log F is convex in t; plain descent stalls at the boundary of the definite
region). Local slope boxes also try the superset box [0, b] (a LipSDP LMI of its own, certified as such).
Neurons with slope box [0, 0] output dx = 0 exactly and are removed first (the LMI of the remaining
coordinates is the restriction of the feasible set). The float value F is never returned: the bound is
``certify.block_chol`` on Z(rho, rho t) with rho slightly above F (a refined point: ``methods.l2.certify``;
a closed-form one: ``certify.lipsdp_sweep``), then LipSDP's R^2 argument block by block.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.linalg.lapack import dpotrf, dpotri, dpotrs

from ..errors import InvalidInputError, SolverFailure
from ..model.network import Network
from ..rounding import TINY, gamma, next_up, sum_up, up
from ..slopes import SlopeBox
from .lipsdp import _norm2_upper
from .quadratic import check_c, check_slopes
from .lbfgs import lbfgs

NARROW_CAP = 1e3          # closed form: at most this factor above the ECLipsE-Fast multiplier
BARRIERS = (1e-2, 1e-4, 1e-6)   # refinement: the barrier path's weights
BARRIER_STALL = 1e-5            # a barrier stage only has to reach the path roughly
LANCZOS_ORDER = 150       # closed form: lambda_max by Lanczos above this order, eigvalsh below
LOG_RANGE = 10.0          # refinement: multipliers within e^+-10 of the closed form
GRAD_PER_SWEEP = 3.0      # a gradient evaluation's time / one sweep's (measured 2.7-3.4 on resnet_cnn)


@dataclass
class LayerData:
    W: list            # W[l]: dense (n_{l+1} x n_l) on the kept neurons, l = 0..d-1
    m: list            # per hidden layer: (a + b)/2 (float), kept neurons
    p: list            # a * b
    u: np.ndarray      # W_d^T c on the kept neurons of layer d
    u_err: np.ndarray  # |u - fl(u)| bound
    R2: float          # >= ||xi||^2 / ||dx_0||^2 over the slope box
    growth: tuple      # growth[l] >= ||dx_l||^2 / ||dx_0||^2 (growth[0] = 1); R2 >= their sum
    kept: list         # indices kept per hidden layer
    K0: np.ndarray | None = None   # W_0 W_0^T: layer 1 works in n_1 x n_1 matrices only (see _first_q)
    Ws: list | None = None         # W[l] as CSR where it is sparse (conv layers), else None: cheaper products
    pruned: bool = True            # kept also drops the neurons that cannot move c^T f (_live)


SPARSE_DENSITY = 0.1      # products with W use its CSR copy below this fill


def times_w(data: LayerData, l: int, X: np.ndarray) -> np.ndarray:
    """W[l] @ X for a dense X (through the CSR copy when W[l] is sparse)."""
    Ws = data.Ws[l] if data.Ws else None
    return np.asarray(Ws @ X) if Ws is not None else data.W[l] @ X


def times_w_t(data: LayerData, l: int, X: np.ndarray) -> np.ndarray:
    """W[l]^T @ X for a dense X (through the CSR copy when W[l] is sparse)."""
    Ws = data.Ws[l] if data.Ws else None
    return np.asarray(Ws.T @ X) if Ws is not None else data.W[l].T @ X


def sandwich_w(data: LayerData, l: int, v: np.ndarray) -> np.ndarray:
    """W[l]^T diag(v) W[l], dense (a sparse product when W[l] is sparse)."""
    Ws = data.Ws[l] if data.Ws else None
    if Ws is None:
        return (data.W[l].T * v) @ data.W[l]
    return (Ws.T @ Ws.multiply(v[:, None]).tocsr()).toarray()


def growth_terms(net: Network, slopes: SlopeBox) -> list:
    """[1, g_1, ..., g_d]: g_l >= ||dx_l||^2 / ||dx_0||^2 over the slope box (products of kappa_l ||W_l||_2,
    squared, rounded up): the R^2 of LipSDP's deficit argument, layer by layer."""
    terms, growth = [1.0], 1.0
    for l in range(1, net.depth + 1):
        kappa = float(max(np.abs(slopes.lo[l - 1]).max(), np.abs(slopes.hi[l - 1]).max()))
        growth = up(growth * up(up(kappa * _norm2_upper(net.weights[l - 1])) ** 2))
        terms.append(growth)
    return terms


def _live(net: Network, c: np.ndarray, kept: list) -> list:
    """``kept`` without the neurons that cannot move c^T f, to a fixed point: no nonzero weight from a kept
    neuron of the layer below (dx = s dz = 0), or none to a kept neuron of the layer above (the last hidden
    layer: to an output with c != 0). The LMI of the remaining coordinates is a principal submatrix of the
    full one, so it is the same LipSDP-Neuron; on pruned nets the full one wants such multipliers at 0 or
    infinity, where the refinement in log t stalls (5-10 % above the SDP's optimum)."""
    d = net.depth
    A = [abs(sp.csr_array(W)) for W in net.weights]
    alive = []
    for l, k in enumerate(kept):
        a = np.zeros(net.widths[l + 1], bool)
        a[k] = True
        alive.append(a)
    changed = True
    while changed:
        changed = False
        for l in range(d):
            below = np.ones(net.widths[0]) if l == 0 else alive[l - 1].astype(float)
            above = (c != 0).astype(float) if l == d - 1 else alive[l + 1].astype(float)
            new = alive[l] & (A[l] @ below > 0) & (A[l + 1].T @ above > 0)
            if np.any(new != alive[l]):
                alive[l], changed = new, True
    return [np.flatnonzero(a) for a in alive]


def layer_data(net: Network, c, slopes: SlopeBox | None, prune: bool = True) -> LayerData | None:
    """The LMI's data; None when some hidden layer has no neuron left (then c^T f is constant: L = 0).
    Neurons with slope box [0, 0] are dropped, and with ``prune`` those that cannot move c^T f (``_live``)."""
    c = check_c(net, c)
    slopes = check_slopes(net, slopes)
    d = net.depth
    if d == 0:
        raise InvalidInputError("the layer-structured LipSDP needs at least one hidden layer")
    kept = [np.flatnonzero((np.asarray(lo) != 0) | (np.asarray(hi) != 0)) for lo, hi in zip(slopes.lo, slopes.hi)]
    if prune:
        kept = _live(net, c, kept)
    terms = growth_terms(net, slopes)
    R2 = sum_up(terms)
    if any(len(k) == 0 for k in kept):
        return None
    W, m, p, Ws = [], [], [], []
    for l in range(d):
        A = net.weights[l].toarray() if hasattr(net.weights[l], "toarray") else np.asarray(net.weights[l])
        A = A[kept[l]] if l == 0 else A[np.ix_(kept[l], kept[l - 1])]
        W.append(np.ascontiguousarray(A, dtype=np.float64))
        nnz = int(np.count_nonzero(W[-1]))
        Ws.append(sp.csr_matrix(W[-1]) if nnz < SPARSE_DENSITY * W[-1].size else None)
        a, b = np.asarray(slopes.lo[l], float)[kept[l]], np.asarray(slopes.hi[l], float)[kept[l]]
        m.append(0.5 * (a + b))
        p.append(a * b)
    Wd = net.weights[d].toarray() if hasattr(net.weights[d], "toarray") else np.asarray(net.weights[d])
    Wd = np.asarray(Wd, float)[:, kept[d - 1]]
    u = Wd.T @ c
    u_err = next_up(2 * gamma(Wd.shape[0] + 2) * (np.abs(Wd).T @ np.abs(c)) + TINY)
    K0 = W[0] @ W[0].T if Ws[0] is None else (Ws[0] @ Ws[0].T).toarray()
    return LayerData(W=W, m=m, p=p, u=u, u_err=u_err, R2=R2, growth=tuple(terms), kept=kept, K0=K0, Ws=Ws,
                     pruned=prune)


def _chol(Y):
    """Lower Cholesky factor (LAPACK potrf, as cho_factor) or None; the refinement calls this and
    _cho_solve thousands of times on small blocks, where scipy's wrappers cost more than the flops."""
    c, info = dpotrf(Y, lower=1, clean=0)
    return (c, True) if info == 0 else None


def _cho_solve(cf, B):
    x, info = dpotrs(cf[0], B, lower=1)
    if info != 0:
        raise ValueError(f"potrs: illegal argument {-info}")
    return x


def _first_q(data: LayerData, t1: np.ndarray) -> np.ndarray:
    """Q = W_0 Y_0^{-1} W_0^T for Y_0 = I + W_0^T D W_0, D = diag(t_1 p_1); for D >= 0 in n_1 x n_1 terms:
    Q = K0 - K0 r (I + r K0 r)^{-1} r K0 with r = D^(1/2) (push-through identity; dQ/dD_jj = -Q e_j e_j^T Q)."""
    dvec = t1 * data.p[0]
    if not np.any(dvec):
        return data.K0
    if np.any(dvec < 0):
        # negative lower slopes (GELU, SiLU, leaky < 0) make p < 0: Y_0 may be indefinite, so it is
        # formed (n_0 x n_0) and factorised; None when it is not positive definite
        Y0 = sandwich_w(data, 0, dvec)
        Y0.flat[::len(Y0) + 1] += 1.0
        cf = _chol(Y0)
        if cf is None:
            return None
        Q = times_w(data, 0, _cho_solve(cf, data.W[0].T))
        return 0.5 * (Q + Q.T)
    r = np.sqrt(dvec)
    V = r[:, None] * data.K0
    B = r[:, None] * V.T
    B.flat[::len(B) + 1] += 1.0
    Q = data.K0 - V.T @ sla.solve(B, V, assume_a="pos", check_finite=False)
    return 0.5 * (Q + Q.T)


def _infeasible(grad: bool, mu: float):
    return (math.inf, None, math.inf) if grad and mu > 0 else (math.inf, None) if grad else math.inf


def schur_value(data: LayerData, t: list, grad: bool = False, mu: float = 0.0):
    """F(t) = u^T Y_d^{-1} u (inf if some Y_l is not positive definite) and, with ``grad``, dF/dt; with
    ``mu`` > 0 instead (J, dJ/dt, F) for J = log F - mu sum_{l>=1} log det(Y_l) / n_l (convex in t: every
    Y_l is a Schur complement of a matrix affine in t, hence matrix-concave), the barrier path of ``refine``."""
    d = len(data.W)
    Y = None
    chols = [None] * (d + 1)
    S_list = []
    Q = None
    for l in range(1, d + 1):
        if l == 1:                                                     # C Y_0^{-1} C^T = (tm) Q (tm)^T
            tm = t[0] * data.m[0]
            S_list.append(None)
            Q = _first_q(data, t[0])
            if Q is None:
                return _infeasible(grad, mu)
            Y = -(tm[:, None] * Q * tm[None, :])
        else:
            cf = chols[l - 1] = _chol(Y)
            if cf is None:
                return _infeasible(grad, mu)
            tm = t[l - 1] * data.m[l - 1]
            C = tm[:, None] * data.W[l - 1]
            S = _cho_solve(cf, C.T).T          # C Y^{-1}
            S_list.append(S)
            Y = -(tm[:, None] * times_w(data, l - 1, S.T))
        Y = 0.5 * (Y + Y.T)
        Y.flat[::len(Y) + 1] += t[l - 1]
        if l < d:
            tp = t[l] * data.p[l]
            if np.any(tp):
                Y = Y + sandwich_w(data, l, tp)
    cf = chols[d] = _chol(Y)
    if cf is None:
        return _infeasible(grad, mu)
    v = _cho_solve(cf, data.u)
    F = float(data.u @ v)
    if not grad:
        return F
    if mu > 0 and not F > 0:      # u = 0 up to rounding: no log F (refine treats the point as infeasible)
        return math.inf, None, F

    def barrier(l):   # d(-mu log det Y_l / n_l)/dY_l = -(mu / n_l) Y_l^{-1}, by potri (a third of potrs on I)
        inv, info = dpotri(chols[l][0], lower=1)
        if info != 0:
            raise ValueError(f"potri: {info}")
        inv = np.tril(inv)
        return -(mu / len(inv)) * (inv + np.tril(inv, -1).T)

    g = [None] * d
    G = -np.outer(v, v)                                                # dF/dY_d
    if mu > 0:
        G = G / F + barrier(d)
    for l in range(d, 0, -1):
        S, W = S_list[l - 1], data.W[l - 1]
        if S is None:                                                  # layer 1 through Q
            tm = t[0] * data.m[0]
            g[0] = np.diag(G) - 2 * data.m[0] * ((G * tm[None, :]) * Q).sum(axis=1)
            if np.any(data.p[0]):
                g[0] += data.p[0] * ((Q @ (tm[:, None] * G * tm[None, :])) * Q).sum(axis=1)
            break
        GS = G @ S
        gl = np.diag(G).copy() - 2 * data.m[l - 1] * (GS * W).sum(axis=1)
        G = S.T @ GS                                                   # dF/dY_{l-1}
        if mu > 0 and l - 1 >= 1:
            G = G + barrier(l - 1)
        if np.any(data.p[l - 1]):
            gl += data.p[l - 1] * (times_w(data, l - 1, G) * W).sum(axis=1)
        g[l - 1] = gl
    if mu > 0:
        logdet = sum(2 * float(np.log(np.diag(chols[l][0])).sum()) / len(chols[l][0]) for l in range(1, d + 1))
        return math.log(F) - mu * logdet, g, F
    return F, g


def _lambda_max(K: np.ndarray) -> float:
    """lambda_max of the symmetric PSD K (a heuristic's scale, not certified): Lanczos from a fixed start
    above order 150 (eigvalsh's tridiagonal reduction costs seconds at conv-layer orders), eigvalsh below."""
    n = K.shape[0]
    if not np.all(np.isfinite(K)):
        raise SolverFailure("the closed-form multipliers are not finite")
    if n > LANCZOS_ORDER:
        import scipy.sparse.linalg as spla
        try:
            v0 = 1.0 + 0.5 * np.cos(np.arange(n, dtype=float))
            return float(spla.eigsh(K, k=1, which="LA", v0=v0, tol=1e-10, return_eigenvectors=False)[0])
        except spla.ArpackError:
            pass
    return float(sla.eigvalsh(K, subset_by_index=[n - 1, n - 1], check_finite=False)[0])


def multiplier_rule(K: np.ndarray, m: np.ndarray, p: np.ndarray, boost: bool) -> np.ndarray:
    """ECLipsE-Fast's t_l = 1 / (2 lambda_max(K_l)), K_l = M_l W_{l-1} Y_{l-1}^{-1} W_{l-1}^T M_l; ``boost``
    raises narrow-slope neurons' multipliers by (m / r)^2 (at most NARROW_CAP)."""
    k = _lambda_max(0.5 * (K + K.T))
    base = 1.0 / (2 * k) if k > 0 else 1.0
    r = np.sqrt(np.maximum(m * m - p, 0.0))                        # (b - a)/2 from m and p
    with np.errstate(over="ignore", divide="ignore"):
        narrow = np.where(r * math.sqrt(NARROW_CAP) > m, (m / np.maximum(r, 1e-300)) ** 2, NARROW_CAP)
    return base * np.clip(narrow, 1.0, NARROW_CAP) if boost else np.full(len(m), base)


def refine(data: LayerData, t0: list, deadline: float | None, max_iter: int = 2000,
           barriers: tuple = BARRIERS, sweep: float = 0.0, value=None) -> list:
    """Minimise log F over s = log t by L-BFGS (1/F(t) = max{s : Z(1, t) - s u u^T >= 0} is concave in t,
    so log F is convex in t; in log t the steps are scale-free). Plain descent runs into the boundary of
    the definite region and stalls there (the gradient blows up across it), so it follows a barrier path
    first: log F - mu sum_l log det(Y_l)/n_l for the decreasing ``barriers``, then mu = 0; returns the t of
    the smallest F seen. ``sweep``: the seconds of one value evaluation, if known (a gradient evaluation
    costs about GRAD_PER_SWEEP of them): no evaluation is started that would end past the deadline.
    ``value``: F's evaluator with ``schur_value``'s signature (default: it; ``lipsdp_dag.dag_value``)."""
    schur = schur_value if value is None else value
    cuts = np.cumsum([len(x) for x in t0])[:-1]
    s0 = np.log(np.concatenate(t0))
    if deadline is not None and time.perf_counter() + sweep > deadline:
        return t0
    best = [schur(data, t0), t0]

    def make(mu):
        def fun(s):
            if np.any(np.abs(s - s0) > LOG_RANGE):       # keeps the certificate's blocks well scaled
                return math.inf, None
            t = np.split(np.exp(s), cuts)
            if mu > 0:
                J, g, F = schur(data, t, grad=True, mu=mu)
                if not math.isfinite(J):
                    return math.inf, None
                if F < best[0]:
                    best[0], best[1] = F, t
                return J, np.exp(s) * np.concatenate(g)
            F, g = schur(data, t, grad=True)
            if not math.isfinite(F) or F <= 0:
                return math.inf, None
            if F < best[0]:
                best[0], best[1] = F, t
            return math.log(F), np.exp(s) * np.concatenate(g) / F
        return fun

    x = s0
    for mu in tuple(barriers) + (0.0,):
        x, _ = lbfgs(make(mu), x, deadline, max_iter, stall=BARRIER_STALL if mu > 0 else 1e-7,
                     cost=sweep * GRAD_PER_SWEEP)
        if deadline is not None and time.perf_counter() > deadline:
            break
    return best[1]


def estimate_bytes(widths) -> float:
    """Dense blocks held at once: weights, Schur complements, pivots and their bounds (8 bytes, ~12 copies)."""
    w = [int(x) for x in widths]
    return 8.0 * 12 * (sum(a * b for a, b in zip(w[:-2], w[1:-1])) + sum(x * x for x in w[:-1]))
