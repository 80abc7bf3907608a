"""Published numbers of Chen, Lasserre, Magron & Pauwels (NeurIPS 2020), from ``data/chen2020.json``.

Schema: {"source", "url", "notes", "entries": [{"widths": [80, 80, 1], "band": 20 | null, "seed": null | int,
"norm": "inf", "scope": "global", "method": "HR-2" | "SHOR" | "LiPopt-3" | "LiPopt-4" | "LBS", "value": float,
"seconds": float | null, "table": str}]}. The file may be missing or hold few entries: ``load_published``
then returns None or what there is (malformed entries are counted and skipped, never fatal).

With PyTorch, the banded experiment rebuilds their networks seed by seed (``model.random.torch_random_network``),
so a per-seed comparison is between two bounds of the same network; an entry without a seed is compared
with our mean over the seeds we ran.
"""
from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

# published method -> our method_name (exact labels: the 2-hidden-layer labels HRs, HRs1, HRs2, shor, shor1
# are ambiguous in the source and stay unmatched); "LBS" (lower bound by sampling) is a lower bound
OUR_METHOD = {"SHOR": "sdp", "HR-2": "sdp2", "LiPopt-3": "LiPopt-3", "LiPopt-4": "LiPopt-4", "LBS": "sampling"}
LOWER_PUBLISHED = {"LBS"}
BELOW_EXACT = "published bound below the exact value"
ABOVE_EXACT = "published lower bound above the exact value"
FLAG_RTOL = 1e-6    # published LPs/SDPs are solved to ~1e-8..1e-6 relative: smaller shortfalls are noise


def default_path():
    return resources.files("lipopt.experiments").joinpath("data", "chen2020.json")


def load_published(path=None) -> dict | None:
    """{"source", "url", "notes", "entries", "skipped"} or None when the file is absent or unreadable."""
    src = default_path() if path is None else Path(path)
    try:
        with src.open("r", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        return None
    entries, skipped = [], 0
    for e in data["entries"]:
        entry = _entry(e)
        if entry is None:
            skipped += 1
        else:
            entries.append(entry)
    return {"source": str(data.get("source", "")), "url": str(data.get("url", "")),
            "notes": str(data.get("notes", "")), "entries": entries, "skipped": skipped}


def _entry(e) -> dict | None:
    try:
        widths = [int(w) for w in e["widths"]]
        band = None if e.get("band") is None else int(e["band"])
        seed = None if e.get("seed") is None else int(e["seed"])
        value = float(e["value"])
        seconds = None if e.get("seconds") is None else float(e["seconds"])
        method = str(e["method"])
    except (KeyError, TypeError, ValueError):
        return None
    if len(widths) < 3 or not math.isfinite(value):
        return None
    return {"widths": widths, "band": band, "seed": seed, "norm": str(e.get("norm", "inf")).lower(),
            "scope": str(e.get("scope", "global")).lower(), "method": method, "value": value,
            "seconds": seconds, "table": str(e.get("table", ""))}


def comparable(published: dict | None) -> list[dict]:
    """Entries of global l_inf bounds (what the banded experiment computes)."""
    if not published:
        return []
    return [e for e in published["entries"] if e["norm"] in ("inf", "linf", "l_inf") and e["scope"] == "global"]


def configurations(published: dict | None) -> list[tuple]:
    """(widths, band) of every comparable entry, first-seen order."""
    return list(dict.fromkeys((tuple(e["widths"]), e["band"]) for e in comparable(published)))


def compare(rows: list[dict], published: dict | None, network_name) -> list[dict]:
    """One comparison per comparable published entry of a configuration we ran: ours (same seed, or our
    mean over seeds when the entry has none) vs published, with times, our exact value, published /
    exact, and ``flag`` when a published upper bound lies below our proved exact value by more than
    FLAG_RTOL relative (a published lower bound above it). ``within_tolerance``: below the exact value
    by at most FLAG_RTOL (solver tolerance of the published LP/SDP)."""
    by_net: dict = {}
    for r in rows:
        by_net.setdefault(r["network"], []).append(r)
    out = []
    for e in comparable(published):
        name = network_name(e["widths"], e["band"])
        if name not in by_net:
            continue
        ours_name = OUR_METHOD.get(e["method"])
        mine = [r for r in by_net[name] if e["seed"] is None or r["seed"] == e["seed"]]
        seeds = sorted({r["seed"] for r in mine})
        if not seeds:
            continue
        hits = [r for r in mine if r["method_name"] == ours_name and _value(r) is not None]
        exacts = {r["seed"]: r["exact"] for r in mine if r["exact"] is not None}
        exact = sum(exacts.values()) / len(exacts) if len(exacts) == len(seeds) else None
        ours = sum(_value(r) for r in hits) / len(hits) if hits else None
        secs = [r["seconds"] for r in hits if r["seconds"] is not None]
        lower = e["method"] in LOWER_PUBLISHED
        flag, within = "", False
        if exact is not None:
            if lower and e["value"] > exact * (1 + FLAG_RTOL):
                flag = ABOVE_EXACT
            elif not lower and e["value"] < exact * (1 - FLAG_RTOL):
                flag = BELOW_EXACT
            elif not lower and e["value"] < exact:
                within = True
        out.append({"network": name, "method": e["method"], "ours_method": ours_name, "seed": e["seed"],
                    "published": e["value"], "published_seconds": e["seconds"], "ours": ours,
                    "ours_n": len(hits), "ours_seconds": sum(secs) / len(secs) if secs else None,
                    "exact": exact, "exact_n": len(exacts), "n_seeds": len(seeds),
                    "ratio": ours / e["value"] if ours is not None and e["value"] else None,
                    "published_over_exact": e["value"] / exact if exact else None,
                    "lower_bound": lower, "flag": flag, "within_tolerance": within, "table": e["table"]})
    return out


def summarize(comps: list[dict]) -> list[dict]:
    """Per (network, published method): seeds matched, mean published / ours values and seconds, mean
    ours / published, min published / exact, number flagged."""
    groups: dict = {}
    for c in comps:
        groups.setdefault((c["network"], c["method"]), []).append(c)

    def avg(xs):
        xs = [x for x in xs if x is not None]
        return sum(xs) / len(xs) if xs else None
    out = []
    for (net, method), cs in groups.items():
        poe = [c["published_over_exact"] for c in cs if c["published_over_exact"] is not None]
        paired = [c for c in cs if c["ours"] is not None]
        out.append({"network": net, "method": method, "ours_method": cs[0]["ours_method"], "n": len(cs),
                    "n_ours": len(paired), "published": avg(c["published"] for c in cs),
                    "published_paired": avg(c["published"] for c in paired), "ours": avg(c["ours"] for c in paired),
                    "ratio": avg(c["ratio"] for c in paired),
                    "published_seconds": avg(c["published_seconds"] for c in cs),
                    "ours_seconds": avg(c["ours_seconds"] for c in paired),
                    "min_published_over_exact": min(poe) if poe else None,
                    "flagged": sum(bool(c["flag"]) for c in cs),
                    "within_tolerance": sum(c["within_tolerance"] for c in cs)})
    return out


def _value(r: dict):
    return r["upper"] if r["upper"] is not None else r["lower"]
