"""l2 bounds on trained MLPs, chain CNNs and graphs (LeNet-5, residual nets): lipopt's layer-structured LipSDP (l2-fast, l2-opt) vs
LipSDP-Neuron, the product bound and the peer tool eclipse-nn (ECLipsE-Fast, ECLipsE), margin of the
first test image, with l2-opt / product, the sampled lower bound, and (chains) a lower bound on
LipSDP-Neuron's own optimum by duality (relaxations.lipsdp_dual): l2-opt / dual >= 1 bounds how far
l2-opt is from that SDP's optimum even where no SDP solver finishes.

    OMP_NUM_THREADS=1 python benchmarks/bench_l2.py [--models mlp64 mlp256x2 ...] [--time-limit 60]
                                                   [--lipsdp-order 1200] [--eclipse-width 256]
                                                   [--dual-rank 8] [--dual-iterations 10000]

The margin function is c^T f with c = e_label - e_runner-up (runner-up: the largest other logit of the
first test image). lipopt's values are certified upper bounds (global slopes); eclipse-nn's are float
estimates of the same LipSDP-type relaxation (no certificate). LipSDP-Neuron runs only when its matrix
order (the sum of the input and hidden widths) is at most --lipsdp-order; ECLipsE (one SCS SDP per layer)
only when every hidden width is at most --eclipse-width. One table, seconds are wall time.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import lipopt
from lipopt.relaxations.lipsdp_dual import lipsdp_dual
from lipopt.datasets import digits_test, mnist_model_path, mnist_test, zoo_manifest, zoo_model_path

CHAINS = ["dense32", "pruned95", "mlp64", "mlp256x2", "mlp128x4", "mlp1024x2", "mlp64x7", "digits32x6",
          "tanh_mlp", "sigmoid_mlp", "pruned90"]
CNNS = ["cnn_avgpool", "cnn_stride2", "cnn_bn"]    # chain CNNs (ONNX; conv layers become sparse layers)
GRAPHS = ["lenet5", "resnet_cnn", "resmlp"]         # graphs: max pooling, residual blocks (lifted to chains)


def _load(name):
    if name in ("dense32", "pruned95"):
        return lipopt.load(mnist_model_path(name)), "mnist"
    info = zoo_manifest()["models"][name]
    return lipopt.load(zoo_model_path(name, "onnx" if name in CNNS + GRAPHS else "npz")), info["dataset"]


def _margin(net, dataset):
    X, y = (mnist_test(1) if dataset == "mnist" else digits_test(1))
    logits = net.forward(X[:1])[0]
    label = int(y[0])
    others = np.delete(np.arange(len(logits)), label)
    runner = int(others[np.argmax(logits[others])])
    c = np.zeros(len(logits))
    c[label], c[runner] = 1.0, -1.0
    return c


def _timed(fn):
    t0 = time.perf_counter()
    try:
        v = fn()
    except Exception as e:  # a refusal or solver failure is a table entry, not the end of the run
        return None, time.perf_counter() - t0, type(e).__name__
    return v, time.perf_counter() - t0, ""


def _eclipse(net, c, fast: bool):
    import torch
    from eclipse_nn import ECLipsE, ECLipsE_Fast
    dense = [W.toarray() if hasattr(W, "toarray") else np.asarray(W) for W in net.weights]
    Ws = [torch.tensor(W, dtype=torch.float64) for W in dense]
    Ws[-1] = torch.tensor((c @ dense[-1])[None, :], dtype=torch.float64)
    al = [a.slope_lo for a in net.activations]
    be = [a.slope_hi for a in net.activations]
    if fast:
        return float(ECLipsE_Fast(Ws, al, be))
    v, code = ECLipsE(Ws, al, be)
    return float(v) if code == 0 else float(ECLipsE_Fast(Ws, al, be))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=CHAINS + CNNS + GRAPHS)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--lipsdp-order", type=int, default=1200)
    ap.add_argument("--eclipse-width", type=int, default=256)
    ap.add_argument("--dual-rank", type=int, default=8)
    ap.add_argument("--dual-iterations", type=int, default=10000)
    args = ap.parse_args()
    cols = ["product", "l2-fast", "l2-opt", "lipsdp", "ECLipsE-Fast", "ECLipsE", "LipSDP dual"]
    print("| model | widths | " + " | ".join(f"{k} | s" for k in cols)
          + " | l2-opt / product | l2-opt / dual | lower bound |")
    print("|---|---|" + "---|---|" * len(cols) + "---|---|---|")
    for name in args.models:
        net, dataset = _load(name)
        c = _margin(net, dataset)
        row = {}
        for m in ("product", "l2-fast", "l2-opt", "lipsdp"):
            if m == "lipsdp" and sum(net.widths[:-1]) > args.lipsdp_order:
                row[m] = (None, 0.0, "skip")
                continue
            row[m] = _timed(lambda: lipopt.upper_bound(net, norm="2", method=m, c=c, lower=False,
                                                        time_limit=args.time_limit).upper_bound)
        graph = name in GRAPHS       # eclipse-nn takes chains of dense layers only
        row["ECLipsE-Fast"] = (None, 0.0, "graph") if graph else _timed(lambda: _eclipse(net, c, True))
        if graph:
            row["ECLipsE"] = (None, 0.0, "graph")
        elif max(net.widths[1:-1]) <= args.eclipse_width:
            row["ECLipsE"] = _timed(lambda: _eclipse(net, c, False))
        else:
            row["ECLipsE"] = (None, 0.0, "skip")
        row["LipSDP dual"] = (None, 0.0, "graph") if graph else _timed(
            lambda: lipsdp_dual(net, c, rank=args.dual_rank, iterations=args.dual_iterations).value)
        cells = []
        for k in cols:
            v, s, why = row[k]
            cells.append(f"{v:.4g} | {s:.2f}" if v is not None else f"{why or '-'} | {s:.2f}")
        opt, prod = row["l2-opt"][0], row["product"][0]
        ratio = f"{opt / prod:.3f}" if opt is not None and prod else "-"
        dual = row["LipSDP dual"][0]
        gap = f"{opt / dual:.4f}" if opt is not None and dual else "-"
        low = lipopt.lower_bound(net, norm="2", c=c, samples=4096, seed=0).lower_bound
        print(f"| {name} | {'-'.join(map(str, net.widths))} | " + " | ".join(cells) + f" | {ratio} | {gap} | {low:.4g} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
