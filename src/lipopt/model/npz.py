"""npz model format: arrays W0, b0, ..., W{L-1}, b{L-1} (W of shape (out, in)) and optional
string array ``activations`` (one per hidden layer, default ReLU)."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError
from .network import Network, build_network


def load_npz(path: str | Path) -> Network:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InvalidInputError(f"{path}: not a readable npz model ({exc})") from None
    return network_from_arrays(arrays, source=str(path))


def network_from_arrays(arrays: dict[str, np.ndarray], source: str = "model") -> Network:
    layer_ids = sorted(int(m.group(1)) for k in arrays if (m := re.fullmatch(r"W(\d+)", k)))
    if not layer_ids:
        raise InvalidInputError(f"{source}: no weight arrays W0, W1, ... found (has: {', '.join(arrays) or 'nothing'})")
    if layer_ids != list(range(len(layer_ids))):
        missing = sorted(set(range(max(layer_ids) + 1)) - set(layer_ids))
        raise InvalidInputError(f"{source}: missing weight array(s) {', '.join(f'W{i}' for i in missing)}")
    missing_b = [f"b{i}" for i in layer_ids if f"b{i}" not in arrays]
    if missing_b:
        raise InvalidInputError(f"{source}: missing bias array(s) {', '.join(missing_b)}")
    acts = None
    if "activations" in arrays:
        a = arrays["activations"]
        if a.dtype.kind not in "US":
            raise InvalidInputError(f"{source}: 'activations' must be a string array, got dtype {a.dtype}")
        acts = [str(s) for s in np.atleast_1d(a)]
    return build_network([arrays[f"W{i}"] for i in layer_ids], [arrays[f"b{i}"] for i in layer_ids],
                         acts, source=source)


def save_npz(net: Network, path: str | Path) -> None:
    """Write ``net`` in the npz model format (dense arrays)."""
    out = {}
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        out[f"W{l}"] = W.toarray()
        out[f"b{l}"] = b
    out["activations"] = np.array([a.name for a in net.activations], dtype="U16")
    np.savez(path, **out)
