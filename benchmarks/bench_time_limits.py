"""--time-limit is the wall time of the whole call: every method on a network that needs much longer.

    python benchmarks/bench_time_limits.py [--limits 5 20] [--methods lp sdp ...]

For each registry method and each limit, runs `lipopt bound MODEL --method M --time-limit T --json` in
its own process and prints the reported `seconds`, the command's wall time (interpreter start
included), whether `seconds <= 1.1 T + 0.5` holds, the exit code and the status. The networks are
random and seeded, sized so that each method alone would need minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

# method -> (widths, band, norm, domain radius or None, extra flags)
CASES = {
    "product": ([784, 256, 256, 10], None, "inf", None, []),
    "lp": ([120, 120, 1], 12, "inf", None, ["--degree", "3"]),
    "exact-fgl": ([60, 60, 1], None, "inf", None, []),
    "sdp": ([784, 256, 256, 10], None, "inf", None, []),
    "sdp2": ([250, 250, 1], None, "inf", None, []),
    "lipsdp": ([784, 256, 256, 10], None, "2", None, []),
    "exact": ([40, 60, 1], None, "inf", 0.5, []),
    "auto": ([784, 256, 256, 10], None, "inf", None, []),
    "sampling": ([784, 256, 256, 10], None, "inf", None, ["--samples", "200000"]),
    "ascent": ([784, 256, 256, 10], None, "inf", 0.1, []),
    "interval": ([784, 1024, 1024, 1024, 10], None, "inf", None, []),
    "lifted-lp": ([784, 1024, 1024, 10], None, "inf", None, []),
    "compose": ([784, 128, 128, 128, 128, 10], None, "inf", None, []),
    "l2-fast": ([784, 1024, 1024, 10], None, "2", None, []),
    "l2-opt": ([784, 1024, 1024, 10], None, "2", None, []),
}


def _model(tmp, widths, band, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for i in range(len(widths) - 1):
        W = rng.standard_normal((widths[i + 1], widths[i])) / np.sqrt(widths[i])
        if band is not None and i == 0:
            rows, cols = np.indices(W.shape)
            W[np.abs(rows - cols) > band] = 0.0
        arrays[f"W{i}"], arrays[f"b{i}"] = W, 0.1 * rng.standard_normal(widths[i + 1])
    path = os.path.join(tmp, "-".join(map(str, widths)) + (f"_b{band}" if band else "") + ".npz")
    if not os.path.exists(path):
        np.savez(path, **arrays)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limits", type=float, nargs="+", default=[5.0, 20.0])
    ap.add_argument("--methods", nargs="+", default=list(CASES))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="lipopt-time-")
    t0 = time.perf_counter()  # interpreter start + imports, which the command's wall time includes
    subprocess.run([sys.executable, "-c", "import lipopt.cli"], check=True)
    start = time.perf_counter() - t0
    print(f"interpreter start and imports: {start:.2f} s (wall - start is compared when no seconds are reported)\n")
    print("| method | network | limit (s) | reported seconds | wall (s) | <= 1.1 T + 0.5 | exit | status |")
    print("|---|---|---|---|---|---|---|---|")
    for method in args.methods:
        widths, band, norm, radius, extra = CASES[method]
        model = _model(tmp, widths, band)
        argv = [sys.executable, "-m", "lipopt.cli", "bound", model, "--method", method, "--norm", norm, "--json"]
        if widths[-1] > 1:
            argv += ["--margin", "0", "1"]
        if radius is not None:
            centre = os.path.join(tmp, f"x{widths[0]}.npy")
            np.save(centre, np.full(widths[0], 0.5))
            argv += ["--center", centre, "--radius", str(radius)]
        for limit in args.limits:
            t0 = time.perf_counter()
            p = subprocess.run(argv + extra + ["--time-limit", str(limit)], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            seconds, status = None, (p.stderr.strip().splitlines() or ["-"])[0][:70]
            if p.returncode == 0:
                d = json.loads(p.stdout)
                seconds, status = d["seconds"], d.get("status", "ok")
            ok = "yes" if (seconds if seconds is not None else wall - start) <= 1.1 * limit + 0.5 else "NO"
            shown = "-" if seconds is None else f"{seconds:.2f}"
            net = "-".join(map(str, widths)) + (f" band {band}" if band else "")
            print(f"| {method} | {net} | {limit:g} | {shown} | {wall:.2f} | {ok} | {p.returncode} | {status} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
