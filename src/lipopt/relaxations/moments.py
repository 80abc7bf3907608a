"""Sparse order-2 moment-SOS relaxation (Lasserre order 2 on small cliques) of the l_inf FGL of a
one-hidden-layer network, with a certified value.

**Reduction to +-1 variables.** With one hidden layer P(t, s) = sum_i t_i (W_0^T diag(s) W_1^T c)_i is
multilinear, so its maximum over the box is attained at a vertex. Every free derivative s_j in [lo, hi]
is written s_j = a_j + b_j sigma_j with floats a_j, b_j chosen so that [a - b, a + b] contains [lo, hi]
(a larger box only raises the maximum), and t_i, sigma_j range over {-1, 1}. Then

    P(x) = sum_i p_i t_i + sum_{i,j} q_ij t_i sigma_j,    x = (t, sigma) in {-1, 1}^n,

and monomials reduce modulo x_k^2 = 1 to square-free ones (subsets S, products = symmetric differences).

**Relaxation.** Find the least lambda such that, as functions on {-1, 1}^n,

    lambda - P(x) = m_0(x)^T Z_0 m_0(x) + sum_k m_k(x)^T Z_k m_k(x),    Z_0, Z_k PSD,

with m_0 = (1, x) (the Shor / order-1 block over all variables) and m_k = (1, x_C, x_a x_b for a < b in
C) the square-free order-2 monomials of a clique C (HR-2-style: Chen, Lasserre, Magron & Pauwels 2020;
Lasserre order 2 restricted to cliques in the spirit of Waki et al.'s correlative sparsity). Matching
the coefficient of every monomial S gives linear equations; we solve them explicitly (one pivot entry per
monomial and block, the others free) so that every Z_k is an affine function of free multipliers y and
the SDP is in the same dual (LMI) form as the Shor relaxation. With no cliques it is the Shor bound with
diag(X) = 1, which equals the Shor bound on the box; every clique can only lower the optimum.

**Certificate.** For any y the identity holds exactly (with the exact Z_k), so for every vertex
P(x) = lambda - sum_k m_k^T Z_k m_k <= lambda + sum_k max(0, -nu_k) |m_k|^2, where nu_k <= lambda_min(Z_k)
is the rigorous bound of ``certify.gram.lambda_min_lower_bound`` and |m_k|^2 = len(m_k) since every
entry of m_k is +-1. Coefficient errors of p, q and the rounding of Z = C + L y enter that bound.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from ..model.network import Network
from ..rounding import TINY, U, gamma, next_up
from ..slopes import SlopeBox
from ..solvers.sdp import SemidefiniteProgram
from .quadratic import build_model, check_c, check_slopes, gradient_forms

MAX_VARIABLES = 2000   # order of the Shor block
MAX_MULTIPLIERS = 20_000  # free SDP multipliers (the Schur complement is m x m)


@dataclass(frozen=True)
class SignPolynomial:
    """P(x) = p^T t + t^T Q sigma on x = (t, sigma) in {-1,1}^n, with entrywise coefficient error bounds
    (|p_exact - p| <= p_err, |Q_exact - Q| <= Q_err) for the exact polynomial whose maximum bounds the FGL."""
    p: np.ndarray
    p_err: np.ndarray
    Q: np.ndarray          # (n0, m), dense
    Q_err: np.ndarray
    free: np.ndarray       # indices of the hidden neurons that became sigma variables

    @property
    def n0(self) -> int:
        return len(self.p)

    @property
    def m(self) -> int:
        return self.Q.shape[1]


def sign_polynomial(net: Network, c, slopes: SlopeBox) -> SignPolynomial:
    """The +-1 form of the norm-gradient polynomial of a one-hidden-layer network (module docstring)."""
    if net.depth != 1:
        raise InvalidInputError(f"the order-2 SDP is implemented for one hidden layer; this network has {net.depth} "
                                "(use --method sdp for the Shor bound)")
    model = build_model(net, c, slopes, with_t=False, mccormick=False)
    r0 = gradient_forms(net, model)   # r0_i = F[i, 0] + sum_j F[i, col_j] s_j, |exact - F| <= err
    lo, hi = np.asarray(slopes.lo[0], float), np.asarray(slopes.hi[0], float)
    free = np.flatnonzero(lo < hi)
    F = sp.csr_array(r0.F).toarray()
    E = sp.csr_array(r0.err).toarray()
    cols = np.arange(1, 1 + len(free))   # build_model numbers the free s after the constant
    a = 0.5 * (lo[free] + hi[free])
    half = np.maximum(hi[free] - a, a - lo[free])
    b = next_up(next_up(half))  # a +- b covers [lo, hi] in exact arithmetic
    Fs, Es = F[:, cols], E[:, cols]
    Q = Fs * b
    Q_err = next_up(2.0 * U * np.abs(Q) + Es * b * (1.0 + 2.0 * U))
    k = len(free) + 1
    g = gamma(k + 2)
    p = F[:, 0] + Fs @ a
    mass = np.abs(F[:, 0]) + np.abs(Fs) @ np.abs(a)
    p_err = next_up(2.0 * g * mass + (1.0 + 2.0 * g) * (E[:, 0] + Es @ np.abs(a)) + TINY)
    return SignPolynomial(p=p, p_err=p_err, Q=Q, Q_err=Q_err, free=free)


def neuron_cliques(poly: SignPolynomial, size: int) -> list[tuple[int, ...]]:
    """One clique per sigma_j: sigma_j and the size - 1 inputs t_i with the largest |q_ij| (distinct cliques,
    as sorted variable indices; t_i is variable i, sigma_j is variable n0 + j)."""
    if size < 2:
        return []
    n0, m = poly.n0, poly.m
    k = min(size - 1, n0)
    out, seen = [], set()
    for j in range(m):
        top = np.argsort(-np.abs(poly.Q[:, j]), kind="stable")[:k]
        cl = tuple(sorted(int(i) for i in top)) + (n0 + j,)
        if cl not in seen:
            seen.add(cl)
            out.append(cl)
    return out


# --------------------------------------------------------------------------------------------------
# the SOS identity as an affine map y -> (Z_0, Z_1, ...)

@dataclass
class MomentSystem:
    """Z_k (upper triangles, concatenated) = C + L y, y = (lambda, free multipliers)."""
    orders: list            # basis size of every block (block 0 first)
    offsets: np.ndarray     # start of every block's upper-triangle entries
    rows: np.ndarray        # (entry) -> row in its block
    cols: np.ndarray
    C: np.ndarray           # constant part, float
    C_err: np.ndarray       # |C_exact - C|
    L: sp.csr_array         # (entries, 1 + free)

    @property
    def n_multipliers(self) -> int:
        return int(self.L.shape[1])


def _triu(B: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(B)
    return i.astype(np.int64), j.astype(np.int64)


def moment_system(poly: SignPolynomial, cliques: list[tuple[int, ...]]) -> MomentSystem:
    n0, m = poly.n0, poly.m
    n = n0 + m
    pair_base = 1 + n
    extra: dict[tuple, int] = {}
    next_id = [pair_base + n * (n - 1) // 2]

    def pair_id(a, b):  # a < b
        return pair_base + a * n - a * (a + 1) // 2 + (b - a - 1)

    def mono_id(S: tuple) -> int:
        if len(S) == 0:
            return 0
        if len(S) == 1:
            return 1 + S[0]
        if len(S) == 2:
            return pair_id(S[0], S[1])
        if S not in extra:
            extra[S] = next_id[0]
            next_id[0] += 1
        return extra[S]

    blk, ri, ci, mono = [], [], [], []
    orders = []
    # block 0: basis (1, x_0 .. x_{n-1})
    i, j = _triu(n + 1)
    S0 = np.where(i == j, 0, np.where(i == 0, j, 0))  # (0, j): single j-1 -> id j
    both = (i > 0) & (i < j)
    a, b = i[both] - 1, j[both] - 1
    S0 = S0.astype(np.int64)
    S0[both] = pair_id(a, b)
    blk.append(np.zeros(len(i), np.int64))
    ri.append(i)
    ci.append(j)
    mono.append(S0)
    orders.append(n + 1)
    for k, cl in enumerate(cliques, start=1):
        basis = [()] + [(v,) for v in cl] + [(cl[p], cl[q]) for p in range(len(cl)) for q in range(p + 1, len(cl))]
        B = len(basis)
        bi, bj = _triu(B)
        ids = np.array([mono_id(tuple(sorted(set(basis[p]) ^ set(basis[q])))) for p, q in zip(bi, bj)], np.int64)
        blk.append(np.full(B * (B + 1) // 2, k, np.int64))
        ri.append(bi)
        ci.append(bj)
        mono.append(ids)
        orders.append(B)
    blk, ri, ci, mono = (np.concatenate(x) for x in (blk, ri, ci, mono))
    ne = len(blk)
    mult = np.where(ri == ci, 1.0, 2.0)
    offsets = np.concatenate([[0], np.cumsum([B * (B + 1) // 2 for B in orders])])

    # groups (monomial, block): first occurrence is the group's pivot; per monomial the first group's
    # block (block 0 whenever it holds the monomial) carries the target coefficient
    order = np.lexsort((np.arange(ne), blk, mono))
    ms, bs = mono[order], blk[order]
    new_group = np.ones(ne, bool)
    new_group[1:] = (ms[1:] != ms[:-1]) | (bs[1:] != bs[:-1])
    new_mono = np.ones(ne, bool)
    new_mono[1:] = ms[1:] != ms[:-1]
    gid = np.cumsum(new_group) - 1
    group_pivot = order[new_group]                     # entry index of each group's pivot
    group_mono = ms[new_group]
    group_first = new_mono[new_group]                  # the monomial's target group
    # free variables: every non-pivot occurrence (u), every non-target group (v)
    nonpivot = order[~new_group]
    n_u = len(nonpivot)
    v_groups = np.flatnonzero(~group_first)
    n_v = len(v_groups)
    u_col = 1 + np.arange(n_u)
    v_col = 1 + n_u + np.arange(n_v)
    # target group of every group (the first group of its monomial)
    first_idx = np.flatnonzero(group_first)
    target_of_group = first_idx[np.cumsum(group_first) - 1]

    R, Cc, V = [], [], []
    # non-pivot entries: Z[e] = u_e
    R.append(nonpivot)
    Cc.append(u_col)
    V.append(np.ones(n_u))
    # their pivot: - mult_e / mult_p * u_e
    grp_of_entry = np.empty(ne, np.int64)
    grp_of_entry[order] = gid
    piv = group_pivot[grp_of_entry[nonpivot]]
    R.append(piv)
    Cc.append(u_col)
    V.append(-mult[nonpivot] / mult[piv])
    # non-target group g: its pivot gets + v_g / mult_p, the target group's pivot - v_g / mult_p'
    pg = group_pivot[v_groups]
    R.append(pg)
    Cc.append(v_col)
    V.append(1.0 / mult[pg])
    tp = group_pivot[target_of_group[v_groups]]
    R.append(tp)
    Cc.append(v_col)
    V.append(-1.0 / mult[tp])
    # lambda: target of the empty monomial is (block 0, entry (0, 0)), multiplicity 1
    R.append(np.array([0]))
    Cc.append(np.array([0]))
    V.append(np.array([1.0]))
    L = sp.csr_array((np.concatenate(V), (np.concatenate(R), np.concatenate(Cc))), shape=(ne, 1 + n_u + n_v))
    L.sum_duplicates()

    # constant: -P_S / mult at the target pivot of every monomial of P
    C = np.zeros(ne)
    C_err = np.zeros(ne)
    tgt_entry = np.full(next_id[0], -1, np.int64)
    tgt_entry[group_mono[first_idx]] = group_pivot[first_idx]
    lin_e = tgt_entry[1 + np.arange(n0)]
    C[lin_e] = -poly.p / mult[lin_e]
    C_err[lin_e] = poly.p_err / mult[lin_e]
    ii, jj = np.meshgrid(np.arange(n0), n0 + np.arange(m), indexing="ij")
    bil_e = tgt_entry[pair_id(ii.ravel(), jj.ravel())]
    C[bil_e] = -poly.Q.ravel() / mult[bil_e]
    C_err[bil_e] = poly.Q_err.ravel() / mult[bil_e]
    return MomentSystem(orders=orders, offsets=offsets, rows=ri, cols=ci, C=C, C_err=C_err, L=L)


def to_sdp(system: MomentSystem) -> SemidefiniteProgram:
    """SeDuMi form: maximise -lambda s.t. c - A^T y = (Z_0, Z_1, ...) PSD, with Z = C + L y."""
    pos_full, c_parts, A_rows, A_cols, A_vals = 0, [], [], [], []
    Lc = sp.coo_array(system.L)
    for k, B in enumerate(system.orders):
        lo, hi = system.offsets[k], system.offsets[k + 1]
        r, cidx = system.rows[lo:hi], system.cols[lo:hi]
        Zc = np.zeros((B, B))
        Zc[r, cidx] = system.C[lo:hi]
        Zc[cidx, r] = system.C[lo:hi]
        c_parts.append(Zc.ravel(order="F"))
        sel = (Lc.row >= lo) & (Lc.row < hi)
        e, y, v = Lc.row[sel] - lo, Lc.col[sel], Lc.data[sel]
        p1 = pos_full + r[e] + cidx[e] * B
        p2 = pos_full + cidx[e] + r[e] * B
        off = r[e] != cidx[e]
        A_rows += [y, y[off]]
        A_cols += [p1, p2[off]]
        A_vals += [-v, -v[off]]
        pos_full += B * B
    mvar = system.n_multipliers
    A = sp.csr_array((np.concatenate(A_vals), (np.concatenate(A_rows), np.concatenate(A_cols))),
                     shape=(mvar, pos_full))
    b = np.zeros(mvar)
    b[0] = -1.0
    return SemidefiniteProgram(c=np.concatenate(c_parts), A=A, b=b, l=0, s=tuple(system.orders))


def order2_system(net: Network, c, slopes: SlopeBox | None = None, norm: str = "inf", *, clique_size: int = 3,
                  cliques: list | None = None) -> tuple[MomentSystem, SignPolynomial, list]:
    """The sparse order-2 moment system of the l_inf FGL (one hidden layer), validated and size-checked.

    ``clique_size`` q: one clique per free hidden neuron (itself and its q - 1 strongest inputs);
    q = 1 gives the order-1 (Shor) bound. ``cliques`` overrides the choice (sorted variable tuples).
    ``methods.sdp.order2_bound`` solves and certifies it."""
    if norm != "inf":
        raise InvalidInputError("the order-2 SDP bounds the l_inf Lipschitz constant (for l1 the Shor bound is "
                                "already exact on one hidden layer; for l2 use --method lipsdp)")
    if isinstance(clique_size, bool) or not isinstance(clique_size, (int, np.integer)) or not 1 <= clique_size <= 6:
        raise InvalidInputError(f"clique_size must be an integer between 1 and 6, got {clique_size!r}")
    c = check_c(net, c)
    slopes = check_slopes(net, slopes)
    poly = sign_polynomial(net, c, slopes)
    n = poly.n0 + poly.m
    if n + 1 > MAX_VARIABLES:
        raise InvalidInputError(f"the order-2 SDP would have a Shor block of order {n + 1} (limit {MAX_VARIABLES})")
    cl = neuron_cliques(poly, clique_size) if cliques is None else [tuple(sorted(map(int, q))) for q in cliques]
    for q in cl:
        if len(q) == 0 or len(set(q)) != len(q) or min(q) < 0 or max(q) >= n:
            raise InvalidInputError(f"clique {q} is not a set of variable indices below {n}")
    system = moment_system(poly, cl)
    if system.n_multipliers > MAX_MULTIPLIERS:
        raise InvalidInputError(f"the order-2 SDP would have {system.n_multipliers} multipliers "
                                f"(limit {MAX_MULTIPLIERS}); lower clique_size")
    return system, poly, cl


# MomentCertificate and certify_moments moved to lipopt.certify.moments; re-exported for one release
# (lazily: certify.moments imports MomentSystem from here).
def __getattr__(name):
    if name in ("MomentCertificate", "certify_moments"):
        from ..certify import moments
        return getattr(moments, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
