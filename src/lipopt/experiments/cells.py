"""Experiment cells: one bound computation, run in a fresh process under a hard budget, cached on disk.

A *cell* is (network, selection, domain, method, degree, options, seed, time limit, budget). Every
cell runs in its own process (so its memory and time are its own), forked from multiprocessing's
"forkserver" with lipopt already imported (a spawned process spent 6-8 s importing lipopt on a loaded
2-core machine, a forked one 0.3-0.6 s; "spawn" where there is no forkserver), with the parent's
current environment; it first builds the network and the domain and reports "ready"; from then on the cell
has ``budget`` wall-clock seconds. ``time_limit`` is passed to lipopt itself; the budget is the hard
limit on top of it: a cell still running when the budget is over is killed and recorded with status
``"timeout"`` and no number. ``jobs`` > 1 runs that many cells at once.

Results are cached as ``<cache_dir>/<key>.json``, key = sha256 of the cell spec plus the lipopt
version: a rerun into the same directory loads finished cells instead of recomputing them (timeouts and
failures included: they are results too; delete the file to retry a cell).

Statuses: ``ok`` (a bound), ``optimal`` (exact-fgl proved the FGL), ``time_limit`` (exact-fgl ran out of
time: its value is the certified upper end of the proven bracket), ``timeout`` (killed at the budget, or
the solver hit lipopt's time limit: no number), ``failed`` (lipopt refused or the solver failed, e.g. an
LP over ``max_columns``: no number, the reason in ``error``), ``error`` (an unexpected exception or a
crashed process: no number). Cells whose method is a peer tool (``peers.PEER_METHODS``) run that tool
instead of lipopt.
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from .. import __version__
from .networks import build_domain, build_network
from .peers import PEER_METHODS

LOWER_METHODS = ("sampling", "ascent")
STARTUP_TIMEOUT = 300.0   # seconds for a child to import lipopt and build its network (2 busy cores)
KILL_GRACE = 5.0          # seconds after terminate() before kill()
PRELOAD = ("lipopt.api", "lipopt.experiments.cells")   # imported once by the forkserver
NO_NUMBER = ("timeout", "failed", "error")


@dataclass(frozen=True)
class Cell:
    """One bound computation. ``net`` and ``domain``: the specs of ``networks.build_network`` and
    ``networks.build_domain`` (domain None = global); ``selection`` {"output": i} or {"margin": [i, j]}
    (None: the single output). ``options``: extra keyword arguments of upper_bound / lower_bound
    (``max_columns``, ``samples``). ``labels`` are descriptive only and ``arrays`` (``networks.materialize``) carries
    prebuilt weights to the cell process; neither is part of the key."""
    experiment: str
    net: dict
    method: str
    degree: int | None = None
    selection: dict | None = None
    domain: dict | None = None
    options: dict = field(default_factory=dict)
    seed: int = 0
    time_limit: float | None = None
    budget: float = 60.0
    labels: dict = field(default_factory=dict, compare=False)
    arrays: dict | None = field(default=None, compare=False, repr=False)

    def spec(self) -> dict:
        """The JSON-able identity of the cell (everything but ``labels`` and ``arrays``)."""
        return {"experiment": self.experiment, "net": self.net, "method": self.method, "degree": self.degree,
                "selection": self.selection, "domain": self.domain, "options": self.options,
                "seed": self.seed, "time_limit": self.time_limit, "budget": self.budget}

    def key(self) -> str:
        blob = json.dumps({"cell": self.spec(), "lipopt": __version__}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def group(self) -> str:
        """Cells of one group bound the same quantity (same function, same domain): the exact value of
        the group's exact-fgl cell applies to all of them. A norm other than l_inf (``options["norm"]``)
        is part of the function's identity."""
        norm = [self.options["norm"]] if self.options.get("norm", "inf") != "inf" else []
        return json.dumps([self.net, self.selection, self.domain] + norm, sort_keys=True)

    @property
    def is_lower(self) -> bool:
        return self.method in LOWER_METHODS


def method_label(method: str, degree: int | None) -> str:
    """Display name: LiPopt-k for the LP, else the lipopt method name."""
    return f"LiPopt-{degree}" if method == "lp" else method


# -------------------------------------------------------------------------------------------------
# What runs inside the child process


def evaluate(spec: dict, net=None, domain=None) -> dict:
    """Run one cell in this process; return its result dict (status, upper, lower, raw, seconds, sizes,
    details, error). lipopt's own errors become statuses, never exceptions."""
    from ..api import lower_bound, upper_bound
    from ..errors import InvalidInputError, SolverFailure
    net = build_network(spec["net"]) if net is None else net
    domain = build_domain(spec["domain"]) if domain is None and spec["domain"] is not None else domain
    sel = spec["selection"] or {}
    if spec["method"] in PEER_METHODS:  # a peer tool (global l2 estimate, not a certified bound)
        from ..model import output_vector
        from .peers import run_peer
        return run_peer(spec["method"], net, output_vector(net, sel.get("output"),
                                                           tuple(sel["margin"]) if sel.get("margin") else None, None))
    kw = {"output": sel.get("output"), "margin": tuple(sel["margin"]) if sel.get("margin") else None,
          "domain": domain, "seed": spec["seed"], **spec["options"]}
    limit = spec["time_limit"]
    t0 = time.perf_counter()
    try:
        if spec["method"] in LOWER_METHODS:
            res = lower_bound(net, method=spec["method"], time_limit=min(limit, 5.0) if limit else 5.0, **kw)
        else:
            res = upper_bound(net, method=spec["method"], degree=spec["degree"], lower=False,
                              time_limit=limit, **kw)
    except (InvalidInputError, SolverFailure, MemoryError) as exc:
        seconds = time.perf_counter() - t0
        msg = f"{type(exc).__name__}: {str(exc) or 'no message'}"
        timed_out = isinstance(exc, SolverFailure) and (
            "time limit" in msg.lower() or "time_limit" in msg or (limit is not None and seconds >= limit))
        return {"status": "timeout" if timed_out else "failed", "upper": None, "lower": None, "raw": None,
                "seconds": seconds, "sizes": {}, "details": {}, "error": _one_line(msg)}
    seconds = time.perf_counter() - t0
    details = {k: v for k, v in res.details.items()
               if k in ("algorithm", "bracket", "exact_status", "solver", "solver_status", "relaxation",
                        "fixed_neurons", "hidden_neurons", "cliques")}
    return {"status": res.status, "upper": _finite(res.upper_bound), "lower": _finite(res.lower_bound),
            "raw": _finite(res.raw_value), "seconds": seconds,
            "sizes": {k: v for k, v in res.sizes.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            "details": details, "error": None}


def _finite(x):
    return float(x) if x is not None and math.isfinite(x) else None


def _one_line(msg: str, limit: int = 400) -> str:
    msg = " ".join(str(msg).split())
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def _child_main(spec: dict, arrays: dict | None, conn, blas_threads: int | None, env: dict | None = None) -> None:
    """Entry point of a cell process: build, say "ready", evaluate, send the result. The process leads
    its own process group, so stopping the cell also stops what it started (e.g. an SDP solver process).
    ``env``: the parent's environment now (a forkserver child inherits the server's, from its start)."""
    if hasattr(os, "setpgrp"):
        os.setpgrp()
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    try:
        if blas_threads:
            try:
                from threadpoolctl import threadpool_limits
                threadpool_limits(blas_threads)
            except ImportError:  # optional: without it BLAS keeps its default thread count
                pass
        net = build_network(spec["net"], arrays)
        domain = build_domain(spec["domain"])
        conn.send(("ready", None))
        out = evaluate(spec, net, domain)
        try:
            import resource
            out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        except (ImportError, OSError):  # pragma: no cover - not on POSIX
            pass
        conn.send(("done", out))
    except BaseException as exc:  # noqa: BLE001 - anything else is a bug to record, not to hide
        conn.send(("done", {"status": "error", "upper": None, "lower": None, "raw": None, "seconds": None,
                            "sizes": {}, "details": {}, "error": _one_line(f"{type(exc).__name__}: {exc}")}))
    finally:
        conn.close()


# -------------------------------------------------------------------------------------------------
# Cache


def cache_path(cache_dir: Path, cell: Cell) -> Path:
    return Path(cache_dir) / f"{cell.key()}.json"


def load_cached(cache_dir: Path, cell: Cell) -> dict | None:
    """The cached result of ``cell``, or None (missing, unreadable or written for another spec)."""
    path = cache_path(cache_dir, cell)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if data.get("key") != cell.key() or "result" not in data:
        return None
    return data["result"]


def store(cache_dir: Path, cell: Cell, result: dict) -> None:
    """Write the cell's result atomically (temporary file + rename)."""
    path = cache_path(cache_dir, cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"key": cell.key(), "lipopt": __version__, "cell": cell.spec(), "result": result,
                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}, f, sort_keys=True, allow_nan=False)
    os.replace(tmp, path)


# -------------------------------------------------------------------------------------------------
# Running many cells


@dataclass
class CellRun:
    """Results aligned with the cells; ``computed`` + ``cached`` = number of cells."""
    results: list
    computed: int
    cached: int
    seconds: float


class Progress:
    """tqdm bar on stderr when tqdm is importable, else one line per finished cell; silent if disabled."""

    def __init__(self, total: int, desc: str, enabled: bool, initial: int = 0, stream=None):
        self.enabled, self.total, self.done, self.desc = enabled, total, initial, desc
        self.stream = stream or sys.stderr
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, initial=initial, desc=desc, unit="cell", file=self.stream,
                                dynamic_ncols=True, smoothing=0.1)
            except ImportError:
                pass

    def update(self, cell: Cell, result: dict) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"{cell.labels.get('network', '')} {method_label(cell.method, cell.degree)}"
                                     f" {result['status']}", refresh=False)
            self.bar.update(1)
            return
        secs = result.get("seconds")
        print(f"{self.desc} [{self.done}/{self.total}] {cell.labels.get('network', '')} "
              f"{method_label(cell.method, cell.degree)}: {result['status']}"
              + (f" ({secs:.2f} s)" if secs is not None else ""), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class _Running:
    index: int
    cell: Cell
    process: object
    conn: object
    started: float
    ready_at: float | None = None


def _timeout_result(cell: Cell) -> dict:
    return {"status": "timeout", "upper": None, "lower": None, "raw": None, "seconds": None, "sizes": {},
            "details": {}, "error": f"killed: still running after its budget of {cell.budget:g} s"}


def run_cells(cells, cache_dir, jobs: int = 1, progress: bool = True, desc: str = "cells") -> CellRun:
    """Run every cell not already cached (at most ``jobs`` at a time, each in a fresh spawned process)
    and return the results in the order of ``cells``. Each result carries ``cached`` (bool) and
    ``wall`` (seconds of its process, start-up included)."""
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    t_start = time.perf_counter()
    cache_dir = Path(cache_dir)
    cells = list(cells)
    results: list = [None] * len(cells)
    pending = []
    for i, cell in enumerate(cells):
        hit = load_cached(cache_dir, cell)
        if hit is not None:
            results[i] = {**hit, "cached": True}
        else:
            pending.append(i)
    n_cached = len(cells) - len(pending)
    bar = Progress(len(cells), desc, progress and bool(pending), initial=n_cached)
    ctx = _context()
    env = dict(os.environ)
    cpus = os.cpu_count() or 1
    blas_threads = max(1, cpus // jobs) if jobs > 1 else None
    running: list[_Running] = []
    queue = list(reversed(pending))

    def finish(run: _Running, result: dict) -> None:
        result = {**result, "wall": time.perf_counter() - run.started}
        store(cache_dir, run.cell, result)
        results[run.index] = {**result, "cached": False}
        bar.update(run.cell, result)

    try:
        while queue or running:
            while queue and len(running) < jobs:
                i = queue.pop()
                recv, send = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_child_main, args=(cells[i].spec(), cells[i].arrays, send, blas_threads, env))
                p.start()
                send.close()
                running.append(_Running(i, cells[i], p, recv, time.perf_counter()))
            now = time.perf_counter()
            deadlines = [(r.ready_at + r.cell.budget) if r.ready_at is not None else (r.started + STARTUP_TIMEOUT)
                         for r in running]
            timeout = max(0.0, min(deadlines) - now)
            wait([r.conn for r in running] + [r.process.sentinel for r in running], timeout=timeout)
            still = []
            for r in running:
                result = _poll(r)
                now = time.perf_counter()
                if result is None and not r.process.is_alive():
                    result = _poll(r)  # whatever it sent just before exiting
                if result is None and not r.process.is_alive():
                    result = {"status": "error", "upper": None, "lower": None, "raw": None, "seconds": None,
                              "sizes": {}, "details": {},
                              "error": f"the cell process exited with code {r.process.exitcode} without a result"}
                if result is None:
                    limit = (r.ready_at + r.cell.budget) if r.ready_at is not None else (r.started + STARTUP_TIMEOUT)
                    if now >= limit:
                        _stop(r.process)
                        result = _timeout_result(r.cell) if r.ready_at is not None else {
                            **_timeout_result(r.cell), "status": "error",
                            "error": f"the cell process did not start within {STARTUP_TIMEOUT:g} s"}
                if result is None:
                    still.append(r)
                    continue
                r.process.join(KILL_GRACE)
                if r.process.is_alive():
                    _stop(r.process)
                r.conn.close()
                finish(r, result)
            running = still
    finally:
        for r in running:  # interrupted: stop what we started
            _stop(r.process)
        bar.close()
    return CellRun(results, len(pending), n_cached, time.perf_counter() - t_start)


def _context():
    """The forkserver context with lipopt preloaded (every cell skips the imports), else spawn."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


def _poll(r: _Running) -> dict | None:
    """Read the messages a child has sent so far; its result when it sent one."""
    try:
        while r.conn.poll():
            kind, payload = r.conn.recv()
            if kind == "ready":
                r.ready_at = time.perf_counter()
            elif kind == "done":
                return payload
    except (EOFError, OSError):
        return None
    return None


def _stop(process) -> None:
    """Stop a cell process we started and its process group (what it started): SIGTERM, then SIGKILL
    after KILL_GRACE seconds."""
    if process.is_alive():
        if not _signal_group(process.pid, signal.SIGTERM):
            process.terminate()
        process.join(KILL_GRACE)
    if not _signal_group(process.pid, signal.SIGKILL) and process.is_alive():
        process.kill()
    process.join()


def _signal_group(pid: int, sig) -> bool:
    """Send ``sig`` to the process group led by ``pid`` (our cell); False when there is none."""
    if not hasattr(os, "killpg"):
        return False
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True
