"""Local vs global LiPopt-3 bounds on random networks (PyTorch default init, seeds 0..4).

    python benchmarks/bench_local.py

Centre x0 ~ U(-1, 1)^n0 (seeded); l_inf balls of radius 0.01, 0.1, 1 with CROWN-style pre-activation
bounds. Columns: mean certified bound, mean local lower bound, fixed neurons, LP columns, solve seconds.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

import lipopt
from lipopt.domain import Ball
from lipopt.model.random import random_network

CONFIGS = [((40, 40, 1), 10), ((20, 20, 10, 1), 5), ((30, 30, 10, 1), None)]
SEEDS = range(5)


def main():
    print("| network | domain | bound (mean) | lower bound (mean) | fixed neurons | LP columns | solve s |")
    print("|---|---|---|---|---|---|---|")
    for widths, band in CONFIGS:
        for radius in (None, 0.01, 0.1, 1.0):
            rows = []
            for seed in SEEDS:
                net = random_network(widths, band=band, seed=seed)
                x0 = np.random.default_rng(seed).uniform(-1, 1, widths[0])
                dom = None if radius is None else Ball(x0, radius)
                rows.append(lipopt.upper_bound(net, degree=3, domain=dom, seed=seed))
            name = "-".join(map(str, widths)) + (f" s={band}" if band else " dense")
            fixed = "-" if radius is None else f"{statistics.mean(r.details['fixed_neurons'] for r in rows):.1f} / {rows[0].details['hidden_neurons']}"
            print(f"| {name} | {'global' if radius is None else f'l_inf ball r={radius}'} "
                  f"| {statistics.mean(r.upper_bound for r in rows):.4f} | {statistics.mean(r.lower_bound for r in rows):.4f} "
                  f"| {fixed} | {statistics.mean(r.sizes['columns'] for r in rows):,.0f} "
                  f"| {statistics.mean(r.timings['solve'] for r in rows):.3f} |", flush=True)


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"\n({time.time() - t0:.0f} s)")
