"""torch nn.Modules with residual connections, concatenation or max pooling -> GraphNetwork (torch.fx).

The module is traced with ``torch.fx.symbolic_trace``; every node carrying data becomes a graph node:
torch.nn layers and functions through the chain loader's conversions (torch_loader._convert /
_convert_call: Linear, Conv, AvgPool, BatchNorm (eval), Flatten, reshapes, activations, affine arithmetic
with constants), ``x + y`` / torch.add of two data tensors -> add, torch.cat(dim=1) -> concat,
MaxPool1d/2d and F.max_pool1d/2d -> maxpool. A graph that turns out to be a chain is returned as a
Network (the chain loader's result for the same layers).
"""
from __future__ import annotations

import operator

import numpy as np

from ..errors import InvalidInputError
from .graph import GraphBuilder, GraphNetwork
from .network import Network
from .safety import InvalidArrayError, check_finite, clean_errors
from .torch_loader import (SUPPORTED, _builtin_kind, _convert, _convert_call, _describe, _flat_args, _np,
                           _shape_arg, _torch, _Unsupported)
from .conv import supported_activations

_ADD = {operator.add, operator.iadd}
_POOL_KINDS = ("MaxPool1d", "MaxPool2d")


@clean_errors
def graph_from_torch(module, input_shape=None) -> GraphNetwork | Network:
    """GraphNetwork computing ``module`` on inputs of ``input_shape`` (no batch dim), flattened
    channel-major; a Network when the traced graph is a chain. ``input_shape`` may be omitted when the
    first layer is a Linear."""
    torch = _torch()
    fx = torch.fx
    source = type(module).__name__
    try:
        gm = fx.symbolic_trace(module)
    except Exception as exc:  # tracing runs user code: any failure means "not a traceable graph"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInputError(f"{source}: cannot be traced with torch.fx ({first})") from None
    gm.graph.eliminate_dead_code()
    shape = _shape_arg(input_shape) if input_shape is not None else _first_linear(gm)
    if shape is None:
        raise InvalidInputError(f"{source}: cannot infer the input shape of a graph model; pass "
                                "input_shape=(C, H, W) without the batch dimension")
    builder = GraphBuilder(shape)
    ids: dict = {}            # fx node -> graph node id
    consts: dict = {}
    shapes, batch = set(), set()
    unsupported, out = [], None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if ids:
                unsupported.append(f"{node.name} (second input): only single-input models are supported")
            else:
                ids[node] = 0
            continue
        if node.op == "get_attr":
            value = operator.attrgetter(node.target)(gm)
            if isinstance(value, torch.Tensor):
                consts[node] = _np(value, str(node.target))
            else:
                consts[node] = np.asarray(value, float)
                check_finite(consts[node], str(node.target))
            continue
        if node.op == "output":
            res = _flat_args(node.args)
            if len(res) != 1 or res[0] not in ids:
                unsupported.append("output: must return a single tensor computed from the input")
            else:
                out = ids[res[0]]
            continue
        inputs = [a for a in _flat_args(node.args, node.kwargs) if isinstance(a, fx.Node)]
        data_in = [a for a in inputs if a in ids]
        if node.op == "call_function" and node.target is getattr and node.args[1] == "shape" or \
                node.op == "call_method" and node.target in ("size", "dim") or \
                node.op == "call_function" and node.target is operator.getitem and node.args[0] in shapes:
            shapes.add(node)
            index = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            if index == 0 and (node.target == "size" or node.target is operator.getitem):
                batch.add(node)
            continue
        if not data_in:
            if any(a in shapes for a in inputs):
                shapes.add(node)
            else:
                unsupported.append(f"{node.name} ({_describe(node, gm)}): does not use the input")
            continue
        label = f"{node.target if node.op == 'call_module' else node.name} ({_describe(node, gm)})"
        try:
            ids[node] = _node(builder, node, gm, ids, data_in, consts, batch, label)
        except InvalidArrayError as exc:
            raise InvalidArrayError(f"{source}: {label}: {exc}") from None
        except (_Unsupported, InvalidInputError) as exc:
            unsupported.append(f"{label}: {exc}" if str(exc) else label)
            ids[node] = data_in and ids[data_in[0]] or 0
    if unsupported or out is None:
        raise InvalidInputError(f"{source}: unsupported layers: {'; '.join(unsupported) or 'no output'} "
                                f"(supported: {SUPPORTED}, MaxPool1d/2d, residual add, torch.cat, "
                                f"{'/'.join(supported_activations())})")
    graph = builder.finish(out)
    return graph.to_network(source) if graph.is_chain() else graph


def _first_linear(gm):
    for node in gm.graph.nodes:
        if node.op == "call_module":
            sub = gm.get_submodule(node.target)
            return (int(sub.in_features),) if type(sub).__name__ == "Linear" else None
    return None


def _node(builder: GraphBuilder, node, gm, ids: dict, data_in: list, consts: dict, batch: set, label: str) -> int:
    torch = _torch()
    target = node.target
    if len(data_in) > 1:
        if node.op == "call_function" and (target in _ADD or target is torch.add) or \
                node.op == "call_method" and target in ("add", "add_"):
            if set(node.kwargs) - {"alpha"} or node.kwargs.get("alpha", 1) != 1 or len(data_in) != 2 or \
                    len(node.args) != 2:
                raise _Unsupported("only x + y of two tensors")
            return builder.add([ids[a] for a in data_in], label)
        if node.op == "call_function" and target in (torch.cat, torch.concat, torch.concatenate):
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            parts = node.args[0]
            if any(a not in ids for a in parts):
                raise _Unsupported("concatenates a constant")
            return builder.concat([ids[a] for a in parts], int(dim), label)
        raise _Unsupported(f"combines {len(data_in)} tensors in an unsupported way")
    src = ids[data_in[0]]
    if node.op == "call_module":
        sub = gm.get_submodule(target)
        kind = type(sub).__name__
        if kind in _POOL_KINDS and _builtin_kind_pool(sub):
            if getattr(sub, "return_indices", False):
                raise _Unsupported("return_indices=True")
            return builder.maxpool(src, sub.kernel_size, sub.stride, sub.padding, sub.dilation,
                                   bool(sub.ceil_mode), label)
        kind = _builtin_kind(sub)
        if kind is None or node.kwargs or len(node.args) != 1:
            raise _Unsupported("")
        layers = _convert(kind, sub, label)
    else:
        fname = target if isinstance(target, str) else getattr(target, "__name__", "")
        if fname in ("max_pool1d", "max_pool2d"):
            names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
            a = dict(zip(names, node.args[1:]), **node.kwargs)
            if a.get("return_indices"):
                raise _Unsupported("return_indices=True")
            return builder.maxpool(src, a["kernel_size"], a.get("stride") or None, a.get("padding", 0),
                                   a.get("dilation", 1), bool(a.get("ceil_mode", False)), label)
        layers = _convert_call(node, consts, batch, label)
    for layer in layers:
        src = builder.layer(src, layer, label)
    return src


def _builtin_kind_pool(m) -> bool:
    mod = type(m).__module__
    return mod.startswith("torch.nn.")
