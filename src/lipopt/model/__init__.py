"""Network representation and loaders (npz, PyTorch, ONNX)."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

from ..errors import InvalidInputError
from .activations import ACTIVATIONS, Activation
from .graph import GraphNetwork
from .network import Network, build_network, output_vector
from .npz import load_npz, save_npz
from .safety import clean_errors


@clean_errors
def load(source, *, input_shape=None, trust_code: bool = False, allow_pickle: bool | None = None) -> Network:
    """Load a Network from a file (.npz, .onnx, .pt/.pth), a torch nn.Module, or return a Network as is.

    Reading a file runs no code from it: a TorchScript archive (torch.jit.load runs its code) or a pickled
    nn.Module (torch.load(weights_only=False) unpickles arbitrary objects) is refused unless
    ``trust_code=True`` (then a warning says so); ``allow_pickle`` is a deprecated alias of ``trust_code``.
    Zip archives are CRC-checked, sizes are checked before reading, arrays must be real and finite; every
    problem is one InvalidInputError with a one-line message. ``input_shape`` (no batch dim, e.g.
    (1, 28, 28)) is needed by convolutional torch models unless a Linear layer fixes it.
    """
    if allow_pickle is not None:
        warnings.warn("load(allow_pickle=...) is deprecated, use trust_code=...", DeprecationWarning,
                      stacklevel=3)
        trust_code = bool(trust_code or allow_pickle)
    if isinstance(source, (Network, GraphNetwork)):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        suffix = path.suffix.lower()
        if suffix == ".npz":
            return load_npz(path)
        if suffix == ".onnx":
            from .onnx_loader import load_onnx
            try:
                return load_onnx(path, input_shape=input_shape)
            except InvalidInputError as exc:  # residual / concat / max pooling: the graph loader (graph.py)
                if not _graph_refusal(exc):
                    raise
                from .graph_onnx import load_onnx_graph
                return load_onnx_graph(path, input_shape=input_shape)
        if suffix in (".pt", ".pth"):
            from .torch_files import load_torch_file
            return load_torch_file(path, input_shape=input_shape, trust_code=trust_code)
        raise InvalidInputError(
            f"{path}: unsupported model file type {path.suffix!r} (supported: .npz, .onnx, .pt, .pth)")
    torch = sys.modules.get("torch")  # a torch object can only exist if torch is imported
    if torch is not None and isinstance(source, torch.nn.Module):
        from .torch_loader import from_torch
        try:
            return from_torch(source, input_shape=input_shape)
        except InvalidInputError as exc:
            if not _graph_refusal(exc):
                raise
            from .graph_fx import graph_from_torch
            return graph_from_torch(source, input_shape=input_shape)
    raise InvalidInputError(f"cannot load a model from {type(source).__name__}")


def _graph_refusal(exc: Exception) -> bool:
    """The chain loaders refused only because of graph structure or max pooling."""
    msg = str(exc).lower()
    return "straight-line" in msg or "maxpool" in msg or "max_pool" in msg


__all__ = ["ACTIVATIONS", "Activation", "GraphNetwork", "Network", "build_network", "load", "load_npz",
           "output_vector", "save_npz"]
