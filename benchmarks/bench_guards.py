"""Size guards: wall time and peak memory (RSS of the process tree) of refusals and of guarded runs.

    python benchmarks/bench_guards.py [--memory-limit 12GB] [--time-limit 60]

Cases (from the reliability issue): a dense 4096-4096-1 net at LiPopt-2 and its `lipopt inspect` (must
refuse / answer in about a second and under 1 GB), and local l2 bounds (LipSDP, Shor) on MNIST-sized
MLPs around a real test image, which used 10-16 GB before the guards. Each case runs `lipopt` in its own
process; the table shows exit code, wall seconds, peak RSS and the first stderr/stdout line.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def _net(path, widths, act="relu", seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for i in range(len(widths) - 1):
        arrays[f"W{i}"] = rng.standard_normal((widths[i + 1], widths[i])) / np.sqrt(widths[i])
        arrays[f"b{i}"] = 0.1 * rng.standard_normal(widths[i + 1])
    arrays["activations"] = np.array([act] * (len(widths) - 2))
    np.savez(path, **arrays)
    return path


def _peak_run(argv, limit_s):
    """(exit code, seconds, peak RSS MB of the process tree, first output line)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        if time.perf_counter() - t0 > limit_s:
            proc.kill()
        time.sleep(0.1)
    out, err = proc.communicate()
    line = (err.strip().splitlines() or out.strip().splitlines() or [""])[0]
    return proc.returncode, time.perf_counter() - t0, peak / 1024, line


def _tree_rss(pid) -> int:
    total = 0
    try:
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    except OSError:
        kids = []
    for p in [str(pid)] + kids:
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
        except (OSError, StopIteration):
            pass
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--memory-limit", default=None, help="passed to lipopt (default: lipopt's default)")
    ap.add_argument("--time-limit", type=float, default=60.0, help="lipopt --time-limit for the solves")
    args = ap.parse_args()
    from lipopt.datasets import mnist_test
    X, _ = mnist_test(1)
    tmp = tempfile.mkdtemp(prefix="lipopt-guards-")
    centre = os.path.join(tmp, "x0.npy")
    np.save(centre, X[0])
    lip = [sys.executable, "-m", "lipopt.cli"]
    mem = ["--memory-limit", args.memory_limit] if args.memory_limit else []
    big = _net(os.path.join(tmp, "dense4096.npz"), [4096, 4096, 1])
    cases = [("4096-4096-1 LiPopt-2", lip + ["bound", big, "--method", "lp", "--degree", "2"] + mem),
             ("4096-4096-1 inspect", lip + ["inspect", big] + mem)]
    for widths, act in (([784, 256, 256, 10], "relu"), ([784, 256, 256, 10], "tanh"), ([784, 1024, 1024, 10], "relu")):
        name = "-".join(map(str, widths)) + ("" if act == "relu" else f" {act}")
        model = _net(os.path.join(tmp, f"{name.replace(' ', '_')}.npz"), widths, act)
        for method in ("lipsdp", "sdp"):
            cases.append((f"{name} local l2 {method}",
                          lip + ["bound", model, "--norm", "2", "--method", method, "--margin", "0", "1",
                                 "--center", centre, "--radius", "0.1", "--ball", "2", "--clip", "0", "1",
                                 "--time-limit", str(args.time_limit), "--lower-method", "sampling"] + mem))
    print(f"| case | exit | seconds | peak RSS (MB) | first line |\n|---|---|---|---|---|")
    for name, argv in cases:
        code, secs, peak, line = _peak_run(argv, 3 * args.time_limit + 60)
        print(f"| {name} | {code} | {secs:.1f} | {peak:,.0f} | {line[:110]} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
