"""lipopt.batch: data loading, serial and Dask runs, fault injection, resume, CLI hook."""
from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import small_network

import lipopt
from lipopt.batch import FILE_COLUMNS, compute_point, load_points, run_batch
from lipopt.cli_batch import add_batch_parser, batch_command
from lipopt.domain import Ball
from lipopt.errors import InvalidInputError

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")
# The fault-injection hooks below run on spawned worker processes: ship this module by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

WIDTHS = (8, 12, 1)
RADIUS = 0.1
CLIP = (0.0, 1.0)
N = 20


@pytest.fixture(scope="module")
def net():
    return small_network(WIDTHS, 3)


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(1).uniform(0.0, 1.0, (N, WIDTHS[0]))


@pytest.fixture(scope="module")
def reference(net, X):
    """Serial lipopt.upper_bound per point: the values every batch row must reproduce."""
    out = []
    for x in X:
        r = lipopt.upper_bound(net, domain=Ball(x, RADIUS, p="inf", clip=CLIP), lower=True)
        out.append((r.upper_bound, r.lower_bound))
    return out


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster
    import logging
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster, set_as_default=False) as c:
        yield c


def read_rows(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows


def assert_one_row_per_index(rows, n=N):
    assert sorted(int(r["index"]) for r in rows) == list(range(n))


def assert_matches(rows, reference, skip=()):
    for r in rows:
        i = int(r["index"])
        if i in skip:
            continue
        assert r["error"] == "", r
        assert float(r["upper_bound"]) == reference[i][0]
        assert float(r["lower_bound"]) == reference[i][1]


# ------------------------------------------------------------------------------------------ hooks

def killing_compute(net, index, x, output, margin, label, params, marker):
    """Kills its worker process on index 5 the first time (marker file), fails on index 9."""
    marker = Path(marker)
    if index == 5 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)
    if index == 9:
        raise RuntimeError('injected, with "quotes",\nand a newline')
    return compute_point(net, index, x, output, margin, label, params)


# ------------------------------------------------------------------------------------------ data

def test_load_points_formats(tmp_path):
    A = np.arange(12.0).reshape(3, 4)
    np.save(tmp_path / "a.npy", A)
    X, y = load_points(tmp_path / "a.npy")
    assert np.array_equal(X, A) and y is None
    np.save(tmp_path / "one.npy", A[0])
    assert load_points(str(tmp_path / "one.npy"))[0].shape == (1, 4)
    imgs = np.full((2, 3, 3), 255, np.uint8)
    np.savez(tmp_path / "m.npz", images=imgs, labels=np.array([1, 2]))
    X, y = load_points(tmp_path / "m.npz")
    assert X.shape == (2, 9) and np.all(X == 1.0) and y.tolist() == [1, 2]   # uint8 scaled to [0, 1]
    np.savez(tmp_path / "x.npz", X=A, y=np.array([0, 1, 0]))
    X, y = load_points(tmp_path / "x.npz")
    assert np.array_equal(X, A) and y.tolist() == [0, 1, 0]
    X, y = load_points("mnist:5")
    assert X.shape == (5, 784) and y.shape == (5,) and 0 <= X.min() and X.max() <= 1


def test_load_points_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="not found"):
        load_points(tmp_path / "missing.npy")
    (tmp_path / "p.txt").write_text("1 2 3")
    with pytest.raises(InvalidInputError, match=r"expected \.npy or \.npz"):
        load_points(tmp_path / "p.txt")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(InvalidInputError, match="not a readable"):
        load_points(tmp_path / "bad.npy")
    np.savez(tmp_path / "k.npz", W=np.zeros(3))
    with pytest.raises(InvalidInputError, match="no array 'X' or 'images'"):
        load_points(tmp_path / "k.npz")
    np.savez(tmp_path / "y.npz", X=np.zeros((3, 2)), y=np.zeros(4, int))
    with pytest.raises(InvalidInputError, match="expected 3 labels"):
        load_points(tmp_path / "y.npz")
    for spec in ("mnist:0", "mnist:abc", "mnist:1001"):
        with pytest.raises(InvalidInputError, match="mnist:N"):
            load_points(spec)


def test_run_batch_input_errors(net, X, tmp_path):
    out = tmp_path / "r.csv"
    with pytest.raises(InvalidInputError, match="coordinates but the model has 8 inputs"):
        run_batch(net, X[:, :5], RADIUS, out=out, workers=0)
    for r in (-1.0, float("nan"), float("inf"), "0.1"):
        with pytest.raises(InvalidInputError, match="radius"):
            run_batch(net, X, r, out=out, workers=0)
    with pytest.raises(InvalidInputError, match=r"\.csv or \.parquet"):
        run_batch(net, X, RADIUS, out=tmp_path / "r.txt", workers=0)
    with pytest.raises(InvalidInputError, match="needs labels"):
        run_batch(net, X, RADIUS, out=out, workers=0, output="label")
    with pytest.raises(InvalidInputError, match="3 outputs"):
        run_batch(small_network((8, 6, 3), 0), X, RADIUS, out=out, workers=0)
    assert not out.exists()


# ------------------------------------------------------------------------------------------ runs

def test_serial_matches_upper_bound(net, X, reference, tmp_path):
    s = run_batch(net, X, RADIUS, clip=CLIP, out=tmp_path / "s.csv", workers=0, progress=False, threshold=1e9)
    rows = read_rows(tmp_path / "s.csv")
    assert tuple(rows[0]) == FILE_COLUMNS
    assert_one_row_per_index(rows)
    assert_matches(rows, reference)
    assert s["computed"] == N and s["failed"] == 0 and s["certified_fraction"] == 1.0
    assert s["upper_bound"]["max"] == max(u for u, _ in reference)
    assert 0.0 <= s["lp_structure_reused"] <= 1.0


def test_local_cluster_two_workers(net, X, reference, tmp_path):
    """Own LocalCluster (2 single-threaded processes): one row per index, values equal to serial calls."""
    out = tmp_path / "d.csv"
    s = run_batch(net, X, RADIUS, clip=CLIP, out=out, workers=2, progress=False)
    assert s["workers"] == 2 and s["computed"] == N and s["failed"] == 0
    rows = read_rows(out)
    assert_one_row_per_index(rows)
    assert_matches(rows, reference)
    assert not (tmp_path / "d.csv.tmp").exists()
    assert json.loads((tmp_path / "d.csv.meta.json").read_text())["points"] == N


def test_worker_killed_and_failing_items(net, X, reference, client, tmp_path):
    """A worker process dies in the middle of index 5's task (first attempt only); index 7 is NaN
    (InvalidInputError) and index 9 raises RuntimeError: both are recorded and the rest completes;
    Dask reruns the dead worker's task and no row is lost or duplicated."""
    Xb = X.copy()
    Xb[7, 2] = np.nan
    marker = tmp_path / "killed"
    out = tmp_path / "k.csv"
    s = run_batch(net, Xb, RADIUS, clip=CLIP, out=out, scheduler=client, chunk_size=2, progress=False,
                  _compute=functools.partial(killing_compute, marker=str(marker)))
    assert marker.exists() and int(marker.read_text()) != os.getpid()   # a worker really died
    rows = read_rows(out)
    assert_one_row_per_index(rows)
    errors = {int(r["index"]): r["error"] for r in rows if r["error"]}
    assert set(errors) == {7, 9}
    assert errors[7].startswith("InvalidInputError: ") and "NaN" in errors[7]
    assert errors[9] == 'RuntimeError: injected, with "quotes", and a newline'
    assert_matches(rows, reference, skip={7, 9})
    assert s["computed"] == N and s["failed"] == 2 and s["done_ok"] == N - 2
    assert [f["index"] for f in s["failures"]] == [7, 9]
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the dead worker


def test_resume_computes_exactly_the_rest(net, X, reference, tmp_path):
    out = tmp_path / "r.csv"
    s1 = run_batch(net, X, RADIUS, clip=CLIP, out=out, workers=0, progress=False, max_items=7)
    assert (s1["computed"], s1["skipped"], s1["remaining"]) == (7, 0, N - 7)
    assert [int(r["index"]) for r in read_rows(out)] == list(range(7))
    # a crash mid-write leaves a partial last line: it is cut off, not parsed
    with open(out, "ab") as f:
        f.write(b"12,,,99.0,1.0")
    calls = []

    def counting(net_, index, *rest):
        calls.append(index)
        return compute_point(net_, index, *rest)

    s2 = run_batch(net, X, RADIUS, clip=CLIP, out=out, workers=0, progress=False, _compute=counting)
    assert sorted(calls) == list(range(7, N))
    assert (s2["computed"], s2["skipped"], s2["remaining"]) == (N - 7, 7, 0)
    assert s2["failed_verification"] == 1   # the cut line, reported and (being index 12) recomputed
    rows = read_rows(out)
    assert_one_row_per_index(rows)
    assert_matches(rows, reference)
    s3 = run_batch(net, X, RADIUS, clip=CLIP, out=out, workers=0, progress=False)
    assert s3["computed"] == 0 and s3["skipped"] == N


def test_resume_on_cluster_with_parquet(net, X, reference, client, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "r.parquet"
    s1 = run_batch(net, X, RADIUS, clip=CLIP, out=out, scheduler=client, progress=False, max_items=9)
    assert s1["computed"] == 9 and pq.read_table(out).num_rows == 9
    assert not (tmp_path / "r.parquet.journal.csv").exists()
    s2 = run_batch(net, X, RADIUS, clip=CLIP, out=out, scheduler=client.scheduler.address, progress=False)
    assert (s2["computed"], s2["skipped"]) == (N - 9, 9)
    rows = [{k: ("" if v is None else v) for k, v in r.items()} for r in pq.read_table(out).to_pylist()]
    assert_one_row_per_index(rows)
    assert_matches(rows, reference)


def test_retry_failed_only_on_request(net, X, reference, tmp_path):
    out = tmp_path / "f.csv"
    state = {"fail": True}

    def flaky(net_, index, *rest):
        if index == 3 and state["fail"]:
            raise MemoryError
        return compute_point(net_, index, *rest)

    s1 = run_batch(net, X, RADIUS, clip=CLIP, out=out, workers=0, progress=False, _compute=flaky)
    assert s1["failed"] == 1 and s1["failures"][0]["index"] == 3
    state["fail"] = False
    s2 = run_batch(net, X, RADIUS, clip=CLIP, out=out, workers=0, progress=False, _compute=flaky)
    assert s2["computed"] == 0 and s2["failed_total"] == 1
    s3 = run_batch(net, X, RADIUS, clip=CLIP, out=out, workers=0, progress=False, retry_failed=True)
    assert s3["computed"] == 1 and s3["failed_total"] == 0
    rows = read_rows(out)
    assert_one_row_per_index(rows)
    assert_matches(rows, reference)


def test_memory_error_recorded(net, X, monkeypatch, tmp_path):
    def out_of_memory(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr("lipopt.batch.upper_bound", out_of_memory)
    s = run_batch(net, X[:2], RADIUS, clip=CLIP, out=tmp_path / "o.csv", workers=0, progress=False)
    assert s["failed"] == 2 and s["failures"][0]["error"].startswith("MemoryError: out of memory")


def test_settings_change_is_refused(net, X, tmp_path):
    out = tmp_path / "m.csv"
    run_batch(net, X[:3], RADIUS, clip=CLIP, out=out, workers=0, progress=False)
    with pytest.raises(InvalidInputError, match="different settings.*radius"):
        run_batch(net, X[:3], 2 * RADIUS, clip=CLIP, out=out, workers=0, progress=False)
    with pytest.raises(InvalidInputError, match="data_sha256"):
        run_batch(net, X[1:4], RADIUS, clip=CLIP, out=out, workers=0, progress=False)
    from lipopt.batch import ResultStore
    other = ResultStore(out)   # another run writing to the same file holds the lock
    other.open()
    try:
        with pytest.raises(InvalidInputError, match="another lipopt batch is writing"):
            run_batch(net, X[:3], RADIUS, clip=CLIP, out=out, workers=0, progress=False)
    finally:
        other.close()
    assert run_batch(net, X[:3], RADIUS, clip=CLIP, out=out, workers=0, progress=False)["skipped"] == 3


# ------------------------------------------------------------------------------------------ CLI

def parser():
    p = argparse.ArgumentParser(prog="lipopt")
    add_batch_parser(p.add_subparsers(dest="command", required=True))
    return p


def test_cli_batch_command(net, X, reference, client, tmp_path, capsys):
    model = tmp_path / "net.npz"
    arrays = {}
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        arrays[f"W{l}"], arrays[f"b{l}"] = W.toarray(), b
    np.savez(model, **arrays)
    np.savez(tmp_path / "pts.npz", X=X, y=np.zeros(N, int))
    out = tmp_path / "c.csv"
    args = parser().parse_args(["batch", str(model), "--data", str(tmp_path / "pts.npz"), "--radius", str(RADIUS),
                                "--clip", "0", "1", "--out", str(out), "--workers", "0", "--max-items", "5",
                                "--threshold", "1e9", "--json", "--no-progress"])
    assert batch_command(args) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["computed"] == 5 and d["certified"] == 5 and d["certified_fraction"] == 5 / N
    args = parser().parse_args(["batch", str(model), "--data", str(tmp_path / "pts.npz"), "--radius", str(RADIUS),
                                "--clip", "0", "1", "--out", str(out), "--scheduler", client.scheduler.address,
                                "--output", "label", "--no-progress"])
    with pytest.raises(InvalidInputError, match="output"):  # settings changed (output) -> refused
        batch_command(args)
    args.output = None
    assert batch_command(args) == 0
    text = capsys.readouterr().out
    assert "computed 15" in text and "skipped 5" in text and "upper bound" in text
    rows = read_rows(out)
    assert_one_row_per_index(rows)
    assert_matches(rows, reference)
    for bad in (["--data", str(tmp_path / "nope.npy")], ["--data", "mnist:3"]):
        args = parser().parse_args(["batch", str(model), *bad, "--radius", "0.1", "--out", str(tmp_path / "e.csv")])
        with pytest.raises(InvalidInputError):
            batch_command(args)
