"""The norm-gradient polynomial of a ReLU-type network (LiPopt, Latorre et al. 2020).

    P(t, s_1..s_d) = t^T W_0^T diag(s_1) W_1^T ... diag(s_d) W_d^T c,   t in [-1,1]^n0, s_l in [lo_l, hi_l],

so that the l_inf Lipschitz constant of c^T f is at most max P over the box. Every variable is mapped
to y in [0,1] (t = -1 + 2y, s = lo + (hi - lo) y; hi - lo is rounded up so the box only grows), and P is
stored in y as sparse multilinear coefficients. Coefficients come from the network's nonzero paths,
enumerated by sparse joins layer by layer; each path expands into at most 2^(d+1) monomials.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from . import memory
from .errors import InvalidInputError
from .model.network import Network
from .monomials import monomial_keys
from .rounding import next_up
from .slopes import SlopeBox, global_slopes  # noqa: F401 (SlopeBox, global_slopes live in slopes.py; re-exported)

MAX_PATHS = 30_000_000  # beyond this the path table alone needs several GB


@dataclass(frozen=True)
class NormGradientPolynomial:
    """P(y) = sum_mu coef[mu] * prod_{v in mu} y_v on y in [0,1]^n_vars (multilinear).

    Variable v stands for x_v = offset[v] + scale[v] * y_v; its layer (0 = input sign t, l = hidden
    layer l) and unit index are kept. ``abs_mass`` and ``n_terms`` (sum of |term| and the number of
    float terms summed into each coefficient) and ``max_factors`` (floats multiplied per term) bound
    the rounding error of ``coef`` for certification.
    """
    n_vars: int
    layer: np.ndarray
    unit: np.ndarray
    offset: np.ndarray
    scale: np.ndarray
    monomials: np.ndarray  # (M, degree) variable ids, ascending, padded with -1
    keys: np.ndarray       # sorted canonical keys of the monomials
    coef: np.ndarray
    abs_mass: np.ndarray
    n_terms: np.ndarray
    max_factors: int
    degree: int
    n_paths: int

    @property
    def n_monomials(self) -> int:
        return int(self.coef.shape[0])

    def variables_of_layer(self, l: int) -> np.ndarray:
        return np.flatnonzero(self.layer == l)

    def evaluate(self, y: np.ndarray) -> np.ndarray:
        """P at points y (shape (N, n_vars)) in [0,1]^n: used by tests and lower bounds."""
        y = np.atleast_2d(y)
        cols = np.where(self.monomials >= 0, self.monomials, 0)
        vals = np.where(self.monomials >= 0, y[:, cols], 1.0).prod(axis=2)
        return vals @ self.coef


def path_count(net: Network) -> int:
    """Number of nonzero input->output paths (without enumerating them)."""
    v = np.ones(net.widths[0])
    for W in net.weights:
        v = abs(W).astype(bool).astype(np.float64) @ v
    return int(round(v.sum()))


def build_polynomial(net: Network, c: np.ndarray, slopes: SlopeBox | None = None) -> NormGradientPolynomial:
    """Norm-gradient polynomial of c^T f over the derivative box ``slopes`` (global if None)."""
    slopes = slopes or global_slopes(net)
    d = net.depth
    n0 = net.widths[0]
    # Variables: input signs first, then every hidden neuron whose derivative is not a single value.
    layer = [np.zeros(n0, dtype=np.int64)]
    unit = [np.arange(n0)]
    offset = [np.full(n0, -1.0)]
    scale = [np.full(n0, 2.0)]
    var_of_unit = []
    alpha_of_unit, beta_of_unit = [], []
    n_vars = n0
    for l in range(d):
        lo, hi = np.asarray(slopes.lo[l], float), np.asarray(slopes.hi[l], float)
        if lo.shape != (net.widths[l + 1],) or hi.shape != lo.shape or np.any(~(lo <= hi)):
            raise InvalidInputError(f"derivative box of hidden layer {l + 1} is malformed")
        free = lo < hi
        beta = np.where(free, _width_rounded_up(lo, hi), 0.0)
        ids = np.full(lo.shape, -1, dtype=np.int64)
        ids[free] = n_vars + np.arange(free.sum())
        n_vars += int(free.sum())
        var_of_unit.append(ids)
        alpha_of_unit.append(lo)
        beta_of_unit.append(beta)
        layer.append(np.full(free.sum(), l + 1))
        unit.append(np.flatnonzero(free))
        offset.append(lo[free])
        scale.append(beta[free])

    n_paths_est = path_count(net)
    if n_paths_est > MAX_PATHS:
        raise InvalidInputError(
            f"the network has {n_paths_est:,} nonzero paths (limit {MAX_PATHS:,}); prune it or use "
            "--method product/sampling")
    memory.require(float(n_paths_est) * (d + 2) * memory.BYTES_PER_PATH_VAR,
                   f"the norm-gradient polynomial's {n_paths_est:,} paths",
                   "prune the network or use --method product, sdp or sampling")
    # Enumerate nonzero paths: node index per layer and the product of weights along the path.
    W0 = net.weights[0] if d else sp.csr_array(sp.diags_array(c) @ net.weights[0])
    W0 = sp.coo_array(W0)
    nodes = [W0.col.astype(np.int64)] + ([W0.row.astype(np.int64)] if d else [])
    weight = W0.data.copy()
    if d:
        live = _alive(alpha_of_unit[0], beta_of_unit[0], nodes[1])
        nodes, weight = [a[live] for a in nodes], weight[live]
    for l in range(1, d + 1):
        Wc = sp.csc_array(net.weights[l])
        if l == d:  # fold the output selection c into the last layer without forming W_d^T c
            Wc = sp.csc_array(sp.diags_array(c) @ Wc)
            Wc.eliminate_zeros()
        src, dst, w = _extend(Wc, nodes[-1])
        nodes = [a[src] for a in nodes]
        weight = weight[src] * w
        if l < d:
            nodes.append(dst)
            live = _alive(alpha_of_unit[l], beta_of_unit[l], dst)
            nodes, weight = [a[live] for a in nodes], weight[live]
    n_paths = len(weight)

    # Factor p of a path is offset + scale*y: expand the product over the subsets of kept factors.
    var = [nodes[0]] + [var_of_unit[l][nodes[l + 1]] for l in range(d)]
    alpha = [np.full(n_paths, -1.0)] + [alpha_of_unit[l][nodes[l + 1]] for l in range(d)]
    beta = [np.full(n_paths, 2.0)] + [beta_of_unit[l][nodes[l + 1]] for l in range(d)]
    rows, coefs = [], []
    for mask in range(1 << (d + 1)):
        kept = [p for p in range(d + 1) if mask >> p & 1]
        term = weight.copy()
        ok = np.ones(n_paths, bool)
        for p in range(d + 1):
            f = beta[p] if mask >> p & 1 else alpha[p]
            ok &= f != 0
            term = term * f
        if not ok.any():
            continue
        block = np.full((int(ok.sum()), d + 1), -1, dtype=np.int64)
        for j, p in enumerate(kept):
            block[:, j] = var[p][ok]
        rows.append(block)
        coefs.append(term[ok])
    all_rows = np.concatenate(rows) if rows else np.empty((0, d + 1), np.int64)
    all_terms = np.concatenate(coefs) if coefs else np.empty(0)
    keys = monomial_keys(all_rows, n_vars, d + 1)
    ukeys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    coef = np.bincount(inverse, weights=all_terms, minlength=len(ukeys))
    abs_mass = np.bincount(inverse, weights=np.abs(all_terms), minlength=len(ukeys))
    n_terms = np.bincount(inverse, minlength=len(ukeys))
    return NormGradientPolynomial(
        n_vars=n_vars, layer=np.concatenate(layer), unit=np.concatenate(unit),
        offset=np.concatenate(offset), scale=np.concatenate(scale),
        monomials=all_rows[first], keys=ukeys, coef=coef, abs_mass=abs_mass, n_terms=n_terms,
        max_factors=2 * d + 4, degree=d + 1, n_paths=n_paths)


def _width_rounded_up(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """fl(hi - lo) moved up one ulp wherever it is below the exact difference (TwoSum error term)."""
    s = hi - lo
    bb = s - hi
    err = (hi - (s - bb)) + (-lo - bb)  # exact: hi - lo = s + err
    return np.where(err > 0, next_up(s), s)


def _alive(alpha: np.ndarray, beta: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Paths through a neuron whose derivative is identically zero vanish."""
    return (alpha[units] != 0) | (beta[units] != 0)


def _extend(Wc: sp.csc_array, last: np.ndarray):
    """Sparse join: every path ending at unit ``last`` continues along each nonzero of that column."""
    start = Wc.indptr[last]
    count = Wc.indptr[last + 1] - start
    src = np.repeat(np.arange(len(last)), count)
    first = np.cumsum(count) - count
    pos = np.repeat(start - first, count) + np.arange(int(count.sum()))
    return src, Wc.indices[pos].astype(np.int64), Wc.data[pos]
