"""Layer-structured feasible points of the LipSDP-Neuron LMI (relaxations.lipsdp), certified blockwise.

The LMI Z(rho, tau) >= 0 of ``lipsdp.py`` is block tridiagonal in xi = (dx_0, ..., dx_d). Writing each
neuron's slope constraint as (dx - a dz)(b dz - dx) = -dx^2 + 2 m dx dz - p dz^2 (m = (a+b)/2, p = ab):

    Z_00 = rho I + W_0^T T_1 P_1 W_0,   Z_ll = T_l + W_l^T T_{l+1} P_{l+1} W_l,   Z_dd = T_d - u u^T,
    Z_{l,l-1} = -T_l M_l W_{l-1},       u = W_d^T c.

Z is linear in (rho, tau) except for u u^T, so with tau = rho t: Z >= 0 iff the Schur complements
Y_0 = I + W_0^T T_1 P_1 W_0, Y_l = T_l + W_l^T T_{l+1} P_{l+1} W_l - T_l M_l W_{l-1} Y_{l-1}^{-1} W_{l-1}^T M_l T_l
are positive definite and rho >= F(t) = u^T Y_d^{-1} u (sequential Schur complements, O(sum n_l^3)).

Multipliers: ``closed_form`` (ECLipsE-Fast, Xu & Sivaranjani 2024, per-neuron slopes): t_l = 1 / (2 lambda_max
of M W Y^{-1} W^T M), larger for neurons with a narrow slope interval (where -p dz^2 penalises, a fixed
neuron's multiplier is best infinite); ``refine``: L-BFGS on log t with the adjoint gradient of F, along a
log-det barrier path first (log F is convex in t; plain descent stalls at the boundary of the definite
region). Local slope boxes also try the superset box [0, b] (a LipSDP LMI of its own, certified as such).
Neurons with slope box [0, 0] output dx = 0 exactly and are removed first (the LMI of the remaining
coordinates is the restriction of the feasible set). The float value F is never returned: the bound is
``certify.block_ldl`` on S Z(rho, rho t) S (S: exact power-of-two block scaling) with rho slightly above F,
then rho + max(0, -nu) sum_l growth_l / s_l^2, lipsdp's R^2 argument per block.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from .. import memory
from ..certify.block_ldl import block_tridiagonal_lambda_min, lipschitz_from_lmi
from ..errors import InvalidInputError, SolverFailure
from ..model.network import Network
from ..rounding import TINY, U, gamma, next_up, sum_up, up
from ..slopes import SlopeBox
from .lipsdp import _norm2_upper
from .quadratic import check_c, check_slopes
from .lbfgs import lbfgs
from .shor import SDPBound

NARROW_CAP = 1e3          # closed form: at most this factor above the ECLipsE-Fast multiplier
BARRIERS = (1e-2, 1e-4, 1e-6)   # refinement: the barrier path's weights
BARRIER_STALL = 1e-5            # a barrier stage only has to reach the path roughly
RETREAT_CAPS = (6.0, 3.0, 1.0)  # certificate retreat: multipliers at most e^cap times the closed form's
LOG_RANGE = 10.0          # refinement: multipliers within e^+-10 of the closed form
MARGINS = (1e-9, 1e-6, 1e-3)  # relative increases of rho tried until the block certificate is nonnegative


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


def layer_data(net: Network, c, slopes: SlopeBox | None) -> LayerData | None:
    """The LMI's data; None when some hidden layer has no neuron left (then c^T f is constant: L = 0)."""
    c = check_c(net, c)
    slopes = check_slopes(net, slopes)
    d = net.depth
    if d == 0:
        raise InvalidInputError("the layer-structured LipSDP needs at least one hidden layer")
    kept = [np.flatnonzero((np.asarray(lo) != 0) | (np.asarray(hi) != 0)) for lo, hi in zip(slopes.lo, slopes.hi)]
    terms, growth = [1.0], 1.0
    for l in range(1, d + 1):
        kappa = float(max(np.abs(slopes.lo[l - 1]).max(), np.abs(slopes.hi[l - 1]).max()))
        growth = up(growth * up(up(kappa * _norm2_upper(net.weights[l - 1])) ** 2))
        terms.append(growth)
    R2 = sum_up(terms)
    if any(len(k) == 0 for k in kept):
        return None
    W, m, p = [], [], []
    for l in range(d):
        A = net.weights[l].toarray() if hasattr(net.weights[l], "toarray") else np.asarray(net.weights[l])
        A = A[kept[l]] if l == 0 else A[np.ix_(kept[l], kept[l - 1])]
        W.append(np.ascontiguousarray(A, dtype=np.float64))
        a, b = np.asarray(slopes.lo[l], float)[kept[l]], np.asarray(slopes.hi[l], float)[kept[l]]
        m.append(0.5 * (a + b))
        p.append(a * b)
    Wd = net.weights[d].toarray() if hasattr(net.weights[d], "toarray") else np.asarray(net.weights[d])
    Wd = np.asarray(Wd, float)[:, kept[d - 1]]
    u = Wd.T @ c
    u_err = next_up(2 * gamma(Wd.shape[0] + 2) * (np.abs(Wd).T @ np.abs(c)) + TINY)
    K0 = W[0] @ W[0].T
    return LayerData(W=W, m=m, p=p, u=u, u_err=u_err, R2=R2, growth=tuple(terms), kept=kept, K0=K0)


def _chol(Y):
    try:
        return sla.cho_factor(Y, lower=True, check_finite=False)
    except (np.linalg.LinAlgError, ValueError):
        return None


def _p_term(W, tp):
    return (W.T * tp) @ W if np.any(tp) else None


def _first_q(data: LayerData, t1: np.ndarray) -> np.ndarray:
    """Q = W_0 Y_0^{-1} W_0^T for Y_0 = I + W_0^T D W_0, D = diag(t_1 p_1) >= 0, in n_1 x n_1 terms:
    Q = K0 - K0 r (I + r K0 r)^{-1} r K0 with r = D^(1/2) (push-through identity; dQ/dD_jj = -Q e_j e_j^T Q)."""
    dvec = t1 * data.p[0]
    if not np.any(dvec):
        return data.K0
    r = np.sqrt(dvec)
    V = r[:, None] * data.K0
    B = r[:, None] * V.T
    B[np.diag_indices_from(B)] += 1.0
    Q = data.K0 - V.T @ sla.solve(B, V, assume_a="pos", check_finite=False)
    return 0.5 * (Q + Q.T)


def schur_value(data: LayerData, t: list, grad: bool = False, mu: float = 0.0):
    """F(t) = u^T Y_d^{-1} u (inf if some Y_l is not positive definite) and, with ``grad``, dF/dt; with
    ``mu`` > 0 instead J = log F - mu sum_{l>=1} log det(Y_l) / n_l (convex in t: every Y_l is a Schur
    complement of a matrix affine in t, hence matrix-concave) and dJ/dt, for the barrier path of ``refine``."""
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
            Y = -(tm[:, None] * Q * tm[None, :])
        else:
            cf = chols[l - 1] = _chol(Y)
            if cf is None:
                return (math.inf, None) if grad else math.inf
            C = (t[l - 1] * data.m[l - 1])[:, None] * data.W[l - 1]
            S = sla.cho_solve(cf, C.T, check_finite=False).T          # C Y^{-1}
            S_list.append(S)
            Y = -(S @ C.T)
        Y = 0.5 * (Y + Y.T)
        Y[np.diag_indices_from(Y)] += t[l - 1]
        if l < d:
            P = _p_term(data.W[l], t[l] * data.p[l])
            if P is not None:
                Y = Y + P
    cf = chols[d] = _chol(Y)
    if cf is None:
        return (math.inf, None) if grad else math.inf
    v = sla.cho_solve(cf, data.u, check_finite=False)
    F = float(data.u @ v)
    if not grad:
        return F

    def barrier(l):   # d(-mu log det Y_l / n_l)/dY_l
        c = chols[l]
        return -(mu / len(c[0])) * sla.cho_solve(c, np.eye(len(c[0])), check_finite=False)

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
        gl = np.diag(G).copy() - 2 * data.m[l - 1] * ((G @ S) * W).sum(axis=1)
        G = S.T @ G @ S                                                # dF/dY_{l-1}
        if mu > 0 and l - 1 >= 1:
            G = G + barrier(l - 1)
        if np.any(data.p[l - 1]):
            gl += data.p[l - 1] * ((W @ G) * W).sum(axis=1)
        g[l - 1] = gl
    if mu > 0:
        logdet = sum(2 * float(np.log(np.diag(chols[l][0])).sum()) / len(chols[l][0]) for l in range(1, d + 1))
        return math.log(F) - mu * logdet, g
    return F, g


def closed_form(data: LayerData, boost: bool = True) -> list:
    """ECLipsE-Fast-style multipliers, layer by layer (rho normalised to 1); ``boost`` raises narrow-slope
    neurons' multipliers by (m / r)^2 (at most NARROW_CAP)."""
    d = len(data.W)
    Y = None
    t = []
    for l in range(1, d + 1):
        W, m, p = data.W[l - 1], data.m[l - 1], data.p[l - 1]
        V = m[:, None] * W
        first = l == 1                                                 # layer 1 in n_1 terms (_first_q)
        if first:
            K = m[:, None] * data.K0 * m[None, :]
        else:
            cf = _chol(Y)
            if cf is None:
                raise SolverFailure("the closed-form multipliers lost positive definiteness")
            K = V @ sla.cho_solve(cf, V.T, check_finite=False)
        k = float(sla.eigvalsh(0.5 * (K + K.T), subset_by_index=[K.shape[0] - 1] * 2, check_finite=False)[0])
        base = 1.0 / (2 * k) if k > 0 else 1.0
        r = np.sqrt(np.maximum(m * m - p, 0.0))                        # (b - a)/2 from m and p
        with np.errstate(over="ignore", divide="ignore"):
            narrow = np.where(r * math.sqrt(NARROW_CAP) > m, (m / np.maximum(r, 1e-300)) ** 2, NARROW_CAP)
        tl = base * np.clip(narrow, 1.0, NARROW_CAP) if boost else np.full(len(m), base)
        t.append(tl)
        if first:
            Q = _first_q(data, tl)
            Y = -((tl * m)[:, None] * Q * (tl * m)[None, :])
        else:
            if np.any(p):
                Y = Y + (W.T * (tl * p)) @ W
                cf = _chol(Y)
                if cf is None:
                    raise SolverFailure("the closed-form multipliers lost positive definiteness")
            C = tl[:, None] * V
            Y = -(C @ sla.cho_solve(cf, C.T, check_finite=False))
        Y = 0.5 * (Y + Y.T)
        Y[np.diag_indices_from(Y)] += tl
    return t


def refine(data: LayerData, t0: list, deadline: float | None, max_iter: int = 500,
           barriers: tuple = BARRIERS) -> list:
    """Minimise log F over s = log t by L-BFGS (1/F(t) = max{s : Z(1, t) - s u u^T >= 0} is concave in t,
    so log F is convex in t; in log t the steps are scale-free). Plain descent runs into the boundary of
    the definite region and stalls there (the gradient blows up across it), so it follows a barrier path
    first: log F - mu sum_l log det(Y_l)/n_l for the decreasing ``barriers``, then mu = 0; returns the t of
    the smallest F seen."""
    cuts = np.cumsum([len(x) for x in t0])[:-1]
    s0 = np.log(np.concatenate(t0))
    best = [schur_value(data, t0), t0]

    def make(mu):
        def fun(s):
            if np.any(np.abs(s - s0) > LOG_RANGE):       # keeps the certificate's blocks well scaled
                return math.inf, None
            t = np.split(np.exp(s), cuts)
            if mu > 0:
                J, g = schur_value(data, t, grad=True, mu=mu)
                if not math.isfinite(J):
                    return math.inf, None
                F = schur_value(data, t)
                if F < best[0]:
                    best[0], best[1] = F, t
                return J, np.exp(s) * np.concatenate(g)
            F, g = schur_value(data, t, grad=True)
            if not math.isfinite(F) or F <= 0:
                return math.inf, None
            if F < best[0]:
                best[0], best[1] = F, t
            return math.log(F), np.exp(s) * np.concatenate(g) / F
        return fun

    x = s0
    for mu in tuple(barriers) + (0.0,):
        x, _ = lbfgs(make(mu), x, deadline, max_iter, stall=BARRIER_STALL if mu > 0 else 1e-7)
        if deadline is not None and time.perf_counter() > deadline:
            break
    return best[1]


def estimate_bytes(widths) -> float:
    """Dense blocks held at once: weights, Schur complements, pivots and their bounds (8 bytes, ~12 copies)."""
    w = [int(x) for x in widths]
    return 8.0 * 12 * (sum(a * b for a, b in zip(w[:-2], w[1:-1])) + sum(x * x for x in w[:-1]))


def certify(data: LayerData, F: float, t: list) -> tuple[float, float, dict]:
    """Certified (rho', L) for Z(rho, rho t), trying rho = F (1 + margin) for the margins in MARGINS."""
    d = len(data.W)
    last = None
    for margin in MARGINS:
        rho = up(F * (1 + margin))
        tau = [rho * x for x in t]
        diag, derr, sub, serr = [], [], [], []
        for l in range(d + 1):
            n = data.W[0].shape[1] if l == 0 else len(tau[l - 1])
            B = np.zeros((n, n))
            E = np.zeros((n, n))
            B[np.diag_indices(n)] = rho if l == 0 else tau[l - 1]
            if l < d and np.any(data.p[l]):
                W, tp = data.W[l], tau[l] * data.p[l]
                B += (W.T * tp) @ W
                aW = np.abs(W)
                E += 4 * gamma(W.shape[0] + 4) * ((aW.T * np.abs(tp)) @ aW)
            if l == d:
                uu = np.outer(data.u, data.u)
                au, eu = np.abs(data.u), data.u_err
                B -= uu
                E += 2 * np.outer(au, eu) + np.outer(eu, eu) + 2 * U * np.abs(uu)
            E = next_up(E + 4 * U * np.abs(B) + TINY)
            diag.append(B)
            derr.append(E)
            if l >= 1:
                O = -(tau[l - 1] * data.m[l - 1])[:, None] * data.W[l - 1]
                sub.append(O)
                serr.append(next_up(2 * gamma(4) * np.abs(O) + TINY))
        # block scaling S = blockdiag(2^k_l I) (exact; TINY covers underflow): lambda_min(S Z S) >= nu gives
        # xi^T Z xi >= nu sum_l ||dx_l||^2 4^-k_l, so R^2 becomes sum_l growth_l 4^-k_l; with unit pivots
        # the rounding term is relative to each block instead of to the largest one
        k = [-int(np.floor(np.log2(max(float(np.abs(np.diag(B)).max()), 1e-300)) / 2)) for B in diag]
        diag = [np.ldexp(B, 2 * kl) for B, kl in zip(diag, k)]
        derr = [next_up(np.ldexp(E, 2 * kl) + TINY) for E, kl in zip(derr, k)]
        sub = [np.ldexp(O, k[l + 1] + k[l]) for l, O in enumerate(sub)]
        serr = [next_up(np.ldexp(E, k[l + 1] + k[l]) + TINY) for l, E in enumerate(serr)]
        R2s = sum_up([up(math.ldexp(g, -2 * kl)) for g, kl in zip(data.growth, k)])
        bb = block_tridiagonal_lambda_min(diag, derr, sub, serr)
        rho_c, L = lipschitz_from_lmi(rho, bb.nu, R2s)
        info = {"rho": rho, "rho_certified": rho_c, "nu": bb.nu, "nu_blocks": bb.nu_blocks,
                "residual": bb.residual, "margin": margin}
        if last is None or L < last[1]:
            last = (rho_c, L, info)
        if bb.nu >= 0 or rho_c - rho <= 1e-9 * rho:   # a larger margin cannot gain more than it costs
            break
    return last


def lipsdp_layers(net: Network, c, slopes: SlopeBox | None = None, mode: str = "fast",
                  time_limit: float | None = None) -> SDPBound:
    """Certified l2 bound on c^T f from layer-structured LipSDP multipliers: ``mode`` "fast" (closed form)
    or "opt" (closed form, then L-BFGS refinement until the time limit)."""
    t_start = time.perf_counter()
    if mode not in ("fast", "opt"):
        raise InvalidInputError(f"mode must be fast or opt; got {mode!r}")
    memory.require(estimate_bytes(net.widths), f"the layer-structured LipSDP (widths {list(net.widths)})",
                   "--method product fits")
    data = layer_data(net, c, slopes)
    sizes = {"order": int(sum(net.widths[:-1])), "layers": net.depth}
    if data is None:
        return SDPBound(upper=0.0, raw=0.0, status="optimal", method=f"lipsdp-layers-{mode}", norm="2",
                        sizes=sizes, timings={"total": time.perf_counter() - t_start},
                        details={"note": "a hidden layer has every slope 0: c^T f is constant"})
    if not np.any(data.u) and not np.any(data.u_err):
        return SDPBound(upper=0.0, raw=0.0, status="optimal", method=f"lipsdp-layers-{mode}", norm="2",
                        sizes=sizes, timings={"total": time.perf_counter() - t_start}, details={})
    t = t_fast = closed_form(data)
    F_fast = schur_value(data, t)
    if any(np.any(p) for p in data.p):
        # narrow slopes: the boost is a heuristic, and the LMI of the superset box [0, b] (a valid LipSDP
        # LMI for a larger box, certified as such) may suit the closed form better: keep the best start
        slopes = check_slopes(net, slopes)
        wide = layer_data(net, c, SlopeBox(tuple(np.zeros_like(np.asarray(h, float)) for h in slopes.hi),
                                           slopes.hi))
        for dd, boost in ((data, False), (wide, False)):
            tc = closed_form(dd, boost=boost)
            Fc = schur_value(dd, tc)
            if Fc < F_fast:
                data, t, t_fast, F_fast = dd, tc, tc, Fc
    t_multipliers = time.perf_counter() - t_start
    if not math.isfinite(F_fast):
        raise SolverFailure("the layer-structured multipliers are not feasible (a Schur complement is not definite)")
    end = None if time_limit is None else t_start + float(time_limit)
    # the closed form's point is certified first: the refinement can only improve on it, and the time
    # of one certificate tells how much of the budget to leave for the refined one
    _, L, info = certify(data, F_fast, t_fast)
    t_cert = time.perf_counter() - t_start - t_multipliers
    F_best = F_fast                  # F of the point whose certificate is returned
    t_refine = 0.0
    if mode == "opt" and (end is None or end - time.perf_counter() > 3 * t_cert):
        t0 = time.perf_counter()
        deadline = None if end is None else end - 2.5 * t_cert - 0.05 * float(time_limit)
        t = refine(data, t_fast, deadline)
        t_refine = time.perf_counter() - t0
        # huge multipliers (fixed neurons want t -> infinity) inflate the certificate's rounding term
        # (times R^2): retreat towards the closed form's scale while that costs less than it saves
        for cap in (None,) + RETREAT_CAPS:
            if end is not None and end - time.perf_counter() < 1.2 * t_cert:
                break
            tc = t if cap is None else [np.minimum(a, b * math.exp(cap)) for a, b in zip(t, t_fast)]
            Fc = schur_value(data, tc)
            if not math.isfinite(Fc):
                continue
            cand = certify(data, Fc, tc)
            if cand[1] < L:
                L, info, F_best = cand[1], {**cand[2], "retreat": cap}, Fc
            if cand[0] - cand[2]["rho"] <= 1e-6 * cand[2]["rho"]:
                break
    if not math.isfinite(L):
        raise SolverFailure("the layer-structured certificate is not finite")
    sizes["kept_neurons"] = int(sum(len(k) for k in data.kept))
    return SDPBound(upper=L, raw=math.sqrt(max(F_best, 0.0)), status="ok", method=f"lipsdp-layers-{mode}", norm="2",
                    sizes=sizes, timings={"multipliers": t_multipliers, "refine": t_refine, "certify_one": t_cert,
                                          "total": time.perf_counter() - t_start},
                    details={**info, "raw_fast": math.sqrt(max(F_fast, 0.0)), "R2": data.R2})
