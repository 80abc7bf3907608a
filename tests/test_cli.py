"""CLI contract: JSON fields, exit codes, one-line errors, determinism."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lipopt
from lipopt.exact import exact_fgl

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "banded_10_10_1.npz"


def run(*args):
    return subprocess.run([sys.executable, "-m", "lipopt.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def bound_json(*args):
    p = run("bound", *args, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_json_contract_lp():
    d = bound_json(EXAMPLE, "--method", "lp", "--degree", "3")
    for key in ("upper_bound", "lower_bound", "method", "norm", "degree", "seconds", "sizes", "raw_value"):
        assert key in d
    assert d["method"] == "lp" and d["norm"] == "inf" and d["degree"] == 3
    assert {"rows", "columns", "nonzeros"} <= set(d["sizes"])
    net = lipopt.load(EXAMPLE)
    exact = exact_fgl(net, np.ones(1)).value
    assert d["lower_bound"] <= exact <= d["upper_bound"]


@pytest.mark.parametrize("method", ["product", "exact-fgl", "sampling", "ascent"])
def test_other_methods(method):
    d = bound_json(EXAMPLE, "--method", method)
    exact = exact_fgl(lipopt.load(EXAMPLE), np.ones(1)).value
    if method in ("sampling", "ascent"):
        assert d["upper_bound"] is None and d["lower_bound"] <= exact
    else:
        assert d["upper_bound"] >= exact


def test_deterministic():
    a, b = bound_json(EXAMPLE), bound_json(EXAMPLE)
    for k in ("upper_bound", "lower_bound", "raw_value", "sizes"):
        assert a[k] == b[k]


def test_human_output_has_bound_lower_gap_time():
    p = run("bound", EXAMPLE)
    assert p.returncode == 0
    for word in ("upper bound", "lower bound", "gap", "time"):
        assert word in p.stdout


def save(path, **arrays):
    np.savez(path, **arrays)
    return path


def good_arrays():
    rng = np.random.default_rng(0)
    return {"W0": rng.standard_normal((3, 2)), "b0": np.zeros(3), "W1": rng.standard_normal((1, 3)),
            "b1": np.zeros(1)}


def bad_models(tmp):
    a = good_arrays()
    cases = {}
    cases["missing array"] = (save(tmp / "m1.npz", W0=a["W0"], b0=a["b0"], W1=a["W1"]), "missing bias")
    cases["missing layer"] = (save(tmp / "m2.npz", W0=a["W0"], b0=a["b0"], W2=a["W1"], b2=a["b1"]), "missing weight")
    cases["shape"] = (save(tmp / "m3.npz", **{**a, "W1": np.ones((1, 4))}), "has 4 inputs")
    cases["bias shape"] = (save(tmp / "m4.npz", **{**a, "b0": np.zeros(2)}), "b0 must have shape")
    nan = a["W0"].copy()
    nan[0, 0] = np.nan
    cases["nan"] = (save(tmp / "m5.npz", **{**a, "W0": nan}), "NaN or Inf")
    cases["inf"] = (save(tmp / "m6.npz", **{**a, "b1": np.array([np.inf])}), "NaN or Inf")
    (tmp / "m7.npz").write_bytes(b"not a zip file")
    cases["garbage"] = (tmp / "m7.npz", "not a readable npz")
    cases["no file"] = (tmp / "absent.npz", "no such file")
    cases["activation"] = (save(tmp / "m8.npz", **a, activations=np.array(["mish"])), "unsupported activation")
    cases["empty"] = (save(tmp / "m9.npz", x=np.zeros(1)), "no weight arrays")
    (tmp / "m10.txt").write_text("hello")
    cases["suffix"] = (tmp / "m10.txt", "unsupported model file type")
    return cases


@pytest.mark.slow   # 9-13 s of subprocesses; tests/test_bad_input_corpus.py covers the messages in process
def test_bad_models_exit_2_with_one_line(tmp_path):
    for name, (path, message) in bad_models(tmp_path).items():
        p = run("bound", path)
        assert p.returncode == 2, (name, p.stderr)
        assert p.stdout == ""
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1, (name, p.stderr)
        assert message in lines[0], (name, lines[0])
        assert "Traceback" not in p.stderr


@pytest.mark.parametrize("args,message", [
    (["--output", "3"], "out of range"),
    (["--degree", "1"], "below the polynomial's degree"),
    (["--norm", "2"], "--method lp (LiPopt-k LP) supports norms inf; got --norm 2. Applicable here: product, "
                      "exact-fgl, sdp, lipsdp"),  # and whatever else the registry lists (test_registry_contract)
    (["--norm", "7"], "invalid choice"),
    (["--samples", "0"], "--samples must be positive"),
    (["--margin", "0", "0"], "two different outputs"),
])
def test_bad_options_exit_2(args, message):
    p = run("bound", EXAMPLE, *args)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1
    assert message in p.stderr


def test_margin_needs_two_outputs(tmp_path):
    a = good_arrays()
    path = save(tmp_path / "two.npz", **{**a, "W1": np.ones((2, 3)), "b1": np.zeros(2)})
    p = run("bound", path)
    assert p.returncode == 2 and "select one with --output" in p.stderr
    d = bound_json(path, "--margin", "0", "1")
    assert d["upper_bound"] == 0.0 or d["upper_bound"] >= 0  # identical rows: f0 - f1 is constant
    p = run("bound", path, "--margin", "1", "1")
    assert p.returncode == 2 and "two different outputs" in p.stderr


def test_solver_failure_exits_3():
    p = run("bound", ROOT / "examples" / "banded_40_40_1.npz", "--time-limit", "1e-9", "--lp-method", "ipm")
    assert p.returncode == 3, p.stderr
    assert "solver failure" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_exact_fgl_reports_algorithm_and_bracket():
    d = bound_json(EXAMPLE, "--method", "exact-fgl", "--lower-method", "ascent")
    exact = exact_fgl(lipopt.load(EXAMPLE), np.ones(1)).value
    assert d["status"] == "optimal" and d["details"]["algorithm"] in ("dp", "bnb", "enumerate")
    lo, hi = d["details"]["bracket"]
    assert lo <= exact <= hi == d["upper_bound"] and hi - lo <= 1e-9 * exact
    assert d["lower_bound"] <= exact and d["details"]["lower_bound_method"] == "ascent"


@pytest.mark.slow   # subprocess / solver heavy (5-7 s); CI runs -m slow too
def test_gap_table_and_json():
    p = run("gap", EXAMPLE, "--time-limit", "30")
    assert p.returncode == 0, p.stderr
    for word in ("sampling", "ascent", "product", "LiPopt-3", "exact-fgl", "best upper / best lower"):
        assert word in p.stdout
    rep = json.loads(run("gap", EXAMPLE, "--json").stdout)
    rows = {r["method"]: r for r in rep["rows"]}
    exact = exact_fgl(lipopt.load(EXAMPLE), np.ones(1)).value
    assert rep["exact_fgl"] == pytest.approx(exact, rel=1e-12)
    assert rep["best_lower"] <= exact <= rep["best_upper"]
    for r in rep["rows"]:
        assert r["error"] is None, r
        if r["kind"] == "upper":
            assert r["value"] >= exact and r["ratio_to_lower"] >= 1.0
        else:
            assert r["value"] <= exact


@pytest.mark.slow   # subprocess / solver heavy (5-7 s); CI runs -m slow too
def test_gap_rows_come_from_the_registry_and_failures_go_on():
    """l2: the LP and the order-2 SDP do not apply (no rows), LipSDP does; a method that fails (here
    the SDPs under a tiny memory limit) is recorded with its reason and the report goes on."""
    rep = json.loads(run("gap", EXAMPLE, "--json", "--norm", "2").stdout)
    rows = {r["method"]: r for r in rep["rows"]}
    assert not any(m.startswith("LiPopt") or m == "sdp2" for m in rows) and "lipsdp" in rows
    assert rows["exact-fgl"]["value"] is not None and rows["product"]["value"] is not None
    rep = json.loads(run("gap", str(Path(EXAMPLE).parent / "banded_40_40_1.npz"), "--json", "--memory-limit", "1MB",
                         "--samples", "100").stdout)
    rows = {r["method"]: r for r in rep["rows"]}
    assert rows["sdp"]["status"] == "failed" and "memory limit" in rows["sdp"]["error"]
    assert rows["exact-fgl"]["value"] is not None


def test_sdp_and_auto_json():
    exact = exact_fgl(lipopt.load(EXAMPLE), np.ones(1)).value
    d = bound_json(EXAMPLE, "--method", "sdp")
    assert d["upper_bound"] >= exact and d["sizes"]["order"] > 0 and d["method"] == "sdp"
    d = bound_json(EXAMPLE, "--method", "auto", "--time-limit", "20")
    assert d["upper_bound"] >= exact and d["details"]["attempts"]


@pytest.mark.parametrize("args,message", [
    (["--method", "exact"], "--method exact (activation-consistent MIP) needs a bounded input domain"),
    (["--method", "lipsdp"], "--method lipsdp (LipSDP-Neuron) supports norms 2; got --norm inf"),
])
def test_method_norm_domain_mismatch_exit_2(args, message):
    p = run("bound", EXAMPLE, *args)
    assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1
