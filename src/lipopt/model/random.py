"""Random test networks: PyTorch's default Linear initialisation, optional banded masks.

W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch.nn.Linear's kaiming_uniform(a=sqrt(5)) default);
a band of size s keeps W[i, j] with |i - j| <= (s - 1) / 2 on every layer but the last, as in the
random sparse benchmark of Chen, Lasserre, Magron & Pauwels (2020). numpy's RNG, seeded.
"""
from __future__ import annotations

import numpy as np

from .network import Network, build_network


def band_mask(n_out: int, n_in: int, s: int) -> np.ndarray:
    i, j = np.ogrid[:n_out, :n_in]
    return np.abs(i - j) <= (s - 1) / 2


def random_network(widths, band: int | None = None, seed: int = 0, bias: bool = True) -> Network:
    """ReLU network with layer widths ``widths`` = (n_0, ..., n_L)."""
    rng = np.random.default_rng(seed)
    Ws, bs = [], []
    for l in range(len(widths) - 1):
        bound = 1.0 / np.sqrt(widths[l])
        W = rng.uniform(-bound, bound, (widths[l + 1], widths[l]))
        b = rng.uniform(-bound, bound, widths[l + 1]) if bias else np.zeros(widths[l + 1])
        if band is not None and l < len(widths) - 2:
            W = W * band_mask(widths[l + 1], widths[l], band)
        Ws.append(W)
        bs.append(b)
    return build_network(Ws, bs)


def torch_random_network(widths, band: int | None = None, seed: int = 0) -> Network:
    """The networks of Chen et al.'s published benchmark, bit for bit: ``torch.manual_seed(seed)``, then
    one ``torch.nn.Linear`` (default init, with bias) per layer in forward order, the band mask applied
    to every layer but the last after initialisation; float32 weights widened to float64. The global
    torch RNG state is restored afterwards. Needs PyTorch (``pip install lipopt[torch]``)."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is an optional extra
        from ..errors import InvalidInputError
        raise InvalidInputError("the published benchmark's networks come from PyTorch's RNG; "
                                "install it with pip install lipopt[torch]") from exc
    Ws, bs = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        layers = [torch.nn.Linear(widths[l], widths[l + 1], bias=True) for l in range(len(widths) - 1)]
    for l, lin in enumerate(layers):
        W = lin.weight.detach().numpy().astype(np.float64)
        if band is not None and l < len(widths) - 2:
            W = W * band_mask(widths[l + 1], widths[l], band)
        Ws.append(W)
        bs.append(lin.bias.detach().numpy().astype(np.float64))
    return build_network(Ws, bs)
