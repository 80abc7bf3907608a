"""The shipped model zoo (issue 15): files intact, lipopt's loaders compute onnxruntime's function, the
npz twins the same function, the manifest's test accuracies and load status are what lipopt gives today."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

import lipopt
from lipopt import datasets
from lipopt.errors import InvalidInputError

MANIFEST = datasets.zoo_manifest()
MODELS = MANIFEST["models"]
NAMES = list(MODELS)
_NETS: dict = {}


def _test_set(dataset: str):
    return datasets.mnist_test() if dataset == "mnist" else datasets.digits_test()


def _net(name: str):
    """lipopt's network from the ONNX file (cached: some tests share it)."""
    if name not in _NETS:
        _NETS[name] = lipopt.load(datasets.zoo_model_path(name))
    return _NETS[name]


def _onnxruntime(name: str, X: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(datasets.zoo_model_path(name)), providers=["CPUExecutionProvider"])
    shape = MODELS[name]["input_shape"]
    return sess.run(None, {sess.get_inputs()[0].name: X.reshape((-1, *shape)).astype(np.float32)})[0]


def test_manifest_schema():
    assert {"script", "command", "torch", "date", "seed", "models"} <= set(MANIFEST)
    assert len(MODELS) >= 14
    keys = {"onnx", "npz", "sha256", "dataset", "input_shape", "architecture", "family", "hidden_layers",
            "activations", "params", "epochs", "test_accuracy", "train_seconds", "loads", "load_error"}
    for name, e in MODELS.items():
        assert keys <= set(e), name
        assert e["onnx"] == f"{name}.onnx" and e["npz"] in (None, f"{name}.npz")
        assert e["dataset"] in ("mnist", "digits") and e["family"] in ("mlp", "cnn", "residual")
        assert int(np.prod(e["input_shape"])) == (784 if e["dataset"] == "mnist" else 64)
        assert e["hidden_layers"] == len(e["activations"]) >= 1
        assert (e["load_error"] is None) == e["loads"]
        # every net is a real, trained classifier (chance is 10 %)
        assert 0.8 <= e["test_accuracy"] <= 1.0, name
    assert {e["family"] for e in MODELS.values()} == {"mlp", "cnn", "residual"}


@pytest.mark.parametrize("name", NAMES)
def test_files_match_sha256(name):
    e = MODELS[name]
    files = {e["onnx"]} | ({e["npz"]} if e["npz"] else set())
    assert set(e["sha256"]) == files
    for fmt in ("onnx", "npz"):
        if e[fmt]:
            path = datasets.zoo_model_path(name, fmt)
            assert hashlib.sha256(path.read_bytes()).hexdigest() == e["sha256"][path.name]


@pytest.mark.parametrize("name", NAMES)
def test_load_status_and_function(name):
    e = MODELS[name]
    X, y = _test_set(e["dataset"])
    if not e["loads"]:
        with pytest.raises(InvalidInputError):
            lipopt.load(datasets.zoo_model_path(name))
        return
    net = _net(name)
    out = net.forward(X[:8])
    ref = _onnxruntime(name, X[:8])
    assert out.shape == ref.shape == (8, 10)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    # the manifest's accuracy is lipopt's own forward on all shipped test images
    correct = int(np.sum(net.forward(X).argmax(1) == y))
    assert correct == round(e["test_accuracy"] * len(y))


@pytest.mark.parametrize("name", [n for n in NAMES if MODELS[n]["npz"]])
def test_npz_twin_is_the_same_function(name):
    twin = lipopt.load(datasets.zoo_model_path(name, "npz"))
    X, _ = _test_set(MODELS[name]["dataset"])
    assert twin.depth == MODELS[name]["hidden_layers"]
    assert [a.name for a in twin.activations] == MODELS[name]["activations"]
    if MODELS[name]["loads"]:
        np.testing.assert_allclose(twin.forward(X[:64]), _net(name).forward(X[:64]), rtol=1e-12, atol=1e-12)
    ref = _onnxruntime(name, X[:8])
    np.testing.assert_allclose(twin.forward(X[:8]), ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())


def test_pruned_weights_are_exact_zeros():
    net = lipopt.load(datasets.zoo_model_path("pruned90", "npz"))
    for W in net.weights:
        assert W.nnz <= round(0.1 * W.shape[0] * W.shape[1])


def test_digits_test_set():
    X, y = datasets.digits_test()
    digits = [e for e in MODELS.values() if e["dataset"] == "digits"]
    assert digits and X.shape == (len(y), 64) and X.dtype == np.float64
    assert 0.0 <= X.min() and X.max() <= 1.0 and set(np.unique(y)) == set(range(10))
    assert len(y) == MANIFEST["test_sets"]["digits"]["n"] == 360  # 20 % of sklearn's 1,797 digits
    assert len(datasets.mnist_test()[1]) == MANIFEST["test_sets"]["mnist"]["n"]
    for e in digits:  # an accuracy is a whole number of correct images of this test set
        assert abs(e["test_accuracy"] * len(y) - round(e["test_accuracy"] * len(y))) < 1e-9
    assert np.array_equal(datasets.digits_test(10)[0], X[:10])
    with pytest.raises(InvalidInputError):
        datasets.digits_test(len(y) + 1)


def test_zoo_model_path_refuses_bad_requests():
    with pytest.raises(InvalidInputError, match="unknown zoo model"):
        datasets.zoo_model_path("no_such_net")
    with pytest.raises(InvalidInputError, match="format"):
        datasets.zoo_model_path(NAMES[0], "pt")
    chainless = [n for n in NAMES if MODELS[n]["npz"] is None]
    assert chainless
    with pytest.raises(InvalidInputError, match="no npz file"):
        datasets.zoo_model_path(chainless[0], "npz")
