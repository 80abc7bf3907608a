"""Exact l_inf FGL (lipopt.exact.exact_fgl_auto) on random ReLU networks, seeds 0..9.

    python benchmarks/bench_exact.py                  # the table below the README's exact section
    python benchmarks/bench_exact.py --time-limit 10  # per-instance limit in seconds (default 60)
    python benchmarks/bench_exact.py --seeds 3        # seeds 0..2
    python benchmarks/bench_exact.py --extra          # also 80-80-1 with s = 40 (beyond DP; slow)

Networks: random_network(widths, band=s, seed) (PyTorch default init; the band masks every layer but
the last). "auto" lets exact_fgl_auto choose (DP when the path decomposition's bag is <= 20, else
branch and bound); "bnb" forces branch and bound on the same instances for comparison. Time is wall
clock per instance (to optimality, or the limit); nodes are branch-and-bound nodes, or DP table
entries. "solved" counts instances proven optimal within the limit; the others return a bracket.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

if importlib.util.find_spec("lipopt") is None:  # running from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import numpy as np

from lipopt.exact import exact_fgl_auto
from lipopt.model.random import random_network

CONFIGS = [  # (widths, band, method)
    ((80, 80, 1), 4, "auto"),
    ((80, 80, 1), 10, "auto"),
    ((80, 80, 1), 20, "auto"),
    ((80, 80, 1), 4, "bnb"),
    ((80, 80, 1), 10, "bnb"),
    ((80, 80, 1), 20, "bnb"),
    ((40, 40, 1), None, "auto"),
    ((30, 30, 10, 1), 10, "auto"),
    ((30, 30, 10, 1), 20, "auto"),
    ((30, 30, 10, 1), 40, "auto"),
]
EXTRA = [((80, 80, 1), 40, "auto")]


def run_cell(widths, band, method, seeds, time_limit):
    rows = []
    for seed in seeds:
        net = random_network(widths, band=band, seed=seed)
        t0 = time.perf_counter()
        r = exact_fgl_auto(net, np.ones(1), time_limit=time_limit, method=method)
        rows.append(dict(seconds=time.perf_counter() - t0, nodes=r.nodes, status=r.status, algorithm=r.algorithm,
                         upper=r.upper, lower=r.lower, bag=r.info.get("bag")))
    return rows


def summarise(widths, band, method, rows):
    secs = [r["seconds"] for r in rows]
    nodes = [r["nodes"] for r in rows]
    solved = sum(r["status"] == "optimal" for r in rows)
    algos = sorted({r["algorithm"] for r in rows})
    bags = sorted({r["bag"] for r in rows if r["bag"] is not None})
    algo = "/".join(algos) + (f" (bag {'/'.join(map(str, bags))})" if bags else "")
    gap = max((r["upper"] - r["lower"]) / max(abs(r["upper"]), 1e-300) for r in rows)
    return ("| " + " | ".join([
        "-".join(map(str, widths)), "dense" if band is None else str(band), method, algo,
        f"{solved}/{len(rows)}", f"{statistics.mean(secs):.3f}", f"{max(secs):.3f}",
        f"{statistics.mean(nodes):,.0f}", f"{max(nodes):,}",
        f"{statistics.mean(r['upper'] for r in rows):.4f}", f"{gap:.1e}"]) + " |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per instance (default 60)")
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    ap.add_argument("--extra", action="store_true", help="also run the slow configurations")
    args = ap.parse_args(argv)
    seeds = list(range(args.seeds))
    print(f"Exact l_inf FGL, seeds 0..{args.seeds - 1}, time limit {args.time_limit:g} s per instance, "
          f"{os.cpu_count()} CPU(s), numpy {np.__version__}\n")
    print("| network | band s | method | algorithm | solved | time mean (s) | time max (s) | nodes mean "
          "| nodes max | FGL mean | max rel. gap |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for widths, band, method in CONFIGS + (EXTRA if args.extra else []):
        rows = run_cell(widths, band, method, seeds, args.time_limit)
        print(summarise(widths, band, method, rows), flush=True)
    print("\nnodes: branch-and-bound nodes, or DP table entries (sum over steps of 2^bag). "
          "max rel. gap: (upper - lower) / upper, worst seed (rounding, ~1e-16, when every instance is solved).")


if __name__ == "__main__":
    main()
