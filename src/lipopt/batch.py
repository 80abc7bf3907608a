"""Local Lipschitz bounds over whole data sets, on Dask, resumable: ``run_batch`` and ``lipopt batch``.

For every point x_i of a data set, ``lipopt.upper_bound(net, domain=Ball(x_i, radius, p=ball, clip=clip),
lower=True, ...)`` gives a certified upper bound on the local Lipschitz constant around x_i, a sampled lower
bound and their gap. Points run as Dask tasks, on a ``LocalCluster`` (one single-threaded worker process
per core) or on an existing cluster (``scheduler=ADDRESS`` or a ``distributed.Client``); ``workers=0``
runs them serially in this process (no Dask needed).

Design
------
* **Chunks.** One task evaluates ``chunk_size`` consecutive points. A local MNIST bound takes ~0.5 s and
  a small network's ~10-50 ms, while a Dask round trip costs a few ms, so tiny tasks waste a visible share
  on scheduling. The default (``chunk_size=None``) is ``ceil(pending / (4 * threads))`` clipped to
  [1, 8]: at least ~4 tasks per worker thread (load balance at the end of the run) and at most 8 points
  per task, which bounds the work lost when a worker dies and the delay before rows reach the disk.
* **Sharing.** The network is loaded once in the driver and sent to every worker once
  (``client.scatter(net, broadcast=True)``); tasks take the scattered future, so it is not re-pickled
  per task. If every copy is lost (all workers died), it is scattered again and the chunk resubmitted.
  The Krivine LP structure cache (``relaxations.krivine``, LRU of 8 keyed by cliques and degree) lives
  on in each worker process across tasks; every row records ``lp_structures_built`` (0 = the structure
  came from the cache). Local bounds fix different neurons at every point, so patterns differ and reuse
  is rare (see benchmarks/bench_batch.py).
* **Writing and verifying** (``batch_store``). The driver is the only writer. Rows are appended to a CSV
  file as chunks complete, one ``os.write`` per chunk on an ``O_APPEND`` descriptor, then ``fsync``; every
  record is one line and carries a checksum (sha256 of its canonical fields, floats by repr). On resume a
  row is kept only if it parses and its checksum matches: damaged rows (a bound cut from 97.79 to 97.,
  non-UTF-8 bytes, a line cut by a crash, rows of an older format without checksum) are dropped, reported
  in one stderr line and recomputed; a file that is not a lipopt batch file is refused, not overwritten.
  For ``out="x.parquet"`` the rows stream to the journal ``x.parquet.journal.csv`` the same way and the
  parquet file (with the checksum column) is written at the end (temporary file and rename), after which
  the journal is removed.
* **Scheduler** (``batch_dask``). An address is checked for form before anything is touched and the
  connection times out after ``batch_dask.CONNECT_TIMEOUT`` (10 s); failures are one InvalidInputError.
* **Dedupe and resume.** Rows are keyed by ``index`` (the point's row in the data set). The driver writes
  an index at most once per run, even if Dask ran its task twice (a worker died after finishing it) or a
  chunk was resubmitted. A rerun with the same ``out`` reads the finished rows and skips them; rows with
  an error are retried only with ``retry_failed=True`` (their new row is appended; later rows win). At the
  end of every run the file is rewritten atomically sorted by index with exactly one row per index.
  A sidecar ``<out>.meta.json`` fingerprints the model, the data and the settings; rerunning into the
  same ``out`` with different ones raises InvalidInputError instead of mixing results.
* **Failures.** An item that raises (InvalidInputError, SolverFailure on a time limit, MemoryError, any
  Exception) is recorded with ``status="error"`` and ``error="Type: message"``; the batch goes on. A
  chunk whose task kept killing workers (Dask's ``KilledWorker``) records that error for its items.

``time_limit`` is passed to ``upper_bound`` per item: it limits the solver (and the lower bound's local
search to min(5, time_limit) s), not the domain bounds; a timed-out solve is a failed item.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import options as _options
from .api import UPPER_METHODS, _check_norm, upper_bound
from .batch_dask import check_scheduler, run_dask
from .batch_store import (COLUMNS, FILE_COLUMNS, ResultStore, error_rows, normalize_row,  # noqa: F401 (re-exported)
                          one_line)
from .domain import Ball
from .errors import InvalidInputError
from .methods import check_degree
from .model import Network, load, output_vector



# -------------------------------------------------------------------------------------------------
# Data


def load_points(spec) -> tuple[np.ndarray, np.ndarray | None]:
    """(X, labels or None) from a data file or the bundled MNIST test set.

    * ``"mnist:N"``: the first N of the 1,000 bundled MNIST test images (``lipopt.datasets.mnist_test``),
      pixels in [0, 1], with their labels.
    * ``.npy``: a 2-D array (one point per row), a 1-D array (one point), or N x ... (each point flattened).
    * ``.npz``: the points under key ``X`` or ``images`` (same shapes), optional labels under ``y`` or
      ``labels``.

    uint8 arrays (images) are scaled to [0, 1] (divided by 255); everything else is converted to float64
    as is. Non-finite entries are kept: such points fail individually in a batch, recorded with the error.
    """
    if isinstance(spec, (str, os.PathLike)) and str(spec).lower().startswith("mnist:"):
        from .datasets import MNIST_TEST_SIZE, mnist_test
        n = str(spec)[6:]
        if not n.isdigit() or not 1 <= int(n) <= MNIST_TEST_SIZE:
            raise InvalidInputError(f"data {spec!r}: expected mnist:N with 1 <= N <= {MNIST_TEST_SIZE}")
        return mnist_test(int(n))
    path = Path(spec)
    if not path.is_file():
        raise InvalidInputError(f"data file {path} not found")
    suffix = path.suffix.lower()
    labels = None
    try:
        if suffix == ".npy":
            X = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                key = next((k for k in ("X", "images") if k in data.files), None)
                if key is None:
                    raise InvalidInputError(f"data file {path} has no array 'X' or 'images' "
                                            f"(arrays: {', '.join(data.files) or 'none'})")
                X = data[key]
                ykey = next((k for k in ("y", "labels") if k in data.files), None)
                labels = data[ykey] if ykey is not None else None
        else:
            raise InvalidInputError(f"data file {path}: expected .npy or .npz (or mnist:N)")
    except InvalidInputError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise InvalidInputError(f"data file {path} is not a readable {suffix} file ({exc})") from None
    X = _as_points(X, f"data file {path}")
    if labels is not None:
        labels = _as_labels(labels, X.shape[0], f"labels in {path}")
    return X, labels


def _as_points(X, what: str) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise InvalidInputError(f"{what}: points must be numeric, got dtype {X.dtype}")
    X = X.astype(np.float64) / 255.0 if X.dtype == np.uint8 else X.astype(np.float64)
    if X.ndim == 1:
        X = X[None, :]
    elif X.ndim > 2:
        X = X.reshape(X.shape[0], -1)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise InvalidInputError(f"{what}: expected at least one point, got shape {X.shape}")
    return X


def _as_labels(y, n: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise InvalidInputError(f"{what}: expected {n} labels (one per point), got shape {y.shape}")
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))):
        raise InvalidInputError(f"{what}: labels must be integers")
    return y.astype(np.int64)


# -------------------------------------------------------------------------------------------------
# One point (runs on a worker)


def _structure_cache():
    from .relaxations import krivine
    return getattr(krivine, "_CACHE", None)


def compute_point(net: Network, index: int, x: np.ndarray, output, margin, label, params: dict) -> dict:
    """One row: the local bound around x; any exception is recorded in ``error``, never raised."""
    row = dict.fromkeys(COLUMNS)
    row.update(index=int(index), label=label, output=output, status="error")
    cache = _structure_cache()
    t0 = time.perf_counter()
    try:
        if cache is not None and not params.get("reuse_lp_structure", True):
            cache.clear()
        before = list(cache.values()) if cache is not None else []  # strong refs: ids stay unique
        domain = Ball(x, params["radius"], p=params["ball"], clip=params["clip"])
        res = upper_bound(net, norm=params["norm"], method=params["method"], degree=params["degree"],
                          output=output, margin=margin, time_limit=params["time_limit"], domain=domain,
                          lower=True, **params.get("options", {}))
        row.update(upper_bound=res.upper_bound, lower_bound=res.lower_bound, gap=res.gap, status=res.status,
                   lp_rows=res.sizes.get("rows"), lp_columns=res.sizes.get("columns"),
                   lp_nonzeros=res.sizes.get("nonzeros"), fixed_neurons=res.details.get("fixed_neurons"),
                   hidden_neurons=res.details.get("hidden_neurons"))
        if res.method == "lp" and cache is not None:
            seen = {id(s) for s in before}
            row["lp_structures_built"] = sum(id(s) not in seen for s in cache.values())
    except MemoryError:
        row["error"] = "MemoryError: out of memory; lower the degree or use a sparser certificate"
    except Exception as exc:  # LipoptError (bad point, solver failure / time limit) or anything else
        row["error"] = one_line(f"{type(exc).__name__}: {exc}")
    row["seconds"] = time.perf_counter() - t0
    return row


def _run_chunk(net, items, params, compute=None):
    """Task body: rows of the points in ``items`` [(index, x, output, margin, label), ...]."""
    compute = compute or compute_point
    rows = []
    for item in items:
        try:
            rows.append(compute(net, *item, params))
        except Exception as exc:  # compute_point records its own errors; a replacement might not
            rows.extend(error_rows([item], exc))
    return rows


# -------------------------------------------------------------------------------------------------
# Driver


def _fingerprint(net: Network, X: np.ndarray, settings: dict) -> dict:
    h = hashlib.sha256()
    for W, b in zip(net.weights, net.biases):
        W = W.tocsr()
        for a in (np.asarray(W.shape, np.int64), W.indptr.astype(np.int64), W.indices.astype(np.int64),
                  np.asarray(W.data, np.float64), np.asarray(b, np.float64)):
            h.update(a.tobytes())
    h.update(repr(net.activations).encode())
    return {"format": 2, "model_sha256": h.hexdigest(),
            "data_sha256": hashlib.sha256(np.ascontiguousarray(X).tobytes()).hexdigest(),
            "points": int(X.shape[0]), **settings}


def _check_meta(store: ResultStore, meta: dict, have_rows: bool) -> None:
    if store.meta_path.exists():
        try:
            old = json.loads(store.meta_path.read_text())
        except (OSError, ValueError):
            old = None
        if have_rows and old != meta:
            diff = [k for k in meta if old is None or old.get(k) != meta[k]]
            what = ", ".join(diff) or "unreadable metadata"
            raise InvalidInputError(f"{store.out} holds results for different settings ({what}); "
                                    "choose another out or delete it to start over")
    elif have_rows:
        raise InvalidInputError(f"{store.out} exists but has no {store.meta_path.name}; "
                                "choose another out or delete it to start over")
    tmp = store.meta_path.with_name(store.meta_path.name + ".tmp")
    tmp.write_text(json.dumps(meta, sort_keys=True, indent=1))
    os.replace(tmp, store.meta_path)


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def _progress(total: int, enabled: bool, initial: int = 0):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, initial=initial, unit="pt", desc="lipopt batch", file=sys.stderr,
                smoothing=0.1, dynamic_ncols=True)


def _quantiles(values) -> dict | None:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return None
    q = np.quantile(v, [0.0, 0.1, 0.5, 0.9, 1.0])
    return {"min": float(q[0]), "p10": float(q[1]), "median": float(q[2]), "p90": float(q[3]),
            "max": float(q[4]), "mean": float(v.mean())}


def run_batch(model, X, radius: float, *, ball: str = "inf", clip=None, output=None, margin=None,
              norm: str = "inf", method: str = "lp", degree: int | None = None, time_limit: float | None = None,
              out="results.csv", scheduler=None, workers: int | None = None, progress: bool = True,
              labels=None, retry_failed: bool = False, threshold: float | None = None,
              chunk_size: int | None = None, max_items: int | None = None, options: dict | None = None,
              reuse_lp_structure: bool = True, _compute=None) -> dict:
    """Certified local Lipschitz bounds around every row of X, streamed to ``out``; returns a summary.

    model: a path, torch module or Network (loaded once, sent to each worker once). X: (N, n0) points
    (or one 1-D point); labels: optional (N,) ints. radius/ball/clip: the domain Ball(x, radius, p=ball,
    clip=clip) around each point. output: an output index, ``"label"`` (each point's own label), or None
    with ``margin=(I, J)`` or a single-output model. norm/method/degree/time_limit (per item, solver):
    as in ``upper_bound``; ``options``: further ``upper_bound`` keywords (cliques, solver, lp_method,
    samples, seed, preactivation).

    out: ``.csv`` or ``.parquet``; rerunning with the same out resumes (finished items are skipped,
    failed ones retried only with ``retry_failed``). scheduler: a ``distributed.Client`` or a scheduler
    address; otherwise a LocalCluster with ``workers`` single-threaded processes (default: one per core);
    ``workers=0`` runs serially in this process. chunk_size: points per task (default see module doc).
    max_items: compute at most this many pending items in this run. threshold: report the fraction of
    all N points whose certified upper bound is <= threshold (failed or missing points count as not
    certified). reuse_lp_structure=False clears the LP structure cache before each point (benchmarks).
    ``_compute`` replaces ``compute_point`` (a testing hook; must be importable on the workers).
    """
    t_start = time.perf_counter()
    net = load(model)
    n0 = net.widths[0]
    X = _as_points(X, "X")
    if X.shape[1] != n0:
        raise InvalidInputError(f"the points have {X.shape[1]} coordinates but the model has {n0} inputs")
    N = X.shape[0]
    labels = None if labels is None else _as_labels(labels, N, "labels")
    if isinstance(radius, bool) or not isinstance(radius, (int, float, np.integer, np.floating)) \
            or not math.isfinite(radius) or radius < 0:
        raise InvalidInputError(f"radius must be a finite number >= 0, got {radius!r}")
    ball = str(ball).lower().replace("l", "")
    if ball not in ("inf", "2"):
        raise InvalidInputError(f"ball must be 'inf' or '2', got {ball!r}")
    if clip is not None:
        try:
            lo, hi = (float(v) for v in clip)
        except (TypeError, ValueError):
            raise InvalidInputError(f"clip must be a pair (lo, hi), got {clip!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise InvalidInputError(f"clip must be finite with lo <= hi, got {clip!r}")
        clip = (lo, hi)
    norm = _check_norm(norm)
    if method not in UPPER_METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(UPPER_METHODS)}; got {method!r}")
    time_limit = _options.time_limit(time_limit)
    if degree is not None:
        degree = check_degree(degree)
    if threshold is not None and not (isinstance(threshold, (int, float, np.integer, np.floating))
                                      and not isinstance(threshold, bool) and math.isfinite(float(threshold))):
        raise InvalidInputError(f"threshold must be a finite number, got {threshold!r}")
    if margin is not None:
        margin = tuple(int(v) for v in margin)
    if isinstance(output, str):
        if output != "label":
            raise InvalidInputError(f"output must be an index or 'label', got {output!r}")
        if labels is None:
            raise InvalidInputError("output='label' needs labels")
        if margin is not None:
            raise InvalidInputError("give at most one of output, margin")
        bad = labels[(labels < 0) | (labels >= net.widths[-1])]
        if bad.size:
            raise InvalidInputError(f"label {int(bad[0])} is not an output of the model ({net.widths[-1]} outputs)")
        outputs = [int(v) for v in labels]
    else:
        output_vector(net, output, margin)  # fail fast on a bad selection
        outputs = [None if output is None else int(output)] * N
    for name, v in (("chunk_size", chunk_size), ("max_items", max_items)):
        least = 1 if name == "chunk_size" else 0
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < least):
            raise InvalidInputError(f"{name} must be a {'positive' if name == 'chunk_size' else 'non-negative'} "
                                    f"integer, got {v!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0):
        raise InvalidInputError(f"workers must be a non-negative integer, got {workers!r}")
    options = dict(options or {})
    for k in ("norm", "method", "degree", "output", "margin", "c", "time_limit", "domain", "lower"):
        if k in options:
            raise InvalidInputError(f"options may not set {k!r}; it is a parameter of run_batch")

    store = ResultStore(out)
    settings = {"radius": float(radius), "ball": ball, "clip": list(clip) if clip else None,
                "output": output, "margin": list(margin) if margin else None, "norm": norm, "method": method,
                "degree": degree, "labels_sha256": None if labels is None else
                hashlib.sha256(labels.tobytes()).hexdigest(),
                "options": {k: repr(v) for k, v in sorted(options.items())}}
    meta = _fingerprint(net, X, settings)
    check_scheduler(scheduler)  # before the output is touched: a malformed address fails at once
    store.open()
    try:
        done = store.load()
        _check_meta(store, meta, bool(done))
        store.prepare()
    except BaseException:
        store.close()
        raise
    failed_verification = store.failed_verification
    if store.problem_line():  # one line now, not after the (long) run: the rows are being recomputed
        print(f"lipopt: warning: {store.problem_line()}", file=sys.stderr, flush=True)
    stale = [i for i in done if not 0 <= i < N]
    for i in stale:  # cannot happen with matching metadata; never let a stray row through
        del done[i]
    failed_before = sum(r["error"] is not None for r in done.values())
    pending = [i for i in range(N) if i not in done or (retry_failed and done[i]["error"] is not None)]
    skipped = N - len(pending)
    if max_items is not None:
        pending = pending[:max_items]

    params = {"radius": float(radius), "ball": ball, "clip": clip, "norm": norm, "method": method,
              "degree": degree, "time_limit": time_limit, "options": options,
              "reuse_lp_structure": reuse_lp_structure}

    def items_of(idx):
        return [(i, X[i], outputs[i], margin, None if labels is None else int(labels[i])) for i in idx]

    written: set[int] = set()
    run_rows: list[dict] = []
    bar = _progress(skipped + len(pending), progress and bool(pending), initial=skipped)
    info = {"workers": 0, "threads": 0, "chunk_size": None, "resubmitted": 0}

    def accept(rows):
        new = []
        for r in rows:
            r = normalize_row(r)  # plain Python values: what the journal holds and its checksum covers
            i = r["index"]
            if i in written or not 0 <= i < N:
                continue  # a task that ran twice, or a chunk resubmitted after it finished: write once
            written.add(i)
            done[i] = r
            new.append(r)
        store.append(new)
        run_rows.extend(new)
        if bar is not None and new:
            bar.update(len(new))
            bar.set_postfix(failed=sum(r["error"] is not None for r in run_rows), refresh=False)

    try:
        try:
            if pending and workers == 0 and scheduler is None:
                info.update(workers=0, threads=1, chunk_size=1)
                for i in pending:
                    accept(_run_chunk(net, items_of([i]), params, _compute))
            elif pending:
                run_dask(net, pending, items_of, params, _compute, scheduler, workers, chunk_size, accept, info,
                         _run_chunk, _default_workers)
        finally:
            if bar is not None:
                bar.close()
        store.finalize(done)  # still holding the lock
    finally:
        store.close()

    errors = [r for r in run_rows if r["error"] is not None]
    ok_all = [r for r in done.values() if r["error"] is None]
    summary = {
        "out": str(store.out), "points": N, "computed": len(run_rows), "failed": len(errors),
        "skipped": skipped, "remaining": N - len(ok_all) - sum(r["error"] is not None for r in done.values()),
        "done_ok": len(ok_all), "failed_total": sum(r["error"] is not None for r in done.values()),
        "failed_before": failed_before, "failed_verification": failed_verification,
        "radius": float(radius), "ball": ball, "clip": list(clip) if clip else None,
        "norm": norm, "method": method, "degree": degree,
        "seconds": time.perf_counter() - t_start,
        "upper_bound": _quantiles(r["upper_bound"] for r in ok_all),
        "gap": _quantiles(r["gap"] for r in ok_all),
        "failures": [{"index": r["index"], "error": r["error"]} for r in sorted(errors, key=lambda r: r["index"])[:10]],
        **info,
    }
    item_seconds = sum(r["seconds"] or 0.0 for r in run_rows)
    summary["item_seconds"] = item_seconds
    summary["points_per_minute"] = 60.0 * len(run_rows) / summary["seconds"] if run_rows else None
    lp_rows = [r for r in run_rows if r["lp_structures_built"] is not None]
    summary["lp_structure_reused"] = (sum(r["lp_structures_built"] == 0 for r in lp_rows) / len(lp_rows)
                                      if lp_rows else None)
    if threshold is not None:
        cert = sum(r["upper_bound"] is not None and r["upper_bound"] <= threshold for r in ok_all)
        summary.update(threshold=float(threshold), certified=cert, certified_fraction=cert / N)
    return summary
