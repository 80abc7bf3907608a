"""Networks as directed acyclic graphs over flat vectors: residual Add, Concat and max pooling.

Node kinds (values are flat channel-major vectors, batched as (N, size)):
  input                      x
  affine   (W, b)            W h + b (W scipy.sparse CSR; conv, average pooling, BatchNorm, reshapes fold in)
  act      (Activation)      sigma(h) elementwise
  add                        h_1 + ... + h_k  (residual / skip connections; a projection is an affine node)
  concat                     [h_1; ...; h_k]  (channel axis of channel-major tensors = plain concatenation)
  maxpool  (windows)         y_w = max_{i in window w} h_i; windows is (n_out, k) int, -1 = padding (-inf)
The gradient of c^T f is a sum over input-output paths of different lengths; max pooling's Clarke Jacobian
selects one input per window (a convex combination at ties). A graph with only affine/act nodes in a line
is a chain and converts to ``Network`` (``to_network``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError
from .activations import Activation
from .activations import derivative as _slope
from .activations import value as _value
from .network import Network, build_network

GRAPH_KINDS = frozenset({"add", "concat", "maxpool"})   # node kinds a chain network does not have


@dataclass(frozen=True, eq=False)
class Node:
    kind: str                               # input | affine | act | add | concat | maxpool
    inputs: tuple[int, ...]
    size: int
    shape: tuple = ()                       # tensor shape without the batch dim (for display)
    W: sp.csr_array | None = None
    b: np.ndarray | None = None
    act: Activation | None = None
    windows: np.ndarray | None = None
    label: str = ""


@dataclass(frozen=True, eq=False)
class GraphNetwork:
    """A DAG of nodes in topological order; node 0 is the input, the last node the output."""
    nodes: tuple[Node, ...]
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # -- shape information, shared with Network's interface where the methods read it --------------
    @property
    def input_size(self) -> int:
        return self.nodes[0].size

    @property
    def output_size(self) -> int:
        return self.nodes[-1].size

    @property
    def act_nodes(self) -> tuple[int, ...]:
        return tuple(i for i, n in enumerate(self.nodes) if n.kind == "act")

    @property
    def pool_nodes(self) -> tuple[int, ...]:
        return tuple(i for i, n in enumerate(self.nodes) if n.kind == "maxpool")

    @property
    def depth(self) -> int:
        """Number of activation nodes (what the registry's depth ranges count)."""
        return len(self.act_nodes)

    @property
    def activations(self) -> tuple[Activation, ...]:
        return tuple(self.nodes[i].act for i in self.act_nodes)

    @property
    def widths(self) -> tuple[int, ...]:
        """(input size, activation node sizes in order, output size): Network.widths' layout."""
        return (self.input_size,) + tuple(self.nodes[i].size for i in self.act_nodes) + (self.output_size,)

    @property
    def weights(self) -> tuple:
        """The affine nodes' matrices (size estimates read them)."""
        return tuple(n.W for n in self.nodes if n.kind == "affine")

    @property
    def n_params(self) -> int:
        return int(sum(n.W.nnz + n.b.size for n in self.nodes if n.kind == "affine"))

    @property
    def kinds(self) -> frozenset:
        """The graph node kinds present (add, concat, maxpool): what a chain method cannot handle."""
        return frozenset(n.kind for n in self.nodes) & GRAPH_KINDS

    def consumers(self) -> list[list[int]]:
        out = [[] for _ in self.nodes]
        for i, n in enumerate(self.nodes):
            for j in n.inputs:
                out[j].append(i)
        return out

    # -- evaluation ----------------------------------------------------------------------------------
    def values(self, x: np.ndarray) -> list[np.ndarray]:
        """Every node's value on the batch x (N, input_size)."""
        h = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if h.shape[1] != self.input_size:
            raise InvalidInputError(f"the graph has {self.input_size} inputs, got points of size {h.shape[1]}")
        vals = [h]
        for n in self.nodes[1:]:
            ins = [vals[j] for j in n.inputs]
            if n.kind == "affine":
                v = (n.W @ ins[0].T).T + n.b
            elif n.kind == "act":
                v = _value(n.act, ins[0])
            elif n.kind == "add":
                v = ins[0].copy()
                for u in ins[1:]:
                    v = v + u
            elif n.kind == "concat":
                v = np.concatenate(ins, axis=1)
            elif n.kind == "maxpool":
                v = pool_values(ins[0], n.windows).max(axis=2)
            else:  # pragma: no cover - built only by GraphBuilder
                raise InvalidInputError(f"unknown node kind {n.kind!r}")
            vals.append(v)
        return vals

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.values(x)[-1]

    def gradient(self, x: np.ndarray, c: np.ndarray, vals: list | None = None) -> np.ndarray:
        """Gradient of c^T f at each row of x (reverse mode), shape (N, input_size). ReLU kinks take the
        left derivative, MaxPool ties the first maximal input: one element of the Clarke Jacobian."""
        vals = self.values(x) if vals is None else vals
        N = vals[0].shape[0]
        adj: list = [None] * len(self.nodes)
        adj[-1] = np.tile(np.asarray(c, dtype=np.float64), (N, 1))
        for i in range(len(self.nodes) - 1, 0, -1):
            g, n = adj[i], self.nodes[i]
            if g is None:
                continue
            if n.kind == "affine":
                parts = [(n.W.T @ g.T).T]
            elif n.kind == "act":
                parts = [g * _slope(n.act, vals[n.inputs[0]])]
            elif n.kind == "add":
                parts = [g] * len(n.inputs)
            elif n.kind == "concat":
                cuts = np.cumsum([self.nodes[j].size for j in n.inputs])[:-1]
                parts = np.split(g, cuts, axis=1)
            else:  # maxpool: the adjoint goes to each window's (first) argmax
                src = vals[n.inputs[0]]
                pick = pool_argmax(src, n.windows)
                out = np.zeros_like(src)
                rows = np.repeat(np.arange(N), pick.shape[1])
                np.add.at(out, (rows, pick.ravel()), g.ravel())
                parts = [out]
            for j, p in zip(n.inputs, parts):
                adj[j] = p if adj[j] is None else adj[j] + p
        return adj[0] if adj[0] is not None else np.zeros((N, self.input_size))

    # -- chains ----------------------------------------------------------------------------------------
    def is_chain(self) -> bool:
        """Only affine / act nodes, each reading the node just before it."""
        return not self.kinds and all(n.inputs == (i,) for i, n in enumerate(self.nodes[1:]))

    def to_network(self, source: str = "model") -> Network:
        """The equivalent Network of a chain graph (consecutive affine maps composed, an activation
        without an affine map before it gets the identity)."""
        if not self.is_chain():
            raise InvalidInputError(f"{source}: the graph has {', '.join(sorted(self.kinds)) or 'branches'}, "
                                    "not a chain")
        Ws, bs, acts, W, b = [], [], [], None, None
        for n in self.nodes[1:]:
            if n.kind == "act":
                if W is None:
                    size = self.nodes[n.inputs[0]].size
                    W, b = sp.eye_array(size, format="csr"), np.zeros(size)
                Ws.append(W), bs.append(b), acts.append(n.act.spec)  # spec: parameters included
                W = b = None
            elif W is None:
                W, b = n.W, n.b
            else:
                W, b = sp.csr_array(n.W @ W), n.W @ b + n.b
        if W is None:
            W, b = sp.eye_array(self.output_size, format="csr"), np.zeros(self.output_size)
        Ws.append(W), bs.append(b)
        return build_network(Ws, bs, acts, source=source)

    def __getstate__(self):
        return {"nodes": self.nodes, "_cache": {}}


def pool_values(h: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """(N, n_out, k) window entries of h, padding (-1) as -inf."""
    idx = np.where(windows >= 0, windows, 0)
    v = h[:, idx]
    return np.where(windows[None] >= 0, v, -np.inf)


def pool_argmax(h: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """(N, n_out) input index of each window's first maximal entry."""
    k = np.argmax(pool_values(h, windows), axis=2)
    return windows[np.arange(windows.shape[0])[None, :], k]


def maxpool_windows(in_shape, kernel, stride=None, padding=0, dilation=1, ceil_mode: bool = False):
    """(windows (n_out, prod kernel) of flat input indices, -1 for padding; output shape) of max pooling
    on a channel-major tensor of ``in_shape`` = (C, *spatial) with torch's output-size rule."""
    in_shape = tuple(int(s) for s in in_shape)
    nd = len(in_shape) - 1
    if nd < 1:
        raise InvalidInputError(f"max pooling needs an input of shape (C, *spatial), got {in_shape}")
    tup = (lambda v: (int(v),) * nd if np.ndim(v) == 0 else tuple(int(a) for a in v))
    kernel = tup(kernel)
    stride = kernel if stride is None or (np.ndim(stride) and len(stride) == 0) else tup(stride)
    dilation = tup(dilation)
    if np.ndim(padding) == 0:
        pads = [(int(padding), int(padding))] * nd
    else:
        p = list(padding)
        pads = [tuple(int(a) for a in q) for q in p] if np.ndim(p[0]) else [(int(a), int(a)) for a in p]
    if not (len(kernel) == len(stride) == len(dilation) == len(pads) == nd) or min(kernel + stride + dilation) < 1:
        raise InvalidInputError(f"max pooling: kernel {kernel}, stride {stride}, dilation {dilation} must be "
                                f"positive with {nd} spatial axes")
    axes, outs = [], []
    for d in range(nd):
        n, k, s, dl, (lo, hi) = in_shape[d + 1], kernel[d], stride[d], dilation[d], pads[d]
        span = dl * (k - 1) + 1
        num = n + lo + hi - span
        m = (-(-num // s) if ceil_mode else num // s) + 1
        if ceil_mode and (m - 1) * s >= n + lo:
            m -= 1
        if m < 1:
            raise InvalidInputError(f"max pooling window {span} does not fit the padded input {n + lo + hi}")
        taps = np.arange(m)[:, None] * s - lo + np.arange(k)[None, :] * dl
        axes.append(np.where((taps >= 0) & (taps < n), taps, -1))
        outs.append(m)
    win = np.zeros((1, 1), dtype=np.int64)
    valid = np.ones((1, 1), dtype=bool)
    for d in range(nd):  # row-major combination of the axes: flat = ((c * S1 + t1) * S2 + t2) ...
        t = axes[d]
        win = (win[:, None, :, None] * in_shape[d + 1] + np.maximum(t, 0)[None, :, None, :]).reshape(
            win.shape[0] * t.shape[0], -1)
        valid = (valid[:, None, :, None] & (t >= 0)[None, :, None, :]).reshape(win.shape)
    plane = math.prod(in_shape[1:])
    full = np.arange(in_shape[0])[:, None, None] * plane + win[None]
    full = np.where(valid[None], full, -1).reshape(-1, win.shape[1])
    if np.any(np.all(full < 0, axis=1)):
        raise InvalidInputError("max pooling: a window holds padding only")
    return full.astype(np.int64), (in_shape[0],) + tuple(outs)


class GraphBuilder:
    """Builds a GraphNetwork node by node; ``finish`` composes chains of affine nodes, drops identities
    and nodes that do not reach the output."""

    def __init__(self, input_shape):
        shape = tuple(int(s) for s in input_shape)
        if not shape or min(shape) < 1:
            raise InvalidInputError(f"invalid input shape {tuple(input_shape)}")
        self.nodes = [Node("input", (), math.prod(shape), shape, label="input")]

    def shape(self, i: int) -> tuple:
        return self.nodes[i].shape

    def _push(self, node: Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def affine(self, src: int, W, b, shape, label: str = "") -> int:
        W = sp.csr_array(W, dtype=np.float64)
        b = np.zeros(W.shape[0]) if b is None else np.asarray(b, dtype=np.float64).reshape(W.shape[0])
        if W.shape[1] != self.nodes[src].size:
            raise InvalidInputError(f"{label}: {W.shape[1]} inputs but its input has {self.nodes[src].size}")
        return self._push(Node("affine", (src,), W.shape[0], tuple(shape), W, b, label=label))

    def layer(self, src: int, layer, label: str | None = None) -> int:
        """A conv.Layer (Dense, Conv, AvgPool, BatchNorm, reshapes, Activation) applied to node src."""
        from .conv import Activation as ActLayer
        from .activations import check_activation
        label = label or layer.label
        if isinstance(layer, ActLayer):
            n = self.nodes[src]
            return self._push(Node("act", (src,), n.size, n.shape, act=check_activation(layer.name), label=label))
        try:
            W, b, shape = layer.affine(self.shape(src))
        except InvalidInputError as exc:
            raise InvalidInputError(f"{label}: {exc}") from None
        if W is None:  # a reshape: the identity on the flat vector, a new shape
            n = self.nodes[src]
            return self._push(Node("affine", (src,), n.size, tuple(shape), sp.eye_array(n.size, format="csr"),
                                   np.zeros(n.size), label=label))
        return self.affine(src, W, b, shape, label)

    def add(self, srcs, label: str = "add") -> int:
        sizes = {self.nodes[j].size for j in srcs}
        if len(sizes) != 1:
            raise InvalidInputError(f"{label}: adds tensors of different sizes {sorted(sizes)} (broadcasting "
                                    "between branches is not supported)")
        n = self.nodes[srcs[0]]
        return self._push(Node("add", tuple(srcs), n.size, n.shape, label=label))

    def concat(self, srcs, axis: int = 1, label: str = "concat") -> int:
        shapes = [self.shape(j) for j in srcs]
        if axis < 0:
            axis += len(shapes[0]) + 1
        if axis != 1 or any(s[1:] != shapes[0][1:] for s in shapes):
            raise InvalidInputError(f"{label}: only concatenation along the channel axis (1) of tensors of "
                                    f"equal spatial shape is supported; got axis {axis} and shapes {shapes}")
        shape = (sum(s[0] for s in shapes),) + tuple(shapes[0][1:])
        return self._push(Node("concat", tuple(srcs), math.prod(shape), shape, label=label))

    def maxpool(self, src: int, kernel, stride=None, padding=0, dilation=1, ceil_mode=False,
                label: str = "maxpool") -> int:
        windows, shape = maxpool_windows(self.shape(src), kernel, stride, padding, dilation, ceil_mode)
        return self._push(Node("maxpool", (src,), windows.shape[0], shape, windows=windows, label=label))

    def finish(self, out: int) -> GraphNetwork:
        return simplify(self.nodes, out)


def simplify(nodes: list, out: int) -> GraphNetwork:
    """Keep the nodes that reach ``out``; compose an affine node with an affine input read by no other
    node (so BatchNorm folds into its conv, reshapes vanish); renumber in topological order."""
    nodes = list(nodes)
    live = np.zeros(len(nodes), dtype=bool)
    live[out] = True
    for i in range(out, -1, -1):
        if live[i]:
            live[list(nodes[i].inputs)] = True
    uses = np.zeros(len(nodes), dtype=int)
    for i in range(out + 1):
        if live[i]:
            for j in nodes[i].inputs:
                uses[j] += 1
    for i in range(out + 1):
        n = nodes[i]
        if not live[i] or n.kind != "affine":
            continue
        j = n.inputs[0]
        m = nodes[j]
        if m.kind == "affine" and uses[j] == 1:
            W = sp.csr_array(n.W @ m.W)
            W.eliminate_zeros()
            W.sort_indices()
            nodes[i] = Node("affine", m.inputs, n.size, n.shape, W, n.W @ m.b + n.b, label=f"{m.label} + {n.label}")
            live[j] = False
    # an identity affine map (a reshape) is dropped when its input is not the graph input or it is not last
    redirect = {}
    for i in range(out + 1):
        n = nodes[i]
        if live[i] and n.kind == "affine" and i != out and _is_identity(n):
            redirect[i] = n.inputs[0]
            live[i] = False
    def target(j):
        while j in redirect:
            j = redirect[j]
        return j
    new_id, kept = {}, []
    for i in range(out + 1):
        if live[i]:
            n = nodes[i]
            ins = tuple(new_id[target(j)] for j in n.inputs)
            new_id[i] = len(kept)
            kept.append(Node(n.kind, ins, n.size, n.shape, n.W, n.b, n.act, n.windows, n.label))
    return GraphNetwork(tuple(kept))


def _is_identity(n: Node) -> bool:
    W = n.W
    if W.shape[0] != W.shape[1] or W.nnz != W.shape[0] or np.any(n.b != 0):
        return False
    W = sp.csr_array(W)
    W.sort_indices()
    return bool(np.all(W.indices == np.arange(W.shape[0])) and np.all(W.data == 1.0))
