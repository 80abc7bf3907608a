"""Reproducible experiments: the LiPopt paper's settings, the Chen et al. (2020) benchmark, the model zoo.

``run_experiment(name, out_dir)`` with name in "random", "banded", "mnist", "zoo" or "all" runs every cell of
the experiment(s) (each in a fresh process under a hard budget, cached under ``out_dir/cache``) and
writes ``out_dir/<name>.csv``, ``out_dir/<name>.meta.json``, ``out_dir/report.md`` and the plots under
``out_dir/plots``. Modules: ``cells`` (cell spec, hashing, process isolation, cache), ``random_nets``,
``banded``, ``mnist``, ``zoo`` (the experiments: cells and report sections), ``published`` (Chen et al.'s
numbers), ``rows`` (CSV rows, exact values, ratios), ``report`` (CSV, Markdown), ``plots`` (matplotlib).
Nothing here parses arguments or prints, except the progress reporter (stderr).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .. import __version__
from ..errors import InvalidInputError
from . import banded, mnist, random_nets, zoo
from .cells import run_cells
from .config import Settings
from .report import read_meta, write_csv, write_meta, write_report
from .rows import make_rows

EXPERIMENTS = ("random", "banded", "mnist", "zoo")
MODULES = {"random": random_nets, "banded": banded, "mnist": mnist, "zoo": zoo}
DEFAULT_OUT = "lipopt-experiments"


def default_jobs() -> int:
    """Cells at a time by default: one per core, at most 2."""
    return max(1, min(2, os.cpu_count() or 1))


def run_experiment(name: str, out_dir=DEFAULT_OUT, quick: bool = False, seeds=None, time_limit: float | None = None,
                   slow: bool = False, progress: bool = True, jobs: int | None = None) -> dict:
    """Run experiment ``name`` ("random", "banded", "mnist", "zoo" or "all") into ``out_dir``.

    ``quick``: tiny networks, 2 seeds, one image, 5 s budgets (all three in well under a minute).
    ``seeds``: network seeds (random, banded) or the lipopt seed (mnist: the first one).
    ``time_limit``: lipopt's time limit for every cell (default: per experiment and method); each cell's
    hard budget is time_limit * 1.25 + 10 s. ``slow``: also the expensive cells. ``progress``: a
    progress bar on stderr. ``jobs``: cells run at once (default: one per core, at most 2).

    Returns {"experiments": {name: {"cells", "computed", "cached", "skipped", "statuses", "csv",
    "seconds"}}, "cells", "computed", "cached", "report", "seconds"}. Raises InvalidInputError for an
    unknown name or bad settings.
    """
    if name not in EXPERIMENTS + ("all",):
        raise InvalidInputError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)} or all")
    settings = Settings(quick=bool(quick), seeds=tuple(seeds) if seeds is not None else None,
                        time_limit=time_limit, slow=bool(slow), jobs=default_jobs() if jobs is None else jobs)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"output directory {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    summary = {"experiments": {}, "cells": 0, "computed": 0, "cached": 0}
    for exp in (EXPERIMENTS if name == "all" else (name,)):
        summary["experiments"][exp] = _run_one(exp, out, settings, progress)
        for k in ("cells", "computed", "cached"):
            summary[k] += summary["experiments"][exp][k]
    report = write_report(out, {e: MODULES[e].section for e in EXPERIMENTS})
    summary.update({"report": str(report), "seconds": time.perf_counter() - t_all})
    return summary


def _run_one(exp: str, out: Path, settings: Settings, progress: bool) -> dict:
    t0 = time.perf_counter()
    cells = MODULES[exp].build_cells(settings)
    runnable = [c for c in cells if "skip" not in c.labels]
    run = run_cells(runnable, out / "cache", jobs=settings.jobs, progress=progress, desc=exp)
    done = iter(run.results)
    results = [next(done) if "skip" not in c.labels else
               {"status": c.labels.get("skip_status", "skipped"), "upper": None, "lower": None, "raw": None, "seconds": None, "sizes": {},
                "details": {}, "error": c.labels["skip"], "cached": False} for c in cells]
    rows = make_rows(cells, results)
    csv_path = out / f"{exp}.csv"
    write_csv(csv_path, rows)
    statuses = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    wall = time.perf_counter() - t0
    date = time.strftime("%Y-%m-%d %H:%M:%S")
    info = {"cells": len(cells), "computed": run.computed, "cached": run.cached,
            "skipped": len(cells) - len(runnable), "statuses": statuses, "csv": str(csv_path), "seconds": wall}
    meta_path = out / f"{exp}.meta.json"
    if run.cached == 0 and run.computed > 0:
        full = {"wall_seconds": wall, "date": date, "jobs": settings.jobs, "cells": run.computed}
    else:  # keep the wall time of the last run that computed everything
        full = _full_run(read_meta(meta_path))
    write_meta(meta_path, {
        "experiment": exp, "settings": settings.as_dict(), "wall_seconds": wall, "cells": len(cells),
        "computed": run.computed, "cached": run.cached, "skipped": info["skipped"], "statuses": statuses,
        "cells_wall_total": sum(r.get("wall") or 0.0 for r in results), "cpus": os.cpu_count(),
        "lipopt": __version__, "date": date, "full_run": full})
    return info


def _full_run(prev: dict) -> dict | None:
    """The previous metadata's last complete run (itself, when it computed every cell)."""
    if prev.get("full_run"):
        return prev["full_run"]
    if prev.get("cached") == 0 and prev.get("computed"):
        return {"wall_seconds": prev.get("wall_seconds"), "date": prev.get("date"),
                "jobs": prev.get("settings", {}).get("jobs"), "cells": prev.get("computed")}
    return None


__all__ = ["DEFAULT_OUT", "EXPERIMENTS", "Settings", "run_experiment"]
