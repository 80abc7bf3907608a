"""Which inputs of a max-pool window can be its maximum over a domain (the window's *candidates*).

Input k of window w is dropped when another input j of the window is larger everywhere on the domain:
  * intervals: hi_k < max_j lo_j;
  * differences: sup (v_k - v_j) < 0, with v the pool's input values, or the pre-activations z when the
    pool reads a nondecreasing activation sigma(z) (then sigma(z_k) <= sigma(z_j), equal only where both
    lie on one flat piece of sigma, where sigma'(z_k) = sigma'(z_j) = 0 and either choice gives the same
    Jacobian, the zero one through this window; the slope box of j holds that 0).
So on the domain the window's max equals the max over its candidates, and almost everywhere its Clarke
Jacobian selects a candidate: every bound over the derivative box may let a free window choose among its
candidates only. A window with one candidate is *fixed* to it. Effective windows keep the node's layout,
a dropped input marked -1 like padding.
"""
from __future__ import annotations

import numpy as np


def window_values(v: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """(n_out, k) entries of v per window, -inf where the window has no input."""
    return np.where(windows >= 0, v[np.maximum(windows, 0)], -np.inf)


def interval_candidates(windows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The windows with every input whose upper bound is below the window's best lower bound dropped
    (bounds outward rounded; an input tying that lower bound stays, NaN bounds keep the input)."""
    L, H = window_values(lo, windows), window_values(hi, windows)
    best = L.max(axis=1)
    keep = (windows >= 0) & ~(H < best[:, None])
    return np.where(keep, windows, -1)


def fixed_inputs(windows: np.ndarray) -> np.ndarray:
    """(n_out,) the input of each window left with a single candidate, -1 where more remain."""
    count = (windows >= 0).sum(axis=1)
    first = windows.max(axis=1)
    return np.where(count == 1, first, -1).astype(np.int64)


def window_pairs(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(window, k column, j column) of every ordered pair of distinct candidates of windows that still
    have two or more."""
    ok = windows >= 0
    multi = ok.sum(axis=1) > 1
    K = windows.shape[1]
    a, b = np.meshgrid(np.arange(K), np.arange(K), indexing="ij")
    a, b = a[a != b], b[a != b]
    w = np.flatnonzero(multi)
    W = np.repeat(w, a.size)
    A, B = np.tile(a, w.size), np.tile(b, w.size)
    sel = ok[W, A] & ok[W, B] & (windows[W, A] != windows[W, B])
    return W[sel], A[sel], B[sel]


def drop_dominated(windows: np.ndarray, W: np.ndarray, A: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Drop input (W, A) wherever a pair (W, A, .) has sup(v_A - v_B) = ``upper`` < 0. A rigorous bound
    makes the dominance relation part of the true strict order on the domain, so every window keeps at
    least one input; the guard keeps a window whole if rounding ever said otherwise."""
    drop = np.zeros(windows.shape, dtype=bool)
    hit = upper < 0
    drop[W[hit], A[hit]] = True
    out = np.where(drop, -1, windows)
    emptied = (out >= 0).sum(axis=1) == 0
    out[emptied] = windows[emptied]
    return out
