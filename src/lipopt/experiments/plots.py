"""PNG plots with matplotlib's Agg canvas (no pyplot, no global backend switch); optional.

Every function returns True when it wrote the file and False when matplotlib is not importable, so a
report can be written without plots.
"""
from __future__ import annotations

import math
from pathlib import Path

MARKERS = "osD^v<>pXh*"


def _figure(width: float = 6.4, height: float = 4.2):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _styles(names) -> dict:
    """The same colour and marker for a series name in every panel of a figure."""
    return {name: {"color": f"C{i % 10}", "marker": MARKERS[i % len(MARKERS)]}
            for i, name in enumerate(dict.fromkeys(names))}


def available() -> bool:
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _ok(v) -> bool:
    return v is not None and math.isfinite(v) and v > 0


def line_plot(path: Path, panels: list[dict], title: str = "", ncols: int = 2) -> bool:
    """One PNG with one axes per panel. A panel: {"title", "xlabel", "ylabel", "logy", "logx",
    "series": {name: (xs, ys)}}; points with a missing or non-positive y are left out."""
    ncols = max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    fig = _figure(5.0 * ncols, 3.6 * nrows + (0.4 if title else 0.0))
    if fig is None:
        return False
    style = _styles(name for panel in panels for name in panel["series"])
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for name, (xs, ys) in panel["series"].items():
            pts = [(x, y) for x, y in zip(xs, ys) if _ok(y)]
            if pts:
                ax.plot(*zip(*pts), label=name, linewidth=1.2, markersize=4, **style[name])
        if panel.get("logy"):
            ax.set_yscale("log")
        if panel.get("logx"):
            ax.set_xscale("log")
        ax.set_title(panel.get("title", ""), fontsize=9)
        ax.set_xlabel(panel.get("xlabel", ""), fontsize=8)
        ax.set_ylabel(panel.get("ylabel", ""), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return True


def bar_plot(path: Path, categories: list[str], series: dict, title: str = "", ylabel: str = "",
             logy: bool = False) -> bool:
    """Grouped bars: one group per category, one bar per series (missing values left out)."""
    fig = _figure(min(13.0, max(6.4, 0.25 * len(categories) * max(1, len(series)) + 2)), 4.6)
    if fig is None:
        return False
    ax = fig.add_subplot(1, 1, 1)
    k = max(1, len(series))
    width = 0.8 / k
    style = _styles(series)
    for j, (name, values) in enumerate(series.items()):
        xs = [i + (j - (k - 1) / 2) * width for i in range(len(categories))]
        pts = [(x, v) for x, v in zip(xs, values) if _ok(v)]
        if pts:
            ax.bar(*zip(*pts), width=width, label=name, color=style[name]["color"])
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(categories, rotation=30, ha="right", fontsize=7)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    return _save(fig, ax, path)


def scatter_plot(path: Path, series: dict, title: str = "", xlabel: str = "", ylabel: str = "",
                 diagonal: bool = True, log: bool = True) -> bool:
    """x-y scatter per series ({name: (xs, ys)}), with the line y = x."""
    fig = _figure(5.2, 4.6)
    if fig is None:
        return False
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = math.inf, -math.inf
    for j, (name, (xs, ys)) in enumerate(series.items()):
        pts = [(x, y) for x, y in zip(xs, ys) if _ok(x) and _ok(y)]
        if pts:
            ax.scatter(*zip(*pts), marker=MARKERS[j % len(MARKERS)], label=name, s=18)
            lo = min(lo, *(min(p) for p in pts))
            hi = max(hi, *(max(p) for p in pts))
    if diagonal and lo < hi:
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8, linestyle="--", label="y = x")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, ax, path)


def _save(fig, ax, path) -> bool:
    """Legend (when anything is labelled), tight layout, write the PNG."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return True
