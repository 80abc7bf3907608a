"""How far a LipSDP-Neuron bound can be from that SDP's optimum: a lower bound on the optimum by duality.

LipSDP-Neuron (relaxations.lipsdp, lipsdp_layers) minimises rho over Z(rho, tau) = rho E_00 + sum_i tau_i A_i
- U >= 0, tau >= 0, where E_00 is the identity on the input block, U = u u^T on the last hidden block and
<A_i, xi xi^T> = (dx_i - a_i dz_i)(dx_i - b_i dz_i) is neuron i's slope constraint. For any X >= 0 with
tr X_00 = 1 and <A_i, X> <= 0 for every i, weak duality gives 0 <= <Z, X> <= rho - <U, X>: every feasible
rho, the SDP's optimum included, is at least u^T X_dd u.

Write X = G G^T with rows g_i (one per input and neuron, r columns) and z_i = w_i^T G_{l-1} (neuron i's
pre-activation row). Then <A_i, X> = (g_i - a_i z_i).(g_i - b_i z_i) <= 0 says that g_i lies in the ball
of centre m_i z_i and radius h_i ||z_i|| (m = (a + b)/2, h = (b - a)/2): a slope that is a vector. With
g_i = m_i z_i + h_i ||z_i|| v_i, ||v_i|| <= 1, every choice of (G_0, v) is dual feasible by construction and

    sqrt(LipSDP optimum) >= ||u^T G_d|| / ||G_0||_F,

which projected Adam ascends (rank r, 8 by default: 16-128 gained nothing on the zoo MLPs; r = 1 is a
real slope path, so the value also bounds the FGL from below there). This bounds the relaxation, not the
Lipschitz constant: it says how much any LipSDP-Neuron multiplier choice (``l2-fast``, ``l2-opt``, an SDP
solver) could still gain. It is evaluated in floating point (a diagnostic for benchmarks and tests,
relative error near machine precision), never reported as a bound on a network.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..model.network import Network
from ..problem import past
from ..slopes import SlopeBox
from .lipsdp_layers import layer_data, times_w, times_w_t
from .quadratic import check_slopes

BETA1, BETA2 = 0.9, 0.999     # Adam's moment decays


@dataclass(frozen=True)
class DualBound:
    value: float        # <= sqrt(optimum of LipSDP-Neuron's LMI) for c^T f over the slope box
    rank: int
    iterations: int
    seconds: float


def _forward(data, h: list, G0: np.ndarray, V: list):
    """The rows of G layer by layer: G_l = m Z_l + h ||rows of Z_l|| V_l, Z_l = W_{l-1} G_{l-1}."""
    G, Zs, norms = G0, [], []
    for l, v in enumerate(V):
        Z = times_w(data, l, G)
        n = np.sqrt(np.einsum("ij,ij->i", Z, Z))
        G = data.m[l][:, None] * Z + (h[l] * n)[:, None] * v
        Zs.append(Z)
        norms.append(n)
    return G, Zs, norms


def _value_grad(data, h: list, G0: np.ndarray, V: list):
    """f = ||u^T G_d||^2 / ||G_0||_F^2 and its gradient in (G_0, V) by reverse mode."""
    Gd, Zs, norms = _forward(data, h, G0, V)
    out = data.u @ Gd
    num, den = float(out @ out), float(np.einsum("ij,ij->", G0, G0))
    dG = 2.0 * np.outer(data.u, out)
    dV = [None] * len(V)
    for l in reversed(range(len(V))):
        dV[l] = (h[l] * norms[l])[:, None] * dG
        s = np.einsum("ij,ij->i", dG, V[l])
        safe = np.where(norms[l] > 0, norms[l], 1.0)     # d||z||/dz = z / ||z||; 0 where z = 0
        dZ = data.m[l][:, None] * dG + (h[l] * s / safe)[:, None] * Zs[l]
        dG = times_w_t(data, l, dZ)
    return num / den, dG / den - (2.0 * num / den ** 2) * G0, [d / den for d in dV]


def _ball(V: np.ndarray) -> np.ndarray:
    """Rows projected onto the unit ball."""
    n = np.sqrt(np.einsum("ij,ij->i", V, V))
    return V / np.maximum(n, 1.0)[:, None]


def lipsdp_dual(net: Network, c, slopes: SlopeBox | None = None, rank: int = 8, iterations: int = 10000,
                step: float = 0.05, seed: int = 0, deadline: float | None = None) -> DualBound:
    """A lower bound on sqrt(min rho) of LipSDP-Neuron for c^T f over ``slopes`` (global when None):
    the best ||u^T G_d|| / ||G_0||_F over ``iterations`` projected Adam steps (step size decaying as a
    cosine from ``step``), from a seeded random start of rank ``rank``; stops early at ``deadline``."""
    t0 = time.perf_counter()
    data = layer_data(net, c, slopes)
    if data is None:                       # some hidden layer has no free neuron: c^T f is constant
        return DualBound(0.0, rank, 0, time.perf_counter() - t0)
    box = check_slopes(net, slopes)
    h = [0.5 * (np.asarray(hi, float) - np.asarray(lo, float))[k] for lo, hi, k in zip(box.lo, box.hi, data.kept)]
    rng = np.random.default_rng(seed)
    G0 = rng.standard_normal((data.W[0].shape[1], rank))
    params = [G0 / np.linalg.norm(G0)] + [_ball(rng.standard_normal((w.shape[0], rank))) for w in data.W]
    m1 = [np.zeros_like(q) for q in params]
    m2 = [np.zeros_like(q) for q in params]
    best, it = 0.0, 0
    while it < iterations and not (it and past(deadline)):
        it += 1
        f, g0, gv = _value_grad(data, h, params[0], params[1:])
        best = max(best, f)
        lr = step * 0.5 * (1.0 + np.cos(np.pi * (it - 1) / iterations))
        for k, g in enumerate([g0] + gv):
            m1[k] = BETA1 * m1[k] + (1 - BETA1) * g
            m2[k] = BETA2 * m2[k] + (1 - BETA2) * g * g
            params[k] = params[k] + lr * (m1[k] / (1 - BETA1 ** it)) / (np.sqrt(m2[k] / (1 - BETA2 ** it)) + 1e-30)
        params[0] = params[0] / np.linalg.norm(params[0])
        params[1:] = [_ball(v) for v in params[1:]]
    f, _, _ = _value_grad(data, h, params[0], params[1:])
    return DualBound(float(np.sqrt(max(best, f))), rank, it, time.perf_counter() - t0)
