"""Lower bounds on a GraphNetwork: ||grad c^T f(x)||_q at a witness x provably in the domain where the
computed gradient provably is the gradient of f.

Certain pattern (witness.certain_rows, extended to graphs): a rigorous bound E on |computed - exact| of
every node's value is propagated (affine: (|W| E + g (|W| |h| + |b|)) (1 + g), g = (n + 4) eps; add: the
sum of the E's plus (k + 2) eps sum |h_i|; concat stacks; max pooling: the largest E of the window; smooth
activations are 1-Lipschitz plus 16 eps |h|; ReLU-type: E, or 0 for certainly negative ReLUs). The row is
certain when every ReLU-type input z has |z| > E and every max-pool window's computed maximum beats the
runner-up by more than the sum of their E's: then f is differentiable at x with the computed gradient
(every kink and every tie is strictly avoided).

"sampling": seeded random points (globally at scales 0.1, 1, 10; locally the domain's sampler, then a
short hill climb inside the domain, like the chain's local sampler);
"ascent": the same, then a random-step hill climb on the gradient norm from the best points (inside the
domain). The best certain candidates (moved into the domain, tiny moves when uncertain) give the bound.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import InvalidInputError
from ..exact.enumerate import dual_norm
from ..model.graph import GraphNetwork, pool_values
from ..rounding import DENORM, EPS, next_up
from .witness import MOVE_SCALES, activation_step

GLOBAL_SCALES = (0.1, 1.0, 10.0)
CHUNK = 512           # points per gradient batch: the deadline is checked between batches
FIRST_CHUNK = 32


def certain_graph_rows(g: GraphNetwork, X: np.ndarray) -> np.ndarray:
    """Per row of X: True when no varying ReLU-type kink and no max-pool tie between inputs that vary
    is within rounding error. A value "varies" unless every path from x to it passes a certainly
    negative ReLU (exactly 0 near x); kinks and ties of constants do not change the gradient."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    ok = np.all(np.isfinite(X), axis=1)
    with np.errstate(all="ignore"):
        vals = g.values(X)
        E, var = [np.zeros_like(X)], [np.ones(X.shape, dtype=bool)]
        for i, n in enumerate(g.nodes[1:], start=1):
            h = [vals[j] for j in n.inputs]
            e = [E[j] for j in n.inputs]
            vr = [var[j] for j in n.inputs]
            if n.kind == "affine":
                absW, m = abs(n.W), n.W.shape[1]
                gm = (m + 4) * EPS
                mag = (absW @ np.abs(h[0]).T).T + np.abs(n.b)
                E.append(next_up(((absW @ e[0].T).T + gm * mag) * (1 + gm) + (2 * m + 4) * DENORM))
                var.append((absW @ vr[0].astype(np.float64).T).T > 0)
            elif n.kind == "act":  # kinks (relu, leaky_relu, hardtanh's two) and error growth: witness.py
                bad, ea, va = activation_step(n.act, h[0], e[0], vals[i], vr[0])
                ok &= ~bad
                E.append(ea)
                var.append(va)
            elif n.kind == "add":
                k = len(h)
                E.append(next_up((sum(e) + (k + 2) * EPS * sum(np.abs(v) for v in h)) * (1 + 4 * EPS) + DENORM))
                var.append(np.logical_or.reduce(vr))
            elif n.kind == "concat":
                E.append(np.concatenate(e, axis=1))
                var.append(np.concatenate(vr, axis=1))
            else:
                pad = n.windows[None] >= 0
                idx = np.maximum(n.windows, 0)
                V = pool_values(h[0], n.windows)
                W = np.where(pad, e[0][:, idx], 0.0)
                Vr = pad & vr[0][:, idx]
                top = np.argmax(V, axis=2)[..., None]
                best = np.take_along_axis(V, top, 2) - np.take_along_axis(W, top, 2)
                # contenders: other inputs whose exact value may reach the top one's
                cont = pad & (V + W >= best)
                np.put_along_axis(cont, top, False, 2)
                tvar = np.take_along_axis(Vr, top, 2)[..., 0]
                # a tie matters only between inputs of which one varies (constants tie harmlessly)
                ok &= ~np.any(np.any(cont, axis=2) & (tvar | np.any(cont & Vr, axis=2)), axis=1)
                E.append(W.max(axis=2))
                var.append(np.any(Vr, axis=2))
    return ok


def graph_lower_bound(g: GraphNetwork, c, norm: str, domain=None, samples: int = 4096, seed: int = 0,
                      ascent: bool = False, time_limit: float = 5.0):
    """(value, witness x, details) of the sampled (and with ``ascent`` hill-climbed) lower bound."""
    deadline = time.perf_counter() + 0.85 * time_limit  # the witness checks come after the search
    c = np.asarray(c, dtype=np.float64)
    if domain is not None and domain.dim != g.input_size:
        raise InvalidInputError(f"the domain has dimension {domain.dim} but the network has {g.input_size} inputs")
    rng = np.random.default_rng(seed)
    n = g.input_size
    if domain is None:
        X = np.vstack([s * rng.normal(size=(max(1, samples // len(GLOBAL_SCALES)), n)) for s in GLOBAL_SCALES])
    else:
        X = domain.sample(samples, rng)
    vals = _norms(g, X, c, norm, deadline)
    if ascent or domain is not None:  # locally "sampling" searches too (as the chain sampler does), shorter
        X, vals = _climb(g, X, vals, c, norm, domain, rng, deadline, rounds=60 if ascent else 20)
    order = np.argsort(-vals, kind="stable")[:16]
    cand = [X[k] for k in order]
    if domain is not None:
        cand = [x if domain.contains_exact(x) else domain.inside_point(x) for x in cand]
        cand.append(domain.inside_point(getattr(domain, "center", None) if getattr(domain, "center", None)
                                        is not None else 0.5 * domain.inner_box()[0] + 0.5 * domain.inner_box()[1]))
    C = np.vstack(cand) if cand else np.zeros((1, n))
    ok = certain_graph_rows(g, C)
    if not ok.all():
        C = np.vstack([C[ok], _moves(C[~ok], domain, rng)])
        ok = certain_graph_rows(g, C)
    C = C[ok]
    with np.errstate(all="ignore"):
        v = dual_norm(g.gradient(C, c), norm) if C.shape[0] else np.zeros(0)
    v = np.where(np.isfinite(v), v, -np.inf)
    for k in np.argsort(-v, kind="stable"):
        x = C[k].copy()
        value = float(dual_norm(g.gradient(x[None, :], c), norm)[0])
        if np.isfinite(value) and certain_graph_rows(g, x[None, :])[0]:
            return value, x, {"witness_certain": True}
    point = np.zeros(n) if domain is None else cand[-1]
    return 0.0, point, {"lower_bound_note": "no certain witness found: the trivial lower bound 0"}


def _norms(g, X, c, norm, deadline) -> np.ndarray:
    out = np.full(X.shape[0], -np.inf)
    s = 0
    while s < X.shape[0]:
        if s and time.perf_counter() > deadline:
            break
        step = FIRST_CHUNK if s == 0 else CHUNK  # a small first batch: something within any deadline
        with np.errstate(all="ignore"):
            v = dual_norm(g.gradient(X[s:s + step], c), norm)
        out[s:s + step] = np.where(np.isfinite(v), v, -np.inf)
        s += step
    return out


def _climb(g, X, vals, c, norm, domain, rng, deadline, starts: int = 32, rounds: int = 60):
    """Random-step hill climbing on ||grad||_q from the best points (steps halve on failure)."""
    idx = np.argsort(-vals, kind="stable")[:starts]
    P, pv = X[idx].copy(), vals[idx].copy()
    scale = (np.abs(P) + 1.0) * 0.1 if domain is None else \
        np.broadcast_to(0.25 * (domain.inner_box()[1] - domain.inner_box()[0]) + 1e-12, P.shape).copy()
    for _ in range(rounds):
        if time.perf_counter() > deadline:
            break
        Q = P + scale * rng.uniform(-1.0, 1.0, P.shape)
        if domain is not None:
            Q = domain.project(Q)
        qv = _norms(g, Q, c, norm, deadline)
        better = qv > pv
        P[better], pv[better] = Q[better], qv[better]
        scale[~better] *= 0.7
    return np.vstack([X, P]), np.concatenate([vals, pv])


def _moves(X: np.ndarray, domain, rng) -> np.ndarray:
    out = []
    for x in X:
        for s in MOVE_SCALES:
            P = x + s * (np.abs(x) + 1.0) * rng.uniform(-1.0, 1.0, (4, x.size))
            if domain is not None:
                P = np.vstack([p if domain.contains_exact(p) else domain.inside_point(p) for p in P])
            out.append(P)
    return np.vstack(out) if out else np.zeros((0, X.shape[1]))
