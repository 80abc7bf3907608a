"""Deep networks: product, interval Jacobian, lifted McCormick LP, l2-weighted, auto and the ascent lower bound.

    OMP_NUM_THREADS=1 python benchmarks/bench_deep.py [--time-limit 30] [--models dense32,pruned95,...]

Shipped MNIST nets (``lipopt.datasets.mnist_model_path``) and, when present, the model zoo
(``lipopt.datasets.zoo_manifest`` / ``zoo_model_path(name, "npz")``). The output is the margin
c = e_y - e_j of the first test image (y its label, j the runner-up logit); domains: global and l_inf
balls of radius 0.01 and 0.1 around the image, clipped to the data range. Every upper bound is
certified; "lower" is the ascent method's witness gradient norm. Seconds are wall time per call.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import lipopt
from lipopt import datasets
from lipopt.domain import Ball

SHIPPED = ("dense32", "pruned95")
ZOO = ("mlp128x4", "mlp64x7", "digits32x6", "pruned90", "mlp256x2", "mlp1024x2", "cnn_avgpool", "cnn_stride2",
       "cnn_bn")
UPPER = ("product", "interval", "lifted-lp", "l2-weighted", "auto")


def _models(names):
    zoo = datasets.zoo_manifest()["models"]
    for name in names:
        if name in SHIPPED:
            yield name, lipopt.load(datasets.mnist_model_path(name))
            continue
        fmt = "npz" if zoo.get(name, {}).get("npz") else "onnx"
        try:
            yield name, lipopt.load(datasets.zoo_model_path(name, fmt))
        except (lipopt.InvalidInputError, ValueError) as exc:  # graphs this chain benchmark cannot take
            print(f"<!-- {name}: not loaded as a chain ({str(exc)[:80]}) -->")


def _image(net):
    """First test image of the data set matching the input width, and the data range [0, 1]."""
    X, Y = datasets.mnist_test(10) if net.widths[0] == 784 else datasets.digits_test(10)
    if X.shape[1] != net.widths[0]:
        raise SystemExit(f"no test images of width {net.widths[0]}")
    return X[0], int(Y[0]), (0.0, 1.0)


def _timed(fn):
    t0 = time.perf_counter()
    try:
        value = fn()
    except (lipopt.InvalidInputError, lipopt.SolverFailure) as exc:
        return None, time.perf_counter() - t0, str(exc).split(";")[0][:60]
    return value, time.perf_counter() - t0, ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-limit", type=float, default=30.0)
    ap.add_argument("--models", default=",".join(SHIPPED + ZOO))
    ap.add_argument("--radii", default="global,0.01,0.1")
    args = ap.parse_args()
    print("| model | domain | product | interval | lifted-lp | l2-weighted | auto (best) | lower (ascent) "
          "| ratio best/lower | seconds product / interval / lifted / l2-weighted / auto / lower |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, net in _models(args.models.split(",")):
        x0, y, clip = _image(net)
        logits = net.forward(x0[None])[0]
        others = logits.copy()
        others[y] = -np.inf
        j = int(np.argmax(others))
        for radius in args.radii.split(","):
            dom = None if radius == "global" else Ball(x0, float(radius), "inf", clip=clip)
            vals, secs, best_name = {}, {}, ""
            for m in UPPER:
                res, secs[m], why = _timed(lambda: lipopt.upper_bound(
                    net, method=m, margin=(y, j), domain=dom, lower=False, time_limit=args.time_limit))
                vals[m] = None if res is None else res.upper_bound
                if m == "auto" and res is not None:
                    best_name = res.details.get("best_method", "")
                elif res is None:
                    vals[m] = why
            low, secs["lower"], _ = _timed(lambda: lipopt.lower_bound(
                net, method="ascent", margin=(y, j), domain=dom, time_limit=min(10.0, args.time_limit)))
            lower = None if low is None else low.lower_bound
            fmt = lambda v: v if isinstance(v, str) else "-" if v is None else f"{v:.4g}"  # noqa: E731
            best = min((v for v in vals.values() if isinstance(v, float)), default=None)
            ratio = "-" if best is None or not lower else f"{best / lower:.3g}"
            print(f"| {name} {'-'.join(map(str, net.widths))} | {radius} | {fmt(vals['product'])} "
                  f"| {fmt(vals['interval'])} | {fmt(vals['lifted-lp'])} | {fmt(vals['l2-weighted'])} "
                  f"| {fmt(vals['auto'])} ({best_name}) "
                  f"| {fmt(lower)} | {ratio} | {' / '.join(f'{secs[k]:.1f}' for k in (*UPPER, 'lower'))} |",
                  flush=True)


if __name__ == "__main__":
    main()
