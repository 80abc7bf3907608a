"""The gap report: every available lower and upper bound for one model, with ratios and times.

Each method runs under its own time limit; a method that fails (too large, solver failure, time limit
without a bound) is recorded with its reason and the report goes on. Ratios are upper / best lower
bound, and upper / exact FGL when the FGL was proved.
"""
from __future__ import annotations

import time

from .api import lower_bound, upper_bound
from .errors import InvalidInputError, SolverFailure
from .model import load


def gap_report(net, norm: str = "inf", output=None, margin=None, c=None, domain=None,
               time_limit: float = 60.0, degrees=None, samples: int = 4096, seed: int = 0,
               methods=None) -> dict:
    """Run the lower bounds (sampling, ascent) and the upper bounds (product, LiPopt-k for each k in
    ``degrees`` (default depth + 1), exact FGL, and every further method in ``methods``); return
    {"rows": [...], "best_lower", "best_upper", "exact_fgl"}. Rows carry kind, method, value, status,
    seconds, and error (when the method gave no number)."""
    net = load(net)
    common = {"norm": norm, "output": output, "margin": margin, "c": c, "domain": domain}
    degrees = [max(3, net.depth + 1)] if degrees is None else list(degrees)
    rows = []

    def attempt(kind, label, call):
        t0 = time.perf_counter()
        try:
            res = call()
        except (InvalidInputError, SolverFailure, MemoryError) as exc:
            rows.append({"kind": kind, "method": label, "value": None, "status": "failed",
                         "seconds": time.perf_counter() - t0, "error": str(exc) or type(exc).__name__})
            return None
        value = res.upper_bound if kind == "upper" else res.lower_bound
        rows.append({"kind": kind, "method": label, "value": value, "status": res.status,
                     "seconds": res.seconds, "error": None, "sizes": res.sizes})
        return res

    attempt("lower", "sampling", lambda: lower_bound(net, method="sampling", samples=samples, seed=seed, **common))
    attempt("lower", "ascent", lambda: lower_bound(net, method="ascent", samples=samples, seed=seed,
                                                   time_limit=min(time_limit, 10.0), **common))
    attempt("upper", "product", lambda: upper_bound(net, method="product", lower=False, **common))
    for k in degrees:
        attempt("upper", f"LiPopt-{k}", lambda k=k: upper_bound(net, method="lp", degree=k, lower=False,
                                                                time_limit=time_limit, **common))
    ex = attempt("upper", "exact-fgl", lambda: upper_bound(net, method="exact-fgl", lower=False,
                                                           time_limit=time_limit, seed=seed, **common))
    for m in methods or ():
        res = attempt("upper", m, lambda m=m: upper_bound(net, method=m, lower=False, time_limit=time_limit,
                                                          seed=seed, **common))
        if res is not None and m == "exact":  # the MIP's witness is a lower bound too
            rows.append({"kind": "lower", "method": "exact witness", "value": res.details["bracket"][0],
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
