"""Report section of the "zoo" experiment: the headline table (best certified bound per network and scope,
its gap = upper / best lower bound, and the method that gave it), per-network method tables and a
paragraph, generated from the rows, naming the networks that get only the product bound or a refusal.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .peers import PEER_METHODS
from .zoo import SCOPES, column_of

NO_NUMBER_ORDER = ("refused", "skipped", "timeout", "failed", "error")
TIE_RTOL = 1e-12


def _certified(r: dict) -> bool:
    """An upper bound valid in exact arithmetic: not a peer's estimate, not a method whose bound rests on
    solver tolerances (the registry's ``exact_arithmetic=False``, e.g. the MIP)."""
    from ..methods.registry import METHODS
    m = METHODS.get(r["method"])
    return (r["upper"] is not None and r["method_name"] not in PEER_METHODS
            and (m is None or m.capabilities.exact_arithmetic))


def _rank(name: str) -> int:
    """Ties go to the method that computed the number: auto (a portfolio) last."""
    return 1 if name == "auto" else 0


def best_per_function(rows: list[dict]) -> dict:
    """{(network, column, output): {"best", "method", "lower", "gap", "product", "rows"}}."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["network"], column_of(r["scope"]), r["output"])].append(r)
    out = {}
    for key, rs in groups.items():
        ups = sorted((r for r in rs if _certified(r)), key=lambda r: (r["upper"], _rank(r["method_name"])))
        lows = [r["lower"] for r in rs if r["lower"] is not None]
        best = ups[0] if ups else None
        if best is not None:  # exact ties: name the non-portfolio method
            tied = [r for r in ups if r["upper"] <= best["upper"] * (1 + TIE_RTOL)]
            best = min(tied, key=lambda r: _rank(r["method_name"]))
        lower = max(lows) if lows else None
        prod = next((r["upper"] for r in rs if r["method_name"] == "product" and r["upper"] is not None), None)
        out[key] = {"best": best["upper"] if best else None, "method": best["method_name"] if best else None,
                    "lower": lower, "gap": best["upper"] / lower if best and lower else None,
                    "product": prod, "rows": rs}
    return out


def _reason(rs: list[dict]) -> str:
    """Short text for a headline cell without a certified number."""
    statuses = {r["status"] for r in rs if r["method_name"] not in PEER_METHODS and r["method"] != "ascent"}
    for st in NO_NUMBER_ORDER:
        if st in statuses:
            why = next((r["error"] for r in rs if r["status"] == st and r["method_name"] == "auto" and r["error"]),
                       None) or next((r["error"] for r in rs if r["status"] == st and r["error"]), "")
            why = why if len(why) <= 90 else why[:87] + "..."
            return f"{st}: {why}" if why else st
    return "no bound"


def headline(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and body of the headline table; mean over the images of the best bound and of the gap."""
    best = best_per_function(rows)
    nets = list(dict.fromkeys(r["network"] for r in rows))
    cols = [c for c, _, _ in SCOPES if any(column_of(r["scope"]) == c for r in rows)]
    body = []
    for net in nets:
        line = [net]
        for col in cols:
            fs = [v for (n, c, _), v in best.items() if n == net and c == col]
            with_number = [f for f in fs if f["best"] is not None]
            if not with_number:
                rs = [r for f in fs for r in f["rows"]]
                line.append(_reason(rs) if rs else "")
                continue
            mean = sum(f["best"] for f in with_number) / len(with_number)
            gaps = [f["gap"] for f in with_number if f["gap"] is not None]
            methods = "/".join(sorted({f["method"] for f in with_number}))
            gap = f"×{sum(gaps) / len(gaps):.3g}" if gaps else "gap -: no lower bound"
            txt = f"{_fmt(mean)} ({gap}, {methods})"
            if len(with_number) < len(fs):
                txt += f" [{len(with_number)}/{len(fs)}]"
            line.append(txt)
        body.append(line)
    return ["network (architecture, test accuracy)"] + cols, body


def _fmt(v) -> str:
    from .report import fmt
    return fmt(v, 4)


def detail_cell(r: dict) -> str:
    """value ×gap, seconds, peak MB; or the status."""
    from .report import fmt_seconds
    value = r["upper"] if r["upper"] is not None else r["lower"]
    if value is None:
        return r["status"]
    txt = _fmt(value)
    if r["ratio_to_lower"] is not None:
        txt += f" ×{r['ratio_to_lower']:.3g}"
    if r["status"] not in ("ok", "optimal"):
        txt += f" ({r['status']})"
    txt += f"; {fmt_seconds(r['seconds'])} s"
    if r["peak_mb"] is not None:
        txt += f"; {r['peak_mb']:.0f} MB"
    return txt


def summary_paragraph(rows: list[dict]) -> str:
    """Which networks get only the product bound, which only refusals, and where something beats it."""
    best = best_per_function(rows)
    per_net = defaultdict(list)
    for (net, col, _), f in best.items():
        per_net[net].append((col, f))
    refused, product_only, better = [], [], []
    for net, fs in per_net.items():
        numbers = [(c, f) for c, f in fs if f["best"] is not None]
        if not numbers:
            refused.append(net.split(" ")[0])
            continue
        wins = sorted({c for c, f in numbers if f["product"] is None or f["best"] < f["product"] * (1 - TIE_RTOL)},
                      key=[c for c, _, _ in SCOPES].index)
        if wins:
            ratios = [f["best"] / f["product"] for c, f in numbers if f["product"] and c in wins]
            tight = f" (best / product down to {min(ratios):.3g})" if ratios else ""
            better.append(f"{net.split(' ')[0]} in {', '.join(wins)}{tight}")
        else:
            product_only.append(net.split(" ")[0])
    parts = []
    parts.append("No certified bound at all (refused or no number in every scope): "
                 + (", ".join(refused) if refused else "none") + ".")
    parts.append("Only the product bound (no method beat the product of layer norms in any scope with a number): "
                 + (", ".join(product_only) if product_only else "none") + ".")
    parts.append("Better than the product bound: " + ("; ".join(better) if better else "nowhere") + ".")
    return " ".join(parts) + "\n"


def peers_paragraph(rows: list[dict]) -> str:
    prs = [r for r in rows if r["method_name"] in PEER_METHODS]
    if not prs:
        return "Peers: none in this run.\n"
    if all(r["status"] == "skipped" and "not installed" in (r["error"] or "") for r in prs):
        return "Peers: eclipse-nn was not installed (`pip install lipopt[peers]`), so ECLipsE rows are empty.\n"
    best = best_per_function(rows)
    lines = ["Peers (ECLipsE, ECLipsE-Fast from eclipse-nn; global l2 only, MLPs only; auto_LiRPA not "
             "included): their values are floating-point estimates from solver output (no directed rounding, "
             "no residual certificate), not certified bounds. Peer / lipopt's best certified l2 bound:\n\n"]
    body = []
    for r in prs:
        f = best.get((r["network"], column_of(r["scope"]), r["output"]))
        ratio = r["upper"] / f["best"] if r["upper"] is not None and f and f["best"] else None
        below = r["upper"] is not None and f and f["lower"] is not None and r["upper"] < f["lower"]
        body.append([r["network"].split(" ")[0], r["output"], r["method_name"], detail_cell(r),
                     f"{ratio:.3g}" if ratio is not None else "-", "BELOW the lower bound" if below else "",
                     (r["error"] or "")[:80]])
    from .report import table
    return "\n".join(lines) + table(["network", "function", "peer", "value ×gap; s; MB", "peer / lipopt",
                                     "check", "reason"], body)


def zoo_section(rows: list[dict], meta: dict, out_dir) -> str:
    from . import plots
    from .report import plot_link, run_line, soundness_line, status_lines, table
    from .rows import method_order
    lip = [r for r in rows if r["method_name"] not in PEER_METHODS]
    md = ["## Experiment `zoo`: trained networks, every method, peers side by side\n",
          "Margin f_label - f_runner-up at the first test images of each zoo network. Each headline cell: the "
          "best certified upper bound (mean over the images), its gap = upper / best lower bound (`ascent`, a "
          "gradient norm at a point inside the domain; × mean), and the method that gave it; or the status "
          "with the reason. Local scopes are balls around the image clipped to [0, 1]. Peers (not "
          "certified) are listed separately below, never in the headline; nor is the MIP (`exact`: its bound "
          "rests on HiGHS tolerances), shown in the per-method tables only.\n",
          run_line(meta), soundness_line(lip)]
    head, body = headline(rows)
    md += ["### Best certified bound per network and scope\n", table(head, body), summary_paragraph(rows),
           peers_paragraph(rows)]
    md.append("### Per method\n")
    md.append("Each cell: value ×gap; lipopt seconds; peak memory of the cell process; or the status.\n")
    nets = list(dict.fromkeys(r["network"] for r in rows))
    for net in nets:
        rs = [r for r in rows if r["network"] == net]
        methods = method_order(r["method_name"] for r in rs if r["method_name"] not in PEER_METHODS)
        methods += [m for m in PEER_METHODS if any(r["method_name"] == m for r in rs)]
        funcs = list(dict.fromkeys((r["scope"], r["output"]) for r in rs))
        by = {(r["scope"], r["output"], r["method_name"]): r for r in rs}
        md.append(f"**{net}**\n")
        md.append(table(["scope", "function"] + methods,
                        [[s, o] + [detail_cell(by[(s, o, m)]) if (s, o, m) in by else "" for m in methods]
                         for s, o in funcs]))
    md.append(status_lines(rows))
    fs = best_per_function(rows)
    cols = [c for c, _, _ in SCOPES if any(column_of(r["scope"]) == c for r in rows)]
    names = [n.split(" ")[0] for n in nets]
    series = {}
    for col in cols:
        vals = []
        for net in nets:
            gaps = [f["gap"] for (n, c, _), f in fs.items() if n == net and c == col and f["gap"] is not None]
            vals.append(sum(gaps) / len(gaps) if gaps else None)
        series[col] = vals
    ok = plots.bar_plot(Path(out_dir) / "plots" / "zoo_gaps.png", names, series,
                        "zoo: best certified upper / best lower bound", "gap (log scale)", logy=True)
    md.append(plot_link(ok, "plots/zoo_gaps.png", "zoo gaps"))
    return "\n".join(md)
