"""`lipopt experiment zoo`: cell building and screening, the report from a synthetic CSV, and (slow) the quick
run end to end on the shipped zoo: headline table, refusals, soundness, peers, determinism."""
import csv
import importlib.util
import json
from collections import defaultdict

import numpy as np
import pytest

from lipopt.experiments import EXPERIMENTS, MODULES, report, run_experiment, zoo, zoo_report
from lipopt.experiments.cells import Cell, run_cells
from lipopt.experiments.config import Settings
from lipopt.experiments.networks import ZOO_ENV
from lipopt.experiments.rows import COLUMNS
from lipopt.model import build_network, save_npz

PEERS_INSTALLED = importlib.util.find_spec("eclipse_nn") is not None


def _entry(npz, loads=True, family="mlp", arch="784-6-10", error=None):
    return {"onnx": None, "npz": npz, "sha256": "", "dataset": "mnist", "input_shape": [784],
            "architecture": arch, "family": family, "hidden_layers": 1, "activations": ["relu"], "params": 0,
            "epochs": 1, "test_accuracy": 0.5, "train_seconds": 0.0, "loads": loads, "load_error": error}


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch):
    """A manifest with one small random MLP (784-6-10) and one network that does not load."""
    rng = np.random.default_rng(3)
    net = build_network([rng.standard_normal((6, 784)) / 28, rng.standard_normal((10, 6))],
                        [rng.standard_normal(6), rng.standard_normal(10)])
    save_npz(net, tmp_path / "tiny.npz")
    (tmp_path / "broken.onnx").write_bytes(b"not an onnx file")
    manifest = {"models": {"tiny": _entry("tiny.npz"),
                           "broken": _entry(None, loads=False, family="cnn", arch="LeNet-5",
                                            error="max pooling is not supported")}}
    manifest["models"]["broken"]["onnx"] = "broken.onnx"
    (tmp_path / "zoo.json").write_text(json.dumps(manifest))
    monkeypatch.setenv(ZOO_ENV, str(tmp_path / "zoo.json"))
    return tmp_path


def test_zoo_is_registered():
    assert "zoo" in EXPERIMENTS and MODULES["zoo"] is zoo
    from lipopt.cli import _parser
    args = _parser().parse_args(["experiment", "zoo", "--quick"])
    assert args.name == "zoo" and args.quick


def test_cells_cover_every_scope_and_screen_by_the_registry(tiny_zoo):
    from lipopt.methods.registry import upper_methods
    cells = zoo.build_cells(Settings(jobs=1))
    by_net = defaultdict(list)
    for c in cells:
        by_net[c.labels["model"]].append(c)
    # the network that does not load: one refused row per scope with the manifest's reason, nothing to run
    broken = by_net["broken"]
    assert list(dict.fromkeys(c.labels["scope"] for c in broken)) == [zoo.scope_label(col, "mnist")
                                                                      for col, _, _ in zoo.SCOPES]
    assert all(c.labels["skip_status"] == "refused" and "max pooling" in c.labels["skip"] for c in broken)
    assert {c.method for c in broken} == set(upper_methods()) | {"ascent"}
    tiny = by_net["tiny"]
    images = {c.labels["output"] for c in tiny}
    assert len(images) == zoo.IMAGES
    for out in images:
        for col, norm, _ in zoo.SCOPES:
            scope = zoo.scope_label(col, "mnist")
            here = [c for c in tiny if c.labels["output"] == out and c.labels["scope"] == scope]
            # image 0: every upper method of the registry once; later images: the headline's; and the lower bound
            want = upper_methods() if out.startswith("image 0") else zoo.HEADLINE
            assert sorted(c.method for c in here if c.method in upper_methods()) == sorted(want)
            if not out.startswith("image 0"):
                assert not [c for c in here if "skip" in c.labels]
                continue
            assert [c.method for c in here if c.method == "ascent"] == ["ascent"]
            assert all(c.options.get("norm", "inf") == norm for c in here)
            lp = next(c for c in here if c.method == "lp")
            if norm != "inf":  # the registry's own sentence
                assert lp.labels["skip_status"] == "refused" and "supports norms inf" in lp.labels["skip"]
            mip = next(c for c in here if c.method == "exact")
            if col.endswith("global") and norm != "2":
                assert mip.labels["skip_status"] == "refused" and "domain" in mip.labels["skip"]
            assert "skip" not in next(c for c in here if c.method == "product").labels
            peers = [c for c in here if c.method in ("ECLipsE", "ECLipsE-Fast")]
            if col == "l2 global":
                assert sorted(c.method for c in peers) == ["ECLipsE", "ECLipsE-Fast"]
                for c in peers:  # the installed state decides: runnable, or skipped saying why
                    assert ("skip" not in c.labels) if PEERS_INSTALLED else "not installed" in c.labels["skip"]
            else:
                assert not peers
    # local domains: the ball of the scope around the image, clipped to the pixel range
    doms = {c.labels["scope"]: c.domain for c in tiny if c.domain is not None}
    assert doms["l_inf r=0.01"]["p"] == "inf" and doms["l_inf r=0.01"]["eps"] == 0.01
    assert doms["l2 r=0.5"]["p"] == "2" and doms["l2 r=0.5"]["clip"] == [0.0, 1.0]
    # functions of different norms are different groups (their lower bounds must not mix)
    g = {c.options.get("norm", "inf"): c.group() for c in tiny if c.domain is None and c.method == "product"
         and c.labels["output"] == sorted(images)[0]}
    assert len(set(g.values())) == 3


def _row(net, scope, output, method, upper=None, lower=None, status="ok", error=None):
    r = {k: None for k in COLUMNS}
    r.update({"experiment": "zoo", "network": net, "scope": scope, "output": output, "method": method,
              "method_name": method, "upper": upper, "lower": lower, "status": status, "error": error,
              "seconds": 1.0, "peak_mb": 100.0, "cached": False, "key": f"{net}{scope}{output}{method}"})
    return r


def test_report_from_a_synthetic_csv(tmp_path):
    A, B, C = "netA (784-64-10, acc 0.970)", "netB (784-256-256-10, acc 0.980)", "lenet5 (LeNet-5, acc 0.990)"
    f = "image 0: margin 3-5"
    rows = [
        # netA: lp beats product; auto ties lp (the tie is credited to lp)
        _row(A, "l_inf global", f, "product", upper=10.0), _row(A, "l_inf global", f, "lp", upper=4.0),
        _row(A, "l_inf global", f, "auto", upper=4.0), _row(A, "l_inf global", f, "ascent", lower=2.0),
        _row(A, "l_inf global", f, "exact", upper=3.0),   # the MIP (solver tolerances): not in the headline
        _row(A, "l2 global", f, "product", upper=3.0), _row(A, "l2 global", f, "ascent", lower=1.5),
        _row(A, "l2 global", f, "ECLipsE-Fast", upper=1.0),   # a peer below lipopt: never in the headline
        # netB: only the product bound; lp refused by the registry
        _row(B, "l_inf global", f, "product", upper=50.0), _row(B, "l_inf global", f, "auto", upper=50.0),
        _row(B, "l_inf global", f, "lp", status="refused", error="lp: LiPopt-3 would need more columns"),
        _row(B, "l_inf global", f, "ascent", lower=5.0),
        # lenet5: does not load
        _row(C, "l_inf global", "-", "auto", status="refused", error="does not load: max pooling"),
    ]
    report.write_csv(tmp_path / "zoo.csv", rows)
    text = report.write_report(tmp_path, {"zoo": zoo.section}).read_text()
    head, body = zoo_report.headline(report.read_csv(tmp_path / "zoo.csv"))
    assert head == ["network (architecture, test accuracy)", "l_inf global", "l2 global"]
    cells = {line[0].split(" ")[0]: line[1:] for line in body}
    assert cells["netA"][0] == "4 (×2, lp)" and cells["netA"][1] == "3 (×2, product)"
    assert cells["netB"][0] == "50 (×10, product)"
    assert cells["lenet5"][0].startswith("refused: does not load: max pooling")
    assert "| network (architecture, test accuracy) | l_inf global | l2 global |" in text
    assert "No certified bound at all (refused or no number in every scope): lenet5." in text
    assert "Only the product bound (no method beat the product of layer norms in any scope with a number): netB." in text
    assert "Better than the product bound: netA in l_inf global (best / product down to 0.4)." in text
    assert "floating-point estimates" in text and "BELOW the lower bound" in text   # the peer's 1.0 < 1.5
    assert "Soundness check: every certified upper bound" in text


# -------------------------------------------------------------------------------------------------
# The quick run end to end (the shipped zoo)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    summary = run_experiment("zoo", out, quick=True, progress=False, jobs=2)
    with open(out / "zoo.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return out, summary, rows


def _num(v):
    return None if v in ("", None) else float(v)


@pytest.mark.slow  # two quick zoo runs: ~1 min
def test_quick_run_end_to_end(quick):
    out, summary, rows = quick
    cells = zoo.build_cells(Settings(quick=True, jobs=2))
    assert [r["key"] for r in rows] == [c.key() for c in cells] and len(rows) == summary["cells"]
    text = (out / "report.md").read_text()
    assert "### Best certified bound per network and scope" in text
    head, body = zoo_report.headline(report.read_csv(out / "zoo.csv"))
    assert len(body) == len(zoo.QUICK["models"]) and head[1:] == list(zoo.QUICK["scopes"])
    for line in body:  # every headline cell: a bound with its gap, or a status with its reason
        for cell in line[1:]:
            assert "×" in cell or cell.split(":")[0] in zoo_report.NO_NUMBER_ORDER, line
    # a network that does not load is refused in every scope with the loader's reason; the others have bounds
    manifest = zoo.zoo_manifest()["models"]
    loads = {r["network"]: manifest[r["network"].split(" ")[0]]["loads"] for r in rows}
    for line in body:
        if not loads[line[0]]:
            assert all(c.startswith("refused: does not load") for c in line[1:]), line
    numbered = [line for line in body if line[0].startswith(("mlp64 ", "digits32x6 "))]
    assert len(numbered) == 2 and all("×" in c for line in numbered for c in line[1:])
    # every row without a number says why, and a refusal is the registry's own sentence
    for r in rows:
        if r["upper"] == "" and r["lower"] == "":
            assert r["status"] in zoo_report.NO_NUMBER_ORDER and r["error"], r
    assert all("refused" != r["status"] or r["error"] for r in rows)
    # soundness: no certified upper bound below the best lower bound of the same function
    lowers = defaultdict(list)
    for r in rows:
        if _num(r["lower"]) is not None:
            lowers[(r["network"], r["scope"], r["output"])].append(_num(r["lower"]))
    checked = 0
    for r in rows:
        if _num(r["upper"]) is not None and r["method"] not in ("ECLipsE", "ECLipsE-Fast"):
            for lo in lowers[(r["network"], r["scope"], r["output"])]:
                assert _num(r["upper"]) >= lo * (1 - 1e-9), r
                checked += 1
    assert checked > 0
    peer_rows = {r["network"].split(" ")[0]: r for r in rows if r["method"] == "ECLipsE-Fast"}
    assert sorted(peer_rows) == sorted(zoo.QUICK["models"])   # one l2 global function per network
    if PEERS_INSTALLED:   # MLPs: a number; the CNN: refused with the reason
        assert all(peer_rows[m]["status"] == "ok" and _num(peer_rows[m]["upper"]) > 0 for m in ("mlp64", "digits32x6"))
        assert peer_rows["lenet5"]["status"] == "refused" and "MLPs only" in peer_rows["lenet5"]["error"]
        peer_rows = list(peer_rows.values())
    else:
        assert all(r["status"] == "skipped" and "not installed" in r["error"] for r in peer_rows.values())


@pytest.mark.slow  # two quick zoo runs: ~1 min
def test_rerun_into_a_fresh_directory_gives_the_same_numbers(quick, tmp_path):
    _, _, rows = quick
    cells = {c.key(): c for c in zoo.build_cells(Settings(quick=True, jobs=2))}
    # cells that finished well within their limits are deterministic (seeded, no deadline involved)
    again = [cells[r["key"]] for r in rows if r["status"] in ("ok", "optimal") and _num(r["seconds"]) is not None
             and _num(r["seconds"]) < 0.5 * cells[r["key"]].time_limit]
    assert any(c.method == "product" for c in again)
    run = run_cells(again, tmp_path / "cache", jobs=2, progress=False)
    first = {r["key"]: r for r in rows}
    for c, res in zip(again, run.results):
        assert not res["cached"]
        for k in ("upper", "lower"):  # equal up to the last bits (the l2 product's svds has a random start)
            want = _num(first[c.key()][k])
            assert res[k] is None if want is None else res[k] == pytest.approx(want, rel=1e-12, abs=0), (c.method, k)
