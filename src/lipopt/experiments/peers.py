"""Peer tools run side by side with lipopt in the experiments (optional imports, never dependencies).

ECLipsE and ECLipsE-Fast (Xu & Sivaranjani 2024, package ``eclipse-nn``, ``pip install lipopt[peers]``):
global l2 Lipschitz estimates of MLPs with slope-restricted activations, from LipSDP-Neuron's
block-tridiagonal matrix solved layer by layer (ECLipsE: one small SDP per layer through cvxpy/SCS;
ECLipsE-Fast: closed-form layer certificates). The margin c^T f is bounded by folding c^T into the last
layer (W_L <- c^T W_L). Their numbers are floating-point estimates (solver tolerances, no directed
rounding), not certified bounds like lipopt's. auto_LiRPA is not included.
"""
from __future__ import annotations

import time

import numpy as np

PEER_METHODS = {"ECLipsE": "ECLipsE", "ECLipsE-Fast": "ECLipsE_Fast"}
# activation -> slope interval [alpha, beta] (the activation's derivative range)
SLOPES = {"relu": (0.0, 1.0), "tanh": (0.0, 1.0), "sigmoid": (0.0, 0.25)}
# ECLipsE (accurate) solves one SDP with a (2 n_l) x (2 n_l) PSD block per hidden layer through cvxpy/SCS;
# measured here on 784-n-n-1 (one thread, loaded machine): n = 64 in 6.6 s / 344 MB, n = 128 in 28 s /
# 417 MB, n = 256 not done after 150 s (500 MB and growing; > 20 GB reported at n = 1024). Above this
# width it cannot finish within its cell's limit, so it is skipped with this reason.
ECLIPSE_MAX_WIDTH = 128


def installed() -> bool:
    """True when eclipse-nn (and its torch) can be imported."""
    try:
        from eclipse_nn.LipConstEstimator import LipConstEstimator  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


def refuse(method: str, net, family: str | None) -> str | None:
    """Why ``method`` does not apply to ``net`` (None: it applies). Shapes only."""
    if family not in (None, "mlp"):
        return f"{method} handles fully connected MLPs only; this is a {family}"
    bad = sorted({a.name for a in net.activations} - set(SLOPES))
    if bad:
        return f"{method} here supports activations {', '.join(sorted(SLOPES))}; the network uses {', '.join(bad)}"
    if net.depth < 1:
        return f"{method} needs at least one hidden layer"
    if method == "ECLipsE" and max(net.widths[1:-1]) > ECLIPSE_MAX_WIDTH:
        return (f"ECLipsE (accurate) skipped above hidden width {ECLIPSE_MAX_WIDTH} (its per-layer SDP took > 150 s "
                f"at width 256, > 20 GB at 1024); this network has width {max(net.widths[1:-1])}")
    return None


def run_peer(method: str, net, c: np.ndarray) -> dict:
    """One peer estimate of the l2 Lipschitz constant of x -> c^T f(x), as a cell result dict."""
    import torch
    from eclipse_nn.LipConstEstimator import LipConstEstimator
    torch.set_num_threads(1)
    Ws = [np.asarray(W.toarray() if hasattr(W, "toarray") else W, dtype=np.float64) for W in net.weights]
    Ws[-1] = np.asarray(c, dtype=np.float64)[None, :] @ Ws[-1]      # fold the margin into the last layer
    acts = [a.name for a in net.activations]
    alphas = [SLOPES[a][0] for a in acts]
    betas = [SLOPES[a][1] for a in acts]
    weights = [torch.tensor(W) for W in Ws]
    t0 = time.perf_counter()
    if method == "ECLipsE":  # called directly: the estimator class would fall back to ECLipsE-Fast silently
        from eclipse_nn.eclipsE import ECLipsE
        value, code = ECLipsE(weights, alphas, betas)
        if code != 0:
            return {"status": "failed", "upper": None, "lower": None, "raw": None,
                    "seconds": time.perf_counter() - t0, "sizes": {}, "details": {"peer": True},
                    "error": "ECLipsE reached a boundary solution of a layer SDP (exit code 1; eclipse-nn would "
                             "fall back to ECLipsE-Fast, reported in its own row)"}
    else:
        value = LipConstEstimator(weights=weights, alphas=alphas, betas=betas).estimate(method=PEER_METHODS[method])
    seconds = time.perf_counter() - t0
    value = None if value is None else float(value)
    ok = value is not None and np.isfinite(value) and value > 0
    return {"status": "ok" if ok else "failed", "upper": value if ok else None, "lower": None, "raw": value,
            "seconds": seconds, "sizes": {}, "details": {"peer": True, "certified": False},
            "error": None if ok else f"{method} returned {value!r}"}
