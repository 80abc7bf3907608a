"""Cell results -> result rows (one per cell, the CSV schema) and per-configuration aggregates.

The exact value of a group (cells bounding the same function over the same domain: same network,
seed, output selection and domain) is the value of its exact-fgl cell when that cell proved the FGL
(status "optimal"). Ratios:

* ``ratio_to_exact`` = value / exact, value = the upper bound (upper-bound cells) or the lower bound
  (lower-bound cells);
* ``ratio_to_lower`` = upper / best lower bound of the group (upper-bound cells only).
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .cells import Cell, method_label

COLUMNS = ["experiment", "network", "net_kind", "widths", "band", "seed", "output", "scope", "image", "true_label",
           "eps", "method", "degree", "method_name", "upper", "lower", "exact", "ratio_to_exact", "ratio_to_lower",
           "status", "seconds", "lp_rows", "lp_columns", "sdp_order", "nodes", "peak_mb", "wall", "cached",
           "error", "key"]
SOUNDNESS_RTOL = 1e-9


def make_rows(cells: list[Cell], results: list[dict]) -> list[dict]:
    """One row per cell (COLUMNS), with the group's exact value and the ratios filled in."""
    exact, best_lower = {}, defaultdict(lambda: None)
    for cell, res in zip(cells, results):
        g = cell.group()
        if cell.method == "exact-fgl" and res["status"] == "optimal" and res.get("raw") is not None:
            exact[g] = res["raw"]
        if cell.is_lower and res.get("lower") is not None:
            cur = best_lower[g]
            best_lower[g] = res["lower"] if cur is None else max(cur, res["lower"])
    rows = []
    for cell, res in zip(cells, results):
        g = cell.group()
        ex, lo = exact.get(g), best_lower[g]
        upper = res.get("upper") if not cell.is_lower else None
        lower = res.get("lower") if cell.is_lower else None
        value = upper if upper is not None else lower
        sizes = res.get("sizes") or {}
        lab = cell.labels
        rows.append({
            "experiment": cell.experiment, "network": lab.get("network", ""), "net_kind": cell.net["kind"],
            "widths": "-".join(map(str, lab.get("widths", cell.net.get("widths", [])))),
            "band": cell.net.get("band"), "seed": cell.net.get("seed", cell.seed),
            "output": lab.get("output", "single"), "scope": lab.get("scope", "global"),
            "image": (cell.domain or {}).get("image"), "true_label": lab.get("true_label"),
            "eps": (cell.domain or {}).get("eps"),
            "method": cell.method, "degree": cell.degree, "method_name": method_label(cell.method, cell.degree),
            "upper": upper, "lower": lower, "exact": ex,
            "ratio_to_exact": value / ex if value is not None and ex else None,
            "ratio_to_lower": upper / lo if upper is not None and lo else None,
            "status": res["status"], "seconds": res.get("seconds"),
            "lp_rows": sizes.get("rows"), "lp_columns": sizes.get("columns"), "sdp_order": sizes.get("order"),
            "nodes": sizes.get("nodes"), "peak_mb": res.get("peak_mb"), "wall": res.get("wall"),
            "cached": bool(res.get("cached")), "error": res.get("error"), "key": cell.key(),
        })
    return rows


def soundness_violations(rows: list[dict], rtol: float = SOUNDNESS_RTOL) -> list[str]:
    """Rows whose certified upper bound is below the group's exact value or below one of its lower
    bounds (beyond ``rtol``): each would be a bug in lipopt."""
    lowers = defaultdict(list)
    for r in rows:
        if r["lower"] is not None:
            lowers[_group(r)].append(r["lower"])
    bad = []
    for r in rows:
        u = r["upper"]
        if u is None:
            continue
        for what, ref in [("exact value", r["exact"])] + [("lower bound", v) for v in lowers[_group(r)]]:
            if ref is not None and u < ref - rtol * abs(ref):
                bad.append(f"{r['network']} seed {r['seed']} {r['output']} {r['scope']}: {r['method_name']} "
                           f"upper {u:.10g} < {what} {ref:.10g}")
    return bad


def _group(r: dict) -> tuple:
    return (r["experiment"], r["network"], r["seed"], r["output"], r["scope"])


def mean(values) -> float | None:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(v)) if v else None


def aggregate(rows: list[dict], by=("network", "output", "scope")) -> dict:
    """{configuration tuple: {method_name: summary}} with per-method means over the seeds / images:
    value (upper or lower), exact, ratio_to_exact, ratio_to_lower, seconds, lp_columns, sdp_order, and
    counts n (cells), n_value (cells with a number), statuses (status -> count)."""
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[tuple(r[k] for k in by)][r["method_name"]].append(r)
    out = {}
    for conf, methods in groups.items():
        out[conf] = {}
        for name, rs in methods.items():
            values = [r["upper"] if r["upper"] is not None else r["lower"] for r in rs]
            statuses = defaultdict(int)
            for r in rs:
                statuses[r["status"]] += 1
            out[conf][name] = {
                "n": len(rs), "n_value": sum(v is not None for v in values), "value": mean(values),
                "lower_bound": all(r["method"] in ("sampling", "ascent") for r in rs),
                "exact": mean(r["exact"] for r in rs), "n_exact": sum(r["exact"] is not None for r in rs),
                "ratio_to_exact": mean(r["ratio_to_exact"] for r in rs),
                "ratio_to_lower": mean(r["ratio_to_lower"] for r in rs),
                "seconds": mean(r["seconds"] for r in rs if r["status"] not in ("timeout",)),
                "lp_columns": mean(r["lp_columns"] for r in rs), "lp_rows": mean(r["lp_rows"] for r in rs),
                "sdp_order": mean(r["sdp_order"] for r in rs), "statuses": dict(statuses),
                "errors": sorted({r["error"] for r in rs if r["error"]}),
            }
    return out


def method_order(names) -> list[str]:
    """Methods in a fixed display order: product, LiPopt-k by k, SDPs, others, exact-fgl, lower bounds."""
    rank = {"product": 0, "sdp": 2, "sdp2": 3, "exact-fgl": 5, "sampling": 6, "ascent": 7}

    def key(name):
        if name.startswith("LiPopt-"):
            return (1, int(name.split("-")[1]), name)
        return (rank.get(name, 4), 0, name)
    return sorted(set(names), key=key)
