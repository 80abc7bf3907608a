"""The gap report: every applicable lower and upper bound for one model, with ratios and times.

The rows come from the registry: every lower-bound method, then every upper-bound method that applies
to the problem (LiPopt once per requested degree; ``auto`` is left out: it is a choice among the
others). Each runs under its own time limit; a method that fails (too large, solver failure, time limit
without a bound) is recorded with its reason and the report goes on. ``on_row`` sees each row as it
finishes. Ratios are upper / best lower bound, and upper / exact FGL when the FGL was proved.
"""
from __future__ import annotations

import time

from .api import _check_norm, lower_bound, make_problem, upper_bound
from .errors import InvalidInputError, SolverFailure
from .methods import applicable
from .model import load, output_vector

ASCENT_LIMIT = 10.0  # seconds: the ascent lower bound's exact search needs no more to find its pattern


def gap_report(net, norm: str = "inf", output=None, margin=None, c=None, domain=None,
               time_limit: float = 60.0, degrees=None, samples: int = 4096, seed: int = 0,
               methods=None, on_row=None, preactivation: str = "linear") -> dict:
    """Run every applicable lower and upper bound; return {"rows": [...], "best_lower", "best_upper",
    "exact_fgl"}. Rows carry kind, method, value, status, seconds, and error (when the method gave no
    number). ``methods`` restricts the upper-bound methods (default: all that apply)."""
    net = load(net)
    norm = _check_norm(norm)
    common = {"norm": norm, "output": output, "margin": margin, "c": c, "domain": domain}
    problem = make_problem(net, output_vector(net, output, margin, c), norm, domain, preactivation, {})
    degrees = [max(3, net.depth + 1)] if degrees is None else list(degrees)
    rows = []

    def add(row):
        rows.append(row)
        if on_row is not None:
            on_row(row)

    def attempt(kind, label, call):
        t0 = time.perf_counter()
        try:
            res = call()
        except (InvalidInputError, SolverFailure, MemoryError) as exc:
            add({"kind": kind, "method": label, "value": None, "status": "failed",
                 "seconds": time.perf_counter() - t0, "error": str(exc) or type(exc).__name__})
            return None
        value = res.upper_bound if kind == "upper" else res.lower_bound
        add({"kind": kind, "method": label, "value": value, "status": res.status,
             "seconds": res.seconds, "error": None, "sizes": res.sizes})
        return res

    for m in applicable(problem, "lower"):
        limit = min(time_limit, ASCENT_LIMIT) if m.name == "ascent" else time_limit
        attempt("lower", m.name, lambda m=m, limit=limit: lower_bound(net, method=m.name, samples=samples, seed=seed,
                                                                      time_limit=limit, **common))
    wanted = None if methods is None else set(methods) | {"product", "lp", "exact-fgl"}
    ex = None
    for m in applicable(problem, "upper"):
        if m.name == "auto" or (wanted is not None and m.name not in wanted):
            continue
        if m.name == "lp":
            for k in degrees:
                attempt("upper", f"LiPopt-{k}", lambda k=k: upper_bound(net, method="lp", degree=k, lower=False,
                                                                        time_limit=time_limit, **common))
            continue
        res = attempt("upper", m.name, lambda m=m: upper_bound(net, method=m.name, lower=False, seed=seed,
                                                               time_limit=time_limit, **common))
        if m.name == "exact-fgl":
            ex = res
        if res is not None and m.name == "exact":  # the MIP's witness is a lower bound too
            add({"kind": "lower", "method": "exact witness", "value": res.details["bracket"][0],
                 "status": res.status, "seconds": 0.0, "error": None, "sizes": {}})
    lowers = [r["value"] for r in rows if r["kind"] == "lower" and r["value"] is not None]
    uppers = [r["value"] for r in rows if r["kind"] == "upper" and r["value"] is not None]
    best_lower = max(lowers) if lowers else None
    exact = ex.raw_value if ex is not None and ex.status == "optimal" else None
    for r in rows:
        v = r["value"]
        r["ratio_to_lower"] = v / best_lower if v is not None and best_lower else None
        r["ratio_to_fgl"] = v / exact if v is not None and exact else None
    return {"rows": rows, "best_lower": best_lower, "best_upper": min(uppers) if uppers else None,
            "exact_fgl": exact, "norm": norm}
