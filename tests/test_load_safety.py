"""Loading a model never runs code from the file unless trusted, corrupted or forged files are refused before
use, model arrays must be real and finite, and every refusal is one clean line (API and CLI)."""
import io
import struct
import time
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

import lipopt
from lipopt.cli import main
from lipopt.errors import InvalidInputError
from lipopt.model import build_network, load
from lipopt.model.safety import MEMORY_BUDGET, one_line

from corpus.builders import ReduceOpen, ReduceSystem, _torch_classes

torch = pytest.importorskip("torch")
nn = torch.nn

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:DeprecationWarning")


# ------------------------------------------------------------------------------------------ helpers

# the payload classes are shared with the bad-input corpus (one definition of each attack)
_, _, _WritesOnLoad = _torch_classes()
_OpenPayload, _SystemPayload = ReduceOpen, ReduceSystem


def _malicious_torchscript(tmp_path, nested: bool, overwrite: bool):
    """(archive, the file its code writes, that file's content before loading or None)."""
    target = tmp_path / ("victim.bin" if overwrite else "marker.bin")
    before = None
    if overwrite:
        before = b"precious data 16"
        target.write_bytes(before)
    evil = _WritesOnLoad(str(target))
    module = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), evil) if nested else evil
    path = tmp_path / "evil.pt"
    torch.jit.save(torch.jit.script(module), str(path))  # saving calls __getstate__ only
    assert (target.read_bytes() == before) if overwrite else not target.exists()
    return path, target, before


def _untouched(target, before) -> bool:
    return (target.read_bytes() == before) if before is not None else not target.exists()


def _run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_clean_line(code, out, err):
    assert code == 2, err
    assert out == ""
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err
    assert err.startswith("lipopt: error: ")
    assert "Traceback" not in err and "\x1b" not in err
    assert all(ch.isprintable() for ch in err.rstrip("\n")), repr(err)


def _member_data_range(path, member_suffix):
    """(start, end) byte offsets of a stored zip member's data inside the file."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(member_suffix))
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    return info.filename, start, start + info.compress_size


def _flip(path, member_suffix, out, at=-1):
    """Copy of ``path`` at ``out`` with one byte of the member's data inverted (the zip's CRC is not)."""
    name, start, end = _member_data_range(path, member_suffix)
    raw = bytearray(path.read_bytes())
    raw[(end + at) if at < 0 else (start + at)] ^= 0xFF
    out.write_bytes(bytes(raw))
    return name


def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {"W0": rng.standard_normal((3, 2)), "b0": rng.standard_normal(3),
            "W1": rng.standard_normal((1, 3)), "b1": np.zeros(1)}


def _npy_bytes(header: dict, data: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


# ----------------------------------------------------------------------- code execution: TorchScript

@pytest.mark.parametrize("nested", [False, True], ids=["module", "in-sequential"])
@pytest.mark.parametrize("overwrite", [False, True], ids=["create-file", "overwrite-file"])
def test_torchscript_code_never_runs_without_trust(tmp_path, capsys, nested, overwrite):
    path, target, before = _malicious_torchscript(tmp_path, nested, overwrite)
    with pytest.raises(InvalidInputError, match=r"TorchScript.*--trust-code \(CLI\) or trust_code=True \(API\)"):
        lipopt.load(path)
    assert _untouched(target, before)
    for command in ("bound", "inspect", "gap"):
        _assert_one_clean_line(*_run_cli(capsys, command, path))
        assert _untouched(target, before)


def test_torchscript_with_trust_code_loads_and_warns(tmp_path, capsys):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Sequential(nn.Linear(4, 1))).double().eval()
    path = tmp_path / "benign.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    with pytest.warns(UserWarning, match="trust_code=True: torch.jit.load runs the TorchScript code") as rec:
        net = load(path, trust_code=True)
    assert all("\n" not in str(w.message) for w in rec)
    x = np.random.default_rng(1).standard_normal((5, 3))
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net.forward(x), ref, rtol=1e-10, atol=1e-12)
    # the CLI flag: the model is read and the warning reaches the user (as a Python warning, or as a
    # line the CLI prints itself), exit 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = _run_cli(capsys, "inspect", path, "--trust-code")
    assert code == 0 and "widths 3-4-1" in out
    said = err + " ".join(str(w.message) for w in caught)
    assert "runs the TorchScript code" in said and "Traceback" not in err


def test_trusted_torchscript_payload_runs_only_with_the_flag(tmp_path):
    """The flag really is the gate: with trust_code=True the archive's code runs (then lipopt refuses the
    unsupported custom module), which is exactly why it is off by default."""
    path, target, before = _malicious_torchscript(tmp_path, nested=True, overwrite=False)
    with pytest.warns(UserWarning, match="trust_code"), pytest.raises(InvalidInputError, match="WritesOnLoad"):
        load(path, trust_code=True)
    assert target.exists()


# -------------------------------------------------------------------------- code execution: pickle

@pytest.mark.parametrize("payload", [_OpenPayload, _SystemPayload])
def test_pickled_module_with_payload_refused(tmp_path, capsys, payload):
    marker = tmp_path / "pwned.txt"
    model = nn.Sequential(nn.Linear(2, 1))
    model.payload = payload(str(marker))
    path = tmp_path / "pickled.pt"
    torch.save(model, path)
    assert not marker.exists()
    with pytest.raises(InvalidInputError, match=r"pickled Python objects.*trust_code=True \(API\)") as exc:
        lipopt.load(path)
    assert "allow_pickle" not in str(exc.value)  # the old message named an option the CLI never had
    assert not marker.exists()
    code, out, err = _run_cli(capsys, "bound", path)
    _assert_one_clean_line(code, out, err)
    assert "--trust-code" in err and "Weights only load failed" not in err
    assert not marker.exists()


# ------------------------------------------------------------------------------------------- integrity

def test_corrupted_torchscript_refused_even_when_trusted(tmp_path, capsys):
    path = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))), str(path))
    bad = tmp_path / "ts_bad.pt"
    member = _flip(path, "data/0", bad)
    with pytest.raises(InvalidInputError, match="TorchScript"):
        load(bad)
    with pytest.raises(InvalidInputError, match=f"{member}.*corrupted"):
        load(bad, trust_code=True)  # refused before torch.jit.load: no warning, nothing runs
    _assert_one_clean_line(*_run_cli(capsys, "bound", bad, "--trust-code"))


@pytest.mark.parametrize("what", ["state dict", "pickled module"])
def test_corrupted_torch_save_archive(tmp_path, what):
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    path = tmp_path / "saved.pt"
    torch.save(model.state_dict() if what == "state dict" else model, path)
    bad = tmp_path / "bad.pt"
    member = _flip(path, "data/0", bad, at=2)
    with pytest.raises(InvalidInputError, match=f"{member}.*corrupted"):
        load(bad, trust_code=True)


def test_corrupted_npz_members(tmp_path, capsys):
    path = tmp_path / "m.npz"
    np.savez(path, **_arrays())
    bad = tmp_path / "bad.npz"
    member = _flip(path, "W0.npy", bad)  # last byte of W0's data: a stored member, only the CRC notices
    with pytest.raises(InvalidInputError, match=f"{member}.*corrupted"):
        load(bad)
    _assert_one_clean_line(*_run_cli(capsys, "bound", bad))
    compressed = tmp_path / "c.npz"
    np.savez_compressed(compressed, **_arrays())
    for at in (-3, 5):  # deflate stream damaged after / inside the header: zlib.error or a CRC mismatch
        bad2 = tmp_path / f"bad_c{at}.npz"
        _flip(compressed, "W0.npy", bad2, at=at)
        with pytest.raises(InvalidInputError, match="W0.npy"):
            load(bad2)
        _assert_one_clean_line(*_run_cli(capsys, "inspect", bad2))


def test_npy_saved_under_npz_name(tmp_path, capsys):
    path = tmp_path / "model.npz"
    with path.open("wb") as f:
        np.save(f, np.ones((3, 2)))
    with pytest.raises(InvalidInputError, match=r"single \.npy array, not an \.npz archive"):
        load(path)
    _assert_one_clean_line(*_run_cli(capsys, "bound", path))


# ------------------------------------------------------------------------------------ forged npz headers

def test_huge_declared_shape_refused_before_reading(tmp_path, capsys):
    path = tmp_path / "huge.npz"
    a = _arrays()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("W0.npy", _npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (100000, 100000)},
                                         b"\0" * 16))
        for k in ("b0", "W1", "b1"):
            buf = io.BytesIO()
            np.save(buf, a[k])
            z.writestr(f"{k}.npy", buf.getvalue())
    assert 100000 * 100000 * 8 > MEMORY_BUDGET
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(InvalidInputError, match=r"W0 .*shape \(100000, 100000\).*too large"):
            load(path)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 0.5 and peak < 20 * 2**20, (seconds, peak)
    code, out, err = _run_cli(capsys, "inspect", path)
    _assert_one_clean_line(code, out, err)  # exit 2, not 3 "out of memory"


def test_truncated_member_refused(tmp_path):
    path = tmp_path / "short.npz"
    a = _arrays()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("W0.npy", _npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (3, 2)}, b"\0" * 40))
        for k in ("b0", "W1", "b1"):
            buf = io.BytesIO()
            np.save(buf, a[k])
            z.writestr(f"{k}.npy", buf.getvalue())
    with pytest.raises(InvalidInputError, match="W0 is truncated"):
        load(path)


@pytest.mark.parametrize("name,value,message", [
    ("complex", np.ones((3, 2)) + 1j, "complex"),
    ("datetime", np.arange(6).astype("datetime64[D]").reshape(3, 2), "datetime64"),
    ("timedelta", np.arange(6).astype("timedelta64[s]").reshape(3, 2), "timedelta64"),
    ("object", np.array([[1.0, 2.0]] * 3, dtype=object), "object"),
    ("structured", np.zeros((3, 2), dtype=[("a", "<f8")]), "structured"),
    ("string", np.full((3, 2), "1.5"), "text"),
    ("nan", np.where(np.eye(3, 2) > 0, np.nan, 1.0), "NaN or Inf"),
    ("inf", np.where(np.eye(3, 2) > 0, -np.inf, 1.0), "NaN or Inf"),
])
def test_npz_weights_must_be_real_and_finite(tmp_path, capsys, name, value, message):
    path = tmp_path / f"{name}.npz"
    np.savez(path, **{**_arrays(), "W0": value})
    with pytest.raises(InvalidInputError, match=rf"W0 .*{message}|W0 contains {message}"):
        load(path)
    _assert_one_clean_line(*_run_cli(capsys, "bound", path))


def test_integer_and_bool_weights_are_fine(tmp_path):
    path = tmp_path / "ints.npz"
    a = _arrays()
    np.savez(path, W0=np.array([[1, -2], [3, 0], [0, 1]], dtype=np.int8), b0=np.zeros(3, dtype=bool),
             W1=a["W1"].astype(np.float32), b1=np.ones(1, dtype=np.uint16))
    net = load(path)
    np.testing.assert_array_equal(net.weights[0].toarray(), [[1, -2], [3, 0], [0, 1]])
    assert net.biases[1][0] == 1.0


# ------------------------------------------------------------------ one validation for every loader

def test_build_network_rejects_non_real_arrays():
    a = _arrays()
    with pytest.raises(InvalidInputError, match="W0 has dtype complex128"):
        build_network([a["W0"] + 0.5j, a["W1"]], [a["b0"], a["b1"]])
    with pytest.raises(InvalidInputError, match="b1 contains NaN or Inf"):
        build_network([a["W0"], a["W1"]], [a["b0"], np.array([np.nan])])
    import scipy.sparse as sp
    with pytest.raises(InvalidInputError, match="W1 contains NaN or Inf"):
        build_network([a["W0"], sp.csr_array(np.array([[0.0, np.inf, 1.0]]))], [a["b0"], a["b1"]])


@pytest.mark.parametrize("case", ["complex", "nan-weight", "inf-running-var"])
def test_torch_tensors_validated(case):
    torch.manual_seed(0)
    if case == "complex":
        model = nn.Sequential(nn.Linear(2, 3, dtype=torch.complex64), nn.Linear(3, 1, dtype=torch.complex64))
        message = "weight has dtype complex64"
    elif case == "nan-weight":
        model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        with torch.no_grad():
            model[2].weight[0, 1] = float("nan")
        message = r"2 \(Linear\): weight contains NaN"
    else:  # an infinite variance would otherwise fold into a harmless-looking zero scale
        model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 1)).eval()
        model[1].running_var[1] = float("inf")
        message = "running_var contains NaN or Inf"
    with pytest.raises(InvalidInputError, match=message):
        load(model)


def _onnx_gemm_model(W, b):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", W.shape[1]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", W.shape[0]])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")])
    return onnx, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_weights_validated(tmp_path, capsys):
    W = np.ones((2, 3), dtype=np.float32)
    W[1, 2] = np.nan
    onnx, model = _onnx_gemm_model(W, np.zeros(2, dtype=np.float32))
    path = tmp_path / "nan.onnx"
    onnx.save(model, str(path))
    with pytest.raises(InvalidInputError, match="'W' contains NaN or Inf"):
        load(path)
    _assert_one_clean_line(*_run_cli(capsys, "bound", path))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x0a\xff\xff\xff\xff\x0f\x1b[31m not a protobuf \n second line")
    with pytest.raises(InvalidInputError, match="not a valid ONNX model"):
        load(garbage)
    _assert_one_clean_line(*_run_cli(capsys, "inspect", garbage))


# ------------------------------------------------------------------------------- ONNX external data

def _external_model(tmp_path, folder_name="model"):
    W = np.arange(6, dtype=np.float32).reshape(2, 3) / 10
    onnx, model = _onnx_gemm_model(W, np.ones(2, dtype=np.float32))
    folder = tmp_path / folder_name
    folder.mkdir()
    path = folder / "m.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (folder / "weights.bin").is_file()
    return onnx, path, W


def _relocate(onnx, path, location):
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save(model, str(path))


def test_onnx_external_data_inside_folder_is_read(tmp_path):
    _, path, W = _external_model(tmp_path)
    net = load(path)
    np.testing.assert_allclose(net.weights[0].toarray(), W, rtol=1e-7)
    np.testing.assert_allclose(net.biases[0], [1.0, 1.0])


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_onnx_external_data_outside_folder_refused(tmp_path, capsys, where):
    onnx, path, _ = _external_model(tmp_path)
    outside = tmp_path / "secret.bin"
    outside.write_bytes((path.parent / "weights.bin").read_bytes())  # would load fine if followed
    if where == "parent":
        location = "../secret.bin"
    elif where == "absolute":
        location = str(outside)
    else:
        (path.parent / "link.bin").symlink_to(outside)
        location = "link.bin"
    _relocate(onnx, path, location)
    with pytest.raises(InvalidInputError, match="outside the model's folder"):
        load(path)
    _assert_one_clean_line(*_run_cli(capsys, "bound", path))


# ---------------------------------------------------------------------------------- one-line messages

def test_one_line_strips_escapes_and_controls():
    text = "bad\x1b[1m bold\x1b[0m\nsecond\tline\r\x07bell \x1b]0;title\x07 \u202eevil\u2028end\x9b2J"
    clean = one_line(text)
    assert clean == "bad bold second line bell evil end"
    assert one_line("x" * 5000, limit=100).endswith("...") and len(one_line("x" * 5000, limit=100)) == 100


def test_hostile_file_names_stay_on_one_line(tmp_path, capsys):
    path = tmp_path / "evil\x1b[31mred\nInjected line.npz"
    path.write_bytes(b"garbage")
    with pytest.raises(InvalidInputError) as exc:
        load(path)
    assert "\n" not in str(exc.value) and "\x1b" not in str(exc.value)
    _assert_one_clean_line(*_run_cli(capsys, "inspect", path))


def test_onnx_constant_folding_with_huge_output_refused(tmp_path):
    """A ConstantOfShape of a few bytes declaring a 100000 x 100000 result is refused before evaluation."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"],
                              value=numpy_helper.from_array(np.array([1.0], dtype=np.float32))),
             helper.make_node("Add", ["x", "big"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(np.array([100000, 100000], dtype=np.int64), "shape")])
    path = tmp_path / "big.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    t0 = time.perf_counter()
    with pytest.raises(InvalidInputError, match=r"big.*too large"):
        load(path)
    assert time.perf_counter() - t0 < 2.0
