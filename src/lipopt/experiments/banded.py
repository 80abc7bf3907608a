"""Experiment "banded": the random sparse benchmark of Chen, Lasserre, Magron & Pauwels (NeurIPS 2020).

Networks (n, n, 1) and (n, n, 10, 1) with band s, seeds 0..9, global l_inf bound of the single output.
With PyTorch installed these are Chen et al.'s own networks (``model.random.torch_random_network``: their
construction, seed by seed), so their published per-seed numbers (``data/chen2020.json``) refer to the
very networks we bound; without PyTorch, ``random_network`` draws of the same distribution are used and
the report says so. Methods: product, LiPopt-3, LiPopt-4, Shor SDP, the order-2 SDP "sdp2" when lipopt
provides it (the analogue of their HR-2), exact-fgl (the exact value) and the sampled lower bound
(their LBS).

Configurations: CONFIGS by default (a cross-section of the published ones that runs in minutes); with
``slow`` every published configuration too. Cost model: the LiPopt certificate size of each
configuration is estimated on its seed-0 network (``lipopt.inspect.summarize``, an upper bound on the LP
columns); without ``slow``, LiPopt-k cells estimated above LP_COLUMNS are recorded as "skipped" with
the estimate instead of run.
"""
from __future__ import annotations

from pathlib import Path

from .. import methods as _methods
from .cells import Cell
from .config import Settings
from .networks import materialize, torch_available
from .published import compare, configurations as published_configurations, load_published, summarize
from .random_nets import network_name

NAME = "banded"
CONFIGS = [((10, 10, 1), 4), ((10, 10, 1), 20), ((20, 20, 1), 8), ((20, 20, 1), 40), ((40, 40, 1), 10),
           ((40, 40, 1), 20), ((80, 80, 1), 10), ((80, 80, 1), 20),
           ((5, 5, 10, 1), 8), ((10, 10, 10, 1), 8), ((20, 20, 10, 1), 8), ((20, 20, 10, 1), 20),
           ((40, 40, 10, 1), 10), ((40, 40, 10, 1), 20)]
SEEDS = tuple(range(10))
TIME_LIMIT = 30.0
SLOW_TIME_LIMIT = 600.0
LP_COLUMNS = 750_000      # default runs: LiPopt-k only when the estimated certificate is at most this
QUICK = {"configs": [((10, 10, 1), 4), ((5, 5, 10, 1), 8)], "seeds": (0, 1), "time_limit": 5.0}  # published ones


def net_kind() -> str:
    """"chen2020" (their networks, needs torch) or "random" (numpy draws of the same distribution)."""
    return "chen2020" if torch_available() else "random"


def method_specs() -> list[tuple]:
    specs = [("product", None), ("lp", 3), ("lp", 4), ("sdp", None)]
    if "sdp2" in _methods.METHODS:
        specs.append(("sdp2", None))
    return specs + [("exact-fgl", None), ("sampling", None)]


def estimated_columns(net_spec: dict, degrees=(3, 4)) -> dict:
    """{degree: estimated LiPopt-k LP columns} of one network (an upper bound on the real size)."""
    from ..inspect import summarize
    from ..model import output_vector
    from .networks import build_network
    net = build_network(net_spec, materialize(net_spec))
    return summarize(net, output_vector(net, None), degrees=degrees).get("lp_columns_estimate", {})


def configs(settings: Settings, published=None) -> list[tuple]:
    if settings.quick:
        return list(QUICK["configs"])
    if settings.slow:
        return list(dict.fromkeys(CONFIGS + published_configurations(published)))
    return list(CONFIGS)


def build_cells(settings: Settings, published=None) -> list[Cell]:
    """Cells of every configuration and seed; LiPopt cells too large for a default run carry
    labels["skip"] (with the estimated size)."""
    published = load_published() if published is None else published
    kind = net_kind()
    seeds = settings.pick_seeds(QUICK["seeds"] if settings.quick else SEEDS)
    default = QUICK["time_limit"] if settings.quick else SLOW_TIME_LIMIT if settings.slow else TIME_LIMIT
    limit, budget = settings.limits(default)
    cells = []
    for widths, band in configs(settings, published):
        widths = tuple(int(w) for w in widths)
        est = {} if settings.slow else estimated_columns({"kind": kind, "widths": list(widths), "band": band,
                                                          "seed": seeds[0]})
        for seed in seeds:
            net = {"kind": kind, "widths": list(widths), "band": band, "seed": seed}
            arrays = materialize(net)
            labels = {"network": network_name(widths, band), "widths": list(widths), "net_kind": kind}
            for method, degree in method_specs():
                lab = dict(labels)
                if method == "lp" and est.get(degree, 0) > LP_COLUMNS:
                    lab["skip"] = f"estimated {est[degree]:,} LP columns > {LP_COLUMNS:,}: run with slow=True"
                cells.append(Cell(NAME, net, method, degree, seed=seed, time_limit=limit, budget=budget,
                                  labels=lab, arrays=arrays))
    return cells


# -------------------------------------------------------------------------------------------------
# Report section


def _order(network: str) -> tuple:
    widths, kind = network.split(" ")
    ws = [int(x) for x in widths.split("-")]
    return len(ws), ws[0], kind != "dense", int(kind.removeprefix("s=")) if kind != "dense" else 0


NOTES_CHARS = 600
COMPARISON_COLUMNS = ["network", "method", "seed", "published", "published_seconds", "ours_method", "ours",
                      "ours_seconds", "ratio", "exact", "published_over_exact", "flag", "within_tolerance", "table"]


def comparison_section(rows: list[dict], published: dict | None, out_dir=None) -> tuple[str, list[dict]]:
    """(Markdown, per-entry comparisons) of our results against the published numbers; the per-seed
    comparisons also go to ``out_dir/banded_published.csv``."""
    from .report import fmt, fmt_seconds, table, write_table_csv
    head = "### Published numbers (Chen et al. 2020)\n"
    if published is None or not published["entries"]:
        return head + "\nno published numbers available.\n", []
    comps = compare(rows, published, network_name)
    kinds = {r.get("net_kind") for r in rows}
    md = [head, f"Source: {published['source']} {published['url']}".strip() + "\n"]
    if published["notes"]:
        notes = published["notes"]
        md.append("Data notes: " + (notes if len(notes) <= NOTES_CHARS else notes[:NOTES_CHARS].rsplit(" ", 1)[0]
                                    + " ... (full notes in `lipopt/experiments/data/chen2020.json`)") + "\n")
    if kinds == {"chen2020"}:
        md.append("Our networks are Chen et al.'s own (rebuilt with their construction: `torch.manual_seed(seed)`, "
                  "`nn.Linear` layers, band mask |i - j| <= (s - 1) / 2), so each per-seed comparison is "
                  "between two bounds of the same network.\n")
    else:
        md.append("PyTorch was not available: our networks are numpy draws of the same distribution, not "
                  "theirs, so per-seed comparisons compare two networks of one configuration.\n")
    md.append("Published HR-2/SHOR 'global' values were computed over the input box x0 +/- 10 (see the data "
              "file's notes), not over all inputs, so they may lie below the global FGL legitimately; "
              "published LiPopt values are global like ours. Columns: mean over the seeds where both "
              "numbers exist; *min pub/exact* = the smallest published / our exact value; *flagged* = "
              "published upper bounds below our proved exact value by more than "
              "1e-6 relative (published lower bounds above it): `published bound below the exact value`.\n")
    if not comps:
        md.append("None of the published configurations was run here (slow=True runs all of them).\n")
        return "\n".join(md), comps
    summary = sorted(summarize(comps), key=lambda c: (_order(c["network"]), c["method"]))
    body = [[c["network"], c["method"], c["ours_method"] or "-", f"{c['n_ours']}/{c['n']}", fmt(c["published"]),
             fmt(c["ours"]), f"{c['ratio']:.4f}" if c["ratio"] else "-", fmt_seconds(c["published_seconds"]),
             fmt_seconds(c["ours_seconds"]),
             f"{c['min_published_over_exact']:.6f}" if c["min_published_over_exact"] else "-",
             f"{c['flagged']}" + (f" (+{c['within_tolerance']} within 1e-6)" if c["within_tolerance"] else "")]
            for c in summary]
    md.append(table(["network", "published", "ours", "seeds", "published mean", "ours mean", "ours / published",
                     "published s", "ours s", "min pub/exact", "flagged"], body))
    flagged = [c for c in comps if c["flag"]]
    if flagged:
        md.append(f"\nFlagged entries ({len(flagged)}):\n")
        md.append(table(["network", "method", "seed", "published", "exact (ours)", "published / exact", "flag"],
                        [[c["network"], c["method"], "mean" if c["seed"] is None else c["seed"], fmt(c["published"]),
                          fmt(c["exact"]), f"{c['published_over_exact']:.6f}", c["flag"]]
                         for c in flagged[:40]]))
        if len(flagged) > 40:
            md.append(f"... {len(flagged) - 40} more in banded_published.csv\n")
    ran = {c["network"] for c in comps}
    not_run = sum(1 for e in published["entries"] if network_name(e["widths"], e["band"]) not in ran)
    md.append(f"\n{len(comps)} published entries compared (per seed in `banded_published.csv`), "
              f"{len(flagged)} flagged; {not_run} entries belong to configurations not run here"
              + (f"; {published['skipped']} malformed entries skipped" if published["skipped"] else "") + ".\n")
    if out_dir is not None:
        write_table_csv(Path(out_dir) / "banded_published.csv", COMPARISON_COLUMNS, comps)
    return "\n".join(md), comps


def section(rows: list[dict], meta: dict, out_dir, published=None) -> str:
    from . import plots
    from .report import common_tables, plot_link, run_line, soundness_line, status_lines
    from .rows import aggregate, method_order
    published = load_published() if published is None else published
    agg = aggregate(rows, ("network",))
    confs = sorted(agg, key=lambda c: _order(c[0]))
    methods = method_order(m for c in confs for m in agg[c])
    md = ["## Experiment `banded`: the Chen et al. (2020) random sparse benchmark\n",
          "Networks (n, n, 1) and (n, n, 10, 1) with band s, global l_inf bound of the output, seeds "
          f"{', '.join(map(str, sorted({r['seed'] for r in rows})))}. LiPopt-k cells whose estimated LP is "
          f"above {LP_COLUMNS:,} columns are `skipped` unless slow=True.\n",
          run_line(meta), soundness_line(rows),
          common_tables(rows, ("network",), ["network"], confs=confs), status_lines(rows)]
    comp, comps = comparison_section(rows, published, out_dir)
    md.append(comp)
    plot_dir = Path(out_dir) / "plots"
    cats = [c[0] for c in confs]
    uppers = [m for m in methods if m not in ("sampling", "ascent", "exact-fgl")]
    ok = plots.bar_plot(plot_dir / "banded_ratio_to_exact.png", cats,
                        {m: [agg[c].get(m, {}).get("ratio_to_exact") for c in confs] for m in uppers},
                        "Mean bound / exact FGL per method (log scale)", "ratio to exact (1 = tight)", logy=True)
    md.append(plot_link(ok, "plots/banded_ratio_to_exact.png", "ratio to exact"))
    ok = plots.bar_plot(plot_dir / "banded_time.png", cats,
                        {m: [agg[c].get(m, {}).get("seconds") for c in confs] for m in methods},
                        "Mean seconds per method (log scale)", "seconds", logy=True)
    md.append(plot_link(ok, "plots/banded_time.png", "run time"))
    if comps:
        series = {}
        for c in comps:
            if c["ours"] is not None and c["seed"] is not None:
                xs, ys = series.setdefault(c["method"], ([], []))
                xs.append(c["published"])
                ys.append(c["ours"])
        if series:
            ok = plots.scatter_plot(plot_dir / "banded_vs_published.png", series, "Ours vs published (Chen et al.)",
                                    "published value", "our value")
            md.append(plot_link(ok, "plots/banded_vs_published.png", "ours vs published"))
    return "\n".join(md)
