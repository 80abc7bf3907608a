"""A small L-BFGS for functions with an open domain (the layer-structured LipSDP multipliers): outside the
domain ``fun`` returns (inf, None) and the backtracking line search only shortens the step. scipy's
L-BFGS-B stops at the first infinite value, which is why this exists."""
from __future__ import annotations

import math
import time

import numpy as np


def lbfgs(fun, x, deadline, iters, mem=20, stall=1e-7, window=10, cost=0.0):
    """L-BFGS with backtracking (Armijo); ``fun`` returns (inf, None) outside its domain, which only
    shortens the step. Stops when a step cannot decrease f, when f fell by less than ``stall`` over the
    last ``window`` steps, after ``iters`` steps or at the deadline (an evaluation that would end past it,
    judged by the slowest so far, or by the estimate ``cost`` before the first, is not started)."""
    t0 = time.perf_counter()
    if deadline is not None and t0 + cost > deadline:
        return x, math.inf
    f, g = fun(x)
    cost = time.perf_counter() - t0   # the slowest evaluation so far: none is started that would end late
    S, Y, history = [], [], [f]
    if g is None:                 # the start is outside the domain: nothing to descend from
        return x, f
    for _ in range(iters):
        q, alphas = g.copy(), []
        for s, y in reversed(list(zip(S, Y))):
            a = (s @ q) / (y @ s)
            alphas.append(a)
            q -= a * y
        if S:
            q *= (S[-1] @ Y[-1]) / (Y[-1] @ Y[-1])
        for (s, y), a in zip(zip(S, Y), reversed(alphas)):
            q += (a - (y @ q) / (y @ s)) * s
        direction = -q
        if g @ direction >= 0:
            direction, S, Y = -g, [], []
        step = 1.0 if S else min(1.0, 1.0 / max(1e-300, float(np.abs(g).max())))
        while True:
            t0 = time.perf_counter()
            if deadline is not None and t0 + cost > deadline:
                return x, f
            xn = x + step * direction
            fn, gn = fun(xn)
            cost = max(cost, time.perf_counter() - t0)
            if math.isfinite(fn) and fn <= f + 1e-4 * step * (g @ direction):
                break
            step *= 0.5
            if step < 1e-14:
                return x, f
        s, y = xn - x, gn - g
        if s @ y > 1e-12 * math.sqrt((s @ s) * (y @ y)):
            S.append(s)
            Y.append(y)
            if len(S) > mem:
                S.pop(0)
                Y.pop(0)
        x, f, g = xn, fn, gn
        history.append(f)
        if len(history) > window and history[-window - 1] - f < stall:
            break
        if deadline is not None and time.perf_counter() > deadline:
            break
    return x, f
