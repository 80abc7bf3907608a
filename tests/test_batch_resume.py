"""lipopt batch resume verifies every row it reads; damaged bytes and bad scheduler addresses fail fast."""
from __future__ import annotations

import gc
import sys
import time

import numpy as np
import pytest
from helpers import small_network

import lipopt
import lipopt.cli
from lipopt.batch import COLUMNS, FILE_COLUMNS, compute_point, run_batch
from lipopt.batch_dask import check_scheduler
from lipopt.batch_store import encode_rows, row_checksum, verify_line
from lipopt.domain import Ball
from lipopt.errors import InvalidInputError

WIDTHS = (6, 10, 1)
RADIUS = 0.1
CLIP = (0.0, 1.0)
N = 6


@pytest.fixture(scope="module")
def net():
    return small_network(WIDTHS, 5)


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(2).uniform(0.0, 1.0, (N, WIDTHS[0]))


@pytest.fixture(scope="module")
def reference(net, X):
    """Serial lipopt.upper_bound per point: the exact floats every finished row must hold."""
    return [lipopt.upper_bound(net, domain=Ball(x, RADIUS, p="inf", clip=CLIP), lower=True).upper_bound for x in X]


@pytest.fixture()
def finished(net, X, tmp_path):
    """A complete run's output file."""
    out = tmp_path / "r.csv"
    run_batch(net, X, RADIUS, clip=CLIP, out=out, workers=0, progress=False)
    return out


def rerun(net, X, out, **kw):
    calls = []

    def counting(net_, index, *rest):
        calls.append(index)
        return compute_point(net_, index, *rest)

    s = run_batch(net, X, RADIUS, clip=CLIP, out=out, workers=0, progress=False, _compute=counting, **kw)
    return s, sorted(calls)


def final_bounds(out):
    """Upper bounds of the output file by index; every line must be UTF-8 and verify."""
    lines = out.read_bytes().decode("utf-8").splitlines()
    assert tuple(lines[0].split(",")) == FILE_COLUMNS
    rows = [verify_line(ln) for ln in lines[1:]]
    assert all(r is not None for r, _ in rows), rows
    assert sorted(r["index"] for r, _ in rows) == list(range(N))
    return {r["index"]: r["upper_bound"] for r, _ in rows}


def stderr_lines(capsys):
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def replace_line(out, i, new: bytes):
    lines = out.read_bytes().split(b"\n")
    lines[i + 1] = new  # line 0 is the header; the output is sorted by index
    out.write_bytes(b"\n".join(lines))


# ------------------------------------------------------------------------------------------ checksums

def test_checksum_round_trip_and_sensitivity():
    row = dict.fromkeys(COLUMNS)
    row.update(index=np.int64(3), upper_bound=np.float64(97.79), lower_bound=0.1 + 0.2, status="ok", seconds=1e-300)
    line = encode_rows([row]).decode().rstrip("\n")
    back, why = verify_line(line)
    assert why == "" and back["upper_bound"] == 97.79 and back["lower_bound"] == 0.1 + 0.2 and back["index"] == 3
    assert back["seconds"] == 1e-300                                  # repr: exact round trip
    cut = line.replace("97.79", "97.", 1)
    assert verify_line(cut) == (None, "checksum mismatch")
    assert verify_line(line.replace("97.79", "97.7900000000001", 1))[1] == "checksum mismatch"
    assert verify_line(line.rsplit(",", 1)[0] + ",")[1] == "no checksum"
    assert verify_line(line[:-3])[1] == "checksum mismatch"           # checksum cut short
    assert verify_line(line.replace("3,", "x,", 1))[1] == "unparsable"
    no_index = {**row, "index": None}
    assert verify_line(encode_rows([no_index]).decode().rstrip("\n"))[1] == "unparsable"
    assert row_checksum(row) != row_checksum({**row, "upper_bound": 97.0})


# ------------------------------------------------------------------------------------------ resume

def test_cut_value_is_recomputed(net, X, reference, finished, capsys):
    """97.79 -> '97.' in a finished row: main kept 97.0 as a certified bound; it must be recomputed."""
    text = finished.read_text()
    i = 2
    good = repr(reference[i])
    cut = good[: good.index(".") + 1]                                    # e.g. '1.2345' -> '1.'
    assert float(cut) != reference[i]
    line = text.splitlines()[i + 1]
    assert f",{good}," in line
    replace_line(finished, i, line.replace(f",{good},", f",{cut},", 1).encode())
    capsys.readouterr()
    s, calls = rerun(net, X, finished)
    assert calls == [i]
    assert s["failed_verification"] == 1 and s["computed"] == 1 and s["skipped"] == N - 1
    err = stderr_lines(capsys)
    assert len(err) == 1 and "1 row " in err[0] and "failed verification" in err[0] and "checksum" in err[0]
    assert final_bounds(finished) == dict(enumerate(reference))
    assert "resume       1 rows failed verification and were recomputed" in lipopt.cli_batch.format_summary(s)
    s2, calls2 = rerun(net, X, finished)                                # repaired: nothing more to do
    assert calls2 == [] and s2["failed_verification"] == 0 and stderr_lines(capsys) == []


def test_non_utf8_and_garbage_are_recomputed(net, X, reference, finished, capsys):
    lines = finished.read_bytes().split(b"\n")
    lines[1 + 1] = lines[1 + 1][:5] + b"\xff\xfe\x80" + lines[1 + 1][8:]   # row 1: bytes that are not UTF-8
    lines[4 + 1] = b"\x00\x01\x02garbage\r\x9c" * 3                        # row 4: binary noise
    data = b"\n".join(lines).rstrip(b"\n") + b"\n3,,,9" + b"\xc3"          # and a cut last line
    finished.write_bytes(data)
    capsys.readouterr()
    s, calls = rerun(net, X, finished)
    assert calls == [1, 4]
    assert s["failed_verification"] == 3
    err = stderr_lines(capsys)
    assert len(err) == 1 and "3 rows" in err[0] and "not UTF-8" in err[0] and "cut-off last line" in err[0]
    assert "Traceback" not in err[0]
    assert final_bounds(finished) == dict(enumerate(reference))


def test_rows_without_checksum_are_recomputed(net, X, reference, finished):
    """A journal of the format before checksums: readable, but nothing in it is trusted."""
    lines = finished.read_text().splitlines()
    old = [",".join(COLUMNS)] + [ln.rsplit(",", 1)[0] for ln in lines[1:4]]   # rows 0..2, no checksum
    finished.write_text("\n".join(old) + "\n")
    s, calls = rerun(net, X, finished)
    assert calls == list(range(N)) and s["failed_verification"] == 3
    assert final_bounds(finished) == dict(enumerate(reference))


def test_dropped_row_stays_dropped_until_recomputed(net, X, reference, finished):
    """A run that recomputes nothing (max_items=0) writes only the verified rows; the next run fills in."""
    replace_line(finished, 0, b"0,,,1.0,0.5,,ok,0.1,,,,,,,,deadbeefdeadbeef")
    s, calls = rerun(net, X, finished, max_items=0)
    assert calls == [] and s["failed_verification"] == 1 and s["remaining"] == 1
    s, calls = rerun(net, X, finished)
    assert calls == [0] and s["failed_verification"] == 0
    assert final_bounds(finished) == dict(enumerate(reference))


def test_foreign_files_are_refused_not_overwritten(net, X, tmp_path):
    for name, data in (("theirs.csv", b"name,score\nalice,97.79\n"), ("bin.csv", b"\x89PNG\r\n\x1a\n\x00\x00"),
                       ("one.csv", b"no newline at all")):
        out = tmp_path / name
        out.write_bytes(data)
        with pytest.raises(InvalidInputError, match="not a lipopt batch file"):
            run_batch(net, X, RADIUS, clip=CLIP, out=out, workers=0, progress=False)
        assert out.read_bytes() == data
        assert not (tmp_path / (name + ".meta.json")).exists()


def test_parquet_rows_are_verified(net, X, reference, tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "r.parquet"
    run_batch(net, X, RADIUS, clip=CLIP, out=out, workers=0, progress=False)
    table = pq.read_table(out)
    assert table.column_names == list(FILE_COLUMNS)
    ub = table.column("upper_bound").to_pylist()
    ub[3] = float(int(ub[3]))                                          # the cut value, written back
    pq.write_table(table.set_column(COLUMNS.index("upper_bound"), "upper_bound", pa.array(ub)), out)
    s, calls = rerun(net, X, out)
    assert calls == [3] and s["failed_verification"] == 1
    assert pq.read_table(out).column("upper_bound").to_pylist() == reference
    out.write_bytes(out.read_bytes()[:100])                             # unreadable; ours (meta file)
    capsys.readouterr()
    s, calls = rerun(net, X, out)
    err = stderr_lines(capsys)
    assert calls == list(range(N)) and len(err) == 1 and "is unreadable" in err[0]
    assert pq.read_table(out).column("upper_bound").to_pylist() == reference
    foreign = tmp_path / "theirs.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), foreign)
    data = foreign.read_bytes()
    with pytest.raises(InvalidInputError, match="not a lipopt batch file"):
        run_batch(net, X, RADIUS, clip=CLIP, out=foreign, workers=0, progress=False)
    assert foreign.read_bytes() == data and not (tmp_path / "theirs.parquet.journal.csv").exists()


# ------------------------------------------------------------------------------------------ scheduler

def test_check_scheduler_forms():
    for ok in ("tcp://127.0.0.1:8786", "127.0.0.1:8786", "scheduler-0.example.org:1", "tls://h:443",
               "tcp://[::1]:8786", "ws://h:80", "ucx://10.0.0.1:13337", "inproc://10.0.0.1/1234/1", None):
        check_scheduler(ok)
    for bad in ("not a url at all", "tcp://host", "tcp://host:0", "tcp://host:70000", "http://h:80", "h:80/x",
                "tcp://:8786", "", " tcp://h:1", "inproc://x", 8786):
        with pytest.raises(InvalidInputError):
            check_scheduler(bad)


@pytest.fixture()
def cli_files(net, X, tmp_path):
    model = tmp_path / "net.npz"
    arrays = {}
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        arrays[f"W{l}"], arrays[f"b{l}"] = W.toarray(), b
    np.savez(model, **arrays)
    np.save(tmp_path / "x.npy", X)
    return model, tmp_path / "x.npy"


@pytest.mark.parametrize("address", ["not a url at all", "tcp://127.0.0.1:1", "ucx://127.0.0.1:1"])
def test_cli_bad_scheduler_fails_fast(cli_files, tmp_path, capsys, monkeypatch, address):
    """Malformed: refused before connecting. Well formed but unreachable (or a backend that is not
    installed): one line after the connect timeout. Never a hang, a traceback or a leftover file."""
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr("lipopt.batch_dask.CONNECT_TIMEOUT", 2.0)
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    model, data = cli_files
    out = tmp_path / "o.csv"
    before = {id(c) for c in distributed.Client._instances}
    capsys.readouterr()
    t0 = time.perf_counter()
    rc = lipopt.cli.main(["batch", str(model), "--data", str(data), "--radius", "0.1", "--out", str(out),
                          "--scheduler", address, "--no-progress"])
    gc.collect()  # a half-built Client's __del__ used to block here for 2 x timeout
    elapsed = time.perf_counter() - t0
    cap = capsys.readouterr()
    assert rc == 2 and elapsed < 15
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lipopt: error: ") and address in err[0], cap.err
    assert "Traceback" not in cap.err + cap.out and unraisable == []
    assert not out.exists() and not (tmp_path / "o.csv.meta.json").exists()
    assert not [c for c in distributed.Client._instances if c.status == "running" and id(c) not in before]
