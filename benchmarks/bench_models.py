"""Real-model benchmark (issue 6): LiPopt-3 on a 1x28x28 CNN and on the 95 %-pruned MNIST MLP.

    python benchmarks/bench_models.py           # every model, logit 0 (a few minutes on 2 cores)
    python benchmarks/bench_models.py --quick   # skip the slow CNN LP

Models:
* cnn-2x2: Conv2d(1, 4, 2, stride 2) - ReLU - Conv2d(4, 8, 2, stride 2) - ReLU - Linear(392, 10), PyTorch
  default init with torch.manual_seed(0), loaded through lipopt's torch loader (784-784-392-10).
* cnn-3x3: the same with 3x3 kernels, stride 2, no padding, 4 and 4 channels (784-676-144-10): the
  overlapping receptive fields make the per-input cliques large (see the column estimate).
* mlp-pruned95: the shipped MNIST model (lipopt.datasets.mnist_model_path("pruned95"): trained on
  MNIST, 95 % of every weight matrix pruned, test accuracy 0.936).
* mlp-random95: 784-300-100-10 with a random 95 % mask on PyTorch-style uniform weights (seed 0).

Each cell (model x method) runs in a fresh process (peak RSS is its own). The l_inf bound is for logit
0 (c = e_0), global. Columns: certified value, seconds, status, LP size where relevant.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time

MODELS = ["cnn-2x2", "cnn-3x3", "mlp-pruned95", "mlp-random95"]
METHODS = ["ascent", "product", "lp", "exact-fgl"]


def build(name):
    import numpy as np

    import lipopt
    if name.startswith("cnn"):
        import torch
        from lipopt.model.torch_loader import from_torch
        torch.manual_seed(0)
        k, c2 = (2, 8) if name == "cnn-2x2" else (3, 4)
        with torch.no_grad():
            m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, k, stride=2), torch.nn.ReLU(),
                                    torch.nn.Conv2d(4, c2, k, stride=2), torch.nn.ReLU(), torch.nn.Flatten(),
                                    torch.nn.LazyLinear(10))
            m(torch.zeros(1, 1, 28, 28))
        return from_torch(m.eval(), (1, 28, 28))
    if name == "mlp-pruned95":
        from lipopt.datasets import mnist_model_path
        return lipopt.load(mnist_model_path("pruned95"))
    rng = np.random.default_rng(0)
    widths = [784, 300, 100, 10]
    Ws, bs = [], []
    for a, b in zip(widths[:-1], widths[1:]):
        W = rng.uniform(-1, 1, (b, a)) / np.sqrt(a)
        W[rng.random((b, a)) < 0.95] = 0.0
        Ws.append(W)
        bs.append(rng.uniform(-1, 1, b) / np.sqrt(a))
    return lipopt.model.build_network(Ws, bs)


def _cell(model, method, time_limit, queue):
    import lipopt
    from lipopt.inspect import summarize
    from lipopt.model import output_vector
    net = build(model)
    t0 = time.perf_counter()
    try:
        if method == "ascent":
            r = lipopt.lower_bound(net, method="ascent", output=0, time_limit=min(time_limit, 20))
            value = r.lower_bound
        else:
            r = lipopt.upper_bound(net, method=method, output=0, degree=3 if method == "lp" else None,
                                   lower=False, time_limit=time_limit)
            value = r.upper_bound
    except (lipopt.LipoptError, MemoryError) as exc:
        info = summarize(net, output_vector(net, 0)) if method == "lp" else {}
        est = info.get("lp_columns_estimate", {}).get(3)
        queue.put({"error": str(exc).split(";")[0], "estimate": est, "widths": net.widths})
        return
    queue.put({"value": value, "seconds": time.perf_counter() - t0, "status": r.status, "sizes": r.sizes,
               "details": {k: r.details.get(k) for k in ("algorithm", "bracket", "solver", "components")},
               "timings": r.timings, "widths": net.widths, "nnz": sum(W.nnz for W in net.weights),
               "mem": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def run_cell(model, method, time_limit, timeout=1800):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_cell, args=(model, method, time_limit, q))
    p.start()
    try:
        out = q.get(timeout=timeout)
    except Exception:
        p.terminate()
        return {"error": f"crashed or exceeded {timeout} s"}
    p.join()
    return out


def main(models, methods, time_limit):
    print("| model | widths | nonzero weights | method | value | seconds | status | size / notes | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model in models:
        for method in methods:
            c = run_cell(model, method, time_limit)
            widths = "-".join(map(str, c.get("widths", ())))
            if "error" in c:
                est = f" (LiPopt-3 estimate {c['estimate']:,} columns)" if c.get("estimate") else ""
                print(f"| {model} | {widths} | | {method} | - | - | failed | {c['error']}{est} | |", flush=True)
                continue
            s, d, t = c["sizes"], c["details"], c["timings"]
            if method == "lp":
                note = (f"{s['rows']:,} x {s['columns']:,} LP, {s['cliques']} cliques (max {s['max_clique']}); "
                        f"build {t['polynomial'] + t['build']:.2f} s, solve {t['solve']:.1f} s ({d['solver']})")
            elif method == "exact-fgl":
                note = f"{d['algorithm']}, {s['nodes']:,} nodes" + (f", {d['components']} components"
                                                                    if d.get("components") else "")
                if c["status"] != "optimal":
                    note += f", bracket [{d['bracket'][0]:.4f}, {d['bracket'][1]:.4f}]"
            else:
                note = ""
            print(f"| {model} | {widths} | {c['nnz']:,} | {method} | {c['value']:.4f} | {c['seconds']:.2f} "
                  f"| {c['status']} | {note} | {c['mem']:.0f} |", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the CNN LiPopt-3 LP (about a minute)")
    ap.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    ap.add_argument("--time-limit", type=float, default=300.0, help="per cell (default 300 s)")
    a = ap.parse_args()
    t0 = time.time()
    models = [m for m in a.models if not (a.quick and m.startswith("cnn"))]
    main(models, METHODS, a.time_limit)
    print(f"\n({time.time() - t0:.0f} s; python {sys.version.split()[0]})")
