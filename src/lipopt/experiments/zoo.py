"""Experiment "zoo": trained networks of the model zoo, every registry method and the peer tools side by side.

Networks: every model of ``zoo_manifest()`` (``lipopt.datasets``; $LIPOPT_ZOO_MANIFEST names another
zoo.json). Function: the margin f_label - f_runner-up at each of the first IMAGES test images
(runner-up = the network's largest other logit there). Scopes per image (SCOPES):

* global: norms l_inf, l2, l1;
* local, clipped to the pixel range [0, 1]: l_inf balls of radius 0.01 and 0.1 (norm l_inf); an l2 ball
  (norm l2) of radius L2_RADIUS: 0.5 on MNIST (784 pixels; ~1/20 of a test image's l2 norm ~9) and 0.15
  on digits (64 pixels: 0.5 scaled by sqrt(64/784)).

Methods per (network, image, scope): on the first DETAIL_IMAGES image(s) every upper-bound method of the
registry, in its order, and ECLipsE / ECLipsE-Fast (``peers``, eclipse-nn, when installed) on the global
l2 scope; on the other images the HEADLINE methods (product, auto); on all, the lower bound ``ascent``. Screening in this process, from shapes only, before any cell starts:
``Capabilities.refuse`` and the method's ``precheck`` (InvalidInputError -> status "refused" with the
registry's sentence; the LP's time precheck -> "skipped"), auto's shape estimate for lp / sdp / sdp2 /
lipsdp (over the limit -> "skipped"), and the MIP only with at most MIP_FREE free neurons. A network
that does not load gets a "refused" row per scope and method with the loader's reason.

Limits (lipopt's time limit; hard budget limit * 1.25 + 10 s, ascent's LOWER_BUDGET): auto 15 s, the other
upper methods 8 s, ascent 5 s (the cell runner's cap for lower bounds), peers 60 s; ``--slow``: auto 60 s,
others 20 s, 5 images, every method on every image. Cells fork from a forkserver with lipopt imported
(~0.5 s of process overhead each).

Plan of the full run (15 networks, 2 images, jobs=2), from build_cells on the shipped zoo: 1,560 cells;
the screening (45 s in this process) refuses 579 and skips 111; 870 run: product, auto and ascent on
each of the 180 (network, image, scope) functions, and on image 0 the other applicable methods
(interval 90, lifted-lp 72, compose 66, exact-fgl 24, l2-fast 24, l2-opt 24, MIP 9, lp 4, sdp 1) and
the peers (16). Measured on mlp64, mlp1024x2 and cnn_bn (all their 184 cells, 20/10/10 s limits, a
2-core machine at load ~6): 1,340 s wall, cells' walls summing to 2,535 s; mean wall per cell product
1.1 s, interval 1.4, compose 7.0, ascent 8.3, lifted-lp 9.4, exact-fgl 10.1, auto 14.8 (it stops
early once it proves the FGL; big nets overrun to 23-34 s). With 15 / 8 s limits: about 180 x 17
(auto) + 180 x 6 (ascent) + 330 x 7.5 (other methods) + 270 x 1 (product, interval) + 16 x 20 (peers)
~ 7,200 cell-seconds, ~60 min at jobs=2.

``--quick``: mlp64, digits32x6 and lenet5, 1 image, scopes l_inf global, l_inf r=0.1, l2 global, methods
product, exact-fgl and auto (+ ascent, ECLipsE-Fast), 3 s limits.
"""
from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError, SolverFailure
from ..methods.auto import AUTO_MIP_FREE
from .cells import Cell
from .config import Settings
from .networks import build_domain, build_network, test_images, zoo_manifest

NAME = "zoo"
IMAGES = 2
SLOW_IMAGES = 5
L2_RADIUS = {"mnist": 0.5, "digits": 0.15}
# (column, norm, l_inf radius / "l2" / None): the headline's columns in order
SCOPES = (("l_inf global", "inf", None), ("l_inf r=0.01", "inf", 0.01), ("l_inf r=0.1", "inf", 0.1),
          ("l2 global", "2", None), ("l2 local", "2", "l2"), ("l1 global", "1", None))
LIMITS = {"auto": 15.0, "upper": 8.0, "lower": 10.0, "peer": 60.0}
SLOW_LIMITS = {"auto": 60.0, "upper": 20.0, "lower": 10.0, "peer": 60.0}
HEADLINE = ("product", "auto")   # on every image; the other methods on the first DETAIL_IMAGES
DETAIL_IMAGES = 1
LOWER_BUDGET = 30.0  # seconds: the lower bound's hard budget (its lipopt limit is the cell runner's 5 s)
MIP_FREE = AUTO_MIP_FREE   # the activation-consistent MIP only with at most this many free neurons (auto's rule)
LOWER = "ascent"
QUICK = {"models": ("mlp64", "digits32x6", "lenet5"), "images": 1, "limit": 3.0,
         "scopes": ("l_inf global", "l_inf r=0.1", "l2 global"), "peers": ("ECLipsE-Fast",),
         "methods": ("product", "exact-fgl", "auto")}


def scope_label(column: str, dataset: str) -> str:
    """The CSV's scope: the column name, with the radius for the l2 ball."""
    return f"l2 r={L2_RADIUS[dataset]:g}" if column == "l2 local" else column


def column_of(scope: str) -> str:
    return "l2 local" if scope.startswith("l2 r=") else scope


def _models(manifest: dict, quick: bool) -> list[str]:
    names = list(manifest["models"])
    if not quick:
        return names
    chosen = [m for m in QUICK["models"] if m in manifest["models"]]
    if any(manifest["models"][m].get("loads", True) for m in chosen):
        return chosen
    loads = [m for m in names if manifest["models"][m].get("loads", True)]   # another manifest
    return loads[:2] + [m for m in names if not manifest["models"][m].get("loads", True)][:1]


def _network_label(name: str, entry: dict) -> str:
    acc = entry.get("test_accuracy")
    return f"{name} ({entry.get('architecture', '?')}" + (f", acc {acc:.3f})" if acc is not None else ")")


def _runner_up(net, X, y) -> list[tuple[int, int]]:
    logits = net.forward(X)
    out = []
    for i in range(len(y)):
        z = np.array(logits[i], dtype=np.float64)
        z[int(y[i])] = -np.inf
        out.append((int(y[i]), int(np.argmax(z))))
    return out


def screen(method: str, problem, limit: float) -> tuple[str, str] | None:
    """(status, reason) when ``method`` need not run on ``problem`` (shapes only), else None."""
    from ..methods.auto import estimate
    from ..methods.registry import METHODS
    m = METHODS[method]
    why = m.capabilities.refuse(problem)
    if why is not None:
        return "refused", f"{method} {why}"
    if m.precheck is not None:
        try:
            m.precheck(problem, {"time_limit": limit})
        except InvalidInputError as exc:
            return "refused", f"{method}: {exc}"
        except SolverFailure as exc:
            return "skipped", f"{method}: {exc}"
        except Exception as exc:  # noqa: BLE001 - a bug of the precheck: recorded, not run, not hidden
            return "error", f"{method}: the registry's precheck raised {type(exc).__name__}: {exc}"
    if method in ("lp", "sdp", "sdp2", "lipsdp"):
        try:
            est = estimate(problem, method, {})
        except Exception as exc:  # noqa: BLE001 - as above
            return "error", f"{method}: auto's shape estimate raised {type(exc).__name__}: {exc}"
        if est is None or est > limit:
            return "skipped", (f"{method}: too large for its {limit:g} s limit (auto's shape estimate "
                               + ("over its size cap)" if est is None else f"{est:,.0f} s)"))
    if method == "exact" and problem.free_neurons > MIP_FREE:
        return "skipped", f"exact (MIP): {problem.free_neurons} free neurons > {MIP_FREE}, hopeless in {limit:g} s"
    return None


def build_cells(settings: Settings) -> list[Cell]:
    from ..api import make_problem
    from ..methods.registry import upper_methods
    from ..model import output_vector
    from . import peers
    quick, seed = settings.quick, settings.pick_seeds((0,))[0]
    manifest = zoo_manifest()
    n_images = QUICK["images"] if quick else SLOW_IMAGES if settings.slow else IMAGES
    scopes = [s for s in SCOPES if not quick or s[0] in QUICK["scopes"]]
    have_peers = peers.installed()

    def limits(kind):  # quick: short limits, but a peer cell's limit covers importing torch on a busy machine
        return settings.limits(QUICK["limit"] if quick and kind != "peer" else
                               (SLOW_LIMITS if settings.slow else LIMITS)[kind])

    cells = []
    for name in _models(manifest, quick):
        entry = manifest["models"][name]
        spec, dataset = {"kind": "zoo", "model": name}, entry.get("dataset", "mnist")
        base = {"network": _network_label(name, entry), "model": name}

        def add(method, sel, dom, label_extra, kind, skip=None, degree=None, **kw):
            limit, budget = limits(kind)
            if kind == "lower":  # ascent overran its 5 s to 13-25 s on mlp1024x2 / cnn_bn: keep the gap's lower bound
                budget = max(budget, LOWER_BUDGET)
            labels = {**base, **label_extra}
            if skip is not None:
                labels.update({"skip_status": skip[0], "skip": skip[1]})
            cells.append(Cell(NAME, spec, method, degree, selection=sel, domain=dom, seed=seed, time_limit=limit,
                              budget=budget, labels=labels, **kw))
        try:
            net = build_network(spec)
            X, y = test_images(dataset, n_images)
            margins = _runner_up(net, X, y)
        except Exception as exc:  # noqa: BLE001 - the loader's reason, whatever it is, is the row's reason
            why = f"does not load: {' '.join(str(exc).split()) or type(exc).__name__}"
            if not entry.get("loads", True) and entry.get("load_error"):
                why = f"does not load: {entry['load_error']}"
            for column, _, _ in scopes:  # every method that would have run on the first image: refused
                for method in [m for m in upper_methods() if not quick or m in QUICK["methods"]] + [LOWER]:
                    add(method, None, None, {"scope": scope_label(column, dataset), "output": "-"}, "upper",
                        skip=("refused", why))
            continue
        for i, (label, j) in enumerate(margins):
            sel = {"margin": [label, j]}
            vec = output_vector(net, None, (label, j), None)
            out = {"output": f"image {i}: margin {label}-{j}", "true_label": label}
            for column, norm, radius in scopes:
                dom = None
                if radius is not None:
                    r, p = (L2_RADIUS[dataset], "2") if radius == "l2" else (radius, "inf")
                    dom = {"dataset": dataset, "image": i, "eps": r, "p": p, "clip": [0.0, 1.0]}
                lab = {**out, "scope": scope_label(column, dataset)}
                opts = {} if norm == "inf" else {"norm": norm}
                detail = i < DETAIL_IMAGES or settings.slow   # every method; else the headline's cells only
                problem, why = None, None
                try:
                    if detail or quick:  # the screening needs the problem (local: its derivative ranges)
                        problem = make_problem(net, vec, norm, build_domain(dom), "linear", {})
                except (InvalidInputError, SolverFailure, MemoryError) as exc:  # lipopt refuses the network here
                    why = ("refused", " ".join(f"{type(exc).__name__}: {exc}".split()))
                except Exception as exc:  # noqa: BLE001 - a lipopt bug on this network: recorded for every method
                    why = ("error", " ".join(f"building the problem raised {type(exc).__name__}: {exc}".split()))
                for method in [m for m in upper_methods() if m in (QUICK["methods"] if quick else HEADLINE
                                                                   if not detail else upper_methods())]:
                    kind = "auto" if method == "auto" else "upper"
                    add(method, sel, dom, lab, kind, options=opts,
                        skip=why if problem is None else screen(method, problem, limits(kind)[0]),
                        degree=max(3, net.depth + 1) if method == "lp" else None)
                add(LOWER, sel, dom, lab, "lower", options=opts)
                if column != "l2 global" or not detail:
                    continue
                for peer in (QUICK["peers"] if quick else tuple(peers.PEER_METHODS)):
                    why = peers.refuse(peer, net, entry.get("family"))
                    skip = (("skipped", "eclipse-nn is not installed (pip install lipopt[peers])") if not have_peers
                            else ("refused", why) if why else None)
                    add(peer, sel, None, lab, "peer", skip=skip, options=opts)
    return cells


def section(rows: list[dict], meta: dict, out_dir) -> str:
    from .zoo_report import zoo_section
    return zoo_section(rows, meta, out_dir)
