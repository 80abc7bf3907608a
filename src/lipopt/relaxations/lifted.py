"""The backward pass kept as variables: interval Jacobian bounds and the lifted McCormick LP.

For c^T f with hidden layers 1..d and derivative box s_l in [lo_l, hi_l]:

    u_d = W_d^T c,   v_l = s_l * u_l (elementwise),   u_{l-1} = W_{l-1}^T v_l,   g = W_0^T v_1,

and the Lipschitz constant w.r.t. ||.||_p is at most max ||g||_q over the box (q dual to p). Every
variable is one scalar; every nonconvexity is one product s * u of two bounded scalars. Size is linear
in the network (one s, u, v per hidden neuron, one g per input), at any depth.

``jacobian_box``: rigorous intervals of u, v, g layer by layer (directed rounding; sparse layers stay
sparse). ``interval_bound``: ||g||_q over the box of g. ``lifted_lp``: the LP whose feasible set contains
every reachable (s, u, v, g): the linear equalities, the McCormick envelope of every v = s * u, and the
interval boxes. ``chords``: the concave envelope of |g_i| (q = 1) or g_i^2 (q = 2) over [gl_i, gu_i], a
linear objective that overestimates the norm on the box.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import SolverFailure
from ..model import Network
from ..polynomial import SlopeBox
from ..rounding import U, gamma, next_down, next_up, sum_up, up, widen_down, widen_up


@dataclass(frozen=True)
class JacobianBox:
    """Enclosures (exact arithmetic) of the backward-pass variables; index l = hidden layer l + 1."""
    s_lo: tuple[np.ndarray, ...]
    s_hi: tuple[np.ndarray, ...]
    u_lo: tuple[np.ndarray, ...]
    u_hi: tuple[np.ndarray, ...]
    v_lo: tuple[np.ndarray, ...]
    v_hi: tuple[np.ndarray, ...]
    g_lo: np.ndarray
    g_hi: np.ndarray


def transpose_interval(W: sp.csr_array, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rigorous enclosure of {W^T x : lo <= x <= hi}: split W^T into its signed parts; each float dot
    product of k terms errs by at most gamma_k sum|terms| (Higham), charged 4x (covers the rounding of
    the mass itself) and then one ulp outward."""
    Wt = sp.csr_array(W.T)
    pos, neg = Wt.maximum(0), Wt.minimum(0)
    a = pos @ lo + neg @ hi
    b = pos @ hi + neg @ lo
    mass = abs(Wt) @ np.maximum(np.abs(lo), np.abs(hi))
    k = int(np.diff(Wt.indptr).max(initial=0)) + 2
    err = next_up(4.0 * gamma(k) * mass)
    return widen_down(a, err), widen_up(b, err)


def product_interval(slo, shi, ulo, uhi) -> tuple[np.ndarray, np.ndarray]:
    """Enclosure of {s * u}: the extreme corner products, each correctly rounded, then one ulp out."""
    corners = np.stack([slo * ulo, slo * uhi, shi * ulo, shi * uhi])
    return next_down(corners.min(axis=0)), next_up(corners.max(axis=0))


def jacobian_box(net: Network, c: np.ndarray, slopes: SlopeBox) -> JacobianBox:
    """Interval Jacobian propagation, backward from c; linear in the number of weights."""
    d = net.depth
    c = np.asarray(c, dtype=np.float64)
    u_lo, u_hi, v_lo, v_hi = [None] * d, [None] * d, [None] * d, [None] * d
    lo, hi = transpose_interval(net.weights[d], c, c)
    for l in range(d - 1, -1, -1):
        u_lo[l], u_hi[l] = lo, hi
        slo, shi = np.asarray(slopes.lo[l], float), np.asarray(slopes.hi[l], float)
        v_lo[l], v_hi[l] = product_interval(slo, shi, lo, hi)
        lo, hi = transpose_interval(net.weights[l], v_lo[l], v_hi[l])
    box = JacobianBox(tuple(np.asarray(s, float) for s in slopes.lo), tuple(np.asarray(s, float) for s in slopes.hi),
                      tuple(u_lo), tuple(u_hi), tuple(v_lo), tuple(v_hi), lo, hi)
    if not all(np.all(np.isfinite(a)) for a in (*box.u_lo, *box.u_hi, *box.v_lo, *box.v_hi, lo, hi)):
        raise SolverFailure("the interval Jacobian bounds overflow the float64 range")
    return box


def tighten(net: Network, box: JacobianBox, layer: int, lo: np.ndarray, hi: np.ndarray) -> JacobianBox:
    """``box`` with u_layer intersected with the enclosure [lo, hi], and v_layer, every lower layer and g
    recomputed from it (each intersected with its old enclosure: both contain every reachable value)."""
    u_lo, u_hi, v_lo, v_hi = list(box.u_lo), list(box.u_hi), list(box.v_lo), list(box.v_hi)
    u_lo[layer], u_hi[layer] = np.maximum(u_lo[layer], lo), np.minimum(u_hi[layer], hi)
    if np.any(u_lo[layer] > u_hi[layer]):
        raise AssertionError("bound tightening produced an empty interval: an enclosure is not rigorous")
    g_lo, g_hi = box.g_lo, box.g_hi
    for l in range(layer, -1, -1):
        if l < layer:
            a, b = transpose_interval(net.weights[l + 1], v_lo[l + 1], v_hi[l + 1])
            u_lo[l], u_hi[l] = np.maximum(u_lo[l], a), np.minimum(u_hi[l], b)
        a, b = product_interval(box.s_lo[l], box.s_hi[l], u_lo[l], u_hi[l])
        v_lo[l], v_hi[l] = np.maximum(v_lo[l], a), np.minimum(v_hi[l], b)
    a, b = transpose_interval(net.weights[0], v_lo[0], v_hi[0])
    g_lo, g_hi = np.maximum(g_lo, a), np.minimum(g_hi, b)
    return JacobianBox(box.s_lo, box.s_hi, tuple(u_lo), tuple(u_hi), tuple(v_lo), tuple(v_hi), g_lo, g_hi)


def interval_bound(box: JacobianBox, norm: str) -> float:
    """max ||g||_q over the box of g (q dual to ``norm``), rounded up."""
    a = np.maximum(np.abs(box.g_lo), np.abs(box.g_hi))
    if norm == "inf":
        return sum_up(a)
    if norm == "2":
        return up(math.sqrt(sum_up(next_up(a * a))))
    return float(a.max(initial=0.0))


def chords(lo: np.ndarray, hi: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) with phi(g) <= a g + b for all g in [lo, hi], phi = |.| ("abs") or (.)^2 ("square").

    a is the chord's slope as computed in floats; b = max over the two ends of phi(end) - a end, rounded
    up, which makes the line valid in exact arithmetic for any a (phi convex: the max is at an end)."""
    if kind == "abs":
        a = np.where(lo >= 0, 1.0, np.where(hi <= 0, -1.0, (hi + lo) / np.where(hi > lo, hi - lo, 1.0)))
        f_lo, f_hi = np.abs(lo), np.abs(hi)
        m_lo, m_hi = f_lo, f_hi
    else:
        a = lo + hi
        f_lo, f_hi = lo * lo, hi * hi  # relative error <= u each
        m_lo, m_hi = f_lo, f_hi
    t_lo, t_hi = f_lo - a * lo, f_hi - a * hi
    err_lo = 4 * U * (m_lo + np.abs(a * lo))
    err_hi = 4 * U * (m_hi + np.abs(a * hi))
    b = np.maximum(widen_up(t_lo, err_lo), widen_up(t_hi, err_hi))
    return a, b


@dataclass(frozen=True)
class LiftedLP:
    """max obj^T x  s.t.  A_ub x <= b_ub,  A_eq x = 0,  lb <= x <= ub (b_ub valid in exact arithmetic)."""
    A_ub: sp.csr_array
    b_ub: np.ndarray
    A_eq: sp.csr_array
    lb: np.ndarray
    ub: np.ndarray
    g_index: np.ndarray          # columns of g
    u_index: tuple[np.ndarray, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return self.A_ub.shape[0] + self.A_eq.shape[0], self.A_ub.shape[1]

    @property
    def nnz(self) -> int:
        return int(self.A_ub.nnz + self.A_eq.nnz)


def lifted_lp(net: Network, box: JacobianBox, first: int = 0) -> LiftedLP:
    """Columns: per hidden layer (s_l, u_l, v_l), then g. Rows: u_{l-1} - W_{l-1}^T v_l = 0 and
    g - W_0^T v_1 = 0 (u_d is only boxed: W_d^T c is known only up to its enclosure), and per neuron
    the four McCormick inequalities of v = s * u, each of the form (s - s_a)(u - u_b) signed >= 0.
    ``first`` > 0 keeps only the layers first.. (0-based) without g: a relaxation of the part that
    determines u_first (dropping constraints only enlarges the feasible set), for bound tightening."""
    d = net.depth
    widths = [len(s) if l >= first else 0 for l, s in enumerate(box.s_lo)]
    offs = np.concatenate([[0], np.cumsum([3 * n for n in widths])]).astype(np.int64)
    n0 = net.widths[0] if first == 0 else 0
    n_cols = int(offs[-1]) + n0
    s_idx = [offs[l] + np.arange(n) for l, n in enumerate(widths)]
    u_idx = [offs[l] + n + np.arange(n) for l, n in enumerate(widths)]
    v_idx = [offs[l] + 2 * n + np.arange(n) for l, n in enumerate(widths)]
    g_idx = offs[-1] + np.arange(n0)
    kept = range(first, d)

    lb = np.concatenate([np.concatenate([box.s_lo[l], box.u_lo[l], box.v_lo[l]]) for l in kept] + [box.g_lo[:n0]])
    ub = np.concatenate([np.concatenate([box.s_hi[l], box.u_hi[l], box.v_hi[l]]) for l in kept] + [box.g_hi[:n0]])

    # equalities: target - W^T v = 0
    targets = [u_idx[l - 1] for l in range(first + 1, d)] + ([g_idx] if first == 0 else [])
    sources = [(net.weights[l], v_idx[l]) for l in range(first + 1, d)] + ([(net.weights[0], v_idx[0])]
                                                                           if first == 0 else [])
    row0 = 0
    rows, cols, vals = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
    for tgt, (W, src) in zip(targets, sources):
        Wt = sp.coo_array(W.T)
        rows += [row0 + np.arange(len(tgt)), row0 + Wt.row]
        cols += [tgt, src[Wt.col]]
        vals += [np.ones(len(tgt)), -Wt.data]
        row0 += len(tgt)
    A_eq = sp.csr_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(row0, n_cols))

    # McCormick: coefficients on (u, s, v) and right-hand sides rounded up
    r_rows, r_cols, r_vals, rhs = [], [], [], []
    row0 = 0
    for l in kept:
        sl, sh, ul, uh = box.s_lo[l], box.s_hi[l], box.u_lo[l], box.u_hi[l]
        n = len(sl)
        for cu, cs, cv, b in ((sl, ul, -1.0, next_up(sl * ul)), (sh, uh, -1.0, next_up(sh * uh)),
                              (-sh, -ul, 1.0, next_up(-sh * ul)), (-sl, -uh, 1.0, next_up(-sl * uh))):
            r = row0 + np.arange(n)
            r_rows += [r, r, r]
            r_cols += [u_idx[l], s_idx[l], v_idx[l]]
            r_vals += [cu, cs, np.full(n, cv)]
            rhs.append(b)
            row0 += n
    A_ub = sp.csr_array((np.concatenate(r_vals), (np.concatenate(r_rows), np.concatenate(r_cols))),
                        shape=(row0, n_cols))
    A_ub.eliminate_zeros()
    return LiftedLP(A_ub, np.concatenate(rhs), A_eq, lb, ub, g_idx, tuple(u_idx))


def lp_size(net: Network) -> tuple[int, int, int]:
    """(rows, columns, nonzeros) of lifted_lp, from shapes only."""
    hidden = int(sum(net.widths[1:-1]))
    n0 = net.widths[0]
    eq_nnz = sum(int(W.nnz) for W in net.weights[:-1])
    rows = 4 * hidden + (hidden - net.widths[-2]) + n0
    return rows, 3 * hidden + n0, 12 * hidden + eq_nnz + hidden + n0
