"""Feed-forward network as a chain of affine maps with elementwise activations.

f(x) = W_{L-1} sigma(... sigma(W_0 x + b_0) ...) + b_{L-1}; hidden layer l (1-based) has
pre-activation z_l = W_{l-1} x_{l-1} + b_{l-1}. Weights are scipy.sparse CSR arrays (pruned and
convolutional layers stay sparse end to end); the last layer is affine.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from .activations import Activation, check_activation
from .activations import derivative as _act_derivative
from .activations import value as _act_value
from .safety import check_dtype, check_finite, real_array


DENSE_FRACTION = 0.25        # layers at least this dense are multiplied as dense arrays (BLAS)
DENSE_MAX_ENTRIES = 20_000_000


@dataclass(frozen=True)
class Network:
    weights: tuple[sp.csr_array, ...]
    biases: tuple[np.ndarray, ...]
    activations: tuple[Activation, ...]  # one per hidden layer: len(weights) - 1

    @property
    def depth(self) -> int:
        """Number of hidden (activated) layers d; the polynomial has degree d + 1."""
        return len(self.weights) - 1

    @property
    def widths(self) -> tuple[int, ...]:
        """(n_0, n_1, ..., n_L): input width, hidden widths, output width."""
        return (self.weights[0].shape[1],) + tuple(W.shape[0] for W in self.weights)

    @property
    def n_params(self) -> int:
        return int(sum(W.nnz for W in self.weights) + sum(b.size for b in self.biases))

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Evaluate f on a batch x of shape (N, n_0)."""
        return self.forward_with_preactivations(x)[0]

    def _operator(self, l: int):
        """Layer l's weights for batched products: a dense array when the layer is dense enough for BLAS
        to beat sparse products (cached on the instance), else the CSR matrix."""
        cache = self.__dict__.get("_dense_cache")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_dense_cache", cache)
        if l not in cache:
            W = self.weights[l]
            size = W.shape[0] * W.shape[1]
            cache[l] = W.toarray() if W.nnz >= DENSE_FRACTION * size and size <= DENSE_MAX_ENTRIES else W
        return cache[l]

    def __getstate__(self):  # the dense cache is rebuilt where needed, never shipped
        return {k: v for k, v in self.__dict__.items() if k != "_dense_cache"}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def forward_with_preactivations(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        h = np.atleast_2d(np.asarray(x, dtype=np.float64))
        zs = []
        for l, b in enumerate(self.biases):
            W = self._operator(l)
            z = (h @ W.T if isinstance(W, np.ndarray) else (W @ h.T).T) + b
            if l < self.depth:
                zs.append(z)
                h = activation_value(self.activations[l], z)
            else:
                h = z
        return h, zs

    def gradient(self, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Gradient of c^T f at each row of x: W_0^T D_1 ... W_{L-1}^T c, shape (N, n_0)."""
        _, zs = self.forward_with_preactivations(x)
        g = np.tile(np.asarray(c, dtype=np.float64), (zs[0].shape[0] if zs else 1, 1))
        for l in range(self.depth, -1, -1):
            W = self._operator(l)
            g = g @ W if isinstance(W, np.ndarray) else (W.T @ g.T).T
            if l > 0:
                g = g * activation_slope(self.activations[l - 1], zs[l - 1])
        return g


def activation_value(act: Activation, z: np.ndarray) -> np.ndarray:
    """sigma(z) elementwise (see model.activations for the supported functions)."""
    return _act_value(act, z)


def activation_slope(act: Activation, z: np.ndarray) -> np.ndarray:
    """sigma'(z) elementwise (ReLU-type kinks at exactly 0 take the left derivative)."""
    return _act_derivative(act, z)


def _csr(W) -> sp.csr_array:
    """CSR with sorted indices and no stored zeros; a dense array goes straight to CSR (scipy's route
    through COO costs seconds on a 4096 x 4096 layer)."""
    if sp.issparse(W):
        W = sp.csr_array(W)
        W.eliminate_zeros()
        W.sort_indices()
        return W
    W = np.asarray(W, dtype=np.float64)
    mask = W != 0
    indptr = np.zeros(W.shape[0] + 1, dtype=np.int64)
    np.cumsum(mask.sum(axis=1), out=indptr[1:])
    idx_dtype = np.int32 if max(W.shape[1], int(indptr[-1])) < 2**31 else np.int64
    indices = np.nonzero(mask)[1].astype(idx_dtype)
    return sp.csr_array((W[mask], indices, indptr.astype(idx_dtype)), shape=W.shape)


def build_network(weights: Sequence, biases: Sequence, activations: Sequence[str] | None = None,
                  source: str = "model") -> Network:
    """Validate and convert arrays into a Network (weights shape (out, in), real dtypes, finite values).

    Every check raises InvalidInputError naming what was expected and what was received.
    """
    if len(weights) == 0:
        raise InvalidInputError(f"{source}: no layers")
    if len(weights) != len(biases):
        raise InvalidInputError(f"{source}: {len(weights)} weight matrices but {len(biases)} bias vectors")
    Ws, bs = [], []
    for l, (W, b) in enumerate(zip(weights, biases)):
        # safety.real_array: real numeric dtype (no complex/datetime/object/strings) and finite values,
        # checked before any conversion to float64 could drop an imaginary part or reinterpret dates
        if sp.issparse(W):
            check_dtype(W.dtype, f"{source}: W{l}")
            W = sp.csr_array(W, dtype=np.float64)
            check_finite(W.data, f"{source}: W{l}")
        else:
            W = real_array(W, f"{source}: W{l}")
        b = real_array(b, f"{source}: b{l}")
        if W.ndim != 2:
            raise InvalidInputError(f"{source}: W{l} must be 2-D (out, in), got shape {W.shape}")
        if b.ndim != 1 or b.shape[0] != W.shape[0]:
            raise InvalidInputError(f"{source}: b{l} must have shape ({W.shape[0]},), got {b.shape}")
        if l > 0 and W.shape[1] != Ws[-1].shape[0]:
            raise InvalidInputError(
                f"{source}: W{l} has {W.shape[1]} inputs but layer {l - 1} has {Ws[-1].shape[0]} outputs")
        if W.shape[0] == 0 or W.shape[1] == 0:
            raise InvalidInputError(f"{source}: W{l} has an empty shape {W.shape}")
        W = _csr(W)
        Ws.append(W)
        bs.append(b)
    names = ["relu"] * (len(Ws) - 1) if activations is None else list(activations)
    if len(names) != len(Ws) - 1:
        raise InvalidInputError(
            f"{source}: {len(Ws) - 1} hidden layers but {len(names)} activations given")
    return Network(tuple(Ws), tuple(bs), tuple(check_activation(a) for a in names))


def output_vector(net: Network, output: int | None = None, margin: tuple[int, int] | None = None,
                  c: np.ndarray | None = None) -> np.ndarray:
    """The vector c selecting the scalar output c^T f: an index, a margin e_i - e_j, or c itself."""
    m = net.widths[-1]
    given = sum(v is not None for v in (output, margin, c))
    if given > 1:
        raise InvalidInputError("give at most one of output, margin, c")
    if given == 0:
        if m != 1:
            raise InvalidInputError(
                f"the model has {m} outputs; select one with --output I, --margin I J or a vector c")
        return np.ones(1)
    vec = np.zeros(m)
    if output is not None:
        _check_index(output, m, "output")
        vec[output] = 1.0
    elif margin is not None:
        i, j = margin
        _check_index(i, m, "margin")
        _check_index(j, m, "margin")
        if i == j:
            raise InvalidInputError("margin needs two different outputs")
        vec[i], vec[j] = 1.0, -1.0
    else:
        vec = np.asarray(c, dtype=np.float64).ravel()
        if vec.shape != (m,) or not np.all(np.isfinite(vec)):
            raise InvalidInputError(f"c must be a finite vector of length {m}, got shape {vec.shape}")
    return vec


def _check_index(i, m: int, what: str) -> None:
    if not isinstance(i, (int, np.integer)) or not 0 <= i < m:
        raise InvalidInputError(f"{what} index {i!r} out of range: the model has {m} outputs (0..{m - 1})")
