"""Activation-consistent local Lipschitz constant of a ReLU network by a MIP (LipMIP-style, on HiGHS).

For a piecewise-linear network f (ReLU or leaky ReLU hidden layers), an output vector c and a bounded
input box X (a ``Box`` or an l_inf ``Ball``, both boxes), ``exact_lipschitz_mip`` computes

    L = max_{x in X} || grad (c^T f)(x) ||_q ,   q = 1 for the input norm "inf", q = inf for "1",

by Jordan & Dimakis' (NeurIPS 2020) mixed-integer encoding, with activation consistency: unlike the
FGL (lipopt.exact), the derivative pattern must be one the network actually realises at a point x of X.

Encoding (every big-M constant comes from sound, outward-rounded bounds):

* forward: x in X; hidden layer l has z_l = W_{l-1} h_{l-1} + b_{l-1} with bounds [lo, hi] from
  ``domain.linear_bounds``. A neuron with lo > 0 or hi < 0 is stable (its slope is fixed and h = s z is
  an equality row). An unstable neuron (lo <= 0 <= hi) gets a binary a (slope s = alpha + (1 - alpha) a,
  alpha = 0 for ReLU, the slope of a leaky ReLU) and the exact big-M encoding of h = sigma(z):
      h >= z,  h >= alpha z,  h <= z - (1 - alpha) lo (1 - a),  h <= alpha z + (1 - alpha) hi a,
  which forces h = z, z >= 0 when a = 1 and h = alpha z, z <= 0 when a = 0. These are the rows of
  h = alpha z + (1 - alpha) relu(z); for alpha > 1 (concave) they hold with every inequality reversed,
  and for alpha < 0 h's bounds are [min(0, sigma(lo), sigma(hi)), max(sigma(lo), sigma(hi))].
* backward: v_{d+1} = c, u_l = W_l^T v_{l+1}, v_l = s_l * u_l (so g = u_0 = W_0^T v_1 is the gradient).
  u_d is a constant, so v_d is linear in a; deeper layers use the exact big-M product of a binary and
  a bounded continuous variable, with [U_lo, U_hi] from interval arithmetic on the backward pass.
* objective: "inf": sum_i y_i with y_i = |g_i| through one sign binary per input; "1": max_i |g_i|
  through a one-hot choice among the 2 n_0 signed coordinates.

What the MIP maximises. At a point where some z_j = 0 the encoding lets a_j take either value, so the
MIP maximises ||.||_q over the "pattern gradients" consistent with some x in X (a Clarke-type set). This
set contains grad f(x) at every differentiable point, so the MIP value is always >= the true local
Lipschitz constant (an upper bound in every case). It equals it when the network is in general position
(Jordan & Dimakis' condition; e.g. any network with generic real weights): then every consistent
pattern is the limit of patterns of full-dimensional regions and the two suprema agree. A degenerate
network can make it strictly larger: f(x) = relu(x) - relu(x) is 0, but the pattern (1, 0) at x = 0
gives 1. The reported ``lower`` always comes from a point where f is differentiable (recomputed by the
network), so [lower, upper] always brackets the true constant; in the degenerate case the bracket
stays open and ``info["witness_interior"]`` is False.

Certification (``upper``). HiGHS' dual bound D is the bound of a floating-point branch and bound:
* feasibility tolerances (primal 1e-7, integrality 1e-6) relax the constraints, which can only raise
  D (the safe direction); our big-M constants are widened by a relative 1e-9 so rounding in the model
  data cannot cut off a true point either;
* the unsafe direction is (i) pruning by the optimality gap (HiGHS may close nodes whose bound is
  within max(mip_abs_gap, mip_rel_gap |primal|) of the incumbent), covered by taking
  max(D, primal + that gap), and (ii) LP-level errors in node bounds (dual infeasibility up to the
  dual feasibility tolerance, cuts and presolve computed in floating point). For (ii) we add
  ``MARGIN_FACTOR * tol * (1 + T)``, tol = the largest of HiGHS' primal/dual/integrality tolerances and T
  the interval-arithmetic bound on the objective (the largest value any gradient term can reach, so an
  absolute violation tol of a row of the backward pass changes the objective by at most ~ tol * T per
  layer). This is an engineering margin tied to HiGHS' documented tolerances, not a proof about its
  internal arithmetic (a rational / safe-LP verification of the tree would be needed for that).
  ``upper`` is finally capped by T itself (sound on its own) and never below ``lower``.

Spurious patterns. On badly scaled instances (pre-activations ~1e6) the integrality tolerance lets
HiGHS choose a pattern that no point of X realises (a_j = 1e-6 times a big-M of 1e7 is a violation of
10). That only makes D larger (still sound) but loose. After each solve the incumbent pattern's
region is tested by an LP whose duals prove emptiness rigorously (``_pattern_interior``); a proven
empty pattern is excluded by a no-good cut on the activation binaries (valid: it removes no exactly
feasible point) and the MIP is solved again (at most MAX_CUT_ROUNDS times, within the time limit).

``lower`` is ||grad c^T f(x)||_q at the best of: the interior point of the incumbent pattern's region
(Chebyshev-style LP), the incumbent x and a few perturbations, and the warm start from sampling. The
MIP's x columns range over the outward-rounded bounding box (sound for ``upper``), so every candidate
is first moved into the exact domain (``domain.project``: contains_exact holds), and only points whose
activation pattern is certain under a rigorous forward rounding-error bound count
(``baselines.witness``); otherwise tiny moves inside the domain are tried, and 0 is the fallback.
Status "optimal" needs HiGHS' proof *and* a bracket closed by such a witness:
upper - lower <= 2 (gap allowance + margin) + 1e-9 max(1, |upper|). Otherwise the status is "open"
(HiGHS finished, but no point of the domain attains its value: a degenerate network, or an optimum
reached only outside the exact domain) and [lower, upper] is a valid bracket.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..domain import Ball, Box, linear_bounds, interval_bounds
from ..errors import InvalidInputError, SolverFailure
from ..model.network import Network
from ..rounding import EPS, up, widen_down, widen_up
from .enumerate import dual_norm

SUPPORTED = ("relu", "leaky_relu")  # any leaky slope: h = alpha z + (1 - alpha) relu(z)
MARGIN_FACTOR = 2.0
MAX_CUT_ROUNDS = 50  # re-solves after excluding a pattern proven unrealisable
PROOF_REL = 1e-10   # relative safety of the emptiness proof of a pattern region
BIGM_WIDEN = 1e-9  # relative outward widening of every big-M constant / variable bound


def _left_slope(act) -> float:
    return 0.0 if act.name == "relu" else float(act.params[0])


def activation_refusal(net) -> str | None:
    """Why the encoding (h = max(z, alpha z), h in [alpha lo, hi]) does not fit the network, or None."""
    for l, act in enumerate(net.activations):
        if act.name not in SUPPORTED:
            return (f"supports relu and leaky_relu only; hidden layer {l + 1} "
                    f"uses {act.spec!r}")
    return None


@dataclass
class MIPResult:
    """lower <= L <= upper; status "optimal" (HiGHS proved the MIP optimum within ``mip_gap`` and the
    witness closes the bracket), "open" (HiGHS finished but the bracket stays open) or "time_limit" (a
    valid bracket, never a claimed optimum).

    ``x`` is the witness attaining ``lower`` (a point exactly in the domain with a certain activation
    pattern, so f is differentiable there) and
    ``pattern`` the incumbent activation pattern of the MIP (derivative per hidden neuron, 0/1 for ReLU,
    alpha/1 for leaky ReLU). ``info`` holds the raw HiGHS numbers (dual bound, primal, margin, ...).
    """
    upper: float
    lower: float
    status: str
    x: np.ndarray
    pattern: list[np.ndarray]
    nodes: int
    seconds: float
    info: dict = field(default_factory=dict)

    @property
    def value(self) -> float:
        return self.upper

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"


# -------------------------------------------------------------------------------------------------
# Input checks


def _check(net: Network, c, domain, norm: str):
    if domain is None:
        raise InvalidInputError("the activation-consistent MIP needs a bounded input domain "
                                "(a Box or an l_inf Ball); the global constant is unbounded-domain")
    if not isinstance(domain, (Box, Ball)):
        raise InvalidInputError(f"domain must be a Box or an l_inf Ball, got {type(domain).__name__}")
    if isinstance(domain, Ball) and domain.p != "inf":
        raise InvalidInputError(
            "the MIP handles box domains only (Box or l_inf Ball); an l2 ball is not a box. Use its "
            "bounding box Box(*ball.bounding_box()) explicitly if an upper bound (not exact) is enough")
    if domain.dim != net.widths[0]:
        raise InvalidInputError(f"the domain has dimension {domain.dim} but the network has "
                                f"{net.widths[0]} inputs")
    why = activation_refusal(net)
    if why is not None:
        raise InvalidInputError(f"the activation-consistent MIP {why}")
    if norm not in ("inf", "1"):
        raise InvalidInputError(f"norm must be 'inf' or '1' for the MIP (a linear objective), got {norm!r}")
    m = net.widths[-1]
    if c is None:
        if m != 1:
            raise InvalidInputError(f"the model has {m} outputs; give the output vector c")
        c = np.ones(1)
    c = np.asarray(c, dtype=np.float64).ravel()
    if c.shape != (m,) or not np.all(np.isfinite(c)):
        raise InvalidInputError(f"c must be a finite vector of length {m}, got shape {c.shape}")
    return c


def _down(v):
    v = np.asarray(v, dtype=np.float64)
    return widen_down(v, BIGM_WIDEN * np.abs(v))


def _up(v):
    v = np.asarray(v, dtype=np.float64)
    return widen_up(v, BIGM_WIDEN * np.abs(v))


def _interval_matvec(M, lo, hi):
    """Outward-rounded interval of M @ v for v in [lo, hi] (M sparse or dense)."""
    Mp = M.maximum(0) if sp.issparse(M) else np.maximum(M, 0)
    Mm = M.minimum(0) if sp.issparse(M) else np.minimum(M, 0)
    rlo = Mp @ lo + Mm @ hi
    rhi = Mp @ hi + Mm @ lo
    n = M.shape[1]
    err = 4.0 * (n + 2) * EPS * (abs(M) @ np.maximum(np.abs(lo), np.abs(hi)))
    return _down(rlo - err), _up(rhi + err)


# -------------------------------------------------------------------------------------------------
# Model building


class _Builder:
    """Columns with bounds / integrality and rows collected as COO blocks, assembled once."""

    def __init__(self):
        self.lb, self.ub, self.integer, self.names = [], [], [], []
        self.ncol = 0
        self.r, self.c, self.v, self.rlo, self.rhi = [], [], [], [], []
        self.nrow = 0

    def cols(self, lb, ub, integer=False, name=""):
        lb = np.asarray(lb, dtype=np.float64).ravel()
        ub = np.asarray(ub, dtype=np.float64).ravel()
        idx = np.arange(self.ncol, self.ncol + lb.size)
        self.lb.append(lb)
        self.ub.append(ub)
        self.integer.append(np.full(lb.size, bool(integer)))
        self.names.append((name, idx))
        self.ncol += lb.size
        return idx

    def rows(self, m, entries, lo, hi):
        """m rows; entries: list of (local_row, global_col, value) arrays; lo/hi broadcast to m."""
        if m == 0:
            return
        for r, c, v in entries:
            r = np.asarray(r, dtype=np.int64)
            c = np.asarray(c, dtype=np.int64)
            v = np.broadcast_to(np.asarray(v, dtype=np.float64), r.shape)
            keep = v != 0
            self.r.append(r[keep] + self.nrow)
            self.c.append(c[keep])
            self.v.append(v[keep])
        self.rlo.append(np.broadcast_to(np.asarray(lo, dtype=np.float64), (m,)).copy())
        self.rhi.append(np.broadcast_to(np.asarray(hi, dtype=np.float64), (m,)).copy())
        self.nrow += m

    def matrix(self):
        r = np.concatenate(self.r) if self.r else np.zeros(0, np.int64)
        c = np.concatenate(self.c) if self.c else np.zeros(0, np.int64)
        v = np.concatenate(self.v) if self.v else np.zeros(0)
        A = sp.csc_array((v, (r, c)), shape=(self.nrow, self.ncol))
        A.sum_duplicates()
        return A


def _diag(rows_local, cols, val=1.0):
    return (np.asarray(rows_local), np.asarray(cols), val)


def _block(Wsub: sp.csr_array, col_map: np.ndarray, scale):
    """Entries of -scale_row * Wsub (local rows) on the global columns col_map[j]."""
    coo = sp.coo_array(Wsub)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (Wsub.shape[0],))
    return (coo.row, col_map[coo.col], -scale[coo.row] * coo.data)


@dataclass
class MIPModel:
    """The assembled MIP (maximise cost @ x) plus the column maps needed to read a solution."""
    A: sp.csc_array
    row_lo: np.ndarray
    row_hi: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    cost: np.ndarray
    integer: np.ndarray
    x_cols: np.ndarray
    h_cols: list[np.ndarray]
    a_cols: list[np.ndarray]          # binaries of the unstable neurons of each layer
    unstable: list[np.ndarray]        # their neuron indices
    fixed_slope: list[np.ndarray]     # slope of every neuron (the stable value; nan if unstable)
    v_cols: list[np.ndarray]
    obj_cols: dict
    trivial: float                    # interval-arithmetic bound on the objective (sound)
    norm: str
    alphas: list[float]


def _add_backward(B: _Builder, net: Network, c: np.ndarray, slo, shi, free, a_cols):
    """Backward pass v_{d+1} = c, u_l = W_l^T v_{l+1}, v_l = s_l * u_l with s_l = slo + (shi - slo) a on
    the ``free`` neurons (binaries ``a_cols``) and s_l = slo elsewhere. Returns (v_cols, V_1 lo, hi).

    Free neuron, delta = shi - slo, p = a u (exact big-M product, u in [U_lo, U_hi]):
        v - slo u - delta U_hi a <= 0,          v - slo u - delta U_lo a >= 0,
        v - shi u - delta U_lo a <= -delta U_lo, v - shi u - delta U_hi a >= -delta U_hi.
    For the last hidden layer u is a constant and v = slo u + delta u a is linear."""
    d = net.depth
    v_cols = [None] * d
    v_next_cols = None
    Vlo = Vhi = c
    for l in range(d - 1, -1, -1):   # hidden layer l + 1, outgoing weights net.weights[l + 1]
        WT = sp.csr_array(net.weights[l + 1].T)
        U, ac, sl, sh = free[l], a_cols[l], slo[l], shi[l]
        delta = sh[U] - sl[U]
        if v_next_cols is None:   # last hidden layer: u is a constant
            u = WT @ c
            Ulo, Uhi = _interval_matvec(WT, c, c)
        else:
            Ulo, Uhi = _interval_matvec(WT, Vlo, Vhi)
        prods = np.stack([sl * Ulo, sl * Uhi, sh * Ulo, sh * Uhi])
        nVlo, nVhi = _down(prods.min(axis=0)), _up(prods.max(axis=0))
        vc = B.cols(nVlo, nVhi, name=f"v{l + 1}")
        S = np.setdiff1d(np.arange(WT.shape[0]), U)
        S = S[sl[S] != 0]  # zero slopes: v = 0 is implied by the bounds
        m = U.size
        r = np.arange(m)
        if v_next_cols is None:
            if S.size:  # v = s u (a constant; kept as an equality row)
                B.rows(S.size, [_diag(np.arange(S.size), vc[S])], sl[S] * u[S], sl[S] * u[S])
            if m:      # v = slo u + delta u a
                B.rows(m, [_diag(r, vc[U]), _diag(r, ac, -delta * u[U])], sl[U] * u[U], sl[U] * u[U])
        else:
            if S.size:
                B.rows(S.size, [_diag(np.arange(S.size), vc[S]), _block(WT[S], v_next_cols, sl[S])], 0.0, 0.0)
            if m:
                WU, uL, uH = WT[U], Ulo[U], Uhi[U]
                if np.any(delta < 0):  # shi < slo (leaky slope > 1): the rows times delta flip, i.e.
                    uL, uH = np.where(delta < 0, uH, uL), np.where(delta < 0, uL, uH)  # U_lo <-> U_hi
                B.rows(m, [_diag(r, vc[U]), _block(WU, v_next_cols, sl[U]), _diag(r, ac, -delta * uH)],
                       -np.inf, 0.0)
                B.rows(m, [_diag(r, vc[U]), _block(WU, v_next_cols, sl[U]), _diag(r, ac, -delta * uL)],
                       0.0, np.inf)
                B.rows(m, [_diag(r, vc[U]), _block(WU, v_next_cols, sh[U]), _diag(r, ac, -delta * uL)],
                       -np.inf, -delta * uL)
                B.rows(m, [_diag(r, vc[U]), _block(WU, v_next_cols, sh[U]), _diag(r, ac, -delta * uH)],
                       -delta * uH, np.inf)
        v_cols[l] = vc
        v_next_cols, Vlo, Vhi = vc, nVlo, nVhi
    return v_cols, Vlo, Vhi


def _add_objective(B: _Builder, net: Network, norm: str, v1_cols, Vlo, Vhi):
    """||g||_q for g = W_0^T v_1: sum of |g_i| (sign binaries) or max_i |g_i| (one-hot signed choice).
    Returns (objective columns, their name map, the interval bound T on the objective)."""
    W0T = sp.csr_array(net.weights[0].T)
    n0 = W0T.shape[0]
    Glo, Ghi = _interval_matvec(W0T, Vlo, Vhi)
    Amax = _up(np.maximum(np.abs(Glo), np.abs(Ghi)))
    r = np.arange(n0)
    if norm == "inf":
        y = B.cols(np.zeros(n0), Amax, name="y")
        sig = B.cols(np.where(Glo >= 0, 1.0, 0.0), np.where(Ghi <= 0, 0.0, 1.0), integer=True, name="sign")
        M1, M2 = _up(Amax - Glo), _up(Amax + Ghi)
        # y - g + M1 sigma <= M1 ;  y + g - M2 sigma <= 0
        B.rows(n0, [_diag(r, y), _block(W0T, v1_cols, 1.0), _diag(r, sig, M1)], -np.inf, M1)
        B.rows(n0, [_diag(r, y), _block(W0T, v1_cols, -1.0), _diag(r, sig, -M2)], -np.inf, 0.0)
        return y, {"y": y, "sign": sig}, float(_up(np.sum(Amax)))
    Y = float(_up(np.max(Amax)))
    y = B.cols([0.0], [Y], name="y")
    sg = np.concatenate([np.ones(n0), -np.ones(n0)])
    idx = np.concatenate([r, r])
    smin = np.concatenate([Glo, -Ghi])
    smax = np.concatenate([Ghi, -Glo])
    w = B.cols(np.zeros(2 * n0), np.where(smax >= 0, 1.0, 0.0), integer=True, name="choice")
    Mk = _up(Y - smin)
    k = np.arange(2 * n0)
    # y - sg_k g_i + M_k w_k <= M_k ;  sum_k w_k = 1
    B.rows(2 * n0, [_diag(k, np.full(2 * n0, y[0])), _block(sp.csr_array(W0T[idx]), v1_cols, sg),
                    _diag(k, w, Mk)], -np.inf, Mk)
    B.rows(1, [(np.zeros(2 * n0, np.int64), w, 1.0)], 1.0, 1.0)
    return y, {"y": y, "choice": w}, Y


def build_mip(net: Network, c: np.ndarray, domain, norm: str = "inf", bounds: str = "linear") -> MIPModel:
    """Assemble the MIP (vectorised). ``bounds``: "linear" (CROWN-style) or "interval" pre-activations."""
    c = _check(net, c, domain, norm)
    d = net.depth
    if d == 0:
        raise InvalidInputError("the network has no hidden layer (its gradient is constant)")
    pre = linear_bounds(net, domain) if bounds == "linear" else interval_bounds(net, domain)
    B = _Builder()
    xlo, xhi = domain.bounding_box()
    x_cols = B.cols(xlo, xhi, name="x")
    prev = x_cols
    h_cols, a_cols, unstable, fixed = [], [], [], []
    alphas = [_left_slope(a) for a in net.activations]

    # ---- forward pass
    for l in range(d):
        W, b = net.weights[l], net.biases[l]
        lo, hi = _down(pre.lo[l]), _up(pre.hi[l])
        al = alphas[l]
        act_pos, act_neg = lo > 0, hi < 0
        U = np.flatnonzero(~(act_pos | act_neg))
        s_fixed = np.where(act_pos, 1.0, np.where(act_neg, al, np.nan))
        # h bounds: [sigma(lo), sigma(hi)] (sigma nondecreasing)
        hlo = np.where(lo > 0, lo, al * lo)
        hhi = np.where(hi > 0, hi, al * hi)
        if al < 0:  # max(z, alpha z) decreases on z < 0: minimum 0 at z = 0, maximum at an end
            hlo = np.where(lo > 0, lo, np.where(hi < 0, al * hi, 0.0))
            hhi = np.where(hi > 0, np.maximum(hi, al * lo), al * lo)
        hc = B.cols(_down(hlo), _up(hhi), name=f"h{l + 1}")
        ac = B.cols(np.zeros(U.size), np.ones(U.size), integer=True, name=f"a{l + 1}")
        # stable neurons with a nonzero slope: h - s W h_prev = s b
        S = np.flatnonzero(np.isfinite(s_fixed) & (s_fixed != 0))
        if S.size:
            sS = s_fixed[S]
            B.rows(S.size, [_diag(np.arange(S.size), hc[S]), _block(W[S], prev, sS)], sS * b[S], sS * b[S])
        if U.size:
            m = U.size
            r = np.arange(m)
            WU, bU, loU, hiU = W[U], b[U], lo[U], hi[U]
            # h = alpha z + (1 - alpha) relu(z): the big-M rows of relu(z) times 1 - alpha, whose sign
            # orients them (alpha > 1, concave min(z, alpha z): every inequality flips)
            ge = (lambda v: (v, np.inf)) if al <= 1 else (lambda v: (-np.inf, v))
            le = (lambda v: (-np.inf, v)) if al <= 1 else (lambda v: (v, np.inf))
            # h >= z
            B.rows(m, [_diag(r, hc[U]), _block(WU, prev, 1.0)], *ge(bU))
            if al != 0:  # h >= alpha z (for ReLU this is the bound h >= 0)
                B.rows(m, [_diag(r, hc[U]), _block(WU, prev, al)], *ge(al * bU))
            # h <= z - (1 - alpha) lo (1 - a)
            B.rows(m, [_diag(r, hc[U]), _block(WU, prev, 1.0), _diag(r, ac, -(1 - al) * loU)],
                   *le(bU - (1 - al) * loU))
            # h <= alpha z + (1 - alpha) hi a
            B.rows(m, [_diag(r, hc[U]), _block(WU, prev, al), _diag(r, ac, -(1 - al) * hiU)],
                   *le(al * bU))
        h_cols.append(hc)
        a_cols.append(ac)
        unstable.append(U)
        fixed.append(s_fixed)
        prev = hc

    slo = [np.where(np.isnan(f), al, f) for f, al in zip(fixed, alphas)]
    shi = [np.where(np.isnan(f), 1.0, f) for f in fixed]
    v_cols, v1lo, v1hi = _add_backward(B, net, c, slo, shi, unstable, a_cols)
    cost_cols, obj_cols, trivial = _add_objective(B, net, norm, v_cols[0], v1lo, v1hi)

    lb, ub = np.concatenate(B.lb), np.concatenate(B.ub)
    cost = np.zeros(B.ncol)
    cost[cost_cols] = 1.0
    return MIPModel(B.matrix(), np.concatenate(B.rlo), np.concatenate(B.rhi), lb, ub, cost,
                    np.concatenate(B.integer), x_cols, h_cols, a_cols, unstable, fixed, v_cols, obj_cols,
                    trivial, norm, alphas)


def point_to_columns(model: MIPModel, net: Network, c: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The MIP column vector of the true (x, pattern(x)) — a feasible point (used as a warm start and
    by the tests to check that the encoding never cuts off a real input)."""
    c = np.asarray(c, dtype=np.float64).ravel()
    col = np.zeros(model.lb.size)
    col[model.x_cols] = x
    _, zs = net.forward_with_preactivations(x[None, :])
    slopes = []
    for l, z in enumerate(zs):
        z = z[0]
        al = model.alphas[l]
        s = np.where(z > 0, 1.0, al)
        s = np.where(np.isnan(model.fixed_slope[l]), s, model.fixed_slope[l])
        col[model.h_cols[l]] = s * z
        col[model.a_cols[l]] = (s[model.unstable[l]] == 1.0).astype(float)
        slopes.append(s)
    v = c
    for l in range(net.depth - 1, -1, -1):
        v = slopes[l] * (net.weights[l + 1].T @ v)
        col[model.v_cols[l]] = v
    g = net.weights[0].T @ v
    if model.norm == "inf":
        col[model.obj_cols["y"]] = np.abs(g)
        col[model.obj_cols["sign"]] = (g >= 0).astype(float)
    else:
        k = np.concatenate([g, -g])
        best = int(np.argmax(k))
        col[model.obj_cols["y"]] = k[best]
        col[model.obj_cols["choice"][best]] = 1.0
    return col


# -------------------------------------------------------------------------------------------------
# Witnesses: valid lower bounds


def _pattern_interior(net: Network, slopes: list[np.ndarray], lo: np.ndarray, hi: np.ndarray,
                      time_limit: float | None = None):
    """Chebyshev-style LP: max delta with sign_j (A_j x + a_j) >= delta ||A_j||_2 for every neuron,
    x in [lo, hi]. Returns (x, delta, delta_bound), or (None, nan, inf) if the LP fails or does not finish
    within ``time_limit``; delta_bound = -inf means a neuron with A_j = 0 contradicts the pattern.

    delta_bound is a rigorous upper bound on the LP optimum from its duals (Neumaier-Shcherbina): for
    any y >= 0 with sum y = 1, every feasible (x, delta) has delta <= y^T h - (G^T y)^T x, maximised
    over the box; evaluated in floating point and raised by PROOF_REL (1e-10) times the magnitude of the
    terms, which covers the rounding of that sum and of the affine maps A_j, a_j. A negative
    delta_bound proves that no x of the box realises the pattern, even on the boundary of its region.
    """
    from scipy.optimize import linprog
    if time_limit is not None and time_limit <= MIN_RELAXATION_SECONDS:
        return None, np.nan, np.inf
    n0 = net.widths[0]
    A, a = np.eye(n0), np.zeros(n0)
    rows, rhs = [], []
    for l in range(net.depth):
        A, a = net.weights[l] @ A, net.weights[l] @ a + net.biases[l]
        s = slopes[l]
        sign = np.where(s == 1.0, 1.0, -1.0)
        nrm = np.linalg.norm(A, axis=1)
        keep = nrm > 0
        if np.any(~keep & (sign * a < 0)):
            return None, -np.inf, -np.inf
        rows.append(-(sign[keep, None] / nrm[keep, None]) * A[keep])
        rhs.append(sign[keep] * a[keep] / nrm[keep])
        A, a = A * s[:, None], a * s
    G, h = np.vstack(rows), np.concatenate(rhs)
    if G.shape[0] == 0:
        return (lo + hi) / 2, np.inf, np.inf
    cap = float(np.max(hi - lo)) if np.max(hi - lo) > 0 else 1.0
    cost = np.zeros(n0 + 1)
    cost[-1] = -1.0
    res = linprog(cost, A_ub=np.hstack([G, np.ones((G.shape[0], 1))]), b_ub=h,
                  bounds=list(zip(lo, hi)) + [(None, cap)], method="highs",
                  options={} if time_limit is None else {"time_limit": float(time_limit)})
    if res.x is None or res.status != 0:
        return None, np.nan, np.inf
    x, delta = np.clip(res.x[:n0], lo, hi), float(res.x[-1])
    bound = np.inf
    y = -np.asarray(res.ineqlin.marginals, dtype=np.float64)
    y = np.maximum(y, 0.0)
    if y.sum() > 0:
        y = y / y.sum()
        r = -(G.T @ y)
        terms = np.concatenate([y * h, np.maximum(r * lo, r * hi)])
        mass = np.abs(y) @ np.abs(h) + np.abs(y) @ (np.abs(G) @ np.maximum(np.abs(lo), np.abs(hi)))
        bound = float(terms.sum() + max(8.0 * (G.shape[0] + n0 + 4) * EPS, PROOF_REL) * (mass + 1.0))
    return x, delta, bound


def _no_good(model: MIPModel, sol: np.ndarray):
    """Row excluding the incumbent's binary pattern: sum_{a=0} a_j - sum_{a=1} a_j >= 1 - #{a = 1}."""
    cols = np.concatenate(model.a_cols)
    on = np.round(sol[cols]) > 0.5
    return cols, np.where(on, -1.0, 1.0), 1.0 - on.sum()


def _best_witness(net, c, norm, candidates, domain, seed=0):
    """(lower, x): the best gradient norm at a candidate moved exactly into the domain with a certain
    activation pattern (baselines.witness), or 0 at a point of the domain."""
    from ..baselines.witness import best_witness
    w = best_witness(net, c, norm, np.vstack(candidates), domain, seed=seed)
    return w.value, w.point


# -------------------------------------------------------------------------------------------------
# Solve


def exact_lipschitz_mip(net: Network, c, domain, norm: str = "inf", time_limit: float | None = None,
                        mip_gap: float = 1e-6, *, bounds: str = "linear", warm_start: bool = True,
                        threads: int | None = None, seed: int = 0) -> MIPResult:
    """max_{x in domain} ||grad c^T f(x)||_q (q dual to ``norm`` in {"inf", "1"}) by a MIP on HiGHS.

    See the module docstring for the encoding, the meaning of the value (exact under general position,
    an upper bound always) and the certification margin. ``time_limit`` (seconds) bounds the HiGHS
    solve; an unfinished solve returns a bracket with status "time_limit". ``mip_gap`` is HiGHS'
    relative gap. Raises InvalidInputError for unsupported activations, norms or domains and
    SolverFailure if HiGHS fails.
    """
    t0 = time.perf_counter()
    c = _check(net, c, domain, norm)
    if time_limit is not None and not (np.isfinite(time_limit) and time_limit > 0):
        raise InvalidInputError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if not (0 <= mip_gap < 1):
        raise InvalidInputError(f"mip_gap must be in [0, 1), got {mip_gap!r}")
    setup = MIP_NONZEROS_PER_WEIGHT * HIGHS_SETUP_PER_NONZERO * sum(_nnz(W) for W in net.weights)
    if time_limit is not None and setup > time_limit:  # before building a model HiGHS could not start on
        raise SolverFailure(f"time limit: HiGHS' MIP setup alone needs about {setup:.1f} s (from the "
                            f"weights), more than the {time_limit:.1f} s given")
    xlo, xhi = domain.bounding_box()   # outward: the MIP's x columns (sound for the upper bound)
    ilo, ihi = domain.inner_box()      # float points of the exact domain: witnesses
    if net.depth == 0:
        x0 = domain.inside_point(0.5 * ilo + 0.5 * ihi)
        g = net.gradient(x0[None, :], c)
        v = float(dual_norm(g, norm)[0])
        return MIPResult(v, v, "optimal", x0, [], 0, time.perf_counter() - t0, {})

    model = build_mip(net, c, domain, norm, bounds)
    t_build = time.perf_counter() - t0

    # warm start from sampling (a true point, hence feasible)
    start_x = None
    if warm_start:
        from ..baselines.ascent import local_lower_bound
        # at most a fifth of the budget: the search is what the time is for
        start_x = local_lower_bound(net, c, domain, norm, samples=256, restarts=4, steps=15, proposals=16,
                                    seed=seed, deadline=None if time_limit is None else t0 + 0.2 * time_limit).point
    start = None if start_x is None else point_to_columns(model, net, c, start_x)
    cuts, nodes, rounds = [], 0, 0
    cand = [np.atleast_2d(start_x)] if start_x is not None else []
    rng = np.random.default_rng(seed)
    while True:
        remaining = None if time_limit is None else max(1e-2, time_limit - (time.perf_counter() - t0))
        out = _solve_highs(model, remaining, mip_gap, threads, seed, start, cuts)
        nodes += out["nodes"]
        rounds += 1
        # pattern of the incumbent and witnesses
        sol = out["x"]
        pattern, interior = [], None
        if sol is None:
            break
        xs = np.atleast_2d(domain.project(sol[model.x_cols]))[0]  # HiGHS' x may lie outside the domain
        for l in range(net.depth):
            s = model.fixed_slope[l].copy()
            a = np.round(sol[model.a_cols[l]])
            s[model.unstable[l]] = np.where(a > 0.5, 1.0, model.alphas[l])
            pattern.append(s)
        cand.append(xs[None, :])
        for scale in (1e-9, 1e-6, 1e-3):
            cand.append(domain.project(xs + scale * (ihi - ilo) * rng.uniform(-1, 1, (8, xs.size))))
        # the emptiness proof is over the outward box (a valid cut); its point is moved inside
        xi, interior, proof = _pattern_interior(
            net, pattern, xlo, xhi, None if time_limit is None else time_limit - (time.perf_counter() - t0))
        if xi is not None:
            cand.append(domain.project(xi))
        # HiGHS' tolerances let it pick a pattern that no point of the box realises: exclude it (a
        # valid cut: it removes no exactly feasible point) and solve again
        if (proof < 0 and out["status"] == "optimal" and rounds <= MAX_CUT_ROUNDS
                and (time_limit is None or time.perf_counter() - t0 < time_limit)):
            cuts.append(_no_good(model, sol))
            continue
        break
    if not cand:
        cand.append(domain.sample(64, rng))
    lower, wx = _best_witness(net, c, norm, cand, domain, seed)

    upper, info = _certify(out, mip_gap, model.trivial, lower)
    status = out["status"]
    closed = upper - lower <= 2.0 * (info["gap_allowance"] + info["margin"]) + 1e-9 * max(1.0, abs(upper))
    if status == "optimal" and not closed:
        status = "open"  # HiGHS' optimum is not attained by any certain point of the domain
    info.update({"witness_interior": interior is not None and interior > 0, "interior_margin": interior,
                 "pattern_cuts": len(cuts), "rounds": rounds,
                 "binaries": int(model.integer.sum()), "unstable": int(sum(u.size for u in model.unstable)),
                 "rows": int(model.A.shape[0]), "cols": int(model.A.shape[1]), "build_seconds": t_build})
    return MIPResult(upper=upper, lower=lower, status=status, x=wx, pattern=pattern,
                     nodes=nodes, seconds=time.perf_counter() - t0, info=info)


HIGHS_SETUP_PER_NONZERO = 6e-7   # seconds: HiGHS' uninterruptible MIP setup, 4.6-5.8 s at 7.4 M nonzeros
                                 # (zoo mlp1024x2, l_inf ball), whatever its time_limit
MIP_NONZEROS_PER_WEIGHT = 3.0    # a lower estimate: the encoding has about 4 nonzeros per weight (7.4 M
                                 # for the 1.86 M weights of 784-1024x2-10)
MIN_RELAXATION_SECONDS = 0.05   # the relaxation check after a warm-started optimum: at least this long


def _nnz(W) -> int:
    return int(W.nnz) if sp.issparse(W) else int(np.count_nonzero(W))


TINY_COEFFICIENT = 1e-9   # HiGHS' small_matrix_value: it drops smaller entries without telling the rows


def _tiny_into_rows(A: sp.csc_array, row_lo: np.ndarray, row_hi: np.ndarray, lb: np.ndarray, ub: np.ndarray):
    """(A without its entries below TINY_COEFFICIENT, row bounds widened by their range over the column
    box): a relaxation, so the MIP's bound stays an upper bound. HiGHS would drop them and keep the
    rows: 784 first-layer weights of 1e-10 shift a row by up to 8e-7, beyond its feasibility tolerance,
    and made the feasible zoo mlp64 model "Infeasible". Entries of unbounded columns stay (HiGHS drops
    those alone)."""
    A = sp.csc_array(A)
    col = np.repeat(np.arange(A.shape[1]), np.diff(A.indptr))
    tiny = (np.abs(A.data) < TINY_COEFFICIENT) & np.isfinite(lb[col]) & np.isfinite(ub[col])
    if not tiny.any():
        return A, row_lo, row_hi
    a, j, i = A.data[tiny], col[tiny], A.indices[tiny]
    t_lo, t_hi = np.minimum(a * lb[j], a * ub[j]), np.maximum(a * lb[j], a * ub[j])
    n = A.shape[0]
    lo_sum, hi_sum = np.bincount(i, t_lo, n), np.bincount(i, t_hi, n)
    mass = np.bincount(i, np.maximum(np.abs(t_lo), np.abs(t_hi)), n)
    k = np.bincount(i, minlength=n) + 2
    margin = 2.0 * (k + 1) * EPS * mass          # the products and sums above, rounded outward
    with np.errstate(invalid="ignore"):          # inf - finite stays inf
        row_lo = np.where(np.isfinite(row_lo), widen_down(row_lo - hi_sum, margin + EPS * np.abs(row_lo)), row_lo)
        row_hi = np.where(np.isfinite(row_hi), widen_up(row_hi - lo_sum, margin + EPS * np.abs(row_hi)), row_hi)
    A = A.copy()
    A.data[tiny] = 0.0
    A.eliminate_zeros()
    return A, row_lo, row_hi


def _solve_highs(model: MIPModel, time_limit, mip_gap, threads, seed, start, cuts=(), relaxation=False):
    try:
        import highspy
    except ImportError:  # pragma: no cover
        raise InvalidInputError("highspy is not installed: pip install highspy") from None
    from ..solvers.base import quiet_fds
    A, row_lo, row_hi = _tiny_into_rows(model.A, model.row_lo, model.row_hi, model.lb, model.ub)
    if time_limit is not None and not relaxation and A.nnz * HIGHS_SETUP_PER_NONZERO > time_limit:
        # HiGHS' MIP setup (probing, clique table) does not check the clock: a solve that cannot get past
        # it in time is not started; the caller's bound is then the model's trivial one
        return {"status": "time_limit", "status_str": "not started (setup alone would exceed the time left)",
                "x": None, "primal": None, "dual": np.inf, "nodes": 0, "seconds": 0.0, "tols": [1e-6],
                "abs_gap": 0.0}
    inf = highspy.kHighsInf
    t0 = time.perf_counter()
    with quiet_fds((1,)):
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("mip_rel_gap", float(mip_gap))
        h.setOptionValue("random_seed", int(seed))
        # HiGHS' presolve declared a feasible model infeasible (zoo pruned90, l_inf ball r = 0.1: a real
        # input of gradient norm 109.79 against a reported optimum of 107.62), and with the warm start the
        # run then ended "optimal" at the start's value: presolve stays off for this model family
        h.setOptionValue("presolve", "off")
        if time_limit is not None:
            h.setOptionValue("time_limit", float(time_limit))
        if threads is not None:
            h.setOptionValue("threads", int(threads))
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = A.shape[1], A.shape[0]
        lp.col_cost_ = model.cost
        lp.col_lower_ = np.where(np.isinf(model.lb), -inf, model.lb)
        lp.col_upper_ = np.where(np.isinf(model.ub), inf, model.ub)
        lp.row_lower_ = np.where(np.isinf(row_lo), -inf, row_lo)
        lp.row_upper_ = np.where(np.isinf(row_hi), inf, row_hi)
        lp.sense_ = highspy.ObjSense.kMaximize
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = A.indptr.astype(np.int32)
        lp.a_matrix_.index_ = A.indices.astype(np.int32)
        lp.a_matrix_.value_ = A.data.astype(float)
        lp.integrality_ = [highspy.HighsVarType.kInteger if i and not relaxation else highspy.HighsVarType.kContinuous
                           for i in model.integer]
        st = h.passModel(lp)
        if st == highspy.HighsStatus.kError:
            raise SolverFailure("HiGHS rejected the MIP model")
        for cols, vals, rlo in cuts:
            h.addRow(float(rlo), inf, len(cols), np.asarray(cols, np.int32), np.asarray(vals, float))
        if start is not None:
            s = highspy.HighsSolution()
            s.col_value = list(start)
            s.value_valid = True
            h.setSolution(s)
        h.run()
        tols = [h.getOptionValue(k)[1] if isinstance(h.getOptionValue(k), tuple) else h.getOptionValue(k)
                for k in ("mip_feasibility_tolerance", "primal_feasibility_tolerance",
                          "dual_feasibility_tolerance")]
        abs_gap = h.getOptionValue("mip_abs_gap")
        abs_gap = abs_gap[1] if isinstance(abs_gap, tuple) else abs_gap
    seconds = time.perf_counter() - t0
    S = highspy.HighsModelStatus
    native = h.getModelStatus()
    info = h.getInfo()
    if native == S.kOptimal:
        status = "optimal"
    elif native in (S.kTimeLimit, S.kInterrupt, S.kIterationLimit, S.kSolutionLimit, S.kHighsInterrupt):
        status = "time_limit"
    else:
        raise SolverFailure(f"HiGHS failed on the Lipschitz MIP: {h.modelStatusToString(native)} "
                            "(the model is feasible by construction; this indicates numerical trouble)")
    if start is not None and status == "optimal" and not relaxation:
        # with a warm start HiGHS can end "optimal" at the start's value after wrongly finding the rest
        # of the tree infeasible (zoo mlp64, l_inf ball r = 0.01: 75.80 reported, a real input of gradient
        # norm 76.10 inside the ball; its LP relaxation, solved alone, is declared infeasible): the
        # relaxation of this feasible-by-construction model must solve, else there is no bound
        left = None if time_limit is None else max(MIN_RELAXATION_SECONDS, float(time_limit) - seconds)
        check = _solve_highs(model, left, mip_gap, threads, seed, None, cuts, relaxation=True)
        if check["status"] != "optimal":   # a check cut off by the clock has verified nothing
            raise SolverFailure("HiGHS' warm-started MIP optimum could not be verified: its LP relaxation "
                                "did not solve within the time left")
    x = None
    primal = None
    if info.primal_solution_status == 2:  # feasible
        x = np.array(h.getSolution().col_value)
        primal = float(info.objective_function_value)
    dual = float(info.mip_dual_bound)
    if not np.isfinite(dual):  # no proven bound: never assume the incumbent is optimal
        dual, status = np.inf, "time_limit"
    return {"status": status, "status_str": h.modelStatusToString(native), "x": x, "primal": primal,
            "dual": dual, "nodes": int(info.mip_node_count), "seconds": seconds, "tols": tols,
            "abs_gap": float(abs_gap)}


# -------------------------------------------------------------------------------------------------
# The FGL as a MIP (no activation consistency)


def fgl_mip(net: Network, c, slopes=None, time_limit: float | None = None, norm: str = "inf",
            mip_gap: float = 1e-6, *, threads: int | None = None, seed: int = 0) -> MIPResult:
    """The FGL max_{||t||_p <= 1, s vertex of the SlopeBox} t^T W_0^T diag(s_1) ... W_d^T c as a MIP.

    One binary per free derivative (s = lo + (hi - lo) a) with the backward big-M products of
    ``exact_lipschitz_mip`` (no forward pass, no domain: any activation, any SlopeBox), objective
    ||g||_1 (norm "inf") or ||g||_inf (norm "1"). A general fallback for exact_fgl_auto when neither DP
    nor the closed-form branch and bound applies (e.g. three or more hidden layers).

    Result: ``x`` is the maximising t (signs for "inf", a signed unit vector for "1"), ``pattern`` the
    vertex s, ``lower`` = ||g(s)||_q recomputed on the network's weights, ``upper`` = HiGHS' dual bound
    plus the margin described in the module docstring (capped by the interval bound).
    """
    from .bnb import check_inputs
    t0 = time.perf_counter()
    if norm not in ("inf", "1"):
        raise InvalidInputError(f"norm must be 'inf' or '1' for the MIP (a linear objective), got {norm!r}")
    c, slopes = check_inputs(net, c, slopes)
    if time_limit is not None and not (np.isfinite(time_limit) and time_limit > 0):
        raise InvalidInputError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if not (0 <= mip_gap < 1):
        raise InvalidInputError(f"mip_gap must be in [0, 1), got {mip_gap!r}")
    d = net.depth
    slo = [np.asarray(v, dtype=np.float64) for v in slopes.lo]
    shi = [np.asarray(v, dtype=np.float64) for v in slopes.hi]
    if d == 0:
        g = net.weights[0].T @ c
        v = float(dual_norm(g[None, :], norm)[0])
        return MIPResult(v, v, "optimal", _t_of(g, norm), [], 0, time.perf_counter() - t0, {})
    B = _Builder()
    free = [np.flatnonzero(lo < hi) for lo, hi in zip(slo, shi)]
    a_cols = [B.cols(np.zeros(f.size), np.ones(f.size), integer=True, name=f"a{l + 1}")
              for l, f in enumerate(free)]
    v_cols, v1lo, v1hi = _add_backward(B, net, c, slo, shi, free, a_cols)
    cost_cols, _, trivial = _add_objective(B, net, norm, v_cols[0], v1lo, v1hi)
    cost = np.zeros(B.ncol)
    cost[cost_cols] = 1.0
    model = MIPModel(B.matrix(), np.concatenate(B.rlo), np.concatenate(B.rhi), np.concatenate(B.lb),
                     np.concatenate(B.ub), cost, np.concatenate(B.integer), np.zeros(0, np.int64), [],
                     a_cols, free, [], v_cols, {}, trivial, norm, [])
    t_build = time.perf_counter() - t0
    remaining = None if time_limit is None else max(1e-2, time_limit - t_build)
    out = _solve_highs(model, remaining, mip_gap, threads, seed, None)

    pattern = [lo.copy() for lo in slo]
    if out["x"] is not None:
        for l, f in enumerate(free):
            on = np.round(out["x"][a_cols[l]]) > 0.5
            pattern[l][f[on]] = shi[l][f[on]]
    g = np.asarray(c, dtype=np.float64)
    for l in range(d, -1, -1):
        g = net.weights[l].T @ g
        if l > 0:
            g = g * pattern[l - 1]
    lower = float(dual_norm(g[None, :], norm)[0]) if out["x"] is not None else 0.0
    upper, info = _certify(out, mip_gap, trivial, lower)
    info.update({"binaries": int(model.integer.sum()), "rows": int(model.A.shape[0]),
                 "cols": int(model.A.shape[1]), "build_seconds": t_build})
    return MIPResult(upper=upper, lower=lower, status=out["status"], x=_t_of(g, norm), pattern=pattern,
                     nodes=out["nodes"], seconds=time.perf_counter() - t0, info=info)


def _t_of(g: np.ndarray, norm: str) -> np.ndarray:
    if norm == "inf":
        return np.where(g >= 0, 1.0, -1.0)
    t = np.zeros_like(g)
    i = int(np.argmax(np.abs(g)))
    t[i] = 1.0 if g[i] >= 0 else -1.0
    return t


def _certify(out: dict, mip_gap: float, trivial: float, lower: float) -> tuple[float, dict]:
    """upper = max(dual bound, primal + gap allowance) + MARGIN_FACTOR * tol * (1 + T), capped by T and
    never below ``lower`` (see the module docstring)."""
    tol = max(out["tols"])
    primal = out["primal"]
    gap_allow = max(out["abs_gap"], mip_gap * abs(primal)) if primal is not None else 0.0
    raw = out["dual"]
    if primal is not None:
        raw = max(raw, primal + gap_allow)
    margin = MARGIN_FACTOR * tol * (1.0 + trivial)
    upper = up(raw + margin) if np.isfinite(raw) else np.inf
    upper = min(upper, trivial)
    exceeded = lower > upper
    upper = max(upper, lower)
    return upper, {"dual_bound": out["dual"], "primal": primal, "gap_allowance": gap_allow, "margin": margin,
                   "trivial_bound": trivial, "highs_status": out["status_str"],
                   "lower_exceeded_upper": exceeded, "solve_seconds": out["seconds"]}
