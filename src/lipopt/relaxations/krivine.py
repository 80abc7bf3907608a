"""LiPopt-k: the Krivine / Handelman LP certificate for max P over [0,1]^n.

    lambda - P = sum_h c_h h,   c_h >= 0,   h = prod_{i in S} y_i prod_{j in T} (1 - y_j),
    S, T disjoint, |S| + |T| <= k, S u T inside one clique.

Products are multilinear (Bernstein-type), the natural basis for the multilinear P. Expanding
h = sum_{R subset T} (-1)^|R| y^(S u R) gives one equality row per nonconstant monomial; the constant
row is eliminated: lambda = P_0 + sum_{h: S empty} c_h, so the LP is

    minimise  P_0 + o^T c   s.t.   A c = -P_nonconst,  c >= 0,

with o_h = 1 iff S is empty. A and o depend only on the cliques and k (not on the weights): they are
built vectorised once and cached; only the right-hand side changes with the network.
"""
from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from math import comb

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError, UncoveredMonomialError
from ..monomials import lookup, monomial_keys
from ..polynomial import NormGradientPolynomial
from ..solvers.base import LinearProgram

DEFAULT_MAX_COLUMNS = 8_000_000


@dataclass(frozen=True)
class KrivineStructure:
    """Weight-independent part of the LP: rows = nonconstant monomials (sorted keys), columns = products."""
    degree: int
    n_vars: int
    cliques: tuple[np.ndarray, ...]
    row_keys: np.ndarray
    A: sp.csc_array
    objective: np.ndarray
    subsets: tuple[np.ndarray, ...]  # subsets[j-1]: (N_j, j) sorted variable sets of size j
    col_start: tuple[int, ...]       # first column of the products over subsets of size j

    @property
    def shape(self) -> tuple[int, int]:
        return self.A.shape

    def describe_column(self, col: int) -> tuple[np.ndarray, np.ndarray]:
        """(S, T) of the product h in column ``col``: y over S times (1 - y) over T."""
        j = int(np.searchsorted(self.col_start, col, side="right"))
        local = col - self.col_start[j - 1]
        U = self.subsets[j - 1][local >> j]
        bits = np.array([(local & ((1 << j) - 1)) >> p & 1 for p in range(j)], bool)
        return U[~bits], U[bits]


def estimate_size(cliques, degree: int) -> int:
    """Upper bound on the number of LP columns: sum over cliques and j <= k of C(m, j) 2^j."""
    return columns_for_sizes([len(q) for q in cliques], degree)


def columns_for_sizes(sizes, degree: int, stop: int | None = None) -> int:
    """sum over clique sizes m and j <= k of C(m, j) 2^j (exact integers); stops early past ``stop``."""
    total, memo = 0, {}
    for m in sizes:
        m = int(m)
        if m not in memo:
            memo[m] = sum(comb(m, j) << j for j in range(1, min(degree, m) + 1))
        total += memo[m]
        if stop is not None and total > stop:
            break
    return total


_CACHE: "OrderedDict[bytes, KrivineStructure]" = OrderedDict()
_CACHE_SIZE = 8


def krivine_structure(cliques, degree: int, n_vars: int,
                      max_columns: int = DEFAULT_MAX_COLUMNS) -> KrivineStructure:
    """The LP structure for these cliques and degree; an LRU cache keyed by the sparsity pattern."""
    if degree < 1:
        raise InvalidInputError(f"degree must be >= 1, got {degree}")
    cliques = tuple(np.unique(np.asarray(q, dtype=np.int64)) for q in cliques)
    h = hashlib.sha256(np.array([degree, n_vars], np.int64).tobytes())
    for q in cliques:
        h.update(np.int64(len(q)).tobytes())
        h.update(q.tobytes())
    key = h.digest()
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    est = estimate_size(cliques, degree)
    if est > max_columns:
        raise InvalidInputError(
            f"the degree-{degree} certificate would have up to {est:,} columns (limit {max_columns:,}); "
            "lower the degree, use sparser cliques, or raise max_columns")
    structure = _build(cliques, degree, n_vars)
    _CACHE[key] = structure
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return structure


@lru_cache(maxsize=None)
def _combinations(m: int, j: int) -> np.ndarray:
    return np.array(list(itertools.combinations(range(m), j)), dtype=np.int64).reshape(-1, j)


@lru_cache(maxsize=None)
def _expansion_template(j: int):
    """For a subset U of size j, the 3^j (product, monomial) pairs of the expansion.

    Each position is in S (state 0), in T but not R (state 1: contributes the 1 of 1 - y), or in R
    (state 2: contributes -y). Returns the column pattern (bit p set iff position p is in T), the
    positions forming the monomial (padded with j, which indexes a -1 column), and the sign.
    """
    states = np.array(list(itertools.product((0, 1, 2), repeat=j)), dtype=np.int64).reshape(-1, j)
    pattern = ((states != 0) * (1 << np.arange(j))).sum(axis=1)
    in_mono = states != 1
    gather = np.full(states.shape, j, dtype=np.int64)
    for e in range(len(states)):
        pos = np.flatnonzero(in_mono[e])
        gather[e, : len(pos)] = pos
    sign = np.where((states == 2).sum(axis=1) % 2 == 0, 1.0, -1.0)
    return pattern, gather, sign


def _build(cliques: tuple[np.ndarray, ...], degree: int, n_vars: int) -> KrivineStructure:
    rows_keys, cols, vals, obj_cols = [], [], [], []
    subsets_all, col_start = [], []
    n_cols = 0
    for j in range(1, degree + 1):
        blocks = [q[_combinations(len(q), j)] for q in cliques if len(q) >= j]
        if not blocks:
            break
        U = np.concatenate(blocks)
        U = U[np.unique(monomial_keys(U, n_vars, j), return_index=True)[1]]
        pattern, gather, sign = _expansion_template(j)
        U_ext = np.hstack([U, np.full((len(U), 1), -1, dtype=np.int64)])
        mono = U_ext[:, gather].reshape(-1, j)              # (N * 3^j, j), padded with -1
        keys = monomial_keys(mono, n_vars, degree)
        col = n_cols + (np.arange(len(U))[:, None] << j) + pattern[None, :]
        col = col.ravel()
        val = np.broadcast_to(sign, (len(U), len(sign))).ravel()
        const = mono[:, 0] < 0
        obj_cols.append(col[const])  # the constant term of h is 1 exactly when S is empty
        rows_keys.append(keys[~const])
        cols.append(col[~const])
        vals.append(val[~const])
        subsets_all.append(U)
        col_start.append(n_cols)
        n_cols += len(U) << j
    all_keys = np.concatenate(rows_keys)
    row_keys, row = np.unique(all_keys, return_inverse=True)
    A = sp.csc_array((np.concatenate(vals), (row.ravel(), np.concatenate(cols))),
                     shape=(len(row_keys), n_cols))
    objective = np.zeros(n_cols)
    objective[np.concatenate(obj_cols)] = 1.0
    return KrivineStructure(degree, n_vars, cliques, row_keys, A, objective,
                            tuple(subsets_all), tuple(col_start))


def uncovered_monomials(poly: NormGradientPolynomial, structure: KrivineStructure) -> np.ndarray:
    """Nonconstant monomials of P with no equality row (rows of ``poly.monomials``)."""
    nonconst = poly.monomials[:, 0] >= 0
    missing = lookup(structure.row_keys, poly.keys) < 0
    return poly.monomials[nonconst & missing]


def covering_structure(poly: NormGradientPolynomial, cliques, degree: int, coverage: str = "enlarge",
                       max_columns: int = DEFAULT_MAX_COLUMNS) -> tuple[KrivineStructure, int]:
    """Structure whose rows cover every monomial of P (soundness rule 1).

    ``coverage="enlarge"`` adds each uncovered monomial's variable set as a clique; ``"strict"``
    raises UncoveredMonomialError. Returns the structure and the number of cliques added.
    """
    if poly.degree > degree:
        raise InvalidInputError(
            f"degree {degree} is below the polynomial's degree {poly.degree} (depth + 1): "
            f"use --degree {poly.degree} or more")
    structure = krivine_structure(cliques, degree, poly.n_vars, max_columns)
    missing = uncovered_monomials(poly, structure)
    if len(missing) == 0:
        return structure, 0
    if coverage == "strict":
        example = missing[0][missing[0] >= 0].tolist()
        raise UncoveredMonomialError(
            f"{len(missing)} monomial(s) of the polynomial lie in no clique of the certificate "
            f"(e.g. variables {example}); dropping them would bound a different polynomial")
    if coverage != "enlarge":
        raise InvalidInputError(f"coverage must be 'enlarge' or 'strict', got {coverage!r}")
    extra = [m[m >= 0] for m in missing]
    structure = krivine_structure(list(structure.cliques) + extra, degree, poly.n_vars, max_columns)
    assert len(uncovered_monomials(poly, structure)) == 0
    return structure, len(extra)


def krivine_lp(poly: NormGradientPolynomial, structure: KrivineStructure) -> LinearProgram:
    """The LP for this polynomial: minimise o^T c s.t. A c = -P (nonconstant), c >= 0.

    Its optimum plus P's constant term is LiPopt-k's value.
    """
    rows = lookup(structure.row_keys, poly.keys)
    nonconst = poly.monomials[:, 0] >= 0
    if np.any(rows[nonconst] < 0):
        raise UncoveredMonomialError("the certificate does not cover every monomial of the polynomial")
    b = np.zeros(structure.A.shape[0])
    b[rows[nonconst]] = -poly.coef[nonconst]
    n = structure.A.shape[1]
    return LinearProgram(c=structure.objective, A_eq=structure.A, b_eq=b,
                         lb=np.zeros(n), ub=np.full(n, np.inf), offset=constant_term(poly))


def constant_term(poly: NormGradientPolynomial) -> float:
    const = poly.monomials[:, 0] < 0
    return float(poly.coef[const].sum()) if const.any() else 0.0


def precheck_size(net, c, slopes, degree: int, strategy: str, max_columns: int) -> int:
    """Estimated LiPopt-k columns from the weight patterns alone (before the polynomial is built):
    refuses when the degree is below depth + 1, the estimate is above ``max_columns``, or the LP would
    not fit in the memory limit. Returns the estimate."""
    from .. import memory
    from .cliques import clique_sizes
    if net.depth + 1 > degree:
        raise InvalidInputError(f"degree {degree} is below the polynomial's degree {net.depth + 1} (depth + 1): "
                                f"use --degree {net.depth + 1} or more")
    sizes = clique_sizes(net, c, slopes, strategy)
    cap = min(max_columns, int(memory.current() / memory.BYTES_PER_LP_COLUMN))
    est = columns_for_sizes(sizes, degree, stop=cap)
    if est > max_columns:
        raise InvalidInputError(
            f"LiPopt-{degree} would need more than {max_columns:,} LP columns ({len(sizes):,} cliques of up to "
            f"{int(sizes.max()):,} variables); use a lower degree, sparser cliques, or --method sdp / product")
    memory.require(float(est) * memory.BYTES_PER_LP_COLUMN, f"the LiPopt-{degree} LP ({est:,} columns)",
                   "use a lower degree or --method sdp / product")
    return est
