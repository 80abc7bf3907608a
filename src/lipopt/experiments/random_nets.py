"""Experiment "random": every method on random ReLU networks, against the exact FGL.

Networks: ``lipopt.model.random.random_network(widths, band=s, seed=seed)`` (PyTorch's default init with
bias), one hidden layer (n, n, 1) and two (n, n, 10, 1), dense and banded. Two sweeps:

* width: n in WIDTHS, dense and band WIDTH_BAND;
* sparsity: n = BAND_WIDTH, band in BANDS and dense.

Methods (global, l_inf, the single output): product, LiPopt-(d+1) and LiPopt-(d+2) (d hidden layers;
``max_columns`` makes a certificate that would not fit fail at once, with its size as the reason),
Shor SDP, the order-2 SDP "sdp2" when lipopt provides it, exact-fgl (its proved value is the exact value
of the cell's network), and the lower bounds sampling and ascent. Seeds SEEDS, lipopt time limit
TIME_LIMIT per cell, certificates up to MAX_COLUMNS; ``slow`` adds the widths SLOW_WIDTHS and allows
SLOW_MAX_COLUMNS; ``quick`` runs the three one-hidden-layer networks of QUICK only.
"""
from __future__ import annotations

from pathlib import Path

from .. import methods as _methods
from .cells import Cell
from .config import Settings

NAME = "random"
WIDTHS = (10, 20, 40, 80)
SLOW_WIDTHS = (160,)
WIDTH_BAND = 10
BAND_WIDTH = 40
BANDS = (3, 5, 10, 20)
SEEDS = (0, 1, 2)
TIME_LIMIT = 20.0
MAX_COLUMNS = 1_000_000
SLOW_MAX_COLUMNS = 8_000_000
QUICK = {"configs": [((6, 6, 1), None), ((8, 8, 1), None), ((8, 8, 1), 3)], "seeds": (0, 1), "time_limit": 5.0,
         "max_columns": 60_000}


def network_name(widths, band) -> str:
    return "-".join(map(str, widths)) + (f" s={band}" if band is not None else " dense")


def families(n: int) -> list[tuple]:
    return [(n, n, 1), (n, n, 10, 1)]


def configurations(settings: Settings) -> list[tuple]:
    """(widths, band, sweeps) for every network configuration, in a fixed order."""
    if settings.quick:
        return [(w, b, ("quick",)) for w, b in QUICK["configs"]]
    widths = WIDTHS + (SLOW_WIDTHS if settings.slow else ())
    bw, bands, wband = BAND_WIDTH, BANDS, WIDTH_BAND
    confs: dict = {}
    for n in widths:
        for w in families(n):
            for band in (None, wband):
                confs.setdefault((w, band), set()).add("width")
    for w in families(bw):
        for band in (*bands, None):
            confs.setdefault((w, band), set()).add("band")
    return [(w, b, tuple(sorted(s))) for (w, b), s in confs.items()]


def method_specs(depth: int) -> list[tuple]:
    """(method, degree) in run order; sdp2 only when lipopt has it."""
    specs = [("product", None), ("lp", depth + 1), ("lp", depth + 2), ("sdp", None)]
    if "sdp2" in _methods.METHODS:
        specs.append(("sdp2", None))
    return specs + [("exact-fgl", None), ("sampling", None), ("ascent", None)]


def build_cells(settings: Settings) -> list[Cell]:
    seeds = settings.pick_seeds(QUICK["seeds"] if settings.quick else SEEDS)
    limit, budget = settings.limits(QUICK["time_limit"] if settings.quick else TIME_LIMIT)
    max_columns = QUICK["max_columns"] if settings.quick else SLOW_MAX_COLUMNS if settings.slow else MAX_COLUMNS
    cells = []
    for widths, band, sweeps in configurations(settings):
        depth = len(widths) - 2
        for seed in seeds:
            net = {"kind": "random", "widths": list(widths), "band": band, "seed": seed}
            labels = {"network": network_name(widths, band), "widths": list(widths), "sweeps": list(sweeps),
                      "depth": depth}
            for method, degree in method_specs(depth):
                options = {"max_columns": max_columns} if method == "lp" else {}
                cells.append(Cell(NAME, net, method, degree, options=options, seed=seed, time_limit=limit,
                                  budget=budget, labels=labels))
    return cells


# -------------------------------------------------------------------------------------------------
# Report section


def _parse(network: str) -> tuple:
    """'40-40-10-1 s=10' -> (depth, n, band or None)."""
    widths, kind = network.split(" ")
    ws = [int(x) for x in widths.split("-")]
    return len(ws) - 2, ws[0], None if kind == "dense" else int(kind.removeprefix("s="))


def _order(network: str) -> tuple:
    depth, n, band = _parse(network)
    return depth, band is not None, band or 0, n


def series(agg: dict, points: list[tuple], methods: list[str], field: str) -> dict:
    """{method: (xs, ys)} from the aggregate, points = [(x, conf)]. For field "value", exact-fgl is
    replaced by the series "exact FGL" of configurations where every seed's FGL was proved."""
    out = {}
    if field == "value" and "exact-fgl" in methods:
        pts = [(x, agg[c]["exact-fgl"]) for x, c in points if "exact-fgl" in agg.get(c, {})]
        pts = [(x, s["exact"]) for x, s in pts if s["n_exact"] == s["n"] and s["exact"] is not None]
        if pts:
            out["exact FGL (proved)"] = tuple(map(list, zip(*pts)))
        methods = [m for m in methods if m != "exact-fgl"]
    for m in methods:
        xs, ys = [], []
        for x, conf in points:
            s = agg.get(conf, {}).get(m)
            if s is not None and s.get(field) is not None:
                xs.append(x)
                ys.append(s[field])
        if xs:
            out[m] = (xs, ys)
    return out


def section(rows: list[dict], meta: dict, out_dir) -> str:
    from . import plots
    from .report import common_tables, plot_link, run_line, soundness_line, status_lines
    from .rows import aggregate, method_order
    agg = aggregate(rows, ("network",))
    confs = sorted(agg, key=lambda c: _order(c[0]))
    methods = method_order(m for c in confs for m in agg[c])
    uppers = [m for m in methods if m not in ("sampling", "ascent")]
    parsed = {c: _parse(c[0]) for c in confs}
    md = ["## Experiment `random`: random ReLU networks\n",
          "Random networks from `lipopt.model.random.random_network` (PyTorch default init with bias, "
          "numpy seeds), one hidden layer (n, n, 1) and two (n, n, 10, 1), dense and banded (band s); "
          "global l_inf bounds of the single output. LiPopt-(d+1) and LiPopt-(d+2) for d hidden layers; "
          "a certificate over `max_columns` fails at once (reason recorded).\n",
          run_line(meta), soundness_line(rows),
          common_tables(rows, ("network",), ["network"], confs=confs), status_lines(rows)]
    plot_dir = Path(out_dir) / "plots"
    depths = sorted({p[0] for p in parsed.values()})
    band_counts = {}
    for depth, n, band in parsed.values():
        band_counts.setdefault(band, set()).add(n)
    width_bands = [b for b, ns in band_counts.items() if len(ns) > 1]
    width_bands.sort(key=lambda b: (b is not None, b or 0))
    panels_bound, panels_time, panels_size = [], [], []
    for depth in depths:
        for band in width_bands:
            pts = sorted((n, c) for c, (d, n, b) in parsed.items() if d == depth and b == band)
            if len(pts) < 2:
                continue
            name = f"{depth} hidden layer{'s' if depth > 1 else ''}, " + ("dense" if band is None else f"band s={band}")
            panels_bound.append({"title": name, "xlabel": "width n", "ylabel": "bound (mean over seeds)",
                                 "logy": True, "series": series(agg, pts, methods, "value")})
            panels_time.append({"title": name, "xlabel": "width n", "ylabel": "seconds (mean)", "logy": True,
                                "series": series(agg, pts, uppers, "seconds")})
            sz = {f"{m} LP columns": v for m, v in series(agg, pts, [m for m in uppers if m.startswith("LiPopt")],
                                                          "lp_columns").items()}
            sz.update({f"{m} matrix order": v for m, v in series(agg, pts, [m for m in uppers if m.startswith("sdp")],
                                                                 "sdp_order").items()})
            panels_size.append({"title": name, "xlabel": "width n", "ylabel": "size", "logy": True, "series": sz})
    panels_band = []
    for depth in depths:
        by_n = {}
        for c, (d, n, b) in parsed.items():
            if d == depth:
                by_n.setdefault(n, []).append((n if b is None else b, c))
        if not by_n:
            continue
        n, pts = max(by_n.items(), key=lambda kv: (len(kv[1]), kv[0]))
        if len(pts) >= 2:
            panels_band.append({"title": f"{depth} hidden layer{'s' if depth > 1 else ''}, n = {n} (band n = dense)",
                                "xlabel": "band s", "ylabel": "bound (mean over seeds)", "logy": True,
                                "series": series(agg, sorted(pts), methods, "value")})
    figs = [("random_bound_vs_width.png", panels_bound, "Bound vs width per method"),
            ("random_bound_vs_band.png", panels_band, "Bound vs sparsity (band) per method"),
            ("random_time_vs_width.png", panels_time, "Run time per method (log scale)"),
            ("random_sizes.png", panels_size, "LP and SDP sizes")]
    md.append("")
    for fname, panels, title in figs:
        if panels:
            ok = plots.line_plot(plot_dir / fname, panels, title)
            md.append(plot_link(ok, f"plots/{fname}", title))
    return "\n".join(md)
