"""Linear bound propagation on the lifted backward pass (CROWN-style), as dual points of the lifted LP.

For a target x_t = +-u_{t,j} (or +-g_j, t = -1) in ``lifted_lp(net, box, first=max(t, 0))``, propagate a
row vector upwards: z_t = +-e_j on the target's equality row, then for each layer k above it,
a = W_k z_{k-1} (the coefficients of v_k), cancelled by McCormick rows of v_k = s_k u_k: the upper planes
(rows 3, 4 with weights lambda a^+, (1 - lambda) a^+) where a > 0, the lower ones (rows 1, 2 with lambda a^-,
(1 - lambda) a^-) where a < 0, which leaves z_k = a^+ (lambda sh + (1 - lambda) sl) - a^- (lambda sl +
(1 - lambda) sh) on u_k, passed to the next equality row; the s columns and the top layer's u are left to
their boxes. All targets of a layer at once (dense matrix products). The multipliers are only a dual point:
``certify.lp_dual`` turns each into a rigorous bound, so nothing here needs directed rounding.
"""
from __future__ import annotations

import numpy as np

from ..model import Network
from .lifted import JacobianBox
from .lipsdp_layers import SPARSE_DENSITY

LAMBDAS = (0.0, 0.5, 1.0)


def _dense(W) -> np.ndarray:
    return W.toarray() if hasattr(W, "toarray") else np.asarray(W)


def _times_transpose(cur: np.ndarray, W) -> np.ndarray:
    """cur @ W^T, through scipy.sparse below the layer LipSDP's SPARSE_DENSITY (a conv layer: cnn_bn's 0.05 s
    against 0.19 s dense; a float dual point either way)."""
    if hasattr(W, "toarray") and W.nnz < SPARSE_DENSITY * W.shape[0] * W.shape[1]:
        return np.asarray(cur @ W.T)
    return cur @ _dense(W).T


def propagate(net: Network, box: JacobianBox, t: int, sign: float, lam: float):
    """Multipliers for all targets of layer t (t = -1: g) and their float estimate of the bound.

    Returns (Y, Z, estimate): Y[k] = the four (T, n_k) row blocks of layer k's McCormick rows (k > t),
    Z[k] = the (T, n_k) block of u_k's equality row (t <= k <= d - 2; Z[-1] for g), estimate (T,)."""
    d = net.depth
    n_t = net.widths[0] if t < 0 else len(box.s_lo[t])
    Z = {t: sign * np.eye(n_t)}
    Y = {}
    est = np.zeros(n_t)
    cur = None      # Z[t] = sign I: its product with the first weight is that weight (exactly), not n_t^2 n_k flops
    for k in range(t + 1, d):
        sl, sh, ul, uh = box.s_lo[k], box.s_hi[k], box.u_lo[k], box.u_hi[k]
        A = sign * _dense(net.weights[k]).T if cur is None else _times_transpose(cur, net.weights[k])
        P, N = np.maximum(A, 0.0), np.maximum(-A, 0.0)
        Y[k] = (lam * N, (1 - lam) * N, lam * P, (1 - lam) * P)
        est += (lam * N) @ (sl * ul) + ((1 - lam) * N) @ (sh * uh) - (lam * P) @ (sh * ul) - ((1 - lam) * P) @ (sl * uh)
        r_s = A * (lam * ul + (1 - lam) * uh)
        est += np.maximum(r_s * sl, r_s * sh).sum(axis=1)
        cur = P * (lam * sh + (1 - lam) * sl) - N * (lam * sl + (1 - lam) * sh)
        if k <= d - 2:
            Z[k] = cur
        else:
            est += np.maximum(cur * ul, cur * uh).sum(axis=1)
    return Y, Z, est


def assemble(net: Network, box: JacobianBox, t: int, Y: dict, Z: dict, row) -> np.ndarray:
    """The multiplier vector (A_ub rows, then A_eq rows) of target ``row`` for lifted_lp(first=max(t, 0));
    for an index array ``row``, one such vector per target (a (len(row), rows) matrix)."""
    d = net.depth
    first = max(t, 0)
    lead = np.shape(row)            # () for one target, (T,) for many
    ys = []
    for k in range(first, d):
        n = len(box.s_lo[k])
        ys += [blk[row] for blk in Y[k]] if k in Y else [np.zeros(lead + (4 * n,))]
    zs = [Z[k][row] if k in Z else np.zeros(lead + (len(box.s_lo[k]),)) for k in range(first, d - 1)]
    if first == 0:  # lifted_lp(first=0) carries g's equality rows: the target's own, or none
        zs.append(Z[-1][row] if t < 0 else np.zeros(lead + (net.widths[0],)))
    return np.concatenate(ys + zs, axis=-1)
