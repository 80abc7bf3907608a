"""Activation-consistent exact local Lipschitz constant (lipopt.exact.mip) on random ReLU networks.

    python benchmarks/bench_mip.py                   # seeds 0..4, 10 s limit per instance
    python benchmarks/bench_mip.py --time-limit 30 --seeds 3 --norm 1

Networks: tests' Gaussian small_network-style weights (N(0, 1) scaled by 1/sqrt(fan_in)), biases
N(0, 0.1); domain: the box [-r, r]^n0 around 0. Columns: widths, r, solved (proved optimal within the
limit) / seeds, median and max seconds, median nodes, median unstable neurons, median relative bracket
width (upper - lower) / upper, and the median ratio FGL / L where FGL (same local slopes) is computed
by exact_fgl_auto when it finishes within the limit (l_inf only).
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

from lipopt.domain import Box, local_slopes
from lipopt.exact.mip import exact_lipschitz_mip
from lipopt.model import build_network

CONFIGS = [
    ((2, 8, 8, 1), 1.0),
    ((2, 16, 16, 1), 1.0),
    ((2, 32, 32, 1), 1.0),
    ((10, 20, 1), 1.0),
    ((10, 50, 1), 1.0),
    ((10, 20, 20, 1), 0.5),
    ((20, 40, 1), 0.5),
    ((20, 20, 20, 20, 1), 0.1),
    ((784, 50, 1), 0.05),
]


def net_for(widths, seed):
    rng = np.random.default_rng(seed)
    Ws = [rng.standard_normal((widths[l + 1], widths[l])) / np.sqrt(widths[l]) for l in range(len(widths) - 1)]
    bs = [0.1 * rng.standard_normal(widths[l + 1]) for l in range(len(widths) - 1)]
    return build_network(Ws, bs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--norm", default="inf")
    ap.add_argument("--no-fgl", action="store_true")
    args = ap.parse_args()
    print(f"norm {args.norm}, time limit {args.time_limit} s")
    print(f"{'widths':>20} {'r':>5} {'solved':>7} {'med s':>7} {'max s':>7} {'nodes':>7} {'unst':>5} "
          f"{'rel gap':>9} {'FGL/L':>7}")
    for widths, r in CONFIGS:
        secs, nodes, unst, gaps, ratios, solved = [], [], [], [], [], 0
        for seed in range(args.seeds):
            net = net_for(widths, seed)
            dom = Box(-r * np.ones(widths[0]), r * np.ones(widths[0]))
            res = exact_lipschitz_mip(net, np.ones(1), dom, args.norm, time_limit=args.time_limit)
            solved += res.optimal
            secs.append(res.seconds)
            nodes.append(res.nodes)
            unst.append(res.info["unstable"])
            gaps.append((res.upper - res.lower) / max(res.upper, 1e-300))
            if args.norm == "inf" and not args.no_fgl and len(widths) <= 4:
                from lipopt.exact import exact_fgl_auto
                try:
                    f = exact_fgl_auto(net, np.ones(1), local_slopes(net, dom), time_limit=args.time_limit)
                    if f.optimal and res.optimal:
                        ratios.append(f.upper / res.upper)
                except Exception:  # noqa: BLE001 - beyond the FGL solvers' reach
                    pass
        ratio = f"{statistics.median(ratios):7.3f}" if ratios else "     --"
        print(f"{'-'.join(map(str, widths)):>20} {r:5.2f} {solved:>3}/{args.seeds:<3} "
              f"{statistics.median(secs):7.2f} {max(secs):7.2f} {int(statistics.median(nodes)):7d} "
              f"{int(statistics.median(unst)):5d} {statistics.median(gaps):9.1e} {ratio}", flush=True)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.1f} s")
