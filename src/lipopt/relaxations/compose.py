"""Compositional bounds: cut the gradient chain into shallow blocks and propagate per-neuron row bounds.

The gradient is g^T = c^T A_K ... A_1 with A_k = W_{b-1} S_{b-1} ... W_a S_a (weights a..b-1 of the
network, S_a the derivative at the cut, absent for the first block). For l_inf inputs (||g||_1):

    rho_0 = 1,   rho_k(i) = sup_s ||e_i^T A_k(s) diag(rho_{k-1})||_1,   L <= sup_s ||c^T A_K(s) diag(rho_{K-1})||_1,

because ||e_i^T A_k A_{k-1} ... A_1||_1 <= sum_j |(e_i^T A_k)_j| rho_{k-1}(j). This is the product of
inf-norms of the blocks under the diagonal scaling D_k = diag(1/rho_k), and it is never worse than any
other positive diagonal scaling (induction: rho_k <= beta_k D_k^{-1} 1 for the scaled product beta_k, the
row bound being monotone in the column weights), in particular never worse than the product bound.
The leading S_a enters only through m_a = max(|lo_a|, |hi_a|) (the l1 norm of a row is separable in S_a),
so block k is the network (W_a diag(m_a rho_{k-1}), W_{a+1}, ..., W_{b-1}) with its internal slopes. Its
row bounds: first in closed form, min(absolute path mass, interval matrix product of the block's Jacobian,
exact entry by entry for one hidden layer); then, for 1-2 internal hidden layers and time permitting,
lipopt's l_inf FGL of the row (exact.exact_fgl_auto: exact, or a bracket's upper end at a deadline).
Cuts: uniform blocks, or placed by a beam search over the closed-form recursion (``beam_plan``).

l_1 inputs (||g||_inf = max_j |g_j|) are the same recursion on the transposed chain (weights reversed and
transposed, input W_d^T c of width 1): sup_s |g_j| is the FGL of its output j.

Rounding: column weights w are rounded up (the bound is monotone in w); the float first weight W_a diag(w)
(and W_d^T c) differs from the exact one by |E| <= u |W_a| w (gamma_m |W_d|^T |c|), which moves a row's
polynomial by at most the absolute path mass of E, added as a margin; absolute masses carry a relative
(2 n + 8) u margin for their own sums of nonnegative terms.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError, SolverFailure
from ..exact import exact_fgl_auto
from ..model.activations import ACTIVATIONS
from ..model.network import Network
from ..polynomial import SlopeBox
from ..rounding import U, gamma_float, next_up, relative_up

MIN_ROW_SECONDS = 2e-3   # below this per row, a block's rows keep their closed-form bound (no search)
STALL_ROWS = 6             # searches of a block that must improve a row before the rest are searched
SEARCH_NNZ_PER_SECOND = 1e6  # a search needs a time share of at least its weights' nonzeros / this
FLOPS = 1e9                # multiply-adds per second assumed when deciding whether an interval fits the time
MAX_INTERVAL_ENTRIES = 4_000_000  # dense interval Jacobians beyond this (~8 float arrays): masses only


@dataclass
class Chain:
    """The gradient chain g^T = c^T W_d S_d ... S_1 W_0 as lists (weights, slope box, first-weight error)."""
    weights: list            # CSR, forward order
    lo: list                 # per hidden layer
    hi: list
    first_error: np.ndarray  # bound on |E| 1 for the float first weight (rows of weights[0])


@dataclass
class ComposeResult:
    upper: float
    blocks: list                                   # (first weight, end weight) per block
    rows: int = 0                                  # exact-search calls
    proved_rows: int = 0                           # of which closed (status optimal)
    fallback_rows: int = 0                         # rows left at their absolute mass
    info: dict = field(default_factory=dict)


def forward_chain(net: Network, slopes: SlopeBox) -> Chain:
    return Chain(list(net.weights), [np.asarray(x, float) for x in slopes.lo],
                 [np.asarray(x, float) for x in slopes.hi], np.zeros(net.widths[1]))


def transposed_chain(net: Network, c: np.ndarray, slopes: SlopeBox) -> Chain:
    """The chain of g = W_0^T S_1 ... S_d (W_d^T c) read from c: input width 1, outputs the n_0 entries of g."""
    Wd = net.weights[-1]
    v = Wd.T @ c
    err = 2 * gamma_float(len(c) + 2) * (abs(Wd).T @ np.abs(c))   # |fl(W_d^T c) - W_d^T c|, doubled
    Ws = [sp.csr_array(v.reshape(-1, 1))] + [sp.csr_array(W.T) for W in reversed(net.weights[:-1])]
    for W in Ws:
        W.eliminate_zeros()
    return Chain(Ws, [np.asarray(x, float) for x in reversed(slopes.lo)],
                 [np.asarray(x, float) for x in reversed(slopes.hi)], err)


def plan_blocks(n_weights: int, hidden_per_block: int, at_output: bool = True) -> list[tuple[int, int]]:
    """Blocks of at most hidden_per_block + 1 consecutive weights; the full blocks start at the output
    end (``at_output``) or at the input end (the short block is then the output block)."""
    size = hidden_per_block + 1
    if at_output:
        cuts, b = [], n_weights
        while b > 0:
            cuts.append((max(0, b - size), b))
            b -= size
        return cuts[::-1]
    return [(a, min(n_weights, a + size)) for a in range(0, n_weights, size)]


def _prop(ch: Chain, a: int, b: int, r: np.ndarray) -> np.ndarray:
    """r (a vector over the rows of W_a) carried to the inputs of W_{b-1}: r <- |W_l| (m_{l-1} r) for
    l = a+1 .. b-2, then times m_{b-2}. Nonnegative floats only (the caller rounds the result up)."""
    r = np.asarray(r, float)
    for l in range(a + 1, b - 1):
        r = abs(ch.weights[l]) @ (_mag(ch, l - 1) * r)
    return _mag(ch, b - 2) * r


def _ups(x, ch: Chain, a: int, b: int) -> np.ndarray:
    """x (nonnegative float sums and products over block (a, b)) rounded up: its relative error is at
    most gamma_n, n = summed widths + 2 per layer; relative_up(., 2 n + 8) covers it."""
    n = sum(ch.weights[l].shape[1] + 2 for l in range(a, b)) + 2
    return np.asarray([relative_up(float(v), 2 * n + 8) for v in np.atleast_1d(x)])


def _mag(ch: Chain, h: int) -> np.ndarray:
    """m_h = max(|lo_h|, |hi_h|) for hidden layer h (0-based: between weights h and h + 1)."""
    return np.maximum(np.abs(ch.lo[h]), np.abs(ch.hi[h]))


def _sub_network(ch: Chain, a: int, b: int, w: np.ndarray, last: sp.csr_array) -> tuple[Network, SlopeBox]:
    """(W_a diag(w), W_{a+1}, ..., W_{b-2}, last) with the internal slopes, restricted to the units with
    a nonzero path to the one output row (b - a >= 2). The activations are placeholders: the search
    reads only the weights and the slope box."""
    Ws = [sp.csr_array(ch.weights[l]) for l in range(a, b - 1)] + [sp.csr_array(last)]
    Ws[0] = sp.csr_array(Ws[0] @ sp.diags_array(w))
    live = [np.ones(1, bool)]           # backward reachability from the output row through live slopes
    for j in range(len(Ws) - 1, 0, -1):
        live.insert(0, ((abs(Ws[j]).T @ live[0].astype(float)) > 0) & (_mag(ch, a + j - 1) > 0))
    keep_in = np.flatnonzero((abs(Ws[0]).T @ live[0].astype(float)) > 0)
    hidden = [np.flatnonzero(x) for x in live[:-1]]
    rows = hidden + [np.arange(1)]
    cols = [keep_in] + hidden
    sub = []
    for k, W in enumerate(Ws):
        W = sp.csr_array(W[rows[k]][:, cols[k]])
        W.eliminate_zeros()
        sub.append(W)
    hs = range(a, b - 1)                          # 0-based hidden layers inside the block
    box = SlopeBox(tuple(ch.lo[h][hidden[k]] for k, h in enumerate(hs)),
                   tuple(ch.hi[h][hidden[k]] for k, h in enumerate(hs)))
    acts = tuple(ACTIVATIONS["relu"] for _ in hs)
    return Network(tuple(sub), tuple(np.zeros(W.shape[0]) for W in sub), acts), box


def _interval_flops(ch: Chain, a: int, b: int, n_rows: int) -> float:
    """Multiply-adds of _interval_rows on block (a, b) (both directions, 4 products per layer)."""
    outs = [W.shape[0] for W in ch.weights[a:b - 1]] + [n_rows]
    fwd = sum(4.0 * outs[k] * ch.weights[a + k].shape[1] * ch.weights[a].shape[1] for k in range(1, b - a))
    return 2 * fwd if b - a > 2 else fwd


def _pos_neg(M):
    """(M^+, M^-) as dense arrays when M is dense enough for BLAS, else CSR."""
    M = sp.csr_array(M)
    if M.nnz >= 0.25 * M.shape[0] * M.shape[1]:
        D = M.toarray()
        return np.maximum(D, 0), np.maximum(-D, 0)
    return M.maximum(0), (-M).maximum(0)


def _interval_rows(ch: Chain, a: int, b: int, w: np.ndarray, R, masses: np.ndarray) -> np.ndarray | None:
    """Per row of R (the block's last weight, or the output row c^T W_{b-1}): an upper bound on
    sup_s sum_k w_k |(R S_{b-2} W_{b-2} ... S_a' W_a)_{:,k}| by interval matrix products, entry by entry
    J <- W^+ [S J] - W^- [S J] from J = W_a (exact in every entry for one hidden layer: the range of
    sum_j a_j s_j W_jk), and for two hidden layers also from the row's side; the smaller. Float error:
    each entry is within 2 (layers) gamma_N of its absolute mass, summed with the weights w at most
    2 (layers) gamma_N masses (covered twice). None if too large."""
    Wa = ch.weights[a]
    if R.shape[0] * Wa.shape[1] > MAX_INTERVAL_ENTRIES or max(W.shape[0] for W in ch.weights[a:b]) * \
            Wa.shape[1] > MAX_INTERVAL_ENTRIES:
        return None
    L = Wa.toarray()                                   # forward: J <- M [S J], from J = W_a
    U = L
    for l in range(a + 1, b):
        lo, hi = ch.lo[l - 1][:, None], ch.hi[l - 1][:, None]
        cand = (lo * L, hi * L, lo * U, hi * U)
        SL, SU = np.minimum.reduce(cand), np.maximum.reduce(cand)
        Mp, Mn = _pos_neg(ch.weights[l] if l < b - 1 else R)
        L, U = Mp @ SL - Mn @ SU, Mp @ SU - Mn @ SL
    raw = np.maximum(np.abs(L), np.abs(U)) @ w
    if b - a > 2:                                      # backward: V <- [V S] M, from V = R (another bound)
        L = R.toarray()
        U = L
        for l in range(b - 1, a, -1):
            lo, hi = ch.lo[l - 1][None, :], ch.hi[l - 1][None, :]
            cand = (lo * L, hi * L, lo * U, hi * U)
            SL, SU = np.minimum.reduce(cand), np.maximum.reduce(cand)
            Mp, Mn = _pos_neg(ch.weights[l - 1])
            L, U = SL @ Mp - SU @ Mn, SU @ Mp - SL @ Mn
        raw = np.minimum(raw, np.maximum(np.abs(L), np.abs(U)) @ w)
    layers = b - a
    N = max(W.shape[1] for W in ch.weights[a:b]) + 4
    out = raw * (1 + 2 * gamma_float(Wa.shape[1] + 2)) + 4 * layers * gamma_float(N) * masses
    return np.asarray([relative_up(float(x), 4) for x in np.atleast_1d(out)])


def _row_bound(ch: Chain, a: int, b: int, w: np.ndarray, last: sp.csr_array, mass: float, margin: float,
               seconds: float | None, seed: int) -> tuple[float, str]:
    """sup_s ||last S_{b-1} ... W_a diag(w)||_1 <= the returned value ("optimal", "bracket" or "mass")."""
    if mass == 0.0:
        return 0.0, "optimal"
    if b - a == 1:                               # no hidden layer: the absolute mass is the value
        return mass, "optimal"
    if seconds is not None and seconds < MIN_ROW_SECONDS:
        return mass, "mass"
    nnz = sum(ch.weights[l].nnz for l in range(a, b - 1)) + last.nnz      # before pruning: an upper bound
    if seconds is not None and seconds < min(nnz, 10 * ch.weights[a].shape[1] * last.nnz) / SEARCH_NNZ_PER_SECOND:
        return mass, "mass"                                  # the search's setup alone would overrun
    net, box = _sub_network(ch, a, b, w, last)
    if net.widths[0] == 0 or any(W.nnz == 0 for W in net.weights):
        return 0.0, "optimal"
    nnz = sum(W.nnz for W in net.weights)
    if seconds is not None and seconds < nnz / SEARCH_NNZ_PER_SECOND:
        return mass, "mass"
    W0 = net.weights[0]
    dense = W0.nnz > 0.5 * W0.shape[0] * W0.shape[1]   # no narrow path decomposition: skip DP planning
    try:
        r = exact_fgl_auto(net, np.ones(1), box, time_limit=seconds, seed=seed,
                           method="bnb" if dense and nnz > 4096 else "auto")
    except (InvalidInputError, SolverFailure, MemoryError):
        return mass, "mass"
    value = relative_up(float(r.upper) + float(r.rounding_error) + margin, 4)
    how = "optimal" if r.optimal else "bracket" if value < mass else "mass"
    return min(value, mass), how


def closed_form_rows(ch: Chain, c: np.ndarray | None, a: int, b: int, rho: np.ndarray,
                     deadline: float | None = None):
    """Block (a, b) with the previous row bounds rho: (column weights w, last weight R (the block's, or
    the output row c^T W_{b-1} when c is given), row bounds min(absolute mass, interval), the float
    margins a search on a row must add). The interval is skipped when its estimated cost exceeds the time
    left before ``deadline``."""
    w = rho if a == 0 else next_up(_mag(ch, a - 1) * rho)
    # first weight W_a diag(w) in floats: r1 bounds |exact first weight| w, e1 bounds |E| 1 (u |W_a| w
    # for the products, doubled; plus the chain's own first-weight error, transposed chain: W_d^T c)
    extra = np.asarray(ch.first_error, float) * w[0] if a == 0 else 0.0
    r1 = abs(ch.weights[a]) @ w + extra
    e1 = 2 * U * (abs(ch.weights[a]) @ w) + extra
    if c is not None:                                     # the output block: one row, c^T W_{b-1}
        Wl = ch.weights[b - 1]
        v = Wl.T @ c
        lerr = 2 * gamma_float(len(c) + 2) * (abs(Wl).T @ np.abs(c))   # |fl(W^T c) - W^T c|, doubled
        lab = np.abs(v) + lerr
        R = sp.csr_array(v.reshape(1, -1))
        if b - a == 1:
            masses, margins = _ups(lab @ w, ch, a, b), np.zeros(1)
        else:
            pr, pe = _prop(ch, a, b, r1), _prop(ch, a, b, e1)
            masses = _ups(lab @ pr, ch, a, b)
            margins = _ups(lab @ pe + lerr @ (pr + pe), ch, a, b)
    else:
        R = sp.csr_array(ch.weights[b - 1])
        if b - a == 1:
            masses, margins = _ups(r1, ch, a, b), np.zeros(R.shape[0])
        else:
            pr, pe = _prop(ch, a, b, r1), _prop(ch, a, b, e1)
            masses, margins = _ups(abs(R) @ pr, ch, a, b), _ups(abs(R) @ pe, ch, a, b)
    bound = masses.copy()
    if b - a > 1:
        afford = deadline is None or _interval_flops(ch, a, b, R.shape[0]) / FLOPS < deadline - time.perf_counter()
        iv = _interval_rows(ch, a, b, w, R, masses) if afford else None
        if iv is not None:
            bound = np.minimum(bound, np.asarray([relative_up(float(x), 2) for x in iv + margins]))
    return w, R, bound, margins


def beam_plan(ch: Chain, c: np.ndarray | None, deadline: float | None, beam: int = 6,
              max_len: int = 4) -> tuple[float, list[tuple[int, int]]]:
    """Cut placement by beam search over the closed-form recursion: at every cut the ``beam`` prefixes
    whose row bounds give the smallest completion by absolute masses (rho . downstream mass) are
    extended by blocks of 1..max_len weights. Returns the best (value, blocks) found (inf, [] if the
    deadline passed before any plan was complete)."""
    n = len(ch.weights)
    states = {0: [(0.0, np.ones(ch.weights[0].shape[1]), [])]}
    best = (float("inf"), [])
    for p in range(n):
        for _, rho, blocks in sorted(states.pop(p, []), key=lambda t: t[0])[:beam]:
            for q in range(p + 1, min(n, p + max_len) + 1):
                if deadline is not None and time.perf_counter() > deadline:
                    return best
                last = q == n
                bound = closed_form_rows(ch, c if (last and c is not None) else None, p, q, rho, deadline)[2]
                plan = blocks + [(p, q)]
                if last:
                    value = float(bound[0]) if c is not None else float(bound.max(initial=0.0))
                    best = min(best, (value, plan), key=lambda t: t[0])
                else:
                    states.setdefault(q, []).append((float(bound @ _downstream(ch, c, q)), bound, plan))
    return best


def compose_bound(ch: Chain, c: np.ndarray | None, blocks: list[tuple[int, int]], deadline: float | None,
                  seed: int = 0, search: bool = True, stall: bool = True) -> ComposeResult:
    """The recursion of the module docstring over ``blocks``. With ``c`` the output block carries c
    (l_inf); without, every block is a row block and the result is max_j rho_K(j) (l_1). Every row
    first gets min(absolute mass, interval bound); with ``search`` the exact FGL search then runs on
    the rows of 1-2 hidden-layer blocks, most important first (rho_i times the absolute path mass from
    the row to the output), each with its share of the time left, until the deadline; with ``stall``
    a block's searches stop after STALL_ROWS without improvement or one overrunning its share."""
    res = ComposeResult(0.0, blocks)
    rho = np.ones(ch.weights[0].shape[1])
    searchable = [k for k, (a, b) in enumerate(blocks) if 2 <= b - a <= 3]
    rows_left = sum(1 if (k == len(blocks) - 1 and c is not None) else ch.weights[blocks[k][1] - 1].shape[0]
                    for k in searchable)
    for k, (a, b) in enumerate(blocks):
        out_block = k == len(blocks) - 1 and c is not None
        w, R, bound, margins = closed_form_rows(ch, c if out_block else None, a, b, rho, deadline)
        if search and k in searchable and np.any(bound > 0):
            order = np.argsort(-(bound * _downstream(ch, c, b)), kind="stable") if not out_block else [0]
            tried = improved = 0
            overran = False
            for i in order:
                if stall and ((tried >= STALL_ROWS and improved == 0) or overran):   # search useless or too slow here
                    rows_left -= 1
                    continue
                seconds = None
                if deadline is not None:
                    seconds = (deadline - time.perf_counter()) / max(1, rows_left)
                    if seconds < MIN_ROW_SECONDS:
                        break
                rows_left -= 1
                if bound[i] == 0:
                    continue
                t1 = time.perf_counter()
                value, how = _row_bound(ch, a, b, w, R[[i]], float(bound[i]), float(margins[i]), seconds, seed)
                overran = seconds is not None and time.perf_counter() - t1 > 2 * seconds + 0.05
                res.rows += 1
                res.proved_rows += how == "optimal"
                res.fallback_rows += how == "mass"
                tried += 1
                improved += value < bound[i] * (1 - 1e-6)
                bound[i] = min(bound[i], value)
        rho = bound
    res.upper = float(rho[0]) if c is not None else float(rho.max(initial=0.0))
    return res


def _downstream(ch: Chain, c: np.ndarray | None, b: int) -> np.ndarray:
    """Absolute path mass from each row of W_{b-1} to the output (|c| or all ones): a row's weight in
    the final value, to order the searches."""
    v = np.abs(c) if c is not None else np.ones(ch.weights[-1].shape[0])
    for l in range(len(ch.weights) - 1, b - 1, -1):
        v = _mag(ch, l - 1) * (abs(ch.weights[l]).T @ v)
    return v
