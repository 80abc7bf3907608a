"""Quadratic (QCQP) models of the norm-gradient polynomial, with rigorous coefficient error bounds.

Variables z (v = [1; z], index 0 of v is the constant): input signs t, free derivatives s_l, and lifted
products w. With x_{d+1} = c and, for l = d..1,  r_l = W_l^T x_{l+1},  x_l = s_l o r_l,  the gradient
is g = r_0 = W_0^T x_1 and P = t^T r_0. Every x_l[j] is kept an affine form of z: when s_lj is fixed
(lo == hi) or r_lj is constant the product is affine; otherwise a variable w = s_lj r_lj is introduced
with the quadratic equality w - s_lj r_lj(z) = 0, interval bounds w in [wlo, whi] (outward rounded)
and the four McCormick products of (s - slo, shi - s) with (r - rlo, rhi - r), all valid quadratic
inequalities. So P becomes bilinear in (t, x_1) and the whole problem a QCQP.

Affine forms are rows of sparse matrices F over the columns of v; ``err`` rows bound |F_exact - F|
entrywise (F_exact: the same expressions in exact arithmetic). Quadratic forms are stored vectorised
(N x N, symmetric); ``GramSystem`` collects them for the Gram certificate in ``lipopt.certify.gram``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .. import memory
from ..errors import InvalidInputError
from ..model.network import Network
from ..rounding import TINY, U, gamma, next_down, next_up, sum_up, widen_down, widen_up
from ..slopes import SlopeBox, global_slopes


@dataclass
class Affine:
    F: sp.csr_array     # (k, ncols): row i is the form F[i, 0] + sum_j F[i, j] v_j
    err: sp.csr_array   # entrywise bound on |F_exact - F|


@dataclass(frozen=True)
class GramSystem:
    """The data of  lambda - v^T Q v - sum mu_k v^T G_k v - sum nu_k v^T H_k v = v^T Z v,  v = [1; z].

    Matrices are stored vectorised (row k of G is vec(G_k), full N x N, symmetric). ``*_err`` bound the
    difference between each stored float coefficient and the exact one entrywise (same shapes).
    ``terms`` bounds the number of floats summed into any stored coefficient (for gamma).
    ``R2`` >= max over the feasible set of 1 + ||z||^2.  With ``lead`` = vec(L) the identity is
    lambda v^T L v - ... = v^T Z v for homogeneous v, and R2 bounds ||v||^2 / v^T L v (LipSDP).
    """
    order: int
    Q: sp.csr_array        # (1, N*N)
    Q_err: sp.csr_array
    G: sp.csr_array        # (m_ineq, N*N)
    G_err: sp.csr_array
    H: sp.csr_array        # (m_eq, N*N)
    H_err: sp.csr_array
    R2: float
    lead: sp.csr_array | None = None  # (1, N*N) exact matrix multiplying lambda; None = e0 e0^T

    @property
    def n_ineq(self) -> int:
        return int(self.G.shape[0])

    @property
    def n_eq(self) -> int:
        return int(self.H.shape[0])


@dataclass
class QuadraticModel:
    """Rows of vec(N x N) symmetric matrices for objective(s), inequalities (>= 0) and equalities (= 0)."""
    ncols: int
    lo: np.ndarray      # variable bounds (index 0 is the constant 1)
    hi: np.ndarray
    x1: Affine          # x_1 (or c when depth 0): the objective is t^T W_0^T x_1
    t_index: np.ndarray  # column of t_i in v (empty when t is not a variable)
    ineq: list = field(default_factory=list)   # list of (rows csr, err csr)
    eq: list = field(default_factory=list)
    n_lifted: int = 0
    n_fixed: int = 0


def check_slopes(net: Network, slopes: SlopeBox | None) -> SlopeBox:
    slopes = slopes or global_slopes(net)
    if len(slopes.lo) != net.depth or len(slopes.hi) != net.depth:
        raise InvalidInputError(f"slope box has {len(slopes.lo)} layers, the network {net.depth} hidden layers")
    for l in range(net.depth):
        lo, hi = np.asarray(slopes.lo[l], float), np.asarray(slopes.hi[l], float)
        if lo.shape != (net.widths[l + 1],) or hi.shape != lo.shape or np.any(~(lo <= hi)) \
                or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise InvalidInputError(f"derivative box of hidden layer {l + 1} is malformed")
    return slopes


def check_c(net: Network, c) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64).ravel()
    if c.shape != (net.widths[-1],) or not np.all(np.isfinite(c)):
        raise InvalidInputError(f"c must be a finite vector of length {net.widths[-1]}, got shape {c.shape}")
    return c


# --------------------------------------------------------------------------------------------------
# affine-form arithmetic with error bounds

def _linear_map(WT: sp.csr_array, X: Affine) -> Affine:
    """W^T X: float product plus gamma_{k+1} |W^T||X| + |W^T| err (k = inner length)."""
    WT = sp.csr_array(WT)
    F = sp.csr_array(WT @ X.F)
    absW = abs(WT)
    k = int(np.diff(WT.indptr).max(initial=0))  # longest inner product
    g = gamma(k + 2)
    err = sp.csr_array(2.0 * g * (absW @ abs(X.F)) + (1.0 + 2.0 * g) * (absW @ X.err))
    return Affine(F, err)


def _row_scale(scale: np.ndarray, X: Affine) -> Affine:
    D = sp.diags_array(scale)
    F = sp.csr_array(D @ X.F)
    aD = sp.diags_array(np.abs(scale))
    err = sp.csr_array(2.0 * U * (aD @ abs(X.F)) + (1.0 + 2.0 * U) * (aD @ X.err))
    return Affine(F, err)


def interval(X: Affine, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outward-rounded enclosure of every exact form over the box lo <= v <= hi (v_0 = 1)."""
    F = sp.csr_array(X.F)
    Fp, Fn = F.maximum(0), F.minimum(0)
    top = Fp @ hi + Fn @ lo
    bot = Fp @ lo + Fn @ hi
    mag = np.maximum(np.abs(lo), np.abs(hi))
    k = int(np.diff(F.indptr).max(initial=0))
    slack = 2.0 * gamma(k + 2) * (abs(F) @ mag) + (1.0 + 2.0 * gamma(k + 2)) * (X.err @ mag)
    slack = next_up(slack + TINY)
    return next_down(bot - slack), next_up(top + slack)


def products(A: Affine, B: Affine, group: np.ndarray, n_groups: int, ncols: int,
             sign: np.ndarray | None = None) -> tuple[sp.csr_array, sp.csr_array]:
    """Rows vec(sum_{k in group g} sign_k sym(a_k b_k^T)) for g < n_groups, with entrywise error bounds.

    a_k^T v * b_k^T v = v^T sym(a_k b_k^T) v, sym(M) = (M + M^T)/2.
    """
    Ac, Bc = sp.csr_array(A.F), sp.csr_array(B.F)
    Ae, Be = sp.csr_array(A.err), sp.csr_array(B.err)
    k = Ac.shape[0]
    sign = np.ones(k) if sign is None else np.asarray(sign, float)
    ra, ca, va, ea = _rows_with_err(Ac, Ae)
    rb, cb, vb, eb = _rows_with_err(Bc, Be)
    nb = np.bincount(rb, minlength=k)
    startb = np.concatenate([[0], np.cumsum(nb)[:-1]])
    # every (a-entry, b-entry) pair of the same row k
    rep = nb[ra]
    memory.require(2.0 * float(rep.sum()) * memory.BYTES_PER_GRAM_PRODUCT,
                   f"the SDP's {2 * int(rep.sum()):,} quadratic-form entries",
                   "a global bound, a smaller or sparser network, or --method product fit")
    ia = np.repeat(np.arange(len(ra)), rep)
    first = np.cumsum(rep) - rep
    ib = np.repeat(startb[ra] - first, rep) + np.arange(int(rep.sum()))
    row = group[ra[ia]]
    s = sign[ra[ia]]
    i, j = ca[ia], cb[ib]
    val = 0.5 * s * va[ia] * vb[ib]
    mass = np.abs(val)
    prop = 0.5 * (np.abs(ea[ia]) * np.abs(vb[ib]) + np.abs(va[ia]) * np.abs(eb[ib]) + ea[ia] * eb[ib])
    rows = np.concatenate([row, row])
    cols = np.concatenate([i * ncols + j, j * ncols + i])
    shape = (n_groups, ncols * ncols)
    V = sp.csr_array((np.concatenate([val, val]), (rows, cols)), shape=shape)
    V.sum_duplicates()
    cnt = sp.csr_array((np.ones(len(rows)), (rows, cols)), shape=shape)
    cnt.sum_duplicates()
    K = int(cnt.data.max(initial=0)) + 2
    M = sp.csr_array((np.concatenate([mass, mass]), (rows, cols)), shape=shape)
    P = sp.csr_array((np.concatenate([prop, prop]), (rows, cols)), shape=shape)
    M.sum_duplicates()
    P.sum_duplicates()
    err = sp.csr_array(2.0 * gamma(K + 1) * M + (1.0 + 2.0 * gamma(K + 1)) * P)
    return V, err


def _rows_with_err(F: sp.csr_array, E: sp.csr_array):
    """Pieces (row, col, value, error) sorted by row: F's entries with error 0, then E's with value 0.

    Products are bilinear, so splitting a coefficient into pieces changes neither the summed value nor
    the summed error bound |ea||b| + |a||eb| + |ea||eb| (only the term counts, which K covers)."""
    Fc, Ec = sp.coo_array(F), sp.coo_array(E)
    r = np.concatenate([Fc.row, Ec.row]).astype(np.int64)
    c = np.concatenate([Fc.col, Ec.col]).astype(np.int64)
    v = np.concatenate([Fc.data, np.zeros(Ec.nnz)])
    e = np.concatenate([np.zeros(Fc.nnz), np.abs(Ec.data)])
    order = np.argsort(r, kind="stable")
    return r[order], c[order], v[order], e[order]


def unit_forms(cols: np.ndarray, ncols: int, const: np.ndarray | None = None, coef: np.ndarray | None = None) -> Affine:
    """Exact affine forms const_i + coef_i v_{cols_i} (floats given exactly)."""
    k = len(cols)
    coef = np.ones(k) if coef is None else np.asarray(coef, float)
    r = [np.arange(k)]
    c = [np.asarray(cols, np.int64)]
    v = [coef]
    if const is not None:
        r.append(np.arange(k))
        c.append(np.zeros(k, np.int64))
        v.append(np.asarray(const, float))
    F = sp.csr_array((np.concatenate(v), (np.concatenate(r), np.concatenate(c))), shape=(k, ncols))
    F.sum_duplicates()
    return Affine(F, sp.csr_array((k, ncols)))


def constant_forms(values: np.ndarray, err: np.ndarray, ncols: int) -> Affine:
    k = len(values)
    F = sp.csr_array((values, (np.arange(k), np.zeros(k, np.int64))), shape=(k, ncols))
    E = sp.csr_array((err, (np.arange(k), np.zeros(k, np.int64))), shape=(k, ncols))
    return Affine(F, E)


def _select(X: Affine, rows: np.ndarray) -> Affine:
    return Affine(sp.csr_array(X.F[rows]), sp.csr_array(X.err[rows]))


def _stack(parts: list[Affine], order: np.ndarray | None = None) -> Affine:
    F = sp.csr_array(sp.vstack([p.F for p in parts]))
    E = sp.csr_array(sp.vstack([p.err for p in parts]))
    if order is not None:
        F, E = sp.csr_array(F[order]), sp.csr_array(E[order])
    return Affine(F, E)


# --------------------------------------------------------------------------------------------------

def build_model(net: Network, c: np.ndarray, slopes: SlopeBox, with_t: bool, mccormick: bool = True) -> QuadraticModel:
    """Lift the norm-gradient polynomial into a QCQP (see module docstring)."""
    d = net.depth
    n0 = net.widths[0]
    free = [np.asarray(slopes.lo[l]) < np.asarray(slopes.hi[l]) for l in range(d)]
    n_free = sum(int(f.sum()) for f in free)
    nmax = 1 + (n0 if with_t else 0) + n_free + sum(net.widths[1:d + 1])
    lo_v, hi_v = np.zeros(nmax), np.zeros(nmax)
    lo_v[0] = hi_v[0] = 1.0
    pos = 1
    t_index = np.arange(pos, pos + n0) if with_t else np.zeros(0, np.int64)
    if with_t:
        lo_v[t_index], hi_v[t_index] = -1.0, 1.0
        pos += n0
    s_index = []
    for l in range(d):
        idx = np.full(net.widths[l + 1], -1, np.int64)
        idx[free[l]] = pos + np.arange(free[l].sum())
        lo_v[idx[free[l]]] = np.asarray(slopes.lo[l])[free[l]]
        hi_v[idx[free[l]]] = np.asarray(slopes.hi[l])[free[l]]
        pos += int(free[l].sum())
        s_index.append(idx)
    model = QuadraticModel(ncols=nmax, lo=lo_v, hi=hi_v, x1=None, t_index=t_index)
    model.n_fixed = sum(int((~f).sum()) for f in free)

    # box constraints of the free derivatives: (s - lo)(hi - s) >= 0
    sidx = np.concatenate([s[s >= 0] for s in s_index]) if d else np.zeros(0, np.int64)
    if len(sidx):
        a = unit_forms(sidx, nmax, const=-lo_v[sidx])
        b = unit_forms(sidx, nmax, const=hi_v[sidx], coef=-np.ones(len(sidx)))
        model.ineq.append(products(a, b, np.arange(len(sidx)), len(sidx), nmax))

    X = constant_forms(np.asarray(c, float), np.zeros(len(c)), nmax)  # x_{d+1} = c (exact)
    for l in range(d, 0, -1):
        R = _linear_map(sp.csr_array(net.weights[l].T), X)  # r_l = W_l^T x_{l+1}
        n = net.widths[l]
        lo_s, hi_s = np.asarray(slopes.lo[l - 1], float), np.asarray(slopes.hi[l - 1], float)
        # r_j is a nonconstant form if any variable column carries a coefficient (or its error)
        nonconst = np.diff(sp.csr_array(R.F[:, 1:]).indptr) > 0
        nonconst |= np.diff(sp.csr_array(R.err[:, 1:]).indptr) > 0
        fixed = ~free[l - 1]
        lift = free[l - 1] & nonconst
        lin = free[l - 1] & ~nonconst
        parts, order = [], []
        if fixed.any():
            rows = np.flatnonzero(fixed)
            parts.append(_row_scale(lo_s[rows], _select(R, rows)))
            order.append(rows)
        if lin.any():
            rows = np.flatnonzero(lin)
            Rc = _select(R, rows)
            const = np.asarray(Rc.F[:, [0]].toarray()).ravel()
            cerr = np.asarray(Rc.err[:, [0]].toarray()).ravel()
            F = sp.csr_array((const, (np.arange(len(rows)), s_index[l - 1][rows])), shape=(len(rows), nmax))
            E = sp.csr_array((cerr, (np.arange(len(rows)), s_index[l - 1][rows])), shape=(len(rows), nmax))
            parts.append(Affine(F, E))
            order.append(rows)
        if lift.any():
            rows = np.flatnonzero(lift)
            k = len(rows)
            w = pos + np.arange(k)
            pos += k
            model.n_lifted += k
            Rl = _select(R, rows)
            sv = s_index[l - 1][rows]
            rlo, rhi = interval(Rl, lo_v, hi_v)
            cand = np.stack([lo_v[sv] * rlo, lo_v[sv] * rhi, hi_v[sv] * rlo, hi_v[sv] * rhi])
            wlo = widen_down(cand.min(0), 2 * U * np.abs(cand).max(0))
            whi = widen_up(cand.max(0), 2 * U * np.abs(cand).max(0))
            lo_v[w], hi_v[w] = wlo, whi
            # equality  1 * w - s * r(z) = 0
            one = constant_forms(np.ones(k), np.zeros(k), nmax)
            ew = unit_forms(w, nmax)
            es = unit_forms(sv, nmax)
            A = _stack([one, es])
            B = _stack([ew, Rl])
            grp = np.concatenate([np.arange(k), np.arange(k)])
            sgn = np.concatenate([np.ones(k), -np.ones(k)])
            model.eq.append(products(A, B, grp, k, nmax, sign=sgn))
            # box of w
            model.ineq.append(products(unit_forms(w, nmax, const=-wlo), unit_forms(w, nmax, const=whi, coef=-np.ones(k)),
                                       np.arange(k), k, nmax))
            if mccormick:
                s_m_lo = unit_forms(sv, nmax, const=-lo_v[sv])
                s_hi_m = unit_forms(sv, nmax, const=hi_v[sv], coef=-np.ones(k))
                r_m_lo = Affine(sp.csr_array(Rl.F - sp.csr_array((rlo, (np.arange(k), np.zeros(k, np.int64))), shape=(k, nmax))), Rl.err)
                r_hi_m = Affine(sp.csr_array(sp.csr_array((rhi, (np.arange(k), np.zeros(k, np.int64))), shape=(k, nmax)) - Rl.F), Rl.err)
                # F - rlo: the constant entry is rounded once; charge u |.| to its error
                r_m_lo = _charge_const(r_m_lo)
                r_hi_m = _charge_const(r_hi_m)
                A = _stack([s_m_lo, s_hi_m, s_m_lo, s_hi_m])
                B = _stack([r_m_lo, r_hi_m, r_hi_m, r_m_lo])
                model.ineq.append(products(A, B, np.arange(4 * k), 4 * k, nmax))
            parts.append(unit_forms(w, nmax))
            order.append(rows)
        allrows = np.concatenate(order)
        inv = np.empty(n, np.int64)
        inv[allrows] = np.arange(n)
        X = _stack(parts, inv)
    model.x1 = X
    model.ncols = pos
    return model


def _charge_const(X: Affine) -> Affine:
    c0 = np.asarray(X.F[:, [0]].toarray()).ravel()
    k = len(c0)
    extra = sp.csr_array((2.0 * U * np.abs(c0) + TINY, (np.arange(k), np.zeros(k, np.int64))), shape=X.err.shape)
    return Affine(X.F, sp.csr_array(X.err + extra))


def gradient_forms(net: Network, model: QuadraticModel) -> Affine:
    """r_0 = W_0^T x_1: the gradient as affine forms of z."""
    return _linear_map(sp.csr_array(net.weights[0].T), model.x1)


def radius_squared(lo: np.ndarray, hi: np.ndarray, skip: np.ndarray | None = None, extra: float = 0.0) -> float:
    """Upper bound on 1 + ||z||^2 over the box (columns in ``skip`` left out, ``extra`` added)."""
    mag = np.maximum(np.abs(lo[1:]), np.abs(hi[1:]))
    if skip is not None and len(skip):
        keep = np.ones(len(lo), bool)
        keep[skip] = False
        mag = mag[keep[1:]]
    sq = next_up(mag * mag)
    return sum_up([1.0, extra, *sq.tolist()])


def shrink(M: sp.csr_array, n_old: int, n_new: int) -> sp.csr_array:
    """Re-index vec(n_old x n_old) columns to vec(n_new x n_new) (drop unused trailing columns)."""
    M = sp.coo_array(M)
    i, j = M.col // n_old, M.col % n_old
    if np.any(i >= n_new) or np.any(j >= n_new):
        raise AssertionError("shrink would drop nonzero entries")
    return sp.csr_array((M.data, (M.row, i * n_new + j)), shape=(M.shape[0], n_new * n_new))
