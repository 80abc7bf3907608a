"""Network representation and loaders (npz, PyTorch)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InvalidInputError
from .activations import ACTIVATIONS, Activation
from .network import Network, build_network, output_vector
from .npz import load_npz, save_npz


def load(source) -> Network:
    """Load a Network from an npz path, a torch nn.Sequential, or return a Network as is."""
    if isinstance(source, Network):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix == ".npz":
            return load_npz(path)
        raise InvalidInputError(f"{path}: unsupported model file type {path.suffix!r} (supported: .npz)")
    torch = sys.modules.get("torch")  # a torch object can only exist if torch is imported
    if torch is not None and isinstance(source, torch.nn.Module):
        from .torch_loader import from_torch
        return from_torch(source)
    raise InvalidInputError(f"cannot load a model from {type(source).__name__}")


__all__ = ["ACTIVATIONS", "Activation", "Network", "build_network", "load", "load_npz",
           "output_vector", "save_npz"]
