"""Outputs: ``<experiment>.csv`` (one row per cell), ``<experiment>.meta.json`` (run facts) and
``report.md`` (every experiment found in the output directory, with plots under ``plots/``).

The report is always rebuilt from the CSV files, so running the experiments one at a time into the
same directory gives one report with all of them. Markdown helpers used by the experiment sections
live here too.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import time
from pathlib import Path

from .. import __version__
from . import plots
from .rows import COLUMNS, aggregate, method_order, soundness_violations

INT_COLUMNS = {"band", "seed", "image", "true_label", "degree", "lp_rows", "lp_columns", "sdp_order", "nodes"}
FLOAT_COLUMNS = {"upper", "lower", "exact", "ratio_to_exact", "ratio_to_lower", "seconds", "peak_mb", "wall", "eps"}
STATUS_LEGEND = ("`ok` a certified bound; `optimal` exact-fgl proved the FGL (the exact value); `time_limit` "
                 "exact-fgl stopped at its time limit (its value is the certified upper end of the proven "
                 "bracket); `timeout` killed at the cell's budget or the solver hit lipopt's time limit (no "
                 "number); `failed` lipopt refused or the solver failed, e.g. a certificate over "
                 "`max_columns` (no number, reason in the CSV's `error`); `skipped` not run in this setting (e.g. "
                 "too expensive without slow=True; the reason in `error`); `error` unexpected (no number).")


# -------------------------------------------------------------------------------------------------
# CSV and metadata


def write_csv(path: Path, rows: list[dict]) -> None:
    tmp = Path(f"{path}.tmp{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else repr(r[k]) if isinstance(r.get(k), float) else r[k])
                        for k in COLUMNS})
    os.replace(tmp, path)


def write_table_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Any list of dicts as CSV (None -> empty), written atomically."""
    tmp = Path(f"{path}.tmp{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in columns})
    os.replace(tmp, path)


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV written by write_csv, with numbers, None and booleans restored."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            r = {}
            for k in COLUMNS:
                v = raw.get(k, "")
                if v == "":
                    r[k] = None
                elif k in INT_COLUMNS:
                    r[k] = int(float(v))
                elif k in FLOAT_COLUMNS:
                    r[k] = float(v)
                elif k == "cached":
                    r[k] = v == "True"
                else:
                    r[k] = v
            rows.append(r)
    return rows


def write_meta(path: Path, meta: dict) -> None:
    tmp = Path(f"{path}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def read_meta(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# -------------------------------------------------------------------------------------------------
# Markdown helpers


def fmt(v, digits: int = 5) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def fmt_seconds(v) -> str:
    return "-" if v is None else f"{v:.3f}" if v < 10 else f"{v:.1f}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(str(x).replace("|", "/") for x in r) + " |")
    return "\n".join(lines) + "\n"


def bound_cell(s: dict | None, ratio: str = "ratio_to_exact") -> str:
    """'mean (xratio)' plus '[k/n]' when some cells gave no number."""
    if s is None:
        return ""
    if s["n_value"] == 0:
        return "/".join(sorted(s["statuses"]))
    txt = fmt(s["value"])
    if s[ratio] is not None:
        txt += f" (×{s[ratio]:.4f})"
    if s["n_value"] < s["n"]:
        txt += f" [{s['n_value']}/{s['n']}]"
    return txt


def bounds_table(agg: dict, confs: list, methods: list[str], conf_header: list[str], ratio: str = "ratio_to_exact",
                 conf_cells=None) -> str:
    """Mean value per configuration and method with its mean ratio (to the exact value by default)."""
    head = conf_header + ["exact FGL (proved)"] + methods
    body = []
    for conf in confs:
        ms = agg[conf]
        ex = next((s for s in ms.values() if s["n_exact"]), None)
        n = max(s["n"] for s in ms.values())
        ex_txt = f"{fmt(ex['exact'])} ({ex['n_exact']}/{n})" if ex else f"- (0/{n})"
        lead = conf_cells(conf) if conf_cells else list(conf)
        body.append(lead + [ex_txt] + [bound_cell(ms.get(m), ratio) for m in methods])
    return table(head, body)


def times_table(agg: dict, confs: list, methods: list[str], conf_header: list[str], conf_cells=None) -> str:
    head = conf_header + [f"{m} s" for m in methods]
    body = []
    for conf in confs:
        lead = conf_cells(conf) if conf_cells else list(conf)
        body.append(lead + [fmt_seconds(agg[conf][m]["seconds"]) if m in agg[conf] else "" for m in methods])
    return table(head, body)


def sizes_table(agg: dict, confs: list, methods: list[str], conf_header: list[str], conf_cells=None) -> str:
    """LP rows x columns (mean) for LiPopt-k, matrix order for the SDPs."""
    sized = [m for m in methods if m.startswith("LiPopt-") or m.startswith("sdp")]
    head = conf_header + [f"{m} {'rows x cols' if m.startswith('LiPopt') else 'order'}" for m in sized]
    body = []
    for conf in confs:
        lead = conf_cells(conf) if conf_cells else list(conf)
        cells = []
        for m in sized:
            s = agg[conf].get(m)
            if s is None:
                cells.append("")
            elif m.startswith("LiPopt"):
                cells.append(f"{s['lp_rows']:,.0f} x {s['lp_columns']:,.0f}" if s["lp_columns"] else "-")
            else:
                cells.append(f"{s['sdp_order']:,.0f}" if s["sdp_order"] else "-")
        body.append(lead + cells)
    return table(head, body)


def status_lines(rows: list[dict]) -> str:
    """Counts of every status per method and the distinct reasons of cells without a number."""
    per = {}
    reasons = {}
    for r in rows:
        per.setdefault(r["method_name"], {}).setdefault(r["status"], 0)
        per[r["method_name"]][r["status"]] += 1
        if r["error"]:
            short = r["error"] if len(r["error"]) <= 160 else r["error"][:157] + "..."
            reasons.setdefault((r["method_name"], r["status"], short), 0)
            reasons[(r["method_name"], r["status"], short)] += 1
    out = ["Statuses: " + "; ".join(
        f"{m}: " + ", ".join(f"{k} {v}" for k, v in sorted(per[m].items())) for m in method_order(per)) + "."]
    if reasons:
        out.append("")
        out.append("Cells without a number:")
        out.append("")
        for (m, st, why), k in sorted(reasons.items(), key=lambda x: (-x[1], x[0]))[:12]:
            out.append(f"- {m} ({st}, {k} cell{'s' if k > 1 else ''}): {why}")
        if len(reasons) > 12:
            out.append(f"- ... {len(reasons) - 12} more distinct reasons in the CSV")
    return "\n".join(out) + "\n"


def soundness_line(rows: list[dict]) -> str:
    bad = soundness_violations(rows)
    if not bad:
        n_ex = sum(r["exact"] is not None and r["upper"] is not None for r in rows)
        return (f"Soundness check: every certified upper bound is >= the exact value where proved ({n_ex} "
                "comparisons) and >= every lower bound of its network (relative tolerance 1e-9).\n")
    return ("**Soundness check FAILED** (an upper bound below an exact value or a lower bound):\n\n"
            + "\n".join(f"- {b}" for b in bad[:20]) + "\n")


def plot_link(ok: bool, rel: str, title: str) -> str:
    return f"![{title}]({rel})\n" if ok else ""


def run_line(meta: dict) -> str:
    if not meta:
        return ""
    s = meta.get("settings", {})
    flags = ", ".join(f"{k}={v}" for k, v in s.items() if v not in (None, False))
    return (f"Run: {meta.get('cells', 0)} cells ({meta.get('computed', 0)} computed, {meta.get('cached', 0)} "
            f"from the cache), wall time **{meta.get('wall_seconds', 0):.1f} s** for this run with "
            f"{s.get('jobs', 1)} cell(s) at a time on {meta.get('cpus', '?')} cores; the cells' own wall "
            f"times (process start included) sum to {meta.get('cells_wall_total', 0):.1f} s. "
            f"Settings: {flags or 'defaults'}. lipopt {meta.get('lipopt', '?')}, {meta.get('date', '')}."
            + _full_run_text(meta) + "\n")


def _full_run_text(meta: dict) -> str:
    full = meta.get("full_run")
    if not full or meta.get("cached", 0) == 0:
        return ""
    return (f" The last run that computed all {full.get('cells', '?')} cells took **{full['wall_seconds']:.1f} s** "
            f"wall time ({full.get('jobs', '?')} at a time, {full.get('date', '')}).")


# -------------------------------------------------------------------------------------------------
# The report


def write_report(out_dir: Path, sections: dict) -> Path:
    """report.md from every experiment whose CSV is in ``out_dir``. ``sections`` maps an experiment
    name to its section builder f(rows, meta, out_dir) -> Markdown, in report order."""
    out_dir = Path(out_dir)
    parts = [
        "# lipopt experiments\n",
        f"lipopt {__version__}, Python {platform.python_version()}, {os.cpu_count()} CPU cores, written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}.\n",
        "Every upper bound is certified (valid in exact arithmetic). *exact* is the exact maximum of the "
        "norm-gradient polynomial (the FGL), proved by `exact-fgl`; it bounds the true Lipschitz constant "
        "from above and is the value every LiPopt/SDP relaxation approximates, so `ratio_to_exact` = "
        "bound / exact >= 1 measures a relaxation's gap. Lower bounds (`sampling`, `ascent`) are gradient "
        "norms at real inputs. Means are over seeds (random networks) or images; `[k/n]` marks a mean over "
        "the k of n cells that gave a number.\n",
        STATUS_LEGEND + "\n",
    ]
    if not plots.available():
        parts.append("matplotlib is not installed: this report has no plots.\n")
    found = []
    for name, builder in sections.items():
        path = out_dir / f"{name}.csv"
        if not path.exists():
            continue
        found.append(name)
        rows = read_csv(path)
        meta = read_meta(out_dir / f"{name}.meta.json")
        parts.append(builder(rows, meta, out_dir))
    if not found:
        parts.append("No experiment results in this directory yet.\n")
    report = out_dir / "report.md"
    tmp = Path(f"{report}.tmp{os.getpid()}")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, report)
    return report


def common_tables(rows: list[dict], by, conf_header, conf_cells=None, confs=None, ratio="ratio_to_exact") -> str:
    """Bounds, times and sizes tables of one experiment's rows."""
    agg = aggregate(rows, by)
    confs = confs or list(agg)
    methods = method_order(m for conf in confs for m in agg[conf])
    return ("Mean bound per method (× mean ratio to the exact value):\n\n"
            + bounds_table(agg, confs, methods, conf_header, ratio, conf_cells)
            + "\nMean seconds per cell (lipopt's own time; killed cells left out):\n\n"
            + times_table(agg, confs, methods, conf_header, conf_cells)
            + "\nSizes (mean): LP rows x columns of LiPopt-k, matrix order of the SDPs:\n\n"
            + sizes_table(agg, confs, methods, conf_header, conf_cells))
