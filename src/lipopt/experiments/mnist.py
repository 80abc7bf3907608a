"""Experiment "mnist": the shipped MNIST models and real test images.

Models (``lipopt.datasets``): ``pruned95`` (784-300-100-10, 95 % pruned; the LiPopt paper's setting) and
``dense32`` (784-32-10, dense). Global l_inf bounds of every logit (outputs 0..9) and of a few margins
f_i - f_j:

* pruned95: LiPopt-3, product, exact-fgl (proved only when it closes in its budget), sampling, ascent;
* dense32: Shor SDP (matrix order 817), LiPopt-2, product, exact-fgl, sampling, ascent.

Local bounds around the first ``images`` test images: l_inf balls of radius eps in EPS intersected with
the pixel range [0, 1], for the margin between the true label and the runner-up logit (the largest other
logit of the network at the image), on pruned95: LiPopt-3, exact-fgl, sampling, ascent. The lipopt seed
of every cell is the first of ``seeds`` (default 0).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import methods as _methods
from .cells import Cell
from .config import Settings

NAME = "mnist"
MODELS = {"pruned95": "784-300-100-10 (95 % pruned)", "dense32": "784-32-10 (dense)"}
MARGINS = ((2, 0), (7, 2), (4, 9))
EPS = (0.01, 0.1)
IMAGES = 20
LIMITS = {"lp": 150.0, "exact-fgl": 30.0, "sdp": 120.0, "dense-exact-fgl": 10.0, "local": 60.0,
          "local-exact-fgl": 30.0}
SLOW = {"images": 50}
QUICK = {"outputs": (2,), "margins": (), "images": 1, "eps": (0.01,), "limit": 5.0}


def _specs(model: str, quick: bool, slow: bool) -> list[tuple]:
    """(method, degree, limit key) of the global cells of one model."""
    if model == "pruned95":
        specs = [("product", None, None), ("lp", 3, "lp"), ("exact-fgl", None, "exact-fgl")]
        if slow:
            specs.append(("sdp", None, "sdp"))
    else:
        sdps = [("sdp", None, "sdp")] + ([("sdp2", None, "sdp")] if "sdp2" in _methods.METHODS else [])
        specs = [("product", None, None), ("lp", 2, "lp")] + ([] if quick else sdps) + [
            ("exact-fgl", None, "dense-exact-fgl")]
    return specs + [("sampling", None, "exact-fgl"), ("ascent", None, "exact-fgl")]


def runner_up(model: str, n: int) -> list[tuple[int, int]]:
    """(true label, runner-up logit) of the first n test images under ``model``."""
    from ..datasets import mnist_model_path, mnist_test
    from ..model import load
    net = load(mnist_model_path(model))
    X, y = mnist_test(n)
    logits = net.forward(X)
    out = []
    for i in range(n):
        z = logits[i].copy()
        z[int(y[i])] = -np.inf
        out.append((int(y[i]), int(np.argmax(z))))
    return out


def build_cells(settings: Settings) -> list[Cell]:
    quick, slow = settings.quick, settings.slow
    seed = settings.pick_seeds((0,))[0]

    def limits(key):
        if quick:
            return settings.limits(QUICK["limit"])
        return settings.limits(LIMITS.get(key) or 60.0)

    outputs = QUICK["outputs"] if quick else tuple(range(10))
    margins = QUICK["margins"] if quick else MARGINS
    cells = []
    for model, desc in MODELS.items():
        net = {"kind": "mnist", "model": model}
        selections = [({"output": o}, f"logit {o}") for o in outputs] + \
                     [({"margin": list(m)}, f"margin {m[0]}-{m[1]}") for m in margins]
        for sel, out_label in selections:
            for method, degree, key in _specs(model, quick, slow):
                limit, budget = limits(key)
                cells.append(Cell(NAME, net, method, degree, selection=sel, seed=seed, time_limit=limit,
                                  budget=budget, labels={"network": f"{model} {desc}", "output": out_label,
                                                         "scope": "global", "model": model}))
    n_images = QUICK["images"] if quick else SLOW["images"] if slow else IMAGES
    eps_list = QUICK["eps"] if quick else EPS
    model = "pruned95"
    for i, (label, j) in enumerate(runner_up(model, n_images)):
        for eps in eps_list:
            dom = {"image": i, "eps": eps, "clip": [0.0, 1.0]}
            for method, degree, key in [("lp", 3, "local"), ("exact-fgl", None, "local-exact-fgl"),
                                        ("sampling", None, "local"), ("ascent", None, "local")]:
                limit, budget = limits(key)
                cells.append(Cell(NAME, {"kind": "mnist", "model": model}, method, degree,
                                  selection={"margin": [label, j]}, domain=dom, seed=seed, time_limit=limit,
                                  budget=budget,
                                  labels={"network": f"{model} {MODELS[model]}", "true_label": label,
                                          "output": f"margin {label}-{j} (label - runner-up)",
                                          "scope": f"linf eps={eps:g} image {i}", "model": model}))
    return cells


# -------------------------------------------------------------------------------------------------
# Report section


def section(rows: list[dict], meta: dict, out_dir) -> str:
    from . import plots
    from .report import (bounds_table, fmt, fmt_seconds, plot_link, run_line, sizes_table, soundness_line,
                         status_lines, table, times_table)
    from .rows import aggregate, method_order
    glob = [r for r in rows if r["scope"] == "global"]
    loc = [r for r in rows if r["scope"] != "global"]
    md = ["## Experiment `mnist`: shipped MNIST models and test images\n",
          "Global l_inf bounds of each logit and of a few margins f_i - f_j on `pruned95` (784-300-100-10, "
          "95 % pruned) and `dense32` (784-32-10); local bounds over l_inf balls (clipped to [0, 1]) around "
          "the first test images for the margin true label - runner-up logit, on `pruned95`.\n",
          run_line(meta), soundness_line(rows)]
    plot_dir = Path(out_dir) / "plots"
    if glob:
        by = ("network", "output")
        agg = aggregate(glob, by)
        confs = sorted(agg, key=lambda c: (c[0], not c[1].startswith("logit"), c[1]))
        methods = method_order(m for c in confs for m in agg[c])
        md += ["### Global bounds\n",
               "Value per method (× ratio to the best lower bound of the same function; exact FGL where "
               "exact-fgl proved it within its budget):\n",
               bounds_table(agg, confs, methods, ["model", "function"], "ratio_to_lower"),
               "\nSeconds per cell:\n", times_table(agg, confs, methods, ["model", "function"]),
               "\nSizes:\n", sizes_table(agg, confs, methods, ["model", "function"]),
               status_lines(glob)]
        for model in sorted({c[0] for c in confs}):
            mconfs = [c for c in confs if c[0] == model and c[1].startswith("logit")]
            if not mconfs:
                continue
            short = model.split(" ")[0]
            fname = f"mnist_global_{short}.png"
            ok = plots.bar_plot(plot_dir / fname, [c[1] for c in mconfs],
                                {m: [agg[c].get(m, {}).get("value") for c in mconfs] for m in methods},
                                f"{model}: global l_inf bound per logit", "bound (log scale)", logy=True)
            md.append(plot_link(ok, f"plots/{fname}", f"{short} global bounds"))
            fname = f"mnist_time_{short}.png"
            ok = plots.bar_plot(plot_dir / fname, [c[1] for c in mconfs],
                                {m: [agg[c].get(m, {}).get("seconds") for c in mconfs] for m in methods},
                                f"{model}: seconds per method and logit (log scale)", "seconds", logy=True)
            md.append(plot_link(ok, f"plots/{fname}", f"{short} run time"))
    if loc:
        md.append("### Local bounds (margin true label - runner-up)\n")
        for r in loc:
            r["eps_key"] = f"eps={r['eps']:g}"
        agg = aggregate(loc, ("eps_key",))
        confs = sorted(agg)
        methods = method_order(m for c in confs for m in agg[c])
        md += ["Mean over the images (× mean ratio to the exact local FGL where proved):\n",
               bounds_table(agg, confs, methods, ["radius"]),
               "\nSeconds per cell (mean):\n", times_table(agg, confs, methods, ["radius"]),
               "\nSizes (mean):\n", sizes_table(agg, confs, methods, ["radius"])]
        per = {}
        for r in loc:
            per.setdefault((r["image"], r["eps"]), {})[r["method_name"]] = r
            per[(r["image"], r["eps"])]["_row"] = r
        body, closed, n_lp = [], 0, 0
        xs, ys = [], []
        for (img, eps), d in sorted(per.items()):
            base = d["_row"]
            lp, ex = d.get("LiPopt-3"), d.get("exact-fgl")
            lows = [d[m]["lower"] for m in ("sampling", "ascent") if m in d and d[m]["lower"] is not None]
            best = max(lows) if lows else None
            if lp is not None and lp["upper"] is not None:
                n_lp += 1
                if best is not None and lp["upper"] <= best * (1 + 1e-6):
                    closed += 1
                if best is not None:
                    xs.append(best)
                    ys.append(lp["upper"])
            body.append([img, base["true_label"], base["output"].split(" ")[1], f"{eps:g}",
                         fmt(lp["upper"]) if lp and lp["upper"] is not None else (lp["status"] if lp else ""),
                         fmt(base["exact"]), fmt(best),
                         f"{lp['upper'] / best:.4f}" if lp and lp["upper"] is not None and best else "-",
                         f"{lp['lp_columns']:,}" if lp and lp["lp_columns"] else "-",
                         fmt_seconds(lp["seconds"]) if lp else "",
                         fmt_seconds(ex["seconds"]) if ex else ""])
        md.append(f"\nLiPopt-3 matched the best lower bound (to 1e-6 relative: the local Lipschitz constant "
                  f"is known) in {closed} of {n_lp} local cells with a LiPopt-3 bound.\n")
        md.append(table(["image", "label", "margin", "eps", "LiPopt-3", "exact FGL", "best lower",
                         "LiPopt-3 / lower", "LP columns", "LiPopt-3 s", "exact-fgl s"], body))
        md.append(status_lines(loc))
        if xs:
            ok = plots.scatter_plot(plot_dir / "mnist_local.png", {"LiPopt-3": (xs, ys)},
                                    "Local margin bounds: LiPopt-3 vs best lower bound", "best lower bound",
                                    "LiPopt-3 (certified)")
            md.append(plot_link(ok, "plots/mnist_local.png", "local bounds"))
    return "\n".join(md)

