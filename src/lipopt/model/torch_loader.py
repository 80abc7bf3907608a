"""PyTorch nn.Sequential of Linear and activation modules -> Network (torch is optional)."""
from __future__ import annotations

from ..errors import InvalidInputError
from .network import Network, build_network

_ACTIVATION_MODULES = {"ReLU": "relu"}


def from_torch(module) -> Network:
    try:
        import torch.nn as nn
    except ImportError:  # pragma: no cover - depends on the environment
        raise InvalidInputError("PyTorch is not installed: pip install 'lipopt[torch]'") from None
    if not isinstance(module, nn.Sequential):
        raise InvalidInputError(f"expected a torch.nn.Sequential, got {type(module).__name__}")
    weights, biases, acts, unsupported = [], [], [], []
    pending_act = None
    for name, layer in module.named_children():
        kind = type(layer).__name__
        if isinstance(layer, nn.Linear):
            if weights and pending_act is None:
                unsupported.append(f"{name} (Linear after Linear without activation)")
            if pending_act is not None:
                acts.append(pending_act)
                pending_act = None
            W = layer.weight.detach().cpu().double().numpy()
            b = (layer.bias.detach().cpu().double().numpy() if layer.bias is not None
                 else __import__("numpy").zeros(W.shape[0]))
            weights.append(W)
            biases.append(b)
        elif kind in _ACTIVATION_MODULES:
            if not weights or pending_act is not None:
                unsupported.append(f"{name} ({kind} not preceded by an affine layer)")
            pending_act = _ACTIVATION_MODULES[kind]
        elif isinstance(layer, (nn.Identity, nn.Dropout, nn.Flatten)):
            continue
        else:
            unsupported.append(f"{name} ({kind})")
    if pending_act is not None:
        unsupported.append("final activation (the last layer must be affine)")
    if unsupported:
        raise InvalidInputError("unsupported layers: " + "; ".join(unsupported))
    if not weights:
        raise InvalidInputError("the module has no Linear layer")
    return build_network(weights, biases, acts, source=type(module).__name__)
