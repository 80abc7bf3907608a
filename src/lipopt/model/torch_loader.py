"""PyTorch models -> Network (torch is an optional dependency, imported only when used).

``from_torch`` reads an ``nn.Sequential`` (nested Sequentials flattened, custom child modules traced) or a
module whose forward is a straight line, traced with ``torch.fx``; ``.pt`` / ``.pth`` files are read by
``torch_files.load_torch_file``, which runs no code from them unless ``trust_code=True``. Every tensor goes
through ``_np`` (safety.real_array: real dtype, finite). Layers become the affine maps / activations of
``conv.py``: Linear W x + b; Conv1d/2d and AvgPool1d/2d as sparse matrices; BatchNorm (eval) as
x -> gamma (x - mean) / sqrt(var + eps) + beta, folded into the neighbouring affine map; Flatten, reshapes,
Dropout and Identity are the identity on the flat input.
"""
from __future__ import annotations

import operator

import numpy as np

from ..errors import InvalidInputError
from .safety import InvalidArrayError, check_finite, clean_errors, first_line, real_array
from .conv import (Activation, AdaptiveAvgPool, AvgPool, ChannelAffine, Conv, Dense, Elementwise, Flatten,
                   Layer, Reshape, Unflatten, activation_name, infer_input_shape, is_activation_type,
                   network_from_layers, supported_activations)
from .network import Network

SUPPORTED = ("Linear, Conv1d, Conv2d, AvgPool1d, AvgPool2d, AdaptiveAvgPool1d/2d, BatchNorm1d/2d (eval), "
             "Flatten, Unflatten, Dropout, Identity, activations ")  # + the names in ACTIVATIONS

_IGNORED = ("Identity", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout")
_KINDS = ("Linear", "Conv1d", "Conv2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
          "BatchNorm1d", "BatchNorm2d", "Flatten", "Unflatten", "ReLU", "LeakyReLU", "ELU", "Tanh", "Sigmoid",
          "Softplus", "Hardtanh", "ReLU6", "GELU", "SiLU", "Hardsigmoid") + _IGNORED
# parameters of the activations, in the order of the functional form's positional arguments
_ACT_PARAMS = {"leakyrelu": ("negative_slope",), "leaky_relu": ("negative_slope",), "elu": ("alpha",),
               "softplus": ("beta", "threshold"), "hardtanh": ("min_val", "max_val"), "gelu": ("approximate",)}
# TorchScript traced modules keep no hyper-parameters: read them from the aten op of their graph
_TRACED_OPS = {
    "Conv1d": ("aten::_convolution", {"stride": 3, "padding": 4, "dilation": 5, "groups": 8}),
    "Conv2d": ("aten::_convolution", {"stride": 3, "padding": 4, "dilation": 5, "groups": 8}),
    "AvgPool1d": ("aten::avg_pool1d", {"kernel_size": 1, "stride": 2, "padding": 3, "ceil_mode": 4,
                                       "count_include_pad": 5}),
    "AvgPool2d": ("aten::avg_pool2d", {"kernel_size": 1, "stride": 2, "padding": 3, "ceil_mode": 4,
                                       "count_include_pad": 5, "divisor_override": 6}),
    "AdaptiveAvgPool1d": ("aten::adaptive_avg_pool1d", {"output_size": 1}),
    "AdaptiveAvgPool2d": ("aten::adaptive_avg_pool2d", {"output_size": 1}),
    "BatchNorm1d": ("aten::batch_norm", {"training": 5, "eps": 7}),
    "BatchNorm2d": ("aten::batch_norm", {"training": 5, "eps": 7}),
    "Flatten": ("aten::flatten", {"start_dim": 1, "end_dim": 2}),
    "LeakyReLU": ("aten::leaky_relu", {"negative_slope": 1}),
    "ELU": ("aten::elu", {"alpha": 1}),
    "Softplus": ("aten::softplus", {"beta": 1, "threshold": 2}),
    "Hardtanh": ("aten::hardtanh", {"min_val": 1, "max_val": 2}),
    "GELU": ("aten::gelu", {"approximate": 1}),
}


class _Unsupported(Exception):
    """One unsupported layer; collected so that a single error lists all of them."""


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise InvalidInputError("PyTorch is not installed: pip install 'lipopt[torch]'") from None
    return torch


@clean_errors
def from_torch(module, input_shape=None) -> Network:
    """Network computing the same function as ``module`` (an nn.Sequential, a straight-line nn.Module, or
    a TorchScript nn.Sequential) on inputs of ``input_shape`` (no batch dim), flattened channel-major.

    ``input_shape`` is needed for convolutions / pooling unless a Linear after them fixes it (see
    conv.infer_input_shape). Unsupported layers raise one InvalidInputError listing all of them.
    """
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise InvalidInputError(f"expected a torch.nn.Module, got {type(module).__name__}")
    source = getattr(module, "original_name", None) or type(module).__name__
    layers, unsupported = [], []
    try:
        _collect(module, "", layers, unsupported)
    except InvalidArrayError as exc:  # a bad weight is an error of its own, not an "unsupported layer"
        raise InvalidArrayError(f"{source}: {exc}") from None
    if unsupported:
        raise InvalidInputError(f"{source}: unsupported layers: {'; '.join(unsupported)} "
                                f"(supported: {SUPPORTED}{'/'.join(supported_activations())})")
    if input_shape is None:
        shape = infer_input_shape(layers, source)
    else:
        shape = _shape_arg(input_shape)
    return network_from_layers(layers, shape, source)


def _shape_arg(input_shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in (input_shape if np.ndim(input_shape) else [input_shape]))
    except (TypeError, ValueError):
        raise InvalidInputError(f"input_shape must be a tuple of ints, got {input_shape!r}") from None
    if not shape or min(shape) < 1:
        raise InvalidInputError(f"input_shape must be positive sizes without the batch dim, got {input_shape!r}")
    return shape


# --------------------------------------------------------------------------------------------------------
# Walking modules.

def _collect(module, prefix: str, layers: list, unsupported: list) -> None:
    torch = _torch()
    nn = torch.nn
    if isinstance(module, torch.jit.ScriptModule):
        kind = getattr(module, "original_name", type(module).__name__)
        if kind != "Sequential":
            label = f"{prefix or '<model>'} ({kind})"
            unsupported.append(f"{label}: only TorchScript nn.Sequential models can be read (save an "
                               f"nn.Sequential, or pass the Python module)")
            return
        for name, child in module.named_children():
            qual = f"{prefix}.{name}" if prefix else name
            child_kind = getattr(child, "original_name", type(child).__name__)
            if child_kind == "Sequential":
                _collect(child, qual, layers, unsupported)
            else:
                _add(lambda: _convert(child_kind, _ScriptAttrs(child, child_kind), f"{qual} ({child_kind})"),
                     layers, unsupported, f"{qual} ({child_kind})")
        return
    if type(module) is nn.Sequential:
        for name, child in module.named_children():
            qual = f"{prefix}.{name}" if prefix else name
            kind = _builtin_kind(child)
            if type(child) is nn.Sequential or kind is None and not _is_torch_class(child):
                _collect(child, qual, layers, unsupported)  # nested Sequential / custom module: recurse / trace
            else:
                _add(lambda: _convert(kind or type(child).__name__, child, f"{qual} ({type(child).__name__})"),
                     layers, unsupported, f"{qual} ({type(child).__name__})")
        return
    kind = _builtin_kind(module)
    if kind is not None:
        label = f"{prefix or type(module).__name__} ({type(module).__name__})"
        _add(lambda: _convert(kind, module, label), layers, unsupported, label)
    elif _is_torch_class(module):
        unsupported.append(f"{prefix or '<model>'} ({type(module).__name__})")
    else:
        _trace(module, prefix, layers, unsupported)


def _add(convert, layers: list, unsupported: list, label: str) -> None:
    try:
        layers.extend(convert())
    except InvalidArrayError as exc:
        raise InvalidArrayError(f"{label}: {exc}") from None
    except (_Unsupported, InvalidInputError) as exc:
        unsupported.append(f"{label}: {exc}" if str(exc) else label)


def _builtin_kind(m) -> str | None:
    """The class name of a supported torch.nn layer (exact class: a subclass may override forward)."""
    cls = type(m)
    return cls.__name__ if cls.__name__ in _KINDS and _is_torch_class(m) else None


def _is_torch_class(m) -> bool:
    mod = type(m).__module__
    return mod.startswith("torch.nn.") or mod.startswith("torch.ao.nn.")


class _ScriptAttrs:
    """Attribute access on a TorchScript child. Scripted modules keep their attributes; traced ones keep
    only parameters and buffers, so their hyper-parameters are read from the constants of their aten op."""

    def __init__(self, module, kind: str):
        self._m, self._kind = module, kind

    def __getattr__(self, name):
        m, kind = self.__dict__["_m"], self.__dict__["_kind"]
        if name == "training" and kind.startswith("BatchNorm"):
            node = self._find("aten::batch_norm")  # traced: the constant that ran; scripted: not a constant
            if node is not None and list(node.inputs())[5].node().kind() == "prim::Constant":
                return _ivalue(list(node.inputs())[5])
        if not hasattr(m, name):
            if name in _TRACED_OPS.get(kind, ("", {}))[1]:
                return self._graph_value(name)
            if name == "padding_mode" and kind.startswith("Conv"):
                pad = self._find("aten::pad")
                return "zeros" if pad is None else _ivalue(list(pad.inputs())[2])
        try:
            return getattr(m, name)
        except AttributeError:
            raise _Unsupported(f"TorchScript module without attribute {name!r}") from None

    def _find(self, kind: str):
        return next((node for node in self._m.inlined_graph.nodes() if node.kind() == kind), None)

    def _graph_value(self, name):
        op, index = _TRACED_OPS[self._kind]
        node = self._find(op)
        if node is None:
            raise _Unsupported(f"cannot find {op} in the traced graph")
        value = _ivalue(list(node.inputs())[index[name]])
        if name == "padding" and self._kind.startswith("Conv"):
            pad = self._find("aten::pad")  # padding_mode != zeros: F.pad, then a convolution without padding
            if pad is not None:
                amounts = _ivalue(list(pad.inputs())[1])  # last axis first, (lo, hi) per axis
                nd = len(amounts) // 2
                value = [(amounts[2 * (nd - 1 - d)], amounts[2 * (nd - 1 - d) + 1]) for d in range(nd)]
        return value


def _ivalue(value):
    node = value.node()
    if node.kind() == "prim::ListConstruct":
        return [_ivalue(v) for v in node.inputs()]
    if node.kind() == "prim::Constant":
        return value.toIValue()
    raise _Unsupported(f"non-constant argument {value.debugName()} in the TorchScript graph")


def _np(t, what: str = "tensor") -> np.ndarray | None:
    """float64 copy of a real tensor (safety.real_array: complex dtypes and NaN/Inf refused, never cast)."""
    if t is None:
        return None
    torch = _torch()
    try:
        t = t.detach().cpu()
        if t.dtype.is_floating_point and t.dtype not in (torch.float16, torch.float32, torch.float64):
            t = t.to(torch.float64)  # bfloat16 / float8 have no numpy dtype; exact in float64
        arr = t.numpy()  # complex stays complex here, so that real_array refuses it
    except Exception as exc:  # quantized, sparse, meta tensors ...
        raise InvalidArrayError(f"{what} cannot be read as a dense real tensor ({first_line(exc)})") from None
    return real_array(arr, what)


def _convert(kind: str, m, label: str) -> list[Layer]:
    """Layers of one torch.nn module of class ``kind`` (attributes read from ``m``)."""
    if kind in _IGNORED:
        return []
    if kind == "Linear":
        return [Dense(label, _np(m.weight, "weight"), _np(m.bias, "bias"))]
    if kind in ("Conv1d", "Conv2d"):
        nd = int(kind[4])
        padding = m.padding
        if isinstance(padding, str):
            padding = padding.lower()
        mode = m.padding_mode
        return [Conv(label, _np(m.weight, "weight"), _np(m.bias, "bias"), tuple(_tup(m.stride, nd)), padding,
                     tuple(_tup(m.dilation, nd)), int(m.groups), mode)]
    if kind in ("AvgPool1d", "AvgPool2d"):
        nd = int(kind[7])
        kernel = _tup(m.kernel_size, nd)
        stride = _tup(m.stride, nd) if m.stride not in (None, [], ()) else kernel
        override = getattr(m, "divisor_override", None) if nd == 2 else None
        return [AvgPool(label, kernel, stride, _tup(m.padding, nd), bool(m.ceil_mode), bool(m.count_include_pad),
                        override)]
    if kind in ("AdaptiveAvgPool1d", "AdaptiveAvgPool2d"):
        nd = int(kind[15])
        return [AdaptiveAvgPool(label, _tup(m.output_size, nd))]
    if kind in ("BatchNorm1d", "BatchNorm2d"):
        if m.running_mean is None or m.running_var is None:
            raise _Unsupported("no running statistics (track_running_stats=False)")
        if m.training:
            raise _Unsupported("in training mode (batch statistics): call model.eval() first")
        # checked here: an infinite running_var would vanish into a zero scale below
        mean, var = _np(m.running_mean, "running_mean"), _np(m.running_var, "running_var")
        gamma = np.ones_like(mean) if m.weight is None else _np(m.weight, "weight")
        beta = np.zeros_like(mean) if m.bias is None else _np(m.bias, "bias")
        scale = gamma / np.sqrt(var + float(m.eps))
        return [ChannelAffine(label, scale, beta - mean * scale)]
    if kind == "Flatten":
        return [Flatten(label, int(m.start_dim), int(m.end_dim))]
    if kind == "Unflatten":
        if not isinstance(m.dim, int):
            raise _Unsupported("named dimensions")
        return [Unflatten(label, int(m.dim), tuple(int(s) for s in m.unflattened_size))]
    if kind == "Hardsigmoid":
        return _hardsigmoid(label)
    if is_activation_type(kind):
        names = _ACT_PARAMS.get(kind.lower(), ())
        return [Activation(label, activation_name(kind, {n: getattr(m, n) for n in names}))]
    raise _Unsupported("")


def _hardsigmoid(label: str) -> list[Layer]:
    """torch's hardsigmoid: relu6(x + 3) / 6 = clip(x / 6 + 1/2, 0, 1)."""
    return [Elementwise(label, 1.0 / 6.0, 0.5), Activation(label, activation_name("hardtanh", {"min_val": 0.0,
                                                                                               "max_val": 1.0}))]


def _tup(value, nd: int) -> tuple:
    if isinstance(value, (int, np.integer)) or value is None:
        return (value,) * nd
    t = tuple(value)
    return t * nd if len(t) == 1 and nd > 1 else t


# --------------------------------------------------------------------------------------------------------
# torch.fx: straight-line graphs.

_FUNCTION_OPS = {operator.add: "add", operator.sub: "sub", operator.mul: "mul", operator.truediv: "div",
                 operator.neg: "neg", operator.iadd: "add", operator.isub: "sub", operator.imul: "mul",
                 operator.itruediv: "div"}
_ARITH_NAMES = {"add", "sub", "mul", "div", "true_divide", "neg", "rsub", "add_", "sub_", "mul_", "div_",
                "neg_"}
_NOOP_NAMES = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
               "contiguous", "clone", "detach", "identity"}


def _trace(module, prefix: str, layers: list, unsupported: list) -> None:
    torch = _torch()
    fx = torch.fx
    name = prefix or "<model>"
    try:
        gm = fx.symbolic_trace(module)
    except Exception as exc:  # tracing runs user code: any failure means "not a traceable graph"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        unsupported.append(f"{name} ({type(module).__name__}): cannot be traced with torch.fx ({first}), "
                           f"use an nn.Sequential")
        return
    try:
        gm.graph.eliminate_dead_code()
    except Exception:  # pragma: no cover - keep the graph as traced
        pass
    qual = (lambda target: f"{prefix}.{target}" if prefix else str(target))
    data: set = set()       # nodes carrying the (transformed) input
    shapes: set = set()     # nodes holding sizes of the input (x.size(), x.shape, x.size(1) * 2, ...)
    batch: set = set()      # nodes holding its batch size: x.size(0), x.shape[0]
    consts: dict = {}       # get_attr nodes -> numpy arrays
    current = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if current is None:
                current = node
                data.add(node)
            else:
                unsupported.append(f"{qual(node.name)} (second input): only single-input models are supported")
            continue
        if node.op == "get_attr":
            try:
                value = operator.attrgetter(node.target)(gm)
                if isinstance(value, torch.Tensor):
                    consts[node] = _np(value, qual(node.target))
                else:
                    consts[node] = np.asarray(value, float)
                    check_finite(consts[node], qual(node.target))
            except InvalidArrayError:
                raise
            except Exception:
                unsupported.append(f"{qual(node.target)} (attribute): not a constant tensor")
            continue
        if node.op == "output":
            outs = [a for a in _flat_args(node.args) if a in data]
            if len(_flat_args(node.args)) != 1 or outs != [current]:
                unsupported.append("output: must return the single result of the last layer")
            continue
        inputs = [a for a in _flat_args(node.args, node.kwargs) if isinstance(a, fx.Node)]
        data_in = [a for a in inputs if a in data]
        if node.op == "call_function" and node.target is getattr and node.args[1] == "shape" or \
                node.op == "call_method" and node.target in ("size", "dim") or \
                node.op == "call_function" and node.target is operator.getitem and node.args[0] in shapes:
            shapes.add(node)
            index = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            if index == 0 and (node.target == "size" or node.target is operator.getitem):
                batch.add(node)
            continue
        if not data_in and any(a in shapes for a in inputs):
            shapes.add(node)  # arithmetic on sizes, e.g. x.size(1) * x.size(2)
            continue
        desc = _describe(node, gm)
        label = f"{qual(node.target if node.op == 'call_module' else node.name)} ({desc})"
        data.add(node)
        if len(data_in) != 1 or data_in[0] is not current:
            why = (f"combines {len(data_in)} branches (e.g. a residual connection)" if len(data_in) > 1 else
                   "uses an earlier tensor (branching graph)" if data_in else "does not use the input")
            unsupported.append(f"{label}: {why}, not a straight-line model")
            current = node
            continue
        current = node
        if node.op == "call_module":
            sub = gm.get_submodule(node.target)
            if len(inputs) != 1 or node.kwargs:
                unsupported.append(f"{label}: extra arguments")
                continue
            kind = _builtin_kind(sub)
            if kind is None:
                unsupported.append(label)
                continue
            _add(lambda: _convert(kind, sub, label), layers, unsupported, label)
            continue
        _add(lambda: _convert_call(node, consts, batch, label), layers, unsupported, label)


def _flat_args(args, kwargs=None) -> list:
    out = []
    for a in list(args) + list((kwargs or {}).values()):
        if isinstance(a, (list, tuple)):
            out.extend(_flat_args(a))
        else:
            out.append(a)
    return out


def _describe(node, gm) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)).__name__
    if node.op == "call_method":
        return f"method {node.target}"
    return f"function {getattr(node.target, '__name__', str(node.target))}"


def _convert_call(node, consts: dict, batch: set, label: str) -> list[Layer]:
    """Layers of a call_function / call_method node whose data input is args[0] (or, for arithmetic,
    one of the two operands); ``batch`` holds the nodes equal to the batch size."""
    target = node.target
    fname = target if isinstance(target, str) else _FUNCTION_OPS.get(target, getattr(target, "__name__", ""))
    args, kwargs = list(node.args), dict(node.kwargs)
    if fname in _NOOP_NAMES:
        return []
    if fname.rstrip("_") == "hardsigmoid":
        return _hardsigmoid(label)
    if is_activation_type(fname):
        names = _ACT_PARAMS.get(fname.lower().rstrip("_"), ())
        params = {n: (args[j + 1] if j + 1 < len(args) else kwargs.get(n)) for j, n in enumerate(names)}
        return [Activation(label, activation_name(fname, params))]
    if fname == "flatten":
        start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
        end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
        return [Flatten(label, int(start), int(end))]
    if fname in ("view", "reshape"):
        dims = args[1:] if not (len(args) == 2 and isinstance(args[1], (list, tuple))) else list(args[1])
        if "shape" in kwargs:
            dims = list(kwargs["shape"])
        if len(dims) >= 2 and (dims[0] in batch or dims[0] == -1) and \
                all(isinstance(d, int) for d in dims[1:]) and (dims[0] in batch or -1 not in dims[1:]):
            return [Reshape(label, tuple(dims[1:]))]
        raise _Unsupported("the first size must be the batch size (x.size(0) or -1) and the rest constants")
    if fname == "linear":
        w = args[1] if len(args) > 1 else kwargs.get("weight")
        b = args[2] if len(args) > 2 else kwargs.get("bias")
        if w not in consts or (b is not None and b not in consts):
            raise _Unsupported("weight and bias must be module parameters")
        return [Dense(label, consts[w], None if b is None else consts[b])]
    if fname.rstrip("_") in {n.rstrip("_") for n in _ARITH_NAMES}:
        return [_arith(fname.rstrip("_"), args, kwargs, consts, label)]
    raise _Unsupported("")


def _arith(op: str, args: list, kwargs: dict, consts: dict, label: str) -> Elementwise:
    """x + c, c + x, x - c, c - x, x * c, c * x, x / c, -x with c a number or a constant tensor."""
    import torch.fx as fx
    if op == "neg":
        return Elementwise(label, -1.0, 0.0)
    if set(kwargs) - {"alpha"} or kwargs.get("alpha", 1) != 1 or len(args) != 2:
        raise _Unsupported("unsupported arguments")
    a, b = args
    first_is_data = isinstance(a, fx.Node) and a not in consts
    other = b if first_is_data else a
    if isinstance(other, fx.Node):
        if other not in consts:
            raise _Unsupported("operand is not a constant")
        c = consts[other]
    elif isinstance(other, (int, float)):
        c = np.asarray(float(other))
    else:
        raise _Unsupported(f"operand {other!r} is not a constant")
    if op == "add":
        return Elementwise(label, 1.0, c)
    if op == "sub":
        return Elementwise(label, 1.0, -c) if first_is_data else Elementwise(label, -1.0, c)
    if op == "rsub":  # torch.rsub(x, c) = c - x
        return Elementwise(label, -1.0, c)
    if op == "mul":
        return Elementwise(label, c, 0.0)
    if op in ("div", "true_divide") and first_is_data:
        if np.any(c == 0):
            raise _Unsupported("division by zero")
        return Elementwise(label, 1.0 / c, 0.0)
    raise _Unsupported("not an affine map of the input")


# --------------------------------------------------------------------------------------------------------
# Files: see torch_files.py (kept importable from here).

from .torch_files import load_torch_file  # noqa: E402,F401
