"""`lipopt experiment`: the quick variants end to end, soundness of every row, cache, budgets, CLI."""
import csv
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from lipopt.errors import InvalidInputError
from lipopt.experiments import EXPERIMENTS, MODULES, run_experiment
from lipopt.experiments import plots, published, report
from lipopt.experiments.cells import Cell, run_cells
from lipopt.experiments.config import Settings
from lipopt.experiments.rows import make_rows

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-9


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiments")
    summary = run_experiment("all", out, quick=True, progress=False, jobs=2)
    return out, summary


def read_rows(out, name):
    with open(out / f"{name}.csv", newline="") as f:
        return list(csv.DictReader(f))


def num(v):
    return None if v == "" else float(v)


@pytest.mark.slow  # the quick-experiments fixture: ~70 s
def test_a_row_for_every_cell(quick):
    out, summary = quick
    for name in EXPERIMENTS:
        cells = MODULES[name].build_cells(Settings(quick=True, jobs=2))
        rows = read_rows(out, name)
        assert len(rows) == len(cells) == summary["experiments"][name]["cells"] > 0
        assert [r["key"] for r in rows] == [c.key() for c in cells]
        assert all(r["status"] in ("ok", "optimal", "time_limit", "failed", "timeout", "skipped", "refused") for r in rows)
    assert summary["computed"] + summary["cached"] + sum(e["skipped"] for e in summary["experiments"].values()) \
        == summary["cells"]  # cells screened out before running (zoo: refused / skipped) are neither


@pytest.mark.slow  # the quick-experiments fixture: ~70 s
def test_upper_bounds_are_sound(quick):
    out, _ = quick
    n_exact = 0
    for name in EXPERIMENTS:
        rows = read_rows(out, name)
        lowers = defaultdict(list)
        for r in rows:
            if num(r["lower"]) is not None:
                lowers[(r["network"], r["seed"], r["output"], r["scope"])].append(num(r["lower"]))
        for r in rows:
            up, ex = num(r["upper"]), num(r["exact"])
            if r["status"] in ("timeout", "failed", "skipped"):
                assert up is None and num(r["lower"]) is None and r["error"]
            if up is None:
                continue
            if ex is not None:
                n_exact += 1
                assert up >= ex * (1 - RTOL), r
            for lo in lowers[(r["network"], r["seed"], r["output"], r["scope"])]:
                assert up >= lo * (1 - RTOL), r
    assert n_exact > 20


@pytest.mark.slow  # the quick-experiments fixture: ~70 s
def test_exact_values_and_ratios(quick):
    out, _ = quick
    for name in EXPERIMENTS:
        rows = read_rows(out, name)
        groups = defaultdict(list)
        for r in rows:
            groups[(r["network"], r["seed"], r["output"], r["scope"])].append(r)
        for g in groups.values():
            fgl = [r for r in g if r["method"] == "exact-fgl"]
            assert len(fgl) == 1
            proved = fgl[0]["status"] == "optimal"
            if name in ("random", "banded"):
                assert proved  # tiny networks: the exact search always closes
            best_lower = max((num(r["lower"]) for r in g if num(r["lower"]) is not None), default=None)
            for r in g:
                ex, up, lo = num(r["exact"]), num(r["upper"]), num(r["lower"])
                assert (ex is not None) == proved
                value = up if up is not None else lo
                if ex is not None and value is not None:
                    assert num(r["ratio_to_exact"]) == pytest.approx(value / ex, rel=1e-12)
                else:
                    assert r["ratio_to_exact"] == ""
                if up is not None and best_lower:
                    assert num(r["ratio_to_lower"]) == pytest.approx(up / best_lower, rel=1e-12)
            if proved:  # the exact-fgl row bounds its own value: ratio 1 up to its rounding margin
                assert 1.0 <= num(fgl[0]["ratio_to_exact"]) < 1 + 1e-6


@pytest.mark.slow  # the quick-experiments fixture: ~70 s
def test_report_and_plots(quick):
    out, _ = quick
    text = (out / "report.md").read_text()
    for name in EXPERIMENTS:
        assert f"## Experiment `{name}`" in text
    assert "wall time" in text and "Soundness check FAILED" not in text
    assert "Published numbers (Chen et al. 2020)" in text
    if plots.available():
        pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
        assert any(p.startswith("random_") for p in pngs) and any(p.startswith("mnist_") for p in pngs)
        for p in pngs:
            assert f"(plots/{p})" in text and (out / "plots" / p).stat().st_size > 1000
    else:
        assert "matplotlib is not installed" in text


@pytest.mark.slow  # the quick-experiments fixture: ~70 s
def test_rerun_hits_the_cache(quick):
    out, summary = quick
    files = sorted((out / "cache").glob("*.json"))
    assert len(files) == summary["cells"] - sum(e["skipped"] for e in summary["experiments"].values())
    before = {f: f.stat().st_mtime_ns for f in files}
    again = run_experiment("all", out, quick=True, progress=False, jobs=2)
    assert again["computed"] == 0 and again["cached"] == summary["computed"] + summary["cached"]
    assert {f: f.stat().st_mtime_ns for f in files} == before
    for name in EXPERIMENTS:
        assert all(r["cached"] == "True" for r in read_rows(out, name) if r["status"] not in ("skipped", "refused"))


def test_cell_over_budget_is_a_timeout_without_number(tmp_path):
    # 3 million sampled gradients of a 40-40-1 network take seconds; the budget is 0.3 s
    cell = Cell("test", {"kind": "random", "widths": [40, 40, 1], "band": None, "seed": 0}, "sampling",
                options={"samples": 3_000_000}, time_limit=None, budget=0.3, labels={"network": "40-40-1 dense"})
    run = run_cells([cell], tmp_path, jobs=1, progress=False)
    res = run.results[0]
    assert res["status"] == "timeout" and res["upper"] is None and res["lower"] is None
    assert "budget" in res["error"] and run.computed == 1
    (row,) = make_rows([cell], run.results)
    assert row["status"] == "timeout" and row["upper"] is None and row["lower"] is None
    assert run_cells([cell], tmp_path, progress=False).cached == 1  # a timeout is a result: cached


def test_cell_key_is_the_spec():
    net = {"kind": "random", "widths": [5, 5, 1], "band": None, "seed": 0}
    a = Cell("random", net, "lp", 3, labels={"network": "x"})
    assert a.key() == Cell("random", dict(net), "lp", 3, labels={"network": "y"}).key()
    assert a.key() != Cell("random", {**net, "seed": 1}, "lp", 3).key()
    assert a.key() != Cell("random", net, "lp", 4).key()
    assert a.key() != Cell("random", net, "lp", 3, time_limit=5.0).key()


def test_bad_settings_raise():
    for kw in ({"time_limit": -1}, {"time_limit": float("nan")}, {"seeds": [-1]}, {"seeds": []}, {"jobs": 0}):
        with pytest.raises(InvalidInputError):
            run_experiment("random", "/nonexistent/never-created", **kw)
    with pytest.raises(InvalidInputError):
        run_experiment("nope", "/nonexistent/never-created")
    assert not Path("/nonexistent/never-created").exists()


@pytest.mark.slow  # the quick-experiments fixture: ~70 s
def test_published_data_optional(tmp_path, quick):
    assert published.load_published(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert published.load_published(tmp_path / "bad.json") is None
    out, _ = quick
    rows = report.read_csv(out / "banded.csv")
    text, comps = MODULES["banded"].comparison_section(rows, None)
    assert "no published numbers available" in text and comps == []
    fake = {"source": "s", "url": "", "notes": "", "skipped": 0, "entries": [
        {"widths": [10, 10, 1], "band": 4, "seed": 0, "norm": "inf", "scope": "global", "method": "LiPopt-3",
         "value": 1e-3, "seconds": 1.0, "table": "t"}]}
    text, comps = MODULES["banded"].comparison_section(rows, fake)
    assert len(comps) == 1 and comps[0]["flag"] == published.BELOW_EXACT
    assert "published bound below the exact value" in text


@pytest.mark.slow  # the quick-experiments fixture: ~70 s
def test_report_without_matplotlib(tmp_path, quick, monkeypatch):
    out, _ = quick
    for name in EXPERIMENTS:
        shutil.copy(out / f"{name}.csv", tmp_path / f"{name}.csv")
    monkeypatch.setattr(plots, "_figure", lambda *a, **k: None)
    monkeypatch.setattr(plots, "available", lambda: False)
    path = report.write_report(tmp_path, {e: MODULES[e].section for e in EXPERIMENTS})
    text = path.read_text()
    assert text.count("matplotlib is not installed") == 1 and "![" not in text
    assert not (tmp_path / "plots").exists()


def cli(*args):
    return subprocess.run([sys.executable, "-m", "lipopt.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@pytest.mark.slow  # the quick-experiments fixture: ~70 s
def test_cli_experiment(quick):
    out, _ = quick  # already computed: the CLI run only reads the cache and rewrites the outputs
    p = cli("experiment", "random", "--quick", "--out", out, "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "0 computed" in p.stdout and "report" in p.stdout


@pytest.mark.parametrize("args", [("experiment", "nope"), ("experiment", "random", "--time-limit", "-1"),
                                  ("experiment", "random", "--jobs", "0")])
def test_cli_bad_input(args, tmp_path):
    p = cli(*args, "--out", tmp_path / "x")
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert not (tmp_path / "x").exists()
