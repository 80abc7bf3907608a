"""ONNX models -> Network, with the ``onnx`` package only (no onnxruntime).

Weights come from ``graph.initializer`` and Constant nodes (nodes on constants only are evaluated with
onnx's reference evaluator); the other nodes must form a straight line from the single input to the single
output. Gemm is y = alpha A' B' + beta C (A the data, B and C constants);
MatMul by a constant and Add/Sub/Mul/Div by a constant are affine; Conv and AveragePool become sparse
matrices (conv.py); BatchNormalization is x -> scale (x - mean) / sqrt(var + eps) + B, folded into the
neighbouring affine map; Flatten(axis=1), Reshape keeping the batch dim, Identity and Dropout are the identity
on the flat input; activations go through the table conv.ACTIVATION_TYPES.

Safety: the file size is checked against safety.MEMORY_BUDGET before parsing; external data files (tensors
stored beside the model) must be regular files inside the model's folder (no absolute paths, no '..', no
symlink leaving the folder) and within the budget; every weight goes through safety.real_array.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError
from .safety import InvalidArrayError, check_budget, clean_errors, first_line, real_array
from .conv import (Activation, AdaptiveAvgPool, AvgPool, ChannelAffine, Conv, Dense, Elementwise, Flatten,
                   Layer, Reshape, activation_name, infer_input_shape, is_activation_type, network_from_layers,
                   supported_activations)
from .network import Network
from .onnx_patterns import fuse_activations

SUPPORTED = ("Gemm, MatMul, Add/Sub/Mul/Div by a constant, Conv, AveragePool, GlobalAveragePool, Flatten, "
             "Reshape, BatchNormalization, Identity, Dropout, activations ")  # + the names in ACTIVATIONS

_ACT_ATTRS = {"leakyrelu": {"alpha": "negative_slope"}, "elu": {"alpha": "alpha"},
              "gelu": {"approximate": "approximate"}}
_FLT_MAX = 3.0e38  # Clip before opset 11: missing bounds default to -+FLT_MAX (unbounded)
_BATCH = "N"  # symbolic batch size in shape computations (Shape -> Gather -> Unsqueeze -> Concat -> Reshape)


class _Unsupported(Exception):
    """One unsupported node; collected so that a single error lists all of them."""


@clean_errors
def load_onnx(path, input_shape=None) -> Network:
    """Network computing the same function as the ONNX model at ``path`` on inputs flattened channel-major.

    The input shape is the model's declared input shape without its first (batch) dim, or ``input_shape``
    when the declared one is symbolic. Unsupported nodes raise one InvalidInputError listing all of them.
    """
    try:
        import onnx
        from onnx import numpy_helper
        from onnx.reference import ReferenceEvaluator
    except ImportError:  # pragma: no cover - depends on the environment
        raise InvalidInputError("the onnx package is not installed: pip install onnx") from None
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    check_budget(path.stat().st_size, str(path))
    try:
        model = onnx.load(str(path), load_external_data=False)  # external data: checked first, below
    except Exception as exc:  # protobuf DecodeError, OSError, ...
        raise InvalidInputError(f"{path}: not a valid ONNX model ({_first_line(exc)})") from None
    _load_external_data(model, path)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx ValidationError
        raise InvalidInputError(f"{path}: not a valid ONNX model ({_first_line(exc)})") from None
    graph = model.graph
    source = str(path)
    try:
        consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    except Exception as exc:
        raise InvalidInputError(f"{path}: unreadable initializer ({_first_line(exc)})") from None
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise InvalidInputError(f"{path}: expected one input and one output, got {len(inputs)} inputs "
                                f"({', '.join(i.name for i in inputs)}) and {len(graph.output)} outputs")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) < 2:
        raise InvalidInputError(f"{path}: the input {inputs[0].name!r} must have a batch dimension first, "
                                f"got rank {len(dims)}")
    batch = dims[0]

    opsets = {o.domain: o.version for o in model.opset_import}
    layers, unsupported = [], []
    shapes: dict[str, list] = {}  # tensors holding sizes of the data (symbolic batch size _BATCH)
    current = inputs[0].name
    for k, node in enumerate(fuse_activations(list(graph.node), consts)):
        label = f"{node.name or (node.output[0] if node.output else f'node {k}')} ({node.op_type})"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Clip":  # optional inputs min, max: positions matter
            attrs["_inputs"] = list(node.input)
        ins = [n for n in node.input if n]
        if node.op_type == "Constant":
            try:
                consts[node.output[0]] = _constant(attrs, numpy_helper)
            except Exception as exc:
                unsupported.append(f"{label}: {_first_line(exc)}")
            continue
        if ins and all(n in consts for n in ins):  # constant folding (e.g. a transposed weight)
            _check_folded_size(node, ins, consts, opsets, f"{source}: {label}")
            try:
                outs = ReferenceEvaluator(node, opsets=opsets).run(None, {n: consts[n] for n in ins})
                consts.update((name, np.asarray(v)) for name, v in zip(node.output, outs) if name)
            except Exception as exc:
                unsupported.append(f"{label}: cannot evaluate on constants ({_first_line(exc)})")
            continue
        if node.op_type == "Shape" and ins == [current] or \
                node.op_type in ("Gather", "Unsqueeze", "Concat", "Slice", "Squeeze", "Cast") and \
                any(n in shapes for n in ins) and all(n in shapes or n in consts for n in ins):
            try:
                shapes[node.output[0]] = _shape_op(node.op_type, ins, attrs, shapes, consts)
            except _Unsupported as exc:
                unsupported.append(f"{label}: {exc}")
                shapes[node.output[0]] = [None]
            continue
        data_in = [n for n in ins if n not in consts and n not in shapes]
        if len(data_in) != 1 or data_in[0] != current:
            why = (f"combines {len(data_in)} tensors (e.g. a residual connection)" if len(data_in) > 1 else
                   "uses an earlier tensor (branching graph)" if data_in else "does not use the input")
            unsupported.append(f"{label}: {why}, not a straight-line model")
        else:
            try:
                layers.extend(_convert(node.op_type, label, ins, attrs, consts, shapes, current, batch))
            except InvalidArrayError as exc:  # a bad weight is an error of its own, not "unsupported"
                raise InvalidArrayError(f"{source}: {label}: {exc}") from None
            except (_Unsupported, InvalidInputError) as exc:
                unsupported.append(f"{label}: {exc}" if str(exc) else label)
        if node.output:
            current = node.output[0]
    if graph.output[0].name != current:
        unsupported.append(f"output {graph.output[0].name!r}: is not the result of the last node")
    if unsupported:
        raise InvalidInputError(f"{source}: unsupported layers: {'; '.join(unsupported)} "
                                f"(supported: {SUPPORTED}{'/'.join(supported_activations())})")

    declared = tuple(dims[1:]) if all(isinstance(d, int) and d > 0 for d in dims[1:]) else None
    if input_shape is not None:
        given = tuple(int(s) for s in input_shape)
        if declared is not None and given != declared:
            raise InvalidInputError(f"{source}: input_shape {given} differs from the declared input shape "
                                    f"{declared}")
        shape = given
    else:
        shape = declared if declared is not None else infer_input_shape(layers, source)
    return network_from_layers(layers, shape, source)


_first_line = first_line


def _load_external_data(model, path: Path) -> None:
    """Read the tensors stored in external files, after checking each location: a relative path inside
    the model's folder (ONNX lets 'location' be any path, e.g. /etc/passwd or ../../secret), a regular
    file, and all of them together within the memory budget."""
    from onnx import TensorProto, external_data_helper
    tensors = [t for t in _all_tensors(model) if t.HasField("data_location") and
               t.data_location == TensorProto.EXTERNAL]
    if not tensors:
        return
    folder = path.resolve().parent
    files = set()
    for t in tensors:
        # onnx uses the last 'location' entry: exactly one is accepted, so the one checked is the one read
        locations = [e.value for e in t.external_data if e.key == "location"]
        location = locations[0] if len(locations) == 1 else ""
        parts = location.replace("\\", "/").split("/")
        try:
            target = (folder / location).resolve()
        except (OSError, ValueError):  # NUL bytes, symlink loops
            target = None
        if not location or os.path.isabs(location) or ".." in parts or ":" in location or \
                target is None or not target.is_relative_to(folder):
            raise InvalidInputError(f"{path}: tensor {t.name!r} points at external data {locations!r} outside "
                                    f"the model's folder; only one relative path inside it is read")
        if not target.is_file():
            raise InvalidInputError(f"{path}: external data file {location!r} of tensor {t.name!r} is missing "
                                    f"or not a regular file")
        files.add(target)
    check_budget(sum(f.stat().st_size for f in files), f"{path}: external data")
    try:
        external_data_helper.load_external_data_for_model(model, str(folder))
    except Exception as exc:  # offsets or lengths beyond the file, unreadable file
        raise InvalidInputError(f"{path}: unreadable external data ({_first_line(exc)})") from None


def _check_folded_size(node, ins: list, consts: dict, opsets: dict, what: str) -> None:
    """Refuse to evaluate a node on constants when its output would exceed the memory budget: a few bytes
    can declare a huge result (ConstantOfShape, Expand, Tile, ...). Output shapes from onnx's shape
    inference, given the small constants' values; when inference cannot tell, the node is evaluated."""
    from onnx import defs, helper, numpy_helper, shape_inference
    try:
        schema = defs.get_schema(node.op_type, opsets.get(node.domain or "", 1), node.domain or "")
        types = {n: helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(np.asarray(consts[n]).dtype),
                                                  np.shape(consts[n])) for n in ins}
        data = {n: numpy_helper.from_array(np.asarray(consts[n]), n) for n in ins if np.size(consts[n]) <= 64}
        outs = shape_inference.infer_node_outputs(schema, node, types, input_data=data)
    except Exception:  # unknown op or dtype, inference error: the evaluator reports it
        return
    total = 0
    for t in outs.values():
        dims = t.tensor_type.shape.dim if t.HasField("tensor_type") and t.tensor_type.HasField("shape") else None
        if dims is None or not all(d.HasField("dim_value") for d in dims):
            return
        total += max(1, int(np.prod([d.dim_value for d in dims], dtype=object))) * 8
    check_budget(total, f"{what} (evaluated on constants)")


def _all_tensors(model):
    """Every TensorProto of the model (a superset of what onnx's external-data loader visits):
    initializers, sparse initializers, node attributes, in subgraphs and functions too."""
    def walk(g):  # a GraphProto or a FunctionProto (no initializers)
        yield from getattr(g, "initializer", ())
        for sp in getattr(g, "sparse_initializer", ()):
            yield from (sp.values, sp.indices)
        for node in g.node:
            for a in node.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    yield from walk(sub)
    yield from walk(model.graph)
    for f in model.functions:
        yield from walk(f)


def _constant(attrs: dict, numpy_helper) -> np.ndarray:
    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"])
    for key in ("value_float", "value_int", "value_floats", "value_ints"):
        if key in attrs:
            return np.asarray(attrs[key])
    raise _Unsupported(f"Constant with attributes {sorted(attrs)}")


def _shape_op(op: str, ins: list, attrs: dict, shapes: dict, consts: dict) -> list:
    """Evaluate the shape arithmetic exporters emit for x.view(x.size(0), -1): sizes are ints or _BATCH;
    only the batch size of the data is known symbolically here."""
    val = (lambda n: shapes[n] if n in shapes else list(np.atleast_1d(consts[n]).tolist()))
    if op == "Shape":
        if attrs.get("start", 0) != 0 or "end" in attrs and attrs["end"] != 1:
            raise _Unsupported("only the batch size of the input can be read")
        return [_BATCH]
    if op == "Gather":
        idx = np.asarray(consts.get(ins[1], -1))
        src = val(ins[0])
        if attrs.get("axis", 0) != 0 or idx.ndim > 1 or np.any(idx < 0) or np.any(idx >= len(src)):
            raise _Unsupported("only the batch size of the input can be read")
        return [src[int(i)] for i in np.atleast_1d(idx)]
    if op == "Slice":
        starts, ends = val(ins[1]), val(ins[2])
        if starts != [0] or ends[0] not in (1,) or len(ins) > 3 and val(ins[3]) != [0]:
            raise _Unsupported("only the batch size of the input can be read")
        return val(ins[0])[:1]
    if op in ("Unsqueeze", "Squeeze", "Cast"):
        return val(ins[0])
    if op == "Concat":
        return [v for n in ins for v in val(n)]
    raise _Unsupported("")  # pragma: no cover


def _attr_ints(attrs: dict, key: str, default):
    v = attrs.get(key)
    return default if v is None or (hasattr(v, "__len__") and len(v) == 0) else tuple(int(x) for x in v)


def _auto_pad(attrs: dict):
    mode = attrs.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    return None if mode == "NOTSET" else mode.lower()


def _pads(attrs: dict, nd: int):
    auto = _auto_pad(attrs)
    if auto is not None:
        return auto
    p = _attr_ints(attrs, "pads", (0,) * (2 * nd))
    if len(p) != 2 * nd:
        raise _Unsupported(f"pads {p} do not match {nd} spatial axes")
    return tuple((p[d], p[nd + d]) for d in range(nd))


def _convert(op: str, label: str, ins: list, attrs: dict, consts: dict, shapes: dict, current: str,
             batch) -> list[Layer]:
    def const(i, what):
        if i >= len(ins) or ins[i] not in consts:
            raise _Unsupported(f"{what} must be a constant (initializer)")
        return real_array(consts[ins[i]], f"{what} {ins[i]!r}")  # real dtype, finite: else InvalidArrayError

    if op in ("Identity", "Dropout"):
        if op == "Dropout" and len(ins) > 2 and bool(np.asarray(consts.get(ins[2], False))):
            raise _Unsupported("training_mode=1")
        return []
    if op == "Gemm":
        if ins[0] != current or attrs.get("transA", 0):
            raise _Unsupported("the data must be the first operand, not transposed")
        B = const(1, "B")
        B = B.T if attrs.get("transB", 0) else B
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        bias = None
        if len(ins) > 2:
            C = const(2, "C")
            try:
                bias = beta * np.broadcast_to(C, (1, B.shape[1])).reshape(-1)
            except ValueError:
                raise _Unsupported(f"C of shape {C.shape} depends on the batch") from None
        return [Dense(label, alpha * B.T, bias)]
    if op == "MatMul":
        if ins[0] != current:
            raise _Unsupported("the data must be the first operand")
        B = const(1, "B")
        if B.ndim != 2:
            raise _Unsupported(f"B must be a matrix, got shape {B.shape}")
        return [Dense(label, B.T, None)]
    if op in ("Add", "Sub", "Mul", "Div"):
        first = ins[0] == current
        c = const(1 if first else 0, "the other operand")
        if op == "Add":
            return [Elementwise(label, 1.0, c)]
        if op == "Sub":
            return [Elementwise(label, 1.0, -c) if first else Elementwise(label, -1.0, c)]
        if op == "Mul":
            return [Elementwise(label, c, 0.0)]
        if not first or np.any(c == 0):
            raise _Unsupported("only division of the data by a nonzero constant is affine")
        return [Elementwise(label, 1.0 / c, 0.0)]
    if op == "Neg":
        return [Elementwise(label, -1.0, 0.0)]
    if op == "Conv":
        W = const(1, "the weight")
        nd = W.ndim - 2
        if nd < 1:
            raise _Unsupported(f"weight of shape {W.shape}")
        bias = const(2, "the bias") if len(ins) > 2 else None
        return [Conv(label, W, bias, _attr_ints(attrs, "strides", (1,) * nd), _pads(attrs, nd),
                     _attr_ints(attrs, "dilations", (1,) * nd), int(attrs.get("group", 1)))]
    if op == "AveragePool":
        kernel = _attr_ints(attrs, "kernel_shape", None)
        if kernel is None:
            raise _Unsupported("no kernel_shape")
        nd = len(kernel)
        if any(d != 1 for d in _attr_ints(attrs, "dilations", (1,) * nd)):
            raise _Unsupported("dilated pooling")
        return [AvgPool(label, kernel, _attr_ints(attrs, "strides", (1,) * nd), _pads(attrs, nd),
                        bool(attrs.get("ceil_mode", 0)), bool(attrs.get("count_include_pad", 0)))]
    if op == "GlobalAveragePool":
        return [AdaptiveAvgPool(label, None)]
    if op == "Flatten":
        if int(attrs.get("axis", 1)) != 1:
            raise _Unsupported("only axis=1 keeps the batch dimension")
        return [Flatten(label, 1, -1)]
    if op == "Reshape":
        if len(ins) < 2 or (ins[1] not in consts and ins[1] not in shapes):
            raise _Unsupported("the target shape must be constant")
        target = shapes[ins[1]] if ins[1] in shapes else [int(v) for v in np.atleast_1d(consts[ins[1]])]
        allowzero = bool(attrs.get("allowzero", 0))
        if len(target) < 2 or None in target or _BATCH in target[1:] or \
                not (target[0] == _BATCH or target[0] == 0 and not allowzero or
                     target[0] == -1 and -1 not in target[1:] or batch is not None and target[0] == batch):
            raise _Unsupported(f"target shape {target} must keep the batch dimension first")
        return [Reshape(label, tuple(int(v) for v in target[1:]), copy_zeros=not allowzero)]
    if op == "BatchNormalization":
        if attrs.get("training_mode", 0) or not attrs.get("spatial", 1):
            raise _Unsupported("training_mode=1 or spatial=0")
        scale, shift, mean, var = (const(i, what) for i, what in
                                   ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")))
        s = scale / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
        return [ChannelAffine(label, s, shift - mean * s)]
    if op == "Clip":
        return [Activation(label, _clip_spec(attrs, consts))]
    if op == "HardSigmoid":  # max(0, min(1, alpha x + beta))
        return [Elementwise(label, float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))),
                Activation(label, activation_name("hardtanh", {"min_val": 0.0, "max_val": 1.0}))]
    if is_activation_type(op):
        params = {name: attrs[key] for key, name in _ACT_ATTRS.get(op.lower(), {}).items() if key in attrs}
        return [Activation(label, activation_name(op, params))]
    raise _Unsupported("")


def _clip_spec(attrs: dict, consts: dict) -> str:
    """Clip(x, min, max) (bounds from constant inputs, or attributes before opset 11) as relu / hardtanh."""
    raw = attrs.get("_inputs", [])
    bounds = []
    for i, key, default in ((1, "min", -np.inf), (2, "max", np.inf)):
        name = raw[i] if i < len(raw) else ""
        if name:
            if name not in consts or np.size(consts[name]) != 1:
                raise _Unsupported(f"{key} must be a constant scalar")
            v = float(np.asarray(consts[name]).reshape(-1)[0])
        else:
            v = float(attrs.get(key, default))
        bounds.append(-np.inf if v <= -_FLT_MAX else np.inf if v >= _FLT_MAX else v)
    lo, hi = bounds
    if lo == 0 and hi == np.inf:
        return activation_name("relu")
    if not lo < hi or (np.isinf(lo) and np.isinf(hi)):
        raise _Unsupported(f"min {lo:g} and max {hi:g} must satisfy min < max with one of them finite")
    return activation_name("hardtanh", {"min_val": lo, "max_val": hi})
