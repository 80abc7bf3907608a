"""Local lower bound on the Lipschitz constant over a domain: max ||grad c^T f(x)||_q over x in X.

Any gradient norm at a point of X is a valid lower bound of the local Lipschitz constant. For ReLU
networks the gradient is piecewise constant, so gradient-based ascent on ||grad f|| has no signal;
instead we use seeded random restarts (uniform points, box vertices / sphere points) followed by a
stochastic local search: from the best starting points, propose Gaussian perturbations (scaled to the
domain), project them back into X, keep the best, and shrink the step when no proposal improves. This
moves x across activation-pattern boundaries. Every point the search visits is exactly inside the
domain (``domain.sample`` / ``domain.project``); the returned value is recomputed as ||grad f(x)||_q
at a witness x chosen by ``witness.best_witness`` among the best points found: x satisfies
``domain.contains_exact`` and its activation pattern is certain (else 0 at a point of the domain).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from ..exact.enumerate import dual_norm
from ..model.network import Network
from ..problem import past
from .witness import best_witness


@dataclass(frozen=True)
class LocalLowerBound:
    value: float          # ||grad c^T f(point)||_q
    point: np.ndarray     # the witness, inside the domain
    evaluations: int      # gradient evaluations spent


def local_lower_bound(net: Network, c: np.ndarray, domain, norm: str = "inf", samples: int = 1024,
                      restarts: int = 8, steps: int = 40, proposals: int = 32,
                      seed: int = 0, deadline: float | None = None) -> LocalLowerBound:
    """Seeded sampling plus projected stochastic local search for max_{x in domain} ||grad c^T f(x)||_q.

    ``domain`` is a lipopt.domain.Box or Ball; ``norm`` is the input norm p (the dual q is used).
    """
    from ..domain import Ball, Box  # local import: domain imports model, avoid cycles
    if not isinstance(domain, (Box, Ball)):
        raise InvalidInputError(f"domain must be a Box or a Ball, got {type(domain).__name__}")
    if domain.dim != net.widths[0]:
        raise InvalidInputError(f"the domain has dimension {domain.dim} but the network has "
                                f"{net.widths[0]} inputs")
    c = np.asarray(c, dtype=np.float64)
    if samples < 1 or restarts < 1 or steps < 0 or proposals < 1:
        raise InvalidInputError("samples, restarts and proposals must be >= 1 and steps >= 0")
    rng = np.random.default_rng(seed)
    x = domain.sample(samples, rng)
    if isinstance(domain, Ball):
        x = np.vstack([domain.center[None, :], x])
    parts = []
    for start in range(0, x.shape[0], CHUNK):  # chunked: memory, and the deadline between chunks
        parts.append(dual_norm(net.gradient(x[start:start + CHUNK], c), norm))
        if past(deadline):
            break
    x = x[:sum(len(p) for p in parts)]
    vals = np.concatenate(parts)
    evals = x.shape[0]
    lo, hi = domain.bounding_box()
    scale0 = np.maximum(hi - lo, 0.0) * 0.25
    order = np.argsort(-vals)[:restarts]
    top = np.argsort(-vals)[:16]
    found, found_v = [x[top]], [vals[top]]   # candidate witnesses, validated at the end
    for i in order:
        if past(deadline):
            break
        cur, cur_v = x[i].copy(), float(vals[i])
        sigma = scale0.copy()
        for _ in range(steps):
            if past(deadline):
                break
            prop = domain.project(cur + sigma * rng.standard_normal((proposals, cur.shape[0])))
            pv = dual_norm(net.gradient(prop, c), norm)
            evals += proposals
            k = int(np.argmax(pv))
            if pv[k] > cur_v:
                cur, cur_v = prop[k].copy(), float(pv[k])
            else:
                sigma = sigma * 0.5
        found.append(cur[None, :])
        found_v.append(np.array([cur_v]))
    w = best_witness(net, c, norm, np.vstack(found), domain, values=np.concatenate(found_v), seed=seed)
    return LocalLowerBound(w.value, w.point, evals)


GLOBAL_SCALES = (1.0, 10.0, 100.0)
CHUNK = 4096


def ascent_lower_bound(net: Network, c: np.ndarray, norm: str = "inf", domain=None, samples: int = 4096,
                       seed: int = 0, patterns=(), deadline: float | None = None) -> LocalLowerBound:
    """The best of: projected local search from seeded restarts (inside ``domain``, or globally in
    boxes [-R, R]^n for R in GLOBAL_SCALES), each activation pattern in ``patterns`` (e.g. the FGL's
    maximiser) realised by an LP (baselines.patterns), a walk over single-neuron flips from the best
    of these (baselines.pattern_walk, piecewise-linear nets), and escalation rounds. Every candidate is re-evaluated as
    ||grad c^T f(x)||_q at a point x exactly in the domain with a certain activation pattern
    (baselines.witness), so the result is a valid lower bound."""
    from ..domain import Box
    from .patterns import realisable, realise_pattern
    n0 = net.widths[0]
    boxes = [domain] if domain is not None else [Box(np.full(n0, -r), np.full(n0, r)) for r in GLOBAL_SCALES]
    per = max(1, samples // len(boxes))
    runs = []
    for i, box in enumerate(boxes):
        if runs and past(deadline):
            break
        runs.append(local_lower_bound(net, c, box, norm, samples=per, seed=seed + i, deadline=deadline))
    best = max(runs, key=lambda r: r.value)
    evals = sum(r.evaluations for r in runs)
    for pattern in patterns:
        if past(deadline):
            break
        r = realise_pattern(net, c, pattern, norm, domain, deadline=deadline)
        if r is not None and r.value > best.value:
            best = LocalLowerBound(r.value, r.point, evals)
    walk_in = domain if domain is not None else boxes[-1]   # the largest box holds every global candidate
    walk = (lambda start: _walk(net, c, norm, walk_in, start, seed, deadline)) if realisable(net) else None
    if walk is not None:
        best = walk(best)
    return _escalate(net, c, norm, boxes, per, seed, best, evals, deadline, walk)


ESCALATION_EFFORT = 1e10   # weight multiply-adds (evaluations x weights) the escalation rounds may spend
ESCALATION_GAIN = 0.01     # a round that improves the best value by less than this is the last
MAX_SAMPLES, MAX_RESTARTS = 16384, 128


def _walk(net: Network, c, norm: str, domain, start: LocalLowerBound, seed: int, deadline) -> LocalLowerBound:
    """The best validated point of a pattern walk from ``start`` (``start`` itself if none is better)."""
    from .pattern_walk import pattern_walk
    if start.point is None or not start.value > 0 or past(deadline):
        return start
    pts, vals = pattern_walk(net, c, norm, domain, start.point, start.value, deadline=deadline)
    if vals.size and vals.max() > start.value:
        w = best_witness(net, c, norm, pts, domain, values=vals, seed=seed)
        if w.value > start.value:
            return LocalLowerBound(w.value, w.point, start.evaluations)
    return start


def _escalate(net: Network, c, norm: str, boxes, per: int, seed: int, best: LocalLowerBound, evals: int,
              deadline, walk=None) -> LocalLowerBound:
    """Rounds k = 1, 2, ... of the same search with 2^k times the samples and 8 * 2^k restarts (capped)
    and fresh seeds, while the previous round raised the best value by ESCALATION_GAIN or more, the
    effort stays under ESCALATION_EFFORT and the deadline allows. On deep nets the first pass is far
    from the maximum (digits 64-32x6-10, l_inf ball r = 0.1: 177 at 4096 samples, 8 restarts; 329 with
    more restarts) and more restarts help where longer searches do not. Deterministic given the seed
    unless the deadline cuts a round. ``walk`` (if given) continues from each round's best start: walks
    from different starts end in different regions."""
    weights = net.n_params
    gain, k = np.inf, 0
    while gain >= ESCALATION_GAIN and evals * weights < ESCALATION_EFFORT and not past(deadline):
        k += 1
        before = best.value
        round_best = None
        for i, box in enumerate(boxes):
            if past(deadline):
                break
            run = local_lower_bound(net, c, box, norm, samples=min(per << k, MAX_SAMPLES),
                                    restarts=min(8 << k, MAX_RESTARTS), seed=seed + 1000 * k + i,
                                    deadline=deadline)
            evals += run.evaluations
            if round_best is None or run.value > round_best.value:
                round_best = run
        if round_best is not None and walk is not None:
            round_best = walk(round_best)
        if round_best is not None and round_best.value > best.value:
            best = round_best
        gain = (best.value - before) / before if before > 0 else (np.inf if best.value > 0 else 0.0)
    return LocalLowerBound(best.value, best.point, evals)
