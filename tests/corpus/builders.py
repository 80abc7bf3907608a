"""File builders for tests/test_bad_input_corpus.py: one small function per kind of bad input file.

Byte-level helpers (npz, npy with forged headers, zips with flipped bytes), hand-written ONNX graphs, and
``Shared``: torch/onnx files built once per test module on first use (payload files write a marker file
when their code runs; the corpus asserts the marker never appears). ``Files``: per-test files in tmp_path.
"""
from __future__ import annotations

import builtins
import io
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

# ------------------------------------------------------------------------------------------ builders

def good_arrays(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"W0": rng.standard_normal((4, 3)), "b0": rng.standard_normal(4),
            "W1": rng.standard_normal((2, 4)), "b1": rng.standard_normal(2)}


def npz_bytes(compressed: bool = False, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def npy_bytes(array, header: dict | None = None, data: bytes | None = None) -> bytes:
    """A .npy file of ``array``, or a forged one: ``header`` written as is, followed by ``data``."""
    buf = io.BytesIO()
    if header is None:
        np.save(buf, array, allow_pickle=True)
        return buf.getvalue()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate member names warn
        for name, data in members.items() if isinstance(members, dict) else members:
            z.writestr(name, data)
    return buf.getvalue()


def flip_member(raw: bytes, member: str, at: float = 0.5) -> bytes:
    """``raw`` (a zip) with one byte of ``member``'s stored data inverted; the directory (CRC) is not."""
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(member))
    name_len, extra_len = np.frombuffer(raw[info.header_offset + 26:info.header_offset + 30], "<u2")
    start = info.header_offset + 30 + int(name_len) + int(extra_len)
    out = bytearray(raw)
    out[start + min(int(at * info.compress_size), info.compress_size - 1)] ^= 0xFF
    return bytes(out)


def set_compression_method(raw: bytes, method: int) -> bytes:
    """``raw`` (a zip) with every member's compression method field set to ``method``."""
    out = bytearray(raw)
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        infos = z.infolist()
    for info in infos:
        out[info.header_offset + 8:info.header_offset + 10] = method.to_bytes(2, "little")
    pos = out.find(b"PK\x01\x02")
    while pos != -1:  # central directory entries
        out[pos + 10:pos + 12] = method.to_bytes(2, "little")
        pos = out.find(b"PK\x01\x02", pos + 4)
    return bytes(out)


def onnx_model(nodes, inits: dict, inputs=(("x", ["N", 3]),), out_dim=2):
    """A hand-written ONNX ModelProto (opset 17)."""
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, d) for n, d in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out_dim])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def onnx_mlp(W0=None):
    from onnx import helper
    a = good_arrays()
    nodes = [helper.make_node("Gemm", ["x", "W0", "b0"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "W1", "b1"], ["y"], transB=1)]
    return onnx_model(nodes, {**a, **({} if W0 is None else {"W0": W0})})


# --------------------------------------------------------------------------- torch files (module-wide)

def _torch_classes():
    import torch
    nn = torch.nn

    class WritesOnLoad(nn.Module):
        """TorchScript module whose __setstate__ (run by torch.jit.load) writes a file."""

        def __init__(self, target: str):
            super().__init__()
            self.target = target

        def forward(self, x):
            return x

        @torch.jit.export
        def __getstate__(self):
            return (self.target, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[str, bool]):
            self.target = state[0]
            self.training = state[1]
            torch.save(torch.zeros(1), self.target)

    return torch, nn, WritesOnLoad


class ReduceOpen:
    """Unpickling calls open(target, 'w'): creates the marker."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (builtins.open, (self.target, "w"))


class ReduceSystem:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"echo pwned > '{self.target}'",))


def _evil_linear_class():
    import torch

    class EvilLinear(torch.nn.Linear):
        """An nn.Module whose pickle is a payload."""
        target = ""

        def __reduce__(self):
            return (builtins.open, (self.target, "w"))

    EvilLinear.__module__ = __name__
    EvilLinear.__qualname__ = "EvilLinear"
    return EvilLinear


class Shared:
    """torch / onnx files built once per module, on first use (a run of one case builds one file)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._cache: dict[str, Path] = {}

    def marker(self, kind: str) -> Path:
        return self.folder / f"MARKER-{kind}"

    def get(self, kind: str) -> Path:
        if kind not in self._cache:
            self._cache[kind] = getattr(self, "_" + kind.replace("-", "_"))()
            for k in list(self._cache):  # building must not run a payload either
                assert not self.marker(k).exists(), k
        return self._cache[kind]

    def _path(self, name: str) -> Path:
        return self.folder / name

    # -- torch
    def _sequential(self):
        torch, nn, _ = _torch_classes()
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))

    def _ts_plain(self):
        torch, _, _ = _torch_classes()
        p = self._path("plain_ts.pt")
        torch.jit.save(torch.jit.script(self._sequential()), str(p))
        return p

    def _ts_payload(self, nested: bool = False, kind: str = "ts-payload"):
        torch, nn, WritesOnLoad = _torch_classes()
        evil = WritesOnLoad(str(self.marker(kind)))
        module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), evil) if nested else evil
        p = self._path(f"{kind}.pt")
        torch.jit.save(torch.jit.script(module), str(p))  # saving calls __getstate__ only
        return p

    def _ts_payload_nested(self):
        return self._ts_payload(nested=True, kind="ts-payload-nested")

    def _ts_flipped(self):
        raw = self.get("ts-plain").read_bytes()
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            member = next(n for n in z.namelist() if "/data/" in n)
        p = self._path("ts_flipped.pt")
        p.write_bytes(flip_member(raw, member))
        return p

    def _pickled_module_payload(self, legacy: bool = False, kind: str = "pickled-module-payload"):
        torch, _, _ = _torch_classes()
        cls = _evil_linear_class()
        m = cls(3, 2)
        m.target = str(self.marker(kind))
        p = self._path(f"{kind}.pt")
        torch.save(m, str(p), _use_new_zipfile_serialization=not legacy)
        return p

    def _pickled_module_payload_legacy(self):
        return self._pickled_module_payload(legacy=True, kind="pickled-module-payload-legacy")

    def _pickled_system_payload(self):
        torch, _, _ = _torch_classes()
        p = self._path("system.pth")
        torch.save({"model": ReduceSystem(self.marker("pickled-system-payload"))}, str(p))
        return p

    def _pickled_plain_module(self):
        torch, _, _ = _torch_classes()
        p = self._path("whole_module.pt")
        torch.save(self._sequential(), str(p))
        return p

    def _state_dict(self):
        torch, _, _ = _torch_classes()
        p = self._path("state_dict.pt")
        torch.save(self._sequential().state_dict(), str(p))
        return p

    def _tensor(self):
        torch, _, _ = _torch_classes()
        p = self._path("tensor.pt")
        torch.save(torch.ones(3, 2), str(p))
        return p

    def _tensor_list(self):
        torch, _, _ = _torch_classes()
        p = self._path("list.pth")
        torch.save([torch.ones(4, 3), torch.ones(4)], str(p))
        return p

    def _plain_dict(self):
        torch, _, _ = _torch_classes()
        p = self._path("checkpoint.pt")
        torch.save({"epoch": 3, "lr": 0.1}, str(p))
        return p

    def _torch_flipped(self):
        raw = self.get("tensor").read_bytes()
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            member = next(n for n in z.namelist() if n.endswith("data/0"))
        p = self._path("tensor_flipped.pt")
        p.write_bytes(flip_member(raw, member))
        return p

    def _torch_truncated(self):
        raw = self.get("state-dict").read_bytes()
        p = self._path("truncated.pt")
        p.write_bytes(raw[: len(raw) // 2])
        return p

    # -- onnx
    def _onnx_good_bytes(self):
        return onnx_mlp().SerializeToString()

    def _onnx_truncated(self):
        raw = self._onnx_good_bytes()
        p = self._path("truncated.onnx")
        p.write_bytes(raw[: len(raw) - 9])  # cuts into the last initializer's raw data
        return p

    def _onnx_unsupported_op(self):
        from onnx import helper
        import onnx
        a = good_arrays()
        nodes = [helper.make_node("Gemm", ["x", "W0", "b0"], ["h"], transB=1),
                 helper.make_node("Sin", ["h"], ["r"]),
                 helper.make_node("Gemm", ["r", "W1", "b1"], ["y"], transB=1)]
        p = self._path("sin.onnx")
        onnx.save(onnx_model(nodes, a), str(p))
        return p

    def _onnx_two_inputs(self):
        from onnx import helper
        import onnx
        a = good_arrays()
        nodes = [helper.make_node("Add", ["x", "x2"], ["s"]),
                 helper.make_node("Gemm", ["s", "W0", "b0"], ["h"], transB=1),
                 helper.make_node("Relu", ["h"], ["r"]),
                 helper.make_node("Gemm", ["r", "W1", "b1"], ["y"], transB=1)]
        p = self._path("two_inputs.onnx")
        onnx.save(onnx_model(nodes, a, inputs=(("x", ["N", 3]), ("x2", ["N", 3]))), str(p))
        return p

    def _onnx_external(self, location: str, name: str):
        import onnx
        folder = self.folder / name
        folder.mkdir()
        p = folder / "m.onnx"
        onnx.save_model(onnx_mlp(), str(p), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="weights.bin", size_threshold=0)
        model = onnx.load(str(p), load_external_data=False)
        for t in model.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
        onnx.save(model, str(p))
        return p

    def _onnx_external_parent(self):
        return self._onnx_external("../../etc/passwd", "ext_parent")

    def _onnx_external_absolute(self):
        return self._onnx_external("/etc/passwd", "ext_absolute")

    def _onnx_nan(self):
        import onnx
        W0 = good_arrays()["W0"].copy()
        W0[1, 2] = np.nan
        p = self._path("nan.onnx")
        onnx.save(onnx_mlp(W0=W0), str(p))
        return p

    def _onnx_shape_mismatch(self):
        import onnx
        p = self._path("mismatch.onnx")
        onnx.save(onnx_mlp(W0=np.ones((4, 5))), str(p))
        return p


class Files:
    """Per-test files in tmp_path (small builders), plus the module's shared torch/onnx files."""

    def __init__(self, tmp: Path, shared: Shared):
        self.tmp, self.shared = tmp, shared

    def raw(self, name: str, data: bytes) -> str:
        p = self.tmp / name
        p.write_bytes(data)
        return str(p)

    def text(self, name: str, text: str = "hello, this is not a model\n") -> str:
        return self.raw(name, text.encode())

    def npz(self, name: str = "m.npz", compressed: bool = False, **arrays) -> str:
        return self.raw(name, npz_bytes(compressed, **arrays))

    def bad_npz(self, **changes) -> str:
        """The good model's arrays with ``changes`` (a value None removes the array)."""
        arrays = {**good_arrays(), **changes}
        return self.npz(**{k: v for k, v in arrays.items() if v is not None})

    def npy(self, name: str, array) -> str:
        return self.raw(name, npy_bytes(np.asarray(array) if not isinstance(array, np.ndarray) else array))

    def good(self) -> str:
        p = self.tmp / "good.npz"
        if not p.exists():
            self.npz("good.npz", **good_arrays())
        return str(p)

    def data(self) -> str:
        return self.npy("points.npy", np.zeros((2, 3)))

    def marker(self, kind: str) -> Path:
        """Shared files' payloads write into the module folder, per-test ones into tmp_path."""
        shared = hasattr(self.shared, "_" + kind.replace("-", "_"))
        return self.shared.marker(kind) if shared else self.tmp / f"MARKER-{kind}"

    def get(self, kind: str) -> str:
        return str(self.shared.get(kind))
