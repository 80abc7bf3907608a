"""Rigorous certificates from (possibly inaccurate) SDP multipliers (the data: relaxations.quadratic.GramSystem).

**Gram identity.** For a quadratic problem max v^T Q v over z with v = [1; z], subject to
g_k(z) = v^T G_k v >= 0 and h_k(z) = v^T H_k v = 0, any multipliers lambda, mu >= 0, nu give the identity

    lambda - P(z) - sum_k mu_k g_k(z) - sum_k nu_k h_k(z) = v^T Z v,
    Z = lambda e0 e0^T - Q - sum_k mu_k G_k - sum_k nu_k H_k          (exact arithmetic).

**Theorem used.** If nu_min <= lambda_min(Z) and ||v||^2 = 1 + ||z||^2 <= R^2 on the feasible set, then for
every feasible z:  P(z) = lambda - v^T Z v - sum mu g - sum nu h <= lambda - nu_min ||v||^2
<= lambda + max(0, -nu_min) R^2.  This holds for *any* lambda, mu >= 0, nu (the solver's point after
clipping mu to >= 0), so solver inaccuracy costs tightness only, never soundness.

**Rigorous lambda_min (Rump 2006, "Verification of positive definiteness", BIT 46).** If the floating-point
Cholesky factorisation of a symmetric float matrix B of order n runs to completion, Demmel's bound gives
R^T R = B + dB with |dB| <= gamma_{n+1} |R^T||R| and |R^T||R|_ij <= ||R e_i|| ||R e_j||, ||R e_j||^2 <=
B_jj / (1 - gamma_{n+1}); hence ||dB||_2 <= gamma_{n+1}/(1-gamma_{n+1}) tr(B) and
lambda_min(B) >= -gamma_{n+1}/(1-gamma_{n+1}) tr(B) (plus an underflow term we cover with 1e-300 n^2).
With B = fl(Z~ - alpha I) (only the diagonal is rounded, by at most 2u|B_ii|) and |Z - Z~| <= E entrywise
(Z~ the float matrix, E from a-priori rounding bounds of every sum and product that formed it):

    lambda_min(Z) >= alpha - gamma'(n) tr(B) - 2u max|B_ii| - max_i sum_j E_ij.

(||E||_2 <= max row sum for a symmetric nonnegative E.) The bound assumes IEEE binary64 with round to
nearest and a LAPACK Cholesky whose inner products obey the standard model (any summation order, FMA or
not; no Strassen-type products), which holds for the reference, OpenBLAS and MKL ``potrf``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..errors import SolverFailure
from ..relaxations.quadratic import GramSystem
from ..rounding import TINY, U, gamma, next_up, norm2_bound, sum_down, sum_up, up


@dataclass(frozen=True)
class EigenBound:
    nu: float        # nu <= lambda_min(Z) for every Z with |Z - Z~| <= E, in exact arithmetic
    alpha: float     # the shift whose Cholesky succeeded
    estimate: float  # floating-point estimate of lambda_min(Z~)
    rounding: float  # bound used for ||Z - Z~||_2
    attempts: int


def lambda_min_lower_bound(Zt: np.ndarray, E: np.ndarray | sp.sparray | None = None,
                           max_attempts: int = 40) -> EigenBound:
    """Rigorous lower bound on lambda_min(Z) for all symmetric Z with |Z - Zt| <= E (see module doc)."""
    Zt = np.asarray(Zt, dtype=np.float64)
    n = Zt.shape[0]
    if n == 0:
        return EigenBound(math.inf, 0.0, math.inf, 0.0, 0)
    if not np.all(np.isfinite(Zt)):
        raise SolverFailure("the solver's multipliers give a non-finite Gram matrix")
    if np.any(Zt != Zt.T):
        raise AssertionError("lambda_min_lower_bound needs an exactly symmetric float matrix")
    rounding = 0.0
    if E is not None:
        E = E.toarray() if sp.issparse(E) else np.asarray(E, float)
        if np.any(E < 0) or not np.all(np.isfinite(E)):
            raise AssertionError("entrywise error bound must be finite and nonnegative")
        rounding = norm2_bound(E)
    g = gamma(n + 1)
    gp = up(g / (1.0 - g) * (1.0 + 1e-12))
    scale = float(np.abs(Zt).max())
    tr_abs = float(np.abs(np.diag(Zt)).sum())
    est = lambda_min_estimate(Zt, 4.0 * (gp * tr_abs + n * U * scale) + TINY * n * n)
    # eigvalsh is backward stable: its error is ~ n u ||Z||; start a few times above that, grow on failure
    delta = 4.0 * (gp * (tr_abs + n * abs(est)) + n * U * scale) + TINY * n * n
    if est > 0:
        delta = max(delta, 0.5 * est)  # a positive margin keeps nu >= 0 when Z~ is safely definite
    for attempt in range(1, max_attempts + 1):
        alpha = est - delta
        nu = shifted_cholesky_bound(Zt, alpha, rounding)
        if nu is None:
            delta *= 8.0
            continue
        return EigenBound(nu, alpha, est, rounding, attempt)
    raise SolverFailure("could not verify a lower eigenvalue bound of the Gram matrix (Cholesky kept failing)")


DENSE_EIG_ORDER = 150   # above this order eigvalsh's tridiagonal reduction costs several Cholesky factorisations
INVERSE_STEPS = 40


def lambda_min_estimate(Zt: np.ndarray, shift: float) -> float:
    """A float estimate of lambda_min(Zt) (not rigorous; it only picks the shift the theorem then proves).

    Small orders: eigvalsh. Large ones: if the Cholesky of Zt + shift I succeeds, inverse iteration on its
    factor (O(n^2) a step) estimates lambda_min(Zt + shift I) from above; half of it is returned, since an
    estimate above the truth only makes the first shifted Cholesky fail. Indefinite large matrices fall back
    to eigvalsh."""
    n = Zt.shape[0]
    if n > DENSE_EIG_ORDER:
        B = Zt.copy()
        B[np.diag_indices(n)] += shift
        try:
            Lc = np.linalg.cholesky(B)
        except np.linalg.LinAlgError:
            Lc = None
        if Lc is not None:
            x = 1.0 + 0.5 * np.cos(np.arange(n, dtype=float))          # fixed start: deterministic
            x /= np.linalg.norm(x)
            ray = 0.0
            for _ in range(INVERSE_STEPS):
                y = sla.solve_triangular(Lc.T, sla.solve_triangular(Lc, x, lower=True, check_finite=False),
                                         lower=False, check_finite=False)
                new = float(x @ y)                                       # Rayleigh quotient of B^{-1}
                x = y / np.linalg.norm(y)
                if abs(new - ray) <= 1e-3 * abs(new):
                    ray = new
                    break
                ray = new
            if ray > 0 and math.isfinite(ray):
                return 0.5 * (1.0 / ray) - shift
    return float(sla.eigvalsh(Zt, subset_by_index=[0, 0], check_finite=False)[0])


def shifted_cholesky_bound(Zt: np.ndarray, alpha: float, rounding: float = 0.0) -> float | None:
    """One step of the theorem above: if the float Cholesky of B = fl(Z~ - alpha I) completes, a rigorous
    nu <= lambda_min(Z) for every symmetric Z with ||Z - Z~||_2 <= ``rounding``; None when it fails."""
    n = Zt.shape[0]
    idx = np.arange(n)
    B = Zt.copy()
    B[idx, idx] = Zt[idx, idx] - alpha
    try:
        np.linalg.cholesky(B)
    except np.linalg.LinAlgError:
        return None
    g = gamma(n + 1)
    gp = up(g / (1.0 - g) * (1.0 + 1e-12))
    diag = B[idx, idx]
    trB = sum_up(diag.tolist())
    penalty = sum_up([gp * trB * (1.0 + 1e-12), 2.0 * U * float(np.abs(diag).max()) * (1.0 + 1e-12),
                      rounding, TINY * n * n])
    return sum_down([alpha, -penalty])


@dataclass(frozen=True)
class GramCertificate:
    upper: float           # certified: max P <= upper in exact arithmetic
    lam: float             # the solver's lambda (the raw bound)
    nu: float              # rigorous lower bound on lambda_min(Z)
    penalty: float         # max(0, -nu) * R2, rounded up
    R2: float
    rounding: float        # ||Z - Z~||_2 bound from forming Z~
    clipped: int           # negative mu set to 0
    eigen_estimate: float


def gram_matrix(system: GramSystem, lam: float, mu: np.ndarray, nu_eq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z~ = fl(lambda e0 e0^T - Q - G^T mu - H^T nu) and an entrywise bound E >= |Z - Z~|."""
    N = system.order
    coeff = np.concatenate([[1.0], mu, nu_eq])
    M = sp.vstack([system.Q, system.G, system.H]).tocsc()
    Z = -(M.T @ coeff)
    lead = (np.eye(1, N * N).ravel() if system.lead is None else system.lead.toarray().ravel())
    Z = Z + lam * lead  # lead is 0/1: one rounding per entry, covered by K + 1 below
    # rounding of the float combination: every entry is a sum of K products (one rounding each)
    K = int(np.diff(M.indptr).max(initial=0)) + 3
    absM = abs(M)
    mass = absM.T @ np.abs(coeff) + abs(lam) * np.abs(lead)
    Merr = sp.vstack([system.Q_err, system.G_err, system.H_err]).tocsc()
    err = Merr.T @ np.abs(coeff)
    # factor 2: the computed masses are themselves rounded (by far less than a factor 2)
    E = 2.0 * gamma(K + 1) * mass + err * (1.0 + 2.0 * gamma(K + 1))
    E = next_up(next_up(E))
    Z, E = Z.reshape(N, N), E.reshape(N, N)
    # the rows of M are symmetric, so Z~ already is; averaging keeps that guaranteed, and
    # |Z_ij - (Z~_ij + Z~_ji)/2| <= max(E_ij, E_ji) + u |avg| covers the averaging itself
    Zs = 0.5 * (Z + Z.T)
    E = next_up(np.maximum(E, E.T) + 2.0 * U * np.abs(Zs) + TINY)
    return Zs, E


def certify_gram(system: GramSystem, y: np.ndarray) -> GramCertificate:
    """Certified max P from the multipliers y = (lambda, mu, nu) (see module docstring)."""
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (1 + system.n_ineq + system.n_eq,) or not np.all(np.isfinite(y)):
        raise SolverFailure("the SDP solver returned no usable multipliers")
    lam = float(y[0])
    mu_raw = y[1:1 + system.n_ineq]
    mu = np.maximum(mu_raw, 0.0)
    nu_eq = y[1 + system.n_ineq:]
    Zt, E = gram_matrix(system, lam, mu, nu_eq)
    eb = lambda_min_lower_bound(Zt, E)
    if eb.nu >= 0:
        penalty = 0.0
        upper = lam
    else:
        penalty = up((-eb.nu) * system.R2)
        upper = sum_up([lam, penalty])
    return GramCertificate(upper=upper, lam=lam, nu=eb.nu, penalty=penalty, R2=system.R2, rounding=eb.rounding,
                           clipped=int(np.count_nonzero(mu_raw < 0)), eigen_estimate=eb.estimate)
