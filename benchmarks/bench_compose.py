"""compose (compositional blocks) against the product bound on deep nets, with the ascent lower bound.

    OMP_NUM_THREADS=1 python benchmarks/bench_compose.py                    # zoo + shipped MNIST nets
    OMP_NUM_THREADS=1 python benchmarks/bench_compose.py --models mlp128x4 --time-limit 10

Scalar output: the margin f_y - f_j of the first test image (y its predicted class, j the runner-up).
Domains: global, and the l_inf balls of radius 0.01 and 0.1 around that image clipped to [0, 1]. Norm
l_inf. Columns: product bound, compose (and the interval Jacobian method when the registry has it),
the ascent lower bound, the ratios upper / lower, seconds of compose, and compose's winning plan.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import lipopt
from lipopt.datasets import digits_test, mnist_model_path, mnist_test, zoo_manifest, zoo_model_path
from lipopt.domain import Ball
from lipopt.methods import METHODS

ZOO = ["mlp128x4", "mlp64x7", "digits32x6", "pruned90", "mlp256x2"]
SHIPPED = ["pruned95"]   # mnist_784_300_100_10_pruned95 (the dense 784-32-10 has one hidden layer)


def load(name):
    if name in SHIPPED:
        return lipopt.load(mnist_model_path(name)), "mnist"
    return lipopt.load(zoo_model_path(name, "npz")), zoo_manifest()["models"][name]["dataset"]


def first_image(dataset: str) -> np.ndarray:
    X, _ = (digits_test if dataset == "digits" else mnist_test)(1)
    return np.asarray(X[0], dtype=np.float64).ravel()


def row(name: str, radius, time_limit: float, lower_seconds: float) -> dict:
    net, dataset = load(name)
    x0 = first_image(dataset)
    logits = net.forward(x0[None, :])[0]
    y, j = (int(k) for k in np.argsort(-logits)[:2])
    domain = None if radius is None else Ball(x0, radius, "inf", clip=(0.0, 1.0))
    kw = {"margin": (y, j), "domain": domain}
    out = {"model": name, "widths": "-".join(map(str, net.widths)),
           "domain": "global" if radius is None else f"r={radius}"}
    out["product"] = lipopt.upper_bound(net, method="product", lower=False, **kw).upper_bound
    t0 = time.perf_counter()
    r = lipopt.upper_bound(net, method="compose", lower=False, time_limit=time_limit, **kw)
    out["compose_seconds"] = time.perf_counter() - t0
    out["compose"], out["plan"] = r.upper_bound, r.details.get("algorithm")
    if "interval" in METHODS:
        try:
            out["interval"] = lipopt.upper_bound(net, method="interval", lower=False, time_limit=time_limit,
                                                 **kw).upper_bound
        except lipopt.LipoptError as exc:
            out["interval"] = f"({exc})"
    out["ascent"] = lipopt.lower_bound(net, method="ascent", time_limit=lower_seconds, **kw).lower_bound
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=ZOO + SHIPPED)
    ap.add_argument("--radii", nargs="*", default=["global", "0.01", "0.1"])
    ap.add_argument("--time-limit", type=float, default=20.0)
    ap.add_argument("--lower-seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    cols = "| model | widths | domain | product | interval | compose | ascent LB | product/LB | compose/LB | s | plan |"
    print(cols)
    print("|" + "---|" * (cols.count("|") - 1))
    for name in args.models:
        for rad in args.radii:
            o = row(name, None if rad == "global" else float(rad), args.time_limit, args.lower_seconds)
            iv = o.get("interval", "-")
            iv = f"{iv:.4g}" if isinstance(iv, float) else iv
            lb = o["ascent"] or float("nan")
            print(f"| {o['model']} | {o['widths']} | {o['domain']} | {o['product']:.4g} | {iv} | {o['compose']:.4g} "
                  f"| {o['ascent']:.4g} | {o['product'] / lb:.3g} | {o['compose'] / lb:.3g} | "
                  f"{o['compose_seconds']:.1f} | {o['plan']} |", flush=True)


if __name__ == "__main__":
    main()
