"""LiPopt-k LP benchmark on random ReLU networks (PyTorch default init, seeds 0..9).

    python benchmarks/bench_lp.py            # the table in the README (a few minutes on 2 cores)
    python benchmarks/bench_lp.py --quick    # seeds 0..2
    python benchmarks/bench_lp.py --methods  # HiGHS simplex / IPM / PDLP and Clarabel per LP size

Each cell runs in a fresh process so that peak memory (max RSS) is the cell's own. Columns: mean
certified bound, the exact FGL where computable (brute force, or lipopt.exact's exact search when
available), LP rows/columns/nonzeros, build and solve seconds (mean), peak memory (max over seeds).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time

CONFIGS = [  # (widths, band)
    ((20, 20, 1), None),
    ((40, 40, 1), 10),
    ((40, 40, 1), 20),
    ((80, 80, 1), 10),
    ((20, 20, 10, 1), 5),
    ((30, 30, 10, 1), 10),
    ((40, 40, 10, 1), 10),
]


def _cell(widths, band, seed, degree, lp_method, solver, with_exact, time_limit, queue):
    import numpy as np

    import lipopt
    from lipopt.model.random import random_network
    net = random_network(widths, band=band, seed=seed)
    try:
        r = lipopt.upper_bound(net, degree=degree, lp_method=lp_method, solver=solver, lower=True,
                               time_limit=time_limit)
    except lipopt.LipoptError as exc:
        queue.put({"error": str(exc)})
        return
    exact = _exact_value(net, widths) if with_exact else None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(dict(ub=r.upper_bound, lb=r.lower_bound, exact=exact, rows=r.sizes["rows"],
                   cols=r.sizes["columns"], nnz=r.sizes["nonzeros"], build=r.timings["polynomial"] + r.timings["build"],
                   solve=r.timings["solve"], solver=r.details["solver"], mem=rss))


def _exact_value(net, widths):
    """The exact FGL if it can be proved within 30 s (exact search when available, else enumeration)."""
    import numpy as np
    try:
        from lipopt.exact import exact_fgl_auto
    except ImportError:
        from lipopt.exact import MAX_ENUMERATION_BITS, exact_fgl
        return exact_fgl(net, np.ones(1)).value if sum(widths[1:-1]) <= MAX_ENUMERATION_BITS else None
    ex = exact_fgl_auto(net, np.ones(1), time_limit=30)
    return ex.value if ex.status == "optimal" else None


def run_cell(widths, band, seed, degree=None, lp_method="auto", solver="highs", with_exact=True,
             time_limit=None, timeout=900):
    """One cell in a fresh process; a crash or a cell over ``timeout`` seconds raises RuntimeError."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_cell, args=(widths, band, seed, degree, lp_method, solver, with_exact, time_limit, q))
    p.start()
    try:
        out = q.get(timeout=timeout)
    except Exception:
        p.terminate()
        raise RuntimeError(f"cell {widths} band={band} seed={seed} failed or exceeded {timeout} s") from None
    p.join()
    return out


def name(widths, band):
    return "-".join(map(str, widths)) + (f" s={band}" if band else " dense")


def main_table(seeds, degree):
    print(f"| network | k | bound (mean) | exact FGL (mean) | bound/exact | lower bound | LP rows x cols | nonzeros "
          f"| build s | solve s | solver | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for widths, band in CONFIGS:
        k = degree or max(3, len(widths) - 1)
        cells = [run_cell(widths, band, s, k) for s in seeds]
        ub = statistics.mean(c["ub"] for c in cells)
        ex = [c["exact"] for c in cells]
        ex_s = f"{statistics.mean(ex):.4f}" if all(e is not None for e in ex) else "-"
        ratio = f"{statistics.mean(c['ub'] / c['exact'] for c in cells):.4f}" if ex_s != "-" else "-"
        c0 = cells[0]
        print(f"| {name(widths, band)} | {k} | {ub:.4f} | {ex_s} | {ratio} | {statistics.mean(c['lb'] for c in cells):.4f} "
              f"| {c0['rows']:,} x {c0['cols']:,} | {c0['nnz']:,} | {statistics.mean(c['build'] for c in cells):.3f} "
              f"| {statistics.mean(c['solve'] for c in cells):.3f} | {c0['solver']} | {max(c['mem'] for c in cells):.0f} |",
              flush=True)


def methods_table():
    print("| network | k | LP cols | simplex s | ipm s | ipm-nocrossover s | pdlp s | clarabel s |")
    print("|---|---|---|---|---|---|---|---|")
    for widths, band, k in [((40, 40, 1), 10, 3), ((80, 80, 1), 10, 3), ((40, 40, 1), 20, 3),
                            ((30, 30, 10, 1), 10, 3), ((40, 40, 10, 1), 10, 3), ((40, 40, 1), 10, 4)]:
        times, cols = [], None
        for m, solver in [("simplex", "highs"), ("ipm", "highs"), ("ipm-nocrossover", "highs"),
                          ("pdlp", "highs"), ("ipm", "clarabel")]:
            c = run_cell(widths, band, 0, k, m, solver, with_exact=False, time_limit=120)
            times.append(f"{c['solve']:.2f}" if "error" not in c else "> 120")
            cols = c.get("cols", cols)
        print(f"| {name(widths, band)} | {k} | {cols:,} | " + " | ".join(times) + " |", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--methods", action="store_true")
    ap.add_argument("--degree", type=int, default=None)
    a = ap.parse_args()
    t0 = time.time()
    if a.methods:
        methods_table()
    else:
        main_table(range(3) if a.quick else range(10), a.degree)
    print(f"\n({time.time() - t0:.0f} s; python {sys.version.split()[0]})")
