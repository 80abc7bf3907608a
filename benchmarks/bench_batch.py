"""Throughput of ``lipopt.batch.run_batch``: points per minute, serial vs 1 and 2 Dask workers, and the
effect of reusing the Krivine LP structure across points.

    python benchmarks/bench_batch.py [--points 40] [--radius 0.01]

Setting: the bundled MNIST model ``pruned95`` (784-300-100-10 ReLU, 95 % pruned), the first ``--points``
bundled MNIST test images, l_inf balls of radius 0.01 clipped to [0, 1], LiPopt-3 LP, norm l_inf, and
output = each image's own label (the Lipschitz constant of the true-class logit; a margin f_label - f_j
gives LPs of the same kind). Every point also gets its sampled lower bound (4,096 samples plus local
search), as in ``upper_bound(lower=True)``.

Rows:
* serial (workers=0): one process, no Dask; LP structure cache kept, or cleared before every point.
* LocalCluster with 1 and 2 single-threaded worker processes (default chunk size, and 1 point per task).
* A small network (20-20-10-1, band 5, 400 points of U(0,1)^20, r=0.05) where a point takes ~30 ms:
  here per-task overhead shows (chunk size 1 vs the default), and many points share an activation
  pattern, so the LP structure cache hits (cache kept vs cleared).
"points/min" is wall clock including cluster start-up (~1.5-3 s); "work s/pt" is the mean time inside
``upper_bound`` per point (the sum over workers divided by points).
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from lipopt import load
from lipopt.batch import run_batch
from lipopt.datasets import mnist_model_path, mnist_test
from lipopt.model.random import random_network


def row(name, s, wall):
    reuse = "-" if s["lp_structure_reused"] is None else f"{100 * s['lp_structure_reused']:.0f} %"
    ub = s["upper_bound"]
    print(f"| {name} | {s['computed']} | {s['workers'] or 'serial'} | {s['chunk_size']} | {wall:.1f} | "
          f"{60 * s['computed'] / wall:.1f} | {s['item_seconds'] / max(1, s['computed']):.3f} | {reuse} | "
          f"{ub['median']:.4g} | {s['failed']} |", flush=True)


def run(name, tmp, *args, **kw):
    out = Path(tmp) / ("".join(c if c.isalnum() else "_" for c in name) + ".csv")
    t0 = time.perf_counter()
    s = run_batch(*args, out=out, progress=False, **kw)
    row(name, s, time.perf_counter() - t0)
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=40)
    ap.add_argument("--radius", type=float, default=0.01)
    a = ap.parse_args()
    net = load(mnist_model_path("pruned95"))
    X, y = mnist_test(a.points)
    common = dict(radius=a.radius, clip=(0.0, 1.0), output="label", labels=y)
    small = random_network((20, 20, 10, 1), band=5, seed=0)
    Xs = np.random.default_rng(0).uniform(0.0, 1.0, (400, 20))
    print("| run | points | workers | points/task | wall s | points/min | work s/pt | LP structure reused | "
          "median upper bound | failed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run("MNIST serial, cache kept", tmp, net, X, workers=0, **common)
        run("MNIST serial, cache cleared per point", tmp, net, X, workers=0, reuse_lp_structure=False, **common)
        run("MNIST 1 worker", tmp, net, X, workers=1, **common)
        run("MNIST 2 workers", tmp, net, X, workers=2, **common)
        run("MNIST 2 workers, 1 point/task", tmp, net, X, workers=2, chunk_size=1, **common)
        run("small serial", tmp, small, Xs, 0.05, clip=(0.0, 1.0), workers=0)
        run("small serial, cache cleared per point", tmp, small, Xs, 0.05, clip=(0.0, 1.0), workers=0,
            reuse_lp_structure=False)
        run("small 2 workers, 1 point/task", tmp, small, Xs, 0.05, clip=(0.0, 1.0), workers=2, chunk_size=1)
        run("small 2 workers, default chunk", tmp, small, Xs, 0.05, clip=(0.0, 1.0), workers=2)
    print("\nLP build time per point (polynomial + certificate structure + LP), serial, no lower bound:\n")
    print("| model | points | cache | build ms/pt (mean) | solve ms/pt (mean) | structure reused |")
    print("|---|---|---|---|---|---|")
    build_times(net, X, a.radius, y, "MNIST pruned95")
    build_times(small, Xs[:100], 0.05, None, "small 20-20-10-1")
    print(f"\n({time.perf_counter() - t_all:.0f} s; python {platform.python_version()})")


def build_times(net, X, radius, labels, name):
    from lipopt import upper_bound
    from lipopt.domain import Ball
    from lipopt.relaxations import krivine
    for keep in (True, False):
        krivine._CACHE.clear()
        build, solve, hits = [], [], 0
        for i, x in enumerate(X):
            if not keep:
                krivine._CACHE.clear()
            before = {id(v) for v in krivine._CACHE.values()}
            held = list(krivine._CACHE.values())  # keep ids unique while comparing
            r = upper_bound(net, domain=Ball(x, radius, clip=(0.0, 1.0)), lower=False,
                            output=None if labels is None else int(labels[i]))
            hits += all(id(v) in before for v in krivine._CACHE.values())
            del held
            build.append(r.timings["polynomial"] + r.timings["build"])
            solve.append(r.timings["solve"])
        print(f"| {name} | {len(X)} | {'kept' if keep else 'cleared per point'} | {1e3 * np.mean(build):.2f} | "
              f"{1e3 * np.mean(solve):.2f} | {100 * hits / len(X):.0f} % |", flush=True)


if __name__ == "__main__":
    main()
