"""Layers as sparse affine maps on channel-major flattened tensors, and chains of them as a Network.

A tensor of shape (C, *S) (no batch dimension) is identified with its flatten, the vector of length
C * prod(S) in C order (torch's ``x.flatten(1)``). A convolution is then x -> W x + b with
W[(o, p), (g(o) * C_in/groups + i, p * stride - pad_lo + k * dilation)] = K[o, i, k]; pooling and
batch-norm are sparse affine maps too, and reshapes are the identity on the flat vector. Consecutive affine
maps are composed, (W2, b2) o (W1, b1) = (W2 W1, W2 b1 + b2), so a chain of layers becomes the alternation
affine map / activation that a Network is. The loaders (torch_loader, onnx_loader) translate their
framework's layers into the ``Layer`` classes below; this module knows nothing about torch or ONNX.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from .activations import ACTIVATIONS, make_activation
from .network import Network, build_network

Shape = tuple[int, ...]

# --------------------------------------------------------------------------------------------------------
# Activations: the ONE table from torch module classes / torch functions / ONNX ops to lipopt names.

#: lower-cased torch.nn class name, torch function name or ONNX op type -> (lipopt activation name,
#: its parameters with their defaults). Parameters that lipopt's activation carries (activations.
#: make_activation: negative_slope, alpha, beta, min_val, max_val, approximate) may take any valid value;
#: the others must equal their default (softplus' threshold: lipopt uses the smooth function).
ACTIVATION_TYPES: dict[str, tuple[str, dict[str, object]]] = {
    "relu": ("relu", {}),
    "leakyrelu": ("leaky_relu", {"negative_slope": 0.01}),   # torch.nn.LeakyReLU, ONNX LeakyRelu
    "leaky_relu": ("leaky_relu", {"negative_slope": 0.01}),  # torch.nn.functional.leaky_relu
    "elu": ("elu", {"alpha": 1.0}),
    "tanh": ("tanh", {}),
    "sigmoid": ("sigmoid", {}),
    "softplus": ("softplus", {"beta": 1.0, "threshold": 20.0}),
    "hardtanh": ("hardtanh", {"min_val": -1.0, "max_val": 1.0}),
    "relu6": ("relu6", {}),
    "gelu": ("gelu", {"approximate": "none"}),              # torch.nn.GELU, ONNX Gelu (opset 20)
    "silu": ("silu", {}),                                     # torch.nn.SiLU (ONNX: Sigmoid + Mul, fused)
}
_CARRIED = {"negative_slope", "alpha", "beta", "min_val", "max_val", "approximate"}


def is_activation_type(kind: str) -> bool:
    """Whether ``kind`` (e.g. "ReLU", "relu_", "LeakyRelu") is in ACTIVATION_TYPES."""
    return _activation_key(kind) in ACTIVATION_TYPES


def _activation_key(kind: str) -> str:
    return str(kind).lower().rstrip("_")  # "relu_" is torch's in-place relu


def activation_name(kind: str, params: dict | None = None) -> str:
    """The lipopt activation spec of ``kind`` with ``params`` (e.g. "leaky_relu:0.2" for
    LeakyReLU(negative_slope=0.2)); InvalidInputError if unknown, or a parameter is invalid or differs
    from the only value lipopt supports (softplus' threshold)."""
    entry = ACTIVATION_TYPES.get(_activation_key(kind))
    if entry is None:
        raise InvalidInputError(f"{kind} is not a known activation")
    name, defaults = entry
    carried = {}
    for key, value in (params or {}).items():
        if key not in defaults or value is None:
            continue
        if isinstance(value, bytes):
            value = value.decode()
        if key in _CARRIED and (name != "softplus" or key == "beta"):
            carried[key] = value
        elif not math.isclose(float(value), defaults[key], rel_tol=1e-6):
            raise InvalidInputError(
                f"{key}={float(value):g} is not supported, only the default {key}={defaults[key]:g}")
    return make_activation(name, **carried).spec


def supported_activations() -> list[str]:
    """Names of the table that ACTIVATIONS currently supports."""
    return sorted({name for name, _ in ACTIVATION_TYPES.values() if name in ACTIVATIONS})


# --------------------------------------------------------------------------------------------------------
# Sparse matrices of convolution and average pooling (vectorised index arithmetic).

def _ints(value, n: int, what: str) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    t = tuple(int(v) for v in value)
    if len(t) == 1 and n > 1:
        t = t * n
    if len(t) != n:
        raise InvalidInputError(f"{what} must have {n} entries, got {tuple(value)}")
    return t


def _pad_pairs(padding, n: int) -> tuple[tuple[int, int], ...]:
    """int, n ints (symmetric) or n (lo, hi) pairs -> n (lo, hi) pairs."""
    if isinstance(padding, (int, np.integer)):
        return ((int(padding), int(padding)),) * n
    items = list(padding)
    if len(items) == n and all(isinstance(p, (tuple, list)) for p in items):
        pairs = tuple((int(lo), int(hi)) for lo, hi in items)
    else:
        pairs = tuple((p, p) for p in _ints(items, n, "padding"))
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise InvalidInputError(f"negative padding {padding} is not supported")
    return pairs


def _conv_source(n: int, k: int, stride: int, pad: tuple[int, int], dilation: int,
                 mode: str) -> np.ndarray:
    """Input coordinate read by kernel tap j at output position p along one axis, shape (k, n_out);
    -1 where it falls on zero padding. Coordinate p * stride - pad_lo + j * dilation, mapped back into
    [0, n) for reflect / replicate / circular padding."""
    lo, hi = pad
    span = dilation * (k - 1) + 1
    if n + lo + hi < span:
        raise InvalidInputError(f"kernel extent {span} exceeds the padded input size {n + lo + hi}")
    n_out = (n + lo + hi - span) // stride + 1
    coord = np.arange(n_out)[None, :] * stride + np.arange(k)[:, None] * dilation - lo
    if mode == "zeros":
        return np.where((coord >= 0) & (coord < n), coord, -1)
    if mode == "reflect":
        if max(lo, hi) >= n:
            raise InvalidInputError(f"reflect padding {max(lo, hi)} must be smaller than the input size {n}")
        coord = np.abs(coord)
        return np.where(coord >= n, 2 * (n - 1) - coord, coord)
    if mode == "replicate":
        return np.clip(coord, 0, n - 1)
    if mode == "circular":
        if max(lo, hi) > n:
            raise InvalidInputError(f"circular padding {max(lo, hi)} exceeds the input size {n}")
        return coord % n
    raise InvalidInputError(f"unsupported padding mode {mode!r} (zeros, reflect, replicate, circular)")


def conv_matrix(weight, in_shape: Sequence[int], stride=1, padding=0, dilation=1, groups: int = 1,
                padding_mode: str = "zeros", bias=None) -> tuple[sp.csr_array, np.ndarray, Shape]:
    """Convolution (cross-correlation, as in torch and ONNX) of any spatial rank as a sparse affine map.

    y[o, p] = b[o] + sum_{i, k} K[o, i, k] x[g(o) C_in/groups + i, p * stride - pad_lo + k * dilation],
    g(o) = o // (C_out/groups). ``weight`` K has shape (C_out, C_in/groups, *kernel), ``in_shape`` is
    (C_in, *spatial); ``padding`` is an int, per-axis ints or per-axis (lo, hi) pairs. Returns
    (W of shape (C_out P, C_in Q) CSR, bias of length C_out P, output shape (C_out, *out_spatial)), both in
    channel-major flatten order. Zero weights (pruning) produce no entries; taps falling on zero padding
    are dropped, taps of reflect/replicate/circular padding are summed into the input they copy.
    """
    K = np.asarray(weight, dtype=np.float64)
    nd = K.ndim - 2
    in_shape = tuple(int(s) for s in in_shape)
    if nd < 1:
        raise InvalidInputError(f"convolution weight must have shape (C_out, C_in/groups, *kernel), "
                                f"got {K.shape}")
    if len(in_shape) != nd + 1:
        raise InvalidInputError(f"a {nd}-D convolution needs an input of shape (C, {nd} spatial sizes), "
                                f"got {in_shape}")
    c_out, c_in_g = K.shape[:2]
    kernel = K.shape[2:]
    c_in, spatial = in_shape[0], in_shape[1:]
    if groups < 1 or c_out % groups or c_in != c_in_g * groups:
        raise InvalidInputError(f"convolution expects {c_in_g * groups} input channels in {groups} groups, "
                                f"got input shape {in_shape}")
    stride, dilation = _ints(stride, nd, "stride"), _ints(dilation, nd, "dilation")
    pads = _pad_pairs(padding, nd)
    if min(stride) < 1 or min(dilation) < 1:
        raise InvalidInputError(f"stride {stride} and dilation {dilation} must be positive")

    # Per axis, the input coordinate of every (tap, output position); broadcast them to the full grid
    # (k_0, ..., k_{nd-1}, p_0, ..., p_{nd-1}) -> flat input position and validity, shape (taps, P).
    flat_q = np.zeros((1,) * (2 * nd), dtype=np.int64)
    valid = np.ones((1,) * (2 * nd), dtype=bool)
    out_spatial, row_stride = [], math.prod(spatial)
    for d in range(nd):  # loops over the 1-3 spatial axes only
        src = _conv_source(spatial[d], kernel[d], stride[d], pads[d], dilation[d], padding_mode)
        out_spatial.append(src.shape[1])
        row_stride //= spatial[d]
        shape = [1] * (2 * nd)
        shape[d], shape[nd + d] = src.shape
        src = src.reshape(shape)
        valid = valid & (src >= 0)
        flat_q = flat_q + src * row_stride
    n_taps, P, Q = math.prod(kernel), math.prod(out_spatial), math.prod(spatial)
    grid = tuple(kernel) + tuple(out_spatial)
    flat_q = np.broadcast_to(flat_q, grid).reshape(n_taps, P)
    valid = np.broadcast_to(valid, grid).reshape(n_taps, P)

    # Every nonzero weight (o, i, tap) times every valid output position p of its tap: an outer product of
    # index vectors per tap (the loop runs over kernel taps, never over pixels).
    idx = np.int32 if max(c_out * P, c_in * Q) < 2 ** 31 else np.int64
    Kf = K.reshape(c_out, c_in_g, n_taps)
    rows, cols, vals = [], [], []
    for tap in range(n_taps):
        o, i = np.nonzero(Kf[:, :, tap])
        p = np.nonzero(valid[tap])[0]
        if o.size == 0 or p.size == 0:
            continue
        in_channel = (o // (c_out // groups)) * c_in_g + i
        rows.append((o.astype(idx)[:, None] * P + p.astype(idx)[None, :]).ravel())
        cols.append((in_channel.astype(idx)[:, None] * Q + flat_q[tap, p].astype(idx)[None, :]).ravel())
        vals.append(np.repeat(Kf[o, i, tap], p.size))
    cat = (lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt))
    W = sp.coo_array((cat(vals, np.float64), (cat(rows, idx), cat(cols, idx))),
                     shape=(c_out * P, c_in * Q)).tocsr()  # sums duplicates (reflect/circular padding)
    W.eliminate_zeros()
    W.sort_indices()
    b = np.zeros(c_out) if bias is None else np.asarray(bias, dtype=np.float64).reshape(c_out)
    return W, np.repeat(b, P), (c_out,) + tuple(out_spatial)


def _pool_axis(n: int, k: int, stride: int, pad: tuple[int, int], ceil_mode: bool):
    """One axis of average pooling (torch semantics): 0/1 window matrix (n_out, n), the window sizes
    counting padding (ends clipped at n + pad_hi) and counting only real inputs."""
    lo, hi = pad
    if n + lo + hi < k:
        raise InvalidInputError(f"pooling window {k} exceeds the padded input size {n + lo + hi}")
    num = n + lo + hi - k
    n_out = (-(-num // stride) if ceil_mode else num // stride) + 1
    if ceil_mode and (n_out - 1) * stride >= n + lo:  # the last window must start inside the input
        n_out -= 1
    start = np.arange(n_out) * stride - lo
    end = np.minimum(start + k, n + hi)
    first, last = np.maximum(start, 0), np.minimum(end, n)
    cand = start[:, None] + np.arange(k)[None, :]
    rows, taps = np.nonzero((cand >= first[:, None]) & (cand < last[:, None]))
    B = sp.csr_array((np.ones(rows.size), (rows, cand[rows, taps])), shape=(n_out, n))
    return B, (end - start).astype(np.float64), (last - first).astype(np.float64)


def _adaptive_axis(n: int, n_out: int):
    """One axis of adaptive average pooling: window [floor(i n / m), ceil((i + 1) n / m))."""
    i = np.arange(n_out)
    start, end = (i * n) // n_out, -(-((i + 1) * n) // n_out)
    cand = start[:, None] + np.arange(int((end - start).max()))[None, :]
    rows, taps = np.nonzero(cand < end[:, None])
    B = sp.csr_array((np.ones(rows.size), (rows, cand[rows, taps])), shape=(n_out, n))
    return B, (end - start).astype(np.float64)


def _separable_pool(channels: int, mats: list, divisors: list, override=None) -> sp.csr_array:
    """kron(I_C, diag(1 / prod_d div_d) kron_d B_d): per-channel pooling from per-axis windows."""
    M, div = mats[0], divisors[0]
    for B, dv in zip(mats[1:], divisors[1:]):
        M = sp.kron(M, B, format="csr")
        div = np.outer(div, dv).ravel()
    if override is not None:
        div = np.full(M.shape[0], float(override))
    div = np.where(div > 0, div, 1.0)
    M = sp.csr_array(sp.diags_array(1.0 / div) @ M)
    W = sp.csr_array(sp.kron(sp.eye_array(channels), M, format="csr"))
    W.sort_indices()
    return W


def avgpool_matrix(in_shape: Sequence[int], kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                   count_include_pad: bool = True,
                   divisor_override=None) -> tuple[sp.csr_array, np.ndarray, Shape]:
    """Average pooling (torch semantics) as a sparse linear map: y[c, p] = sum_{q in window(p)} x[c, q] / d(p),
    d(p) = window size counting zero padding (count_include_pad) or only real inputs, or divisor_override.
    Windows and divisors factor over axes, so W = kron(I_C, diag(1/d) kron_d B_d).
    Returns (W, zeros, output shape)."""
    in_shape = tuple(int(s) for s in in_shape)
    nd = len(in_shape) - 1
    if nd < 1:
        raise InvalidInputError(f"pooling needs an input of shape (C, *spatial), got {in_shape}")
    kernel = _ints(kernel_size, nd, "kernel_size")
    no_stride = stride is None or np.ndim(stride) == 1 and len(stride) == 0
    stride = kernel if no_stride else _ints(stride, nd, "stride")
    pads = _pad_pairs(padding, nd)
    if min(kernel) < 1 or min(stride) < 1:
        raise InvalidInputError(f"pooling kernel {kernel} and stride {stride} must be positive")
    mats, divs = [], []
    for d in range(nd):
        B, incl, excl = _pool_axis(in_shape[d + 1], kernel[d], stride[d], pads[d], bool(ceil_mode))
        mats.append(B)
        divs.append(incl if count_include_pad else excl)
    W = _separable_pool(in_shape[0], mats, divs, divisor_override)
    return W, np.zeros(W.shape[0]), (in_shape[0],) + tuple(B.shape[0] for B in mats)


def adaptive_avgpool_matrix(in_shape: Sequence[int], output_size=None) -> tuple[sp.csr_array, np.ndarray, Shape]:
    """Adaptive average pooling: output i of an axis of size n -> m averages inputs
    floor(i n/m) .. ceil((i+1) n/m) - 1. ``output_size`` None means global pooling (all ones); an entry None
    keeps that axis."""
    in_shape = tuple(int(s) for s in in_shape)
    nd = len(in_shape) - 1
    if nd < 1:
        raise InvalidInputError(f"pooling needs an input of shape (C, *spatial), got {in_shape}")
    sizes = (1,) * nd if output_size is None else tuple(
        in_shape[d + 1] if s is None else int(s) for d, s in enumerate(_as_tuple(output_size, nd)))
    if len(sizes) != nd or min(sizes) < 1:
        raise InvalidInputError(f"adaptive pooling output size {output_size} does not fit input {in_shape}")
    mats, divs = zip(*(_adaptive_axis(in_shape[d + 1], sizes[d]) for d in range(nd)))
    W = _separable_pool(in_shape[0], list(mats), list(divs))
    return W, np.zeros(W.shape[0]), (in_shape[0],) + sizes


def _as_tuple(value, n: int) -> tuple:
    if value is None or isinstance(value, (int, np.integer)):
        return (value,) * n
    t = tuple(value)
    return t * n if len(t) == 1 and n > 1 else t


# --------------------------------------------------------------------------------------------------------
# Layers. Shapes exclude the batch dimension; dims given "with batch" follow torch/ONNX numbering.

@dataclass(eq=False)
class Layer:
    label: str  # "features.0 (Conv2d)": names the layer in error messages

    def affine(self, shape: Shape) -> tuple[sp.csr_array | None, np.ndarray | None, Shape]:
        """(W, b, output shape) of the layer on an input of ``shape``; W is None for pure reshapes."""
        raise NotImplementedError


@dataclass(eq=False)
class Activation(Layer):
    name: str = "relu"


@dataclass(eq=False)
class Dense(Layer):
    """y = W x + b on the last axis (torch Linear, ONNX Gemm/MatMul); on an input (..., n) this is
    kron(I, W)."""
    weight: np.ndarray = None  # (out, in)
    bias: np.ndarray | None = None

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    def affine(self, shape):
        n_out, n_in = self.weight.shape
        if shape[-1] != n_in:
            raise InvalidInputError(f"expects {n_in} input features on its last axis, "
                                    f"got an input of shape {shape}")
        W = sp.csr_array(self.weight, dtype=np.float64)
        W.eliminate_zeros()
        b = np.zeros(n_out) if self.bias is None else np.asarray(self.bias, dtype=np.float64).reshape(n_out)
        m = math.prod(shape[:-1])
        if m > 1:
            W, b = sp.csr_array(sp.kron(sp.eye_array(m), W, format="csr")), np.tile(b, m)
        return W, b, tuple(shape[:-1]) + (n_out,)


@dataclass(eq=False)
class Conv(Layer):
    """Convolution; ``padding`` is explicit (see conv_matrix), or "valid", "same" (torch: total
    dilation (k - 1), extra on the high side) or "same_upper"/"same_lower" (ONNX auto_pad)."""
    weight: np.ndarray = None  # (C_out, C_in/groups, *kernel)
    bias: np.ndarray | None = None
    stride: tuple = 1
    padding: object = 0
    dilation: tuple = 1
    groups: int = 1
    padding_mode: str = "zeros"

    @property
    def ndim(self) -> int:
        return self.weight.ndim - 2

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1] * self.groups)

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    def _pads(self, spatial) -> tuple[tuple[int, int], ...]:
        nd = self.ndim
        stride, dilation = _ints(self.stride, nd, "stride"), _ints(self.dilation, nd, "dilation")
        return tuple(_auto_pad(self.padding, n, k, s, dl) for n, k, s, dl in
                     zip(spatial, self.weight.shape[2:], stride, dilation)) \
            if isinstance(self.padding, str) else _pad_pairs(self.padding, nd)

    def affine(self, shape):
        if len(shape) != self.ndim + 1:
            raise InvalidInputError(f"expects an input of shape (C, {self.ndim} spatial sizes), got {shape}")
        return conv_matrix(self.weight, shape, self.stride, self._pads(shape[1:]), self.dilation, self.groups,
                           self.padding_mode, self.bias)

    def size_map(self, axis: int, n: np.ndarray) -> np.ndarray:
        """Output size along ``axis`` for every candidate input size n (-1 where invalid)."""
        k = self.weight.shape[2 + axis]
        s = _ints(self.stride, self.ndim, "stride")[axis]
        dl = _ints(self.dilation, self.ndim, "dilation")[axis]
        if isinstance(self.padding, str) and self.padding.lower() in ("same_upper", "same_lower"):
            return np.where(n >= 1, -(-n // s), -1)  # ONNX auto_pad: output ceil(n / s)
        lo, hi = _auto_pad(self.padding, 1, k, s, dl) if isinstance(self.padding, str) else \
            _pad_pairs(self.padding, self.ndim)[axis]
        span = dl * (k - 1) + 1
        ok = (n + lo + hi >= span) & (n >= 1)
        if self.padding_mode == "reflect":
            ok &= n > max(lo, hi)
        return np.where(ok, (n + lo + hi - span) // s + 1, -1)


def _auto_pad(mode: str, n: int, k: int, s: int, dl: int) -> tuple[int, int]:
    mode = mode.lower()
    span = dl * (k - 1) + 1
    if mode == "valid":
        return 0, 0
    if mode == "same":  # torch: stride 1, total dilation * (k - 1), the odd one on the high side
        total = span - 1
        return total // 2, total - total // 2
    if mode in ("same_upper", "same_lower"):  # ONNX: output ceil(n / s)
        total = max((-(-n // s) - 1) * s + span - n, 0)
        small = total // 2
        return (small, total - small) if mode == "same_upper" else (total - small, small)
    raise InvalidInputError(f"unsupported padding {mode!r}")


@dataclass(eq=False)
class AvgPool(Layer):
    """Average pooling (see avgpool_matrix); ``padding`` may be an ONNX auto_pad string."""
    kernel_size: tuple = 1
    stride: tuple | None = None
    padding: object = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None

    @property
    def ndim(self) -> int:
        return 0 if isinstance(self.kernel_size, (int, np.integer)) else len(self.kernel_size)

    def _resolved(self, spatial):
        nd = len(spatial)
        kernel = _ints(self.kernel_size, nd, "kernel_size")
        stride = kernel if self.stride is None else _ints(self.stride, nd, "stride")
        if isinstance(self.padding, str):
            pads = tuple(_auto_pad(self.padding, n, k, s, 1) for n, k, s in zip(spatial, kernel, stride))
        else:
            pads = _pad_pairs(self.padding, nd)
        return kernel, stride, pads

    def affine(self, shape):
        if self.ndim and len(shape) != self.ndim + 1:
            raise InvalidInputError(f"expects an input of shape (C, {self.ndim} spatial sizes), got {shape}")
        kernel, stride, pads = self._resolved(shape[1:])
        return avgpool_matrix(shape, kernel, stride, pads, self.ceil_mode, self.count_include_pad,
                              self.divisor_override)

    def size_map(self, axis: int, n: np.ndarray) -> np.ndarray:
        nd = self.ndim
        kernel, stride, _ = self._resolved((1,) * nd)
        k, s = kernel[axis], stride[axis]
        if isinstance(self.padding, str):
            if self.padding.lower() == "valid":
                return np.where(n >= k, (n - k) // s + 1, -1)
            return np.where(n >= 1, -(-n // s), -1)
        lo, hi = _pad_pairs(self.padding, nd)[axis]
        num = n + lo + hi - k
        out = (-(-num // s) if self.ceil_mode else num // s) + 1
        if self.ceil_mode:
            out = np.where((out - 1) * s >= n + lo, out - 1, out)
        return np.where((num >= 0) & (n >= 1), out, -1)


@dataclass(eq=False)
class AdaptiveAvgPool(Layer):
    """Adaptive (or, with output_size None, global) average pooling."""
    output_size: object = None

    @property
    def ndim(self) -> int:
        return 0 if self.output_size is None or isinstance(self.output_size, int) else len(self.output_size)

    def affine(self, shape):
        if self.ndim and len(shape) != self.ndim + 1:
            raise InvalidInputError(f"expects an input of shape (C, {self.ndim} spatial sizes), got {shape}")
        return adaptive_avgpool_matrix(shape, self.output_size)

    def size_map(self, axis: int, n: np.ndarray) -> np.ndarray:
        m = 1 if self.output_size is None else _as_tuple(self.output_size, max(self.ndim, 1))[axis]
        return np.where(n >= 1, n if m is None else m, -1)


@dataclass(eq=False)
class ChannelAffine(Layer):
    """y[c, ...] = scale[c] x[c, ...] + shift[c] (batch-norm in eval mode:
    scale = gamma / sqrt(var + eps), shift = beta - mean * scale)."""
    scale: np.ndarray = None
    shift: np.ndarray = None

    @property
    def channels(self) -> int:
        return int(np.size(self.scale))

    def affine(self, shape):
        if shape[0] != self.channels:
            raise InvalidInputError(f"expects {self.channels} channels on the first axis, "
                                    f"got an input of shape {shape}")
        rest = math.prod(shape[1:])
        return (sp.diags_array(np.repeat(np.asarray(self.scale, np.float64), rest)).tocsr(),
                np.repeat(np.asarray(self.shift, np.float64), rest), tuple(shape))


@dataclass(eq=False)
class Elementwise(Layer):
    """y = scale * x + shift with constants broadcast against the input (N, *shape) as numpy does;
    the constants may not change the input's shape."""
    scale: object = 1.0
    shift: object = 0.0

    def affine(self, shape):
        full = (1,) + tuple(shape)
        vals = []
        for what, c in (("factor", self.scale), ("offset", self.shift)):
            c = np.asarray(c, dtype=np.float64)
            try:
                ok = np.broadcast_shapes(c.shape, full) == full
            except ValueError:
                ok = False
            if not ok:
                raise InvalidInputError(f"constant {what} of shape {c.shape} does not broadcast to the input "
                                        f"shape (N, {', '.join(map(str, shape))})")
            vals.append(np.broadcast_to(c, full).ravel())
        W = sp.diags_array(vals[0]).tocsr()
        W.eliminate_zeros()
        return W, vals[1].copy(), tuple(shape)


@dataclass(eq=False)
class Flatten(Layer):
    """Merge dims start..end (numbered with the batch dim first, as torch.flatten); the identity on the
    flat vector. Merging the batch dimension is an error."""
    start: int = 1
    end: int = -1

    def affine(self, shape):
        rank = len(shape) + 1
        s = self.start + rank if self.start < 0 else self.start
        e = self.end + rank if self.end < 0 else self.end
        if s == 0:
            raise InvalidInputError("flattening the batch dimension (start_dim=0) is not supported, "
                                    "use start_dim=1")
        if not 1 <= s <= e < rank:
            raise InvalidInputError(f"cannot flatten dims {self.start}..{self.end} of an input of shape {shape}")
        return None, None, tuple(shape[:s - 1]) + (math.prod(shape[s - 1:e]),) + tuple(shape[e:])


@dataclass(eq=False)
class Reshape(Layer):
    """Reshape keeping the batch dim: ``target`` excludes it; one entry may be -1; with copy_zeros
    (ONNX) a 0 copies the input's size on that axis. The identity on the flat vector."""
    target: tuple = (-1,)
    copy_zeros: bool = False

    def affine(self, shape):
        numel = math.prod(shape)
        t = [shape[j] if (v == 0 and self.copy_zeros and j < len(shape)) else int(v)
             for j, v in enumerate(self.target)]
        if t.count(-1) > 1 or any(v < -1 or (v == 0 and self.copy_zeros) for v in t):
            raise InvalidInputError(f"invalid reshape target {tuple(self.target)} for an input of shape {shape}")
        known = math.prod(v for v in t if v != -1)
        if -1 in t:
            if known == 0 or numel % known:
                raise InvalidInputError(f"cannot reshape an input of shape {shape} to {tuple(self.target)}")
            t[t.index(-1)] = numel // known
        if math.prod(t) != numel:
            raise InvalidInputError(f"cannot reshape an input of shape {shape} ({numel} values) to {tuple(t)}")
        return None, None, tuple(t)


@dataclass(eq=False)
class Unflatten(Layer):
    """Split dim ``dim`` (numbered with the batch dim first) into ``sizes`` (one may be -1)."""
    dim: int = 1
    sizes: tuple = ()

    def affine(self, shape):
        rank = len(shape) + 1
        d = self.dim + rank if self.dim < 0 else self.dim
        if not 1 <= d < rank:
            raise InvalidInputError(f"cannot unflatten dim {self.dim} of an input of shape {shape}")
        _, _, part = Reshape(self.label, tuple(self.sizes)).affine((shape[d - 1],))
        return None, None, tuple(shape[:d - 1]) + part + tuple(shape[d:])


_SPATIAL = (Conv, AvgPool, AdaptiveAvgPool)
_AFFINE = (Dense, Conv, AvgPool, AdaptiveAvgPool, ChannelAffine, Elementwise)


# --------------------------------------------------------------------------------------------------------
# Chains of layers -> Network.

def network_from_layers(layers: Sequence[Layer], input_shape: Sequence[int], source: str = "model") -> Network:
    """Compose a chain of layers on inputs of ``input_shape`` (no batch dim) into a Network.

    Affine maps with no activation between them are multiplied out (so batch-norm folds into the previous
    affine map, or into the next one when an activation precedes it); an activation with no affine map
    before it (first layer, two activations in a row, or a final activation) gets the identity map.
    """
    if not any(isinstance(layer, _AFFINE) for layer in layers):
        raise InvalidInputError(f"{source}: the model has no affine layer (Linear, Conv, pooling, batch-norm)")
    shape = tuple(int(s) for s in input_shape)
    if not shape or min(shape) < 1:
        raise InvalidInputError(f"{source}: invalid input shape {tuple(input_shape)}")
    Ws, bs, acts = [], [], []
    W = b = None
    for layer in layers:
        if isinstance(layer, Activation):
            if W is None:
                W, b = sp.eye_array(math.prod(shape), format="csr"), np.zeros(math.prod(shape))
            Ws.append(W)
            bs.append(b)
            acts.append(layer.name)
            W = b = None
            continue
        try:
            W2, b2, shape = layer.affine(shape)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{source}: {layer.label}: {exc}") from None
        if W2 is None:
            continue
        if W is None:
            W, b = W2, b2
        else:
            W, b = sp.csr_array(W2 @ W), W2 @ b + b2
            W.eliminate_zeros()
    if W is None:
        W, b = sp.eye_array(math.prod(shape), format="csr"), np.zeros(math.prod(shape))
    Ws.append(W)
    bs.append(b)
    return build_network(Ws, bs, acts, source=source)


def infer_input_shape(layers: Sequence[Layer], source: str = "model", max_size: int = 4096) -> Shape:
    """Input shape (no batch dim) implied by the layers: (n,) when a Linear (or an explicit reshape)
    comes before any convolution / pooling; else (C, L) or (C, H, W) such that the Linear after the
    Flatten receives exactly its number of features. C comes from the first convolution or batch-norm.
    A unique fit is used; among several 2-D fits a unique square one is used with a warning; otherwise
    InvalidInputError asks for input_shape."""
    def ask(why: str):
        raise InvalidInputError(f"{source}: cannot infer the input shape ({why}); pass input_shape=(C, H, W) "
                                f"or (C, L) without the batch dimension")

    anchor = None
    for i, layer in enumerate(layers):
        if isinstance(layer, Dense):
            return (layer.in_features,)
        if isinstance(layer, Reshape) and -1 not in layer.target and \
                not (layer.copy_zeros and 0 in layer.target):
            return (math.prod(layer.target),)
        if isinstance(layer, Unflatten) and layer.dim == 1 and -1 not in layer.sizes:
            return (math.prod(layer.sizes),)
        if isinstance(layer, Reshape) and tuple(layer.target) == (-1,):
            continue  # a flatten: the input may as well be flat
        if isinstance(layer, _SPATIAL + (Unflatten, Reshape)):
            anchor = i
            break
    if anchor is None or not isinstance(layers[anchor], _SPATIAL):
        ask("no Linear, convolution or pooling layer fixes it")
    first = layers[anchor]
    nd = first.ndim
    if nd not in (1, 2):
        ask(f"{first.label} does not determine 1-D or 2-D inputs")
    channels = next((l.in_channels if isinstance(l, Conv) else l.channels for l in layers
                     if isinstance(l, (Conv, ChannelAffine))), None)
    if channels is None:
        ask("no convolution or batch-norm gives the number of input channels")
    sizes = [np.arange(1, max_size + 1) for _ in range(nd)]
    c, flat, dense = channels, False, None
    for layer in layers:
        if isinstance(layer, Dense):
            dense = layer
            break
        if isinstance(layer, _SPATIAL) and not flat:
            if layer.ndim not in (0, nd):
                ask(f"{layer.label} has a different spatial rank")
            sizes = [layer.size_map(d, s) for d, s in enumerate(sizes)]
            c = layer.out_channels if isinstance(layer, Conv) else c
        elif isinstance(layer, (Activation, Elementwise, ChannelAffine)):
            continue
        elif isinstance(layer, Flatten) and layer.start in (1, -nd - 1) and layer.end == -1 or \
                isinstance(layer, Reshape) and tuple(layer.target) == (-1,):
            flat = True
        else:
            ask(f"{layer.label} comes between the first convolution/pooling and the first Linear")
    if dense is None or not flat:
        ask(f"no Flatten followed by a Linear after {first.label}")
    target = dense.in_features
    if nd == 1:
        fits = [(channels, int(n)) for n in np.nonzero((sizes[0] > 0) & (c * sizes[0] == target))[0] + 1]
        count, squares = len(fits), []
    else:  # pairs (h, w) with c * g0(h) * g1(w) == target, counted without listing them all
        fits, squares, count = [], [], 0
        g0, g1 = sizes
        for v in np.unique(g0[g0 > 0]):
            if target % (c * v) == 0:
                hs = np.nonzero(g0 == v)[0] + 1
                ws = np.nonzero(g1 == target // (c * v))[0] + 1
                count += hs.size * ws.size
                fits.extend((channels, int(h), int(w)) for h in hs[:2] for w in ws[:2])
                squares.extend((channels, int(h), int(h)) for h in np.intersect1d(hs, ws))
    if count == 1:
        return fits[0]
    if count == 0:
        ask(f"no input size makes {first.label} .. {dense.label} consistent")
    if len(squares) == 1:
        warnings.warn(f"{source}: input shape inferred as {squares[0]} from {dense.label}, assuming a square "
                      f"input ({count - 1} non-square shapes fit too); pass input_shape to be explicit",
                      stacklevel=3)
        return squares[0]
    examples = squares[:2] if len(squares) >= 2 else fits[:2]
    ask(f"{count} input sizes fit, e.g. {examples[0]} and {examples[1]}")
