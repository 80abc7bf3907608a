"""Networks and domains of the experiment cells, built from their JSON specs.

* ``{"kind": "random", "widths", "band", "seed"}``: ``lipopt.model.random.random_network`` (numpy RNG,
  PyTorch's default init with bias, band mask on every layer but the last).
* ``{"kind": "chen2020", "widths", "band", "seed"}``: the networks of Chen et al. (2020) themselves
  (``lipopt.model.random.torch_random_network``: ``torch.manual_seed(seed)``, ``nn.Linear`` layers in
  order, the band mask |i - j| <= (s - 1) / 2 on every layer but the last). Needs PyTorch; the
  published per-seed numbers refer to these networks.
* ``{"kind": "mnist", "model"}``: a shipped MNIST model (``lipopt.datasets.mnist_model_path``).
* ``{"kind": "zoo", "model"}``: a network of the model zoo (``zoo_manifest``; npz when shipped, else ONNX).

Domains: None (global) or ``{"image": i, "eps": r, "clip": [lo, hi]}``, the l_inf ball of radius r
around MNIST test image i intersected with the box [lo, hi]; optional ``"dataset"`` ("mnist" or
"digits": whose test images) and ``"p"`` ("inf" or "2": the ball's norm).
"""
from __future__ import annotations

import numpy as np


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def materialize(net: dict) -> dict | None:
    """Weights and biases of a "chen2020" spec as numpy arrays (built with torch here, so that cell
    processes need not import torch); None for the other kinds (cheap to build anywhere)."""
    if net["kind"] != "chen2020":
        return None
    from ..model.random import torch_random_network
    built = torch_random_network(tuple(net["widths"]), band=net.get("band"), seed=int(net["seed"]))
    return {"weights": [_dense(W) for W in built.weights], "biases": [np.asarray(b) for b in built.biases]}


def _dense(W):
    return W.toarray() if hasattr(W, "toarray") else np.asarray(W)


def build_network(net: dict, arrays: dict | None = None):
    """The lipopt Network of a cell's ``net`` spec (from ``arrays`` = materialize(net) when given)."""
    from ..model import build_network as from_arrays
    from ..model import load
    if arrays is not None:
        return from_arrays(arrays["weights"], arrays["biases"], source=f"{net['kind']} network")
    kind = net["kind"]
    if kind == "random":
        from ..model.random import random_network
        return random_network(tuple(net["widths"]), band=net.get("band"), seed=int(net["seed"]))
    if kind == "chen2020":
        from ..model.random import torch_random_network
        return torch_random_network(tuple(net["widths"]), band=net.get("band"), seed=int(net["seed"]))
    if kind == "mnist":
        from ..datasets import mnist_model_path
        return load(mnist_model_path(net["model"]))
    if kind == "zoo":
        return load(zoo_path(net["model"]))
    raise ValueError(f"unknown network kind {kind!r}")


def build_domain(domain: dict | None):
    """None (global) or the (clipped) l_inf or l2 ball around a test image."""
    if domain is None:
        return None
    from ..domain import Ball
    X, _ = test_images(domain.get("dataset", "mnist"), int(domain["image"]) + 1)
    clip = tuple(domain["clip"]) if domain.get("clip") is not None else None
    return Ball(X[int(domain["image"])], float(domain["eps"]), p=domain.get("p", "inf"), clip=clip)


def test_images(dataset: str, n: int):
    """(X, y): the first n test images (rows in [0, 1]) and labels of "mnist" or "digits"."""
    from .. import datasets
    if dataset == "mnist":
        return datasets.mnist_test(n)
    if dataset == "digits":
        return datasets.digits_test(n)
    raise ValueError(f"unknown dataset {dataset!r}")


ZOO_ENV = "LIPOPT_ZOO_MANIFEST"   # path of another zoo.json (model paths relative to its folder)


def zoo_manifest() -> dict:
    """The model zoo's manifest {"models": {name: entry}}: the file named by $LIPOPT_ZOO_MANIFEST (your own
    models, e.g. before the zoo is shipped), else ``lipopt.datasets.zoo_manifest()``."""
    import json
    import os
    from pathlib import Path
    path = os.environ.get(ZOO_ENV)
    if not path:
        from ..datasets import zoo_manifest as shipped
        return shipped()
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    for entry in data["models"].values():
        for fmt in ("onnx", "npz"):
            if entry.get(fmt):
                entry[fmt] = str(Path(path).parent / entry[fmt])   # absolute paths stay absolute
    return data


def zoo_path(name: str):
    """The file a zoo network is loaded from: its npz when shipped (plain affine layers, loads fastest),
    else its ONNX file."""
    entry = zoo_manifest()["models"][name]
    fmt = "npz" if entry.get("npz") else "onnx"
    import os
    if os.environ.get(ZOO_ENV):
        return entry[fmt]
    from ..datasets import zoo_model_path
    return zoo_model_path(name, fmt=fmt)
