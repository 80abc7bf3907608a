"""Dask side of ``lipopt batch``: scheduler address check, a connection that fails fast, the task loop.

A scheduler address is checked before anything connects or touches the output: ``tcp://host:port``,
``host:port`` (tcp), ``tls://``, ``ws://``, ``wss://``, ``ucx://`` with host:port, or dask's in-process
``inproc://ip/pid/n``. The connection uses ``CONNECT_TIMEOUT`` seconds; every failure (unreachable host,
missing UCX backend, ...) becomes one InvalidInputError. distributed leaves a half-built Client behind
when its constructor fails on a malformed address, and that Client's ``__del__`` then blocks for twice the
timeout and prints a traceback; ``_Client`` marks such a Client closed and stops its event-loop thread.
"""
from __future__ import annotations

import logging
import math
import re

from .batch_store import error_rows
from .errors import InvalidInputError

CONNECT_TIMEOUT = 10.0  # seconds
MAX_CHUNK = 8
_SCATTER_RETRIES = 3
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"
_HOST_PORT = re.compile(rf"(?:(?P<scheme>tcp|tls|ws|wss|ucx)://)?(?P<host>{_HOST}):(?P<port>[0-9]{{1,5}})")
_INPROC = re.compile(r"inproc://[^\s/]+/[0-9]+/[0-9]+")


def check_scheduler(scheduler) -> None:
    """Raise InvalidInputError unless ``scheduler`` is None, a Client-like object or a well-formed address."""
    if scheduler is None or hasattr(scheduler, "submit"):
        return
    if not isinstance(scheduler, str):
        raise InvalidInputError(f"scheduler must be an address or a distributed.Client, got {type(scheduler).__name__}")
    if _INPROC.fullmatch(scheduler):
        return
    m = _HOST_PORT.fullmatch(scheduler)
    if m is None or not 1 <= int(m["port"]) <= 65535:
        raise InvalidInputError(f"scheduler address {scheduler!r} is not of the form tcp://HOST:PORT or HOST:PORT "
                                "(also tls://, ws://, wss://, ucx://, inproc://)")


def connect(address: str, timeout: float | None = None):
    """A distributed.Client for ``address``, or InvalidInputError after at most ~``timeout`` seconds."""
    from distributed import Client

    class _Client(Client):
        def start(self, **kwargs):
            try:
                super().start(**kwargs)
            except BaseException:
                # The constructor failed: nothing is connected. Without this, __del__ -> close() waits
                # for a connection that never comes (2 x timeout) and prints a traceback.
                self.status = "closed"
                try:
                    self._loop_runner.stop()
                except Exception:  # pragma: no cover - distributed internals changed
                    pass
                raise

    check_scheduler(address)
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    try:
        return _Client(address, set_as_default=False, timeout=timeout)
    except Exception as exc:  # OSError/TimeoutError (unreachable), ValueError/TypeError (backend), ...
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise InvalidInputError(f"cannot connect to the Dask scheduler {address!r} ({msg})") from None


def run_dask(net, pending, items_of, params, compute, scheduler, workers, chunk_size, accept, info, task,
             default_workers):
    """Run ``task(net, items, params, compute)`` over chunks of ``pending`` on Dask; rows go to ``accept``."""
    try:
        from distributed import LocalCluster, as_completed
    except ImportError:
        raise InvalidInputError("distributed runs need dask[distributed] (pip install 'lipopt[dask]'), "
                                "or use workers=0 to run serially") from None
    from concurrent.futures import CancelledError

    cluster = None
    own_client = not hasattr(scheduler, "submit")
    futures = {}
    client = None
    try:
        if scheduler is None:
            cluster = LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
            from distributed import Client
            client = Client(cluster, set_as_default=False)
        elif own_client:
            client = connect(scheduler)
        else:
            client = scheduler
        nthreads = sum(client.nthreads().values())
        info.update(workers=len(client.nthreads()), threads=nthreads)
        size = chunk_size or max(1, min(MAX_CHUNK, math.ceil(len(pending) / (4 * max(1, nthreads)))))
        info["chunk_size"] = size
        chunks = [pending[k:k + size] for k in range(0, len(pending), size)]
        chunks.reverse()  # pop() from the end submits them in order
        window = max(4, 3 * max(1, nthreads))
        net_future = client.scatter(net, broadcast=True)
        ac = as_completed(loop=client.loop)

        def submit(idx, attempt=0):
            fut = client.submit(task, net_future, items_of(idx), params, compute, pure=False)
            futures[fut] = (idx, attempt)
            ac.add(fut)

        while chunks and len(futures) < window:
            submit(chunks.pop())
        for fut in ac:
            idx, attempt = futures.pop(fut)
            try:
                rows = fut.result()
            except CancelledError as exc:  # its scattered network was lost with every worker holding it
                if attempt < _SCATTER_RETRIES:
                    if net_future.status != "finished":
                        net_future = client.scatter(net, broadcast=True)
                    info["resubmitted"] += 1
                    submit(idx, attempt + 1)
                    continue
                rows = error_rows(items_of(idx), exc)
            except Exception as exc:  # KilledWorker (the chunk kept killing workers) or a task error
                rows = error_rows(items_of(idx), exc)
            accept(rows)
            if chunks:
                submit(chunks.pop())
    finally:
        if client is not None:
            for f in list(futures):
                f.cancel()
            if own_client:
                client.close()
        if cluster is not None:
            cluster.close()
