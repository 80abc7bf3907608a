"""Network representation and loaders (npz, PyTorch, ONNX)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InvalidInputError
from .activations import ACTIVATIONS, Activation
from .network import Network, build_network, output_vector
from .npz import load_npz, save_npz


def load(source, *, input_shape=None, allow_pickle: bool = False) -> Network:
    """Load a Network from a file (.npz, .onnx, .pt/.pth), a torch nn.Module, or return a Network as is.

    ``input_shape`` (no batch dim, e.g. (1, 28, 28)) is needed by convolutional torch models unless a
    Linear layer fixes it. ``.pt``/``.pth``: TorchScript archives are read safely; a pickled module is only
    unpickled (which can run arbitrary code) with ``allow_pickle=True``; a bare state dict is rejected.
    """
    if isinstance(source, Network):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        suffix = path.suffix.lower()
        if suffix == ".npz":
            return load_npz(path)
        if suffix == ".onnx":
            from .onnx_loader import load_onnx
            return load_onnx(path, input_shape=input_shape)
        if suffix in (".pt", ".pth"):
            from .torch_loader import load_torch_file
            return load_torch_file(path, input_shape=input_shape, allow_pickle=allow_pickle)
        raise InvalidInputError(
            f"{path}: unsupported model file type {path.suffix!r} (supported: .npz, .onnx, .pt, .pth)")
    torch = sys.modules.get("torch")  # a torch object can only exist if torch is imported
    if torch is not None and isinstance(source, torch.nn.Module):
        from .torch_loader import from_torch
        return from_torch(source, input_shape=input_shape)
    raise InvalidInputError(f"cannot load a model from {type(source).__name__}")


__all__ = ["ACTIVATIONS", "Activation", "Network", "build_network", "load", "load_npz",
           "output_vector", "save_npz"]
