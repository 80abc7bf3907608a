"""``.pt`` / ``.pth`` files -> Network without running code from the file unless the caller trusts it.

* ``torch.jit.load`` executes the TorchScript stored in the archive (``__setstate__`` methods run during
  loading, and can write files); a TorchScript archive (a zip with a ``code/`` directory or a
  ``constants.pkl`` record) is refused unless ``trust_code=True``.
* ``torch.load(weights_only=False)`` unpickles arbitrary objects (``__reduce__`` payloads); only with
  ``trust_code=True``. ``torch.load(weights_only=True)`` (restricted unpickler; it refuses TorchScript
  archives itself) executes nothing and is always allowed; a state dict alone has no architecture.
* Zip archives have their declared size checked against safety.MEMORY_BUDGET and every member's CRC-32
  verified (safety.check_zip) before torch reads them: torch's own reader does not check CRCs.
"""
from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path

from ..errors import InvalidInputError
from .network import Network
from .safety import check_budget, check_zip, clean_errors, first_line, one_line, open_zip

HOW_TO_PROCEED = ("if you trust the file, pass --trust-code (CLI) or trust_code=True (API); better, export "
                  "the model to ONNX (torch.onnx.export) and load the .onnx file, or save its state dict "
                  "(torch.save(model.state_dict(), path)) and pass the module built in Python "
                  "(lipopt.load(module))")
_ZIP_MAGIC = b"PK\x03\x04"  # what torch.serialization._is_zipfile checks


@clean_errors
def load_torch_file(path, input_shape=None, trust_code: bool = False) -> Network:
    """Network from a ``.pt`` / ``.pth`` file: a torch.save file of an nn.Module (unpickled only with
    ``trust_code``) or a TorchScript nn.Sequential (loaded only with ``trust_code``); a file of tensors only
    is read safely but a bare state dict is rejected (no architecture)."""
    from .torch_loader import _torch
    torch = _torch()
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    source = str(path)
    if _looks_like_zip(path):
        with open_zip(path, source, "a readable torch archive (zip)") as z:
            torchscript = _is_torchscript(z)
            if torchscript and not trust_code:
                raise InvalidInputError(
                    f"{path}: is a TorchScript archive; loading it runs the TorchScript code stored in the "
                    f"file (its __setstate__ methods can write files), so it is refused: {HOW_TO_PROCEED}")
            check_zip(z, source)
        if torchscript:
            _warn_trusted(f"{path}: trust_code=True: torch.jit.load runs the TorchScript code stored in "
                          f"this archive")
            return _module_network(_jit_load(torch, path), path, input_shape)
    else:  # legacy (pre-1.6) torch.save format: no checksums; the size is all we can check up front
        check_budget(path.stat().st_size, source)
    try:
        with warnings.catch_warnings():  # torch's notices must not add lines to a one-line error
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        obj = _load_untrusted_failed(torch, path, exc, trust_code)
    if isinstance(obj, torch.nn.Module):
        return _module_network(obj, path, input_shape)
    if isinstance(obj, dict):
        tensors = obj and all(isinstance(v, torch.Tensor) for v in obj.values())
        what = (f"a state dict ({len(obj)} tensors)" if tensors else
                f"a dict (keys {', '.join(map(str, list(obj)[:5]))}{', ...' if len(obj) > 5 else ''})")
        raise InvalidInputError(
            f"{path}: holds {what} but no architecture; build the module in Python, call load_state_dict and "
            f"pass the module, or export the model to ONNX")
    raise InvalidInputError(f"{path}: holds a {type(obj).__name__}, not a model")


def _load_untrusted_failed(torch, path: Path, exc: Exception, trust_code: bool):
    """torch.load(weights_only=True) refused the file: pickled Python objects (an nn.Module) are unpickled
    with trust_code only; anything else is not a torch file."""
    text = str(exc)
    m = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\. Please use|\n|$)", text)
    if m is None:
        raise InvalidInputError(f"{path}: not a readable torch.save file nor a TorchScript archive "
                                f"({_torch_detail(exc)})") from None
    if not trust_code:
        raise InvalidInputError(
            f"{path}: holds pickled Python objects ({one_line(m.group(1))}), e.g. a whole nn.Module saved with "
            f"torch.save(model); unpickling them can run arbitrary code, so it is refused: "
            f"{HOW_TO_PROCEED}") from None
    _warn_trusted(f"{path}: trust_code=True: unpickling with torch.load(weights_only=False) runs code "
                  f"from this file")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc2:
        raise InvalidInputError(f"{path}: cannot be unpickled ({_torch_detail(exc2)})") from None


def _jit_load(torch, path: Path):
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.x, but files exist
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated",
                                    category=DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError and friends for corrupt archives
        raise InvalidInputError(f"{path}: not a readable TorchScript archive ({_torch_detail(exc)})") from None


def _module_network(module, path: Path, input_shape) -> Network:
    from .torch_loader import from_torch
    try:
        return from_torch(module, input_shape)
    except InvalidInputError as exc:
        from . import _graph_refusal  # residual / concat / max pooling in a trusted module: graph_fx
        if _graph_refusal(exc) and not hasattr(module, "inlined_graph"):  # fx cannot trace TorchScript
            from .graph_fx import graph_from_torch
            try:
                return graph_from_torch(module, input_shape)
            except InvalidInputError as graph_exc:
                exc = graph_exc
        exc.args = (f"{path}: {exc}",)
        raise exc from None


def _warn_trusted(message: str) -> None:
    warnings.warn(one_line(message), UserWarning, stacklevel=3)


def _looks_like_zip(path: Path) -> bool:
    with path.open("rb") as f:
        if f.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC:
            return True
    return zipfile.is_zipfile(path)


def _is_torchscript(z: zipfile.ZipFile) -> bool:
    """TorchScript archives hold a code/ directory and constants.pkl (torch's own test); torch.save
    archives have neither. Any sign of either counts, so that no TorchScript goes through unrefused."""
    for name in z.namelist():
        parts = name.split("/")
        if "code" in parts[:-1] or parts[-1] in ("constants.pkl",) or name.endswith(".debug_pkl"):
            return True
    return False


def _torch_detail(exc: BaseException) -> str:
    """First line of a torch error, without torch's advice about weights_only (meant for torch.load users)."""
    line = first_line(exc)
    return re.sub(r"\s*In PyTorch 2\.6, we changed the default value.*$", "", line) or type(exc).__name__
