"""npz model format: arrays W0, b0, ..., W{L-1}, b{L-1} (W of shape (out, in)) and optional
string array ``activations`` (one per hidden layer, default ReLU). Each string is an activation spec
``name[:p1[:p2]]`` (model.activations.check_activation, case-insensitive): relu, leaky_relu[:slope]
(any finite slope, default 0.01, e.g. "leaky_relu:0.2"), elu[:alpha], softplus[:beta], tanh, sigmoid,
hardtanh[:min:max] (default -1:1, e.g. "hardtanh:-1:1"), relu6, gelu, gelu_tanh, silu (or swish).

Read without numpy.load: every member's .npy header is parsed first and its declared shape x itemsize checked
against safety.MEMORY_BUDGET and its dtype against the real numeric kinds, so a forged header is refused
before any data is read; then each member is read whole (zipfile verifies its CRC-32) and viewed as an array.
"""
from __future__ import annotations

import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format

from ..errors import InvalidInputError
from .network import Network, build_network
from .safety import (check_budget, check_dtype, clean_errors, declared_elements, first_line, human_bytes,
                     open_zip)

NPY_MAGIC = b"\x93NUMPY"
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError,
                ValueError, struct.error, SyntaxError)


@clean_errors
def load_npz(path: str | Path) -> Network:
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    with path.open("rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head == NPY_MAGIC:
        raise InvalidInputError(f"{path}: holds a single .npy array, not an .npz archive of arrays W0, b0, "
                                f"W1, b1, ...; save the model with numpy.savez(path, W0=..., b0=..., ...)")
    with open_zip(path, str(path), "a readable npz archive (a zip of .npy arrays)") as z:
        arrays = read_npz_arrays(z, str(path))
    return network_from_arrays(arrays, source=str(path))


def read_npz_arrays(z: zipfile.ZipFile, source: str) -> dict[str, np.ndarray]:
    """All arrays of an open npz archive, keyed like numpy.load (member name without '.npy')."""
    headers = {}
    total = 0
    for info in z.infolist():
        if info.is_dir():
            continue
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        if key in headers:
            raise InvalidInputError(f"{source}: array {key!r} appears twice in the archive")
        shape, fortran, dtype, offset = _header(z, info, source)
        check_dtype(dtype, f"{source}: {key}", allow_strings=key == "activations")
        if any(s < 0 for s in shape):
            raise InvalidInputError(f"{source}: {key} declares a negative size in shape {shape}")
        n = declared_elements(shape)
        # the loader converts weights to float64, so count at least 8 bytes per element
        total += n * max(dtype.itemsize, 8)
        check_budget(total, f"{source}: {key} (shape {shape}, dtype {dtype})")
        if info.file_size != offset + n * dtype.itemsize:
            raise InvalidInputError(
                f"{source}: {key} is truncated or padded: its header declares {human_bytes(n * dtype.itemsize)} "
                f"of data (shape {shape}, dtype {dtype}) but the member holds {human_bytes(info.file_size - offset)}")
        headers[key] = (info, shape, fortran, dtype, offset, n)
    arrays = {}
    for key, (info, shape, fortran, dtype, offset, n) in headers.items():
        try:
            data = z.read(info)  # to the end: zipfile compares the CRC-32
        except _READ_ERRORS as exc:
            raise InvalidInputError(f"{source}: archive member {info.filename!r} is corrupted or unreadable "
                                    f"({first_line(exc)})") from None
        if len(data) != offset + n * dtype.itemsize:  # the zip directory lied about the size
            raise InvalidInputError(f"{source}: archive member {info.filename!r} has an inconsistent size")
        flat = np.frombuffer(data, dtype=dtype, count=n, offset=offset) if n else np.empty(0, dtype)
        arrays[key] = flat.reshape(shape, order="F" if fortran else "C")
    return arrays


def _header(z: zipfile.ZipFile, info: zipfile.ZipInfo, source: str):
    """(shape, fortran_order, dtype, data offset) from a member's .npy header (only the header is read)."""
    try:
        with z.open(info) as f:
            if f.read(len(NPY_MAGIC)) != NPY_MAGIC:
                raise InvalidInputError(f"{source}: archive member {info.filename!r} is not a .npy array")
            version = tuple(f.read(2))  # what numpy.lib.format.read_magic reads after the magic string
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = npy_format.read_array_header_2_0(f)
            else:  # 3.0 only exists for utf-8 field names of structured dtypes, which are refused anyway
                raise InvalidInputError(f"{source}: archive member {info.filename!r} uses the unsupported "
                                        f".npy format version {version}")
            return tuple(int(s) for s in shape), bool(fortran), dtype, f.tell()
    except InvalidInputError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # CRC mismatch (small members are read
        # whole while reading the header), damaged deflate stream, truncated member
        raise InvalidInputError(f"{source}: archive member {info.filename!r} is corrupted or unreadable "
                                f"({first_line(exc)})") from None
    except _READ_ERRORS as exc:  # bad header dict, unsupported compression, ...
        raise InvalidInputError(f"{source}: archive member {info.filename!r} has an unreadable .npy header "
                                f"({first_line(exc)})") from None


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
    out["activations"] = np.array([a.spec for a in net.activations], dtype=str)  # parameters included
    np.savez(path, **out)
