"""Networks and domains of the experiment cells, built from their JSON specs.

* ``{"kind": "random", "widths", "band", "seed"}``: ``lipopt.model.random.random_network`` (numpy RNG,
  PyTorch's default init with bias, band mask on every layer but the last).
* ``{"kind": "chen2020", "widths", "band", "seed"}``: the networks of Chen et al. (2020) themselves
  (``lipopt.model.random.torch_random_network``: ``torch.manual_seed(seed)``, ``nn.Linear`` layers in
  order, the band mask |i - j| <= (s - 1) / 2 on every layer but the last). Needs PyTorch; the
  published per-seed numbers refer to these networks.
* ``{"kind": "mnist", "model"}``: a shipped MNIST model (``lipopt.datasets.mnist_model_path``).

Domains: None (global) or ``{"image": i, "eps": r, "clip": [lo, hi]}``, the l_inf ball of radius r
around MNIST test image i intersected with the box [lo, hi].
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
    raise ValueError(f"unknown network kind {kind!r}")


def build_domain(domain: dict | None):
    """None (global) or the clipped l_inf ball around an MNIST test image."""
    if domain is None:
        return None
    from ..datasets import mnist_test
    from ..domain import Ball
    X, _ = mnist_test(int(domain["image"]) + 1)
    clip = tuple(domain["clip"]) if domain.get("clip") is not None else None
    return Ball(X[int(domain["image"])], float(domain["eps"]), p="inf", clip=clip)
