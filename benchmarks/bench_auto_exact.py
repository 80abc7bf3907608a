"""Does `auto` reach the exact value when its budget allows? Chen et al.'s two-hidden-layer nets.

    python benchmarks/bench_auto_exact.py [--widths 30,30,10,1 40,40,10,1] [--bands 10 20 30 40]
                                          [--seeds 0 1 2] [--factor 10]

For each network (PyTorch's init, bit for bit as in the published benchmark), runs the exact FGL search
alone (time T, value v), then `auto` with a budget of max(factor x T, 2 s), and prints auto's bound, its
ratio to v, its status and its seconds. The acceptance: ratio 1 (to the search's closing tolerance) and
status "optimal" on every row.
"""
from __future__ import annotations

import argparse
import sys
import time

import lipopt
from lipopt.methods import CLOSE_GAP
from lipopt.model.random import torch_random_network


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", nargs="+", default=["30,30,10,1", "40,40,10,1"])
    ap.add_argument("--bands", type=int, nargs="+", default=[10, 20, 30, 40])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--factor", type=float, default=10.0)
    ap.add_argument("--search-limit", type=float, default=300.0)
    args = ap.parse_args()
    print("| network | band | seed | exact FGL | search (s) | auto budget (s) | auto bound | auto / exact | "
          "status | auto (s) |\n|---|---|---|---|---|---|---|---|---|---|")
    bad = 0
    for w in args.widths:
        widths = tuple(int(v) for v in w.split(","))
        for band in args.bands:
            for seed in args.seeds:
                net = torch_random_network(widths, band=band, seed=seed)
                t0 = time.perf_counter()
                ex = lipopt.upper_bound(net, method="exact-fgl", lower=False, time_limit=args.search_limit)
                t_ex = time.perf_counter() - t0
                if ex.status != "optimal":
                    print(f"| {w} | {band} | {seed} | not proved in {args.search_limit:g} s | - | - | - | - | - | - |")
                    continue
                value = ex.details["bracket"][0]
                budget = max(args.factor * t_ex, 2.0)
                au = lipopt.upper_bound(net, method="auto", lower=False, time_limit=budget)
                ratio = au.upper_bound / value
                ok = au.upper_bound <= value + CLOSE_GAP * abs(value) + ex.details.get("rounding_error", 0) + 1e-12
                bad += not ok
                print(f"| {w} | {band} | {seed} | {value:.8g} | {t_ex:.2f} | {budget:.1f} | {au.upper_bound:.8g} | "
                      f"{ratio:.6f} | {au.status} | {au.seconds:.2f} |", flush=True)
    print(f"\n{bad} row(s) where auto did not reach the exact value")
    return 0


if __name__ == "__main__":
    sys.exit(main())
