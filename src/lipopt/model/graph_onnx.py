"""ONNX graphs (residual Add, Concat, MaxPool) -> GraphNetwork, with the ``onnx`` package only.

The file checks (size budget, external data inside the model's folder, onnx.checker) and every
single-input conversion are the chain loader's (onnx_loader: Gemm, MatMul, affine arithmetic with
constants, Conv, AveragePool, GlobalAveragePool, BatchNormalization, reshapes, activations); on top of it:
Add / Sum of two or more data tensors -> add, Concat of data tensors along axis 1 -> concat, MaxPool
(any kernel, stride, padding, dilation, ceil_mode) -> maxpool. A graph that is a chain is returned as a
Network (the chain loader accepts those already; this path runs only after it refused).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InvalidInputError
from .conv import supported_activations
from .graph import GraphBuilder, GraphNetwork
from .network import Network
from .onnx_loader import (SUPPORTED, _attr_ints, _check_folded_size, _constant, _convert, _first_line,
                          _load_external_data, _pads, _shape_op, _Unsupported)
from .safety import InvalidArrayError, check_budget, clean_errors


@clean_errors
def load_onnx_graph(path, input_shape=None) -> GraphNetwork | Network:
    """GraphNetwork computing the ONNX model at ``path`` on inputs flattened channel-major (input shape:
    the declared one without the batch dim, or ``input_shape``)."""
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    check_budget(path.stat().st_size, str(path))
    try:
        model = onnx.load(str(path), load_external_data=False)
        _load_external_data(model, path)
        onnx.checker.check_model(model)
    except InvalidInputError:
        raise
    except Exception as exc:
        raise InvalidInputError(f"{path}: not a valid ONNX model ({_first_line(exc)})") from None
    graph, source = model.graph, str(path)
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise InvalidInputError(f"{path}: expected one input and one output, got {len(inputs)} inputs and "
                                f"{len(graph.output)} outputs")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) < 2:
        raise InvalidInputError(f"{path}: the input must have a batch dimension first, got rank {len(dims)}")
    declared = tuple(dims[1:]) if all(isinstance(d, int) and d > 0 for d in dims[1:]) else None
    shape = declared if input_shape is None else tuple(int(s) for s in input_shape)
    if shape is None:
        raise InvalidInputError(f"{source}: the input shape is symbolic; pass input_shape=(C, H, W)")
    if declared is not None and shape != declared:
        raise InvalidInputError(f"{source}: input_shape {shape} differs from the declared input shape {declared}")
    builder = GraphBuilder(shape)
    ids = {inputs[0].name: 0}
    opsets = {o.domain: o.version for o in model.opset_import}
    shapes: dict = {}
    unsupported = []
    for k, node in enumerate(graph.node):
        label = f"{node.name or (node.output[0] if node.output else f'node {k}')} ({node.op_type})"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        ins = [n for n in node.input if n]
        if node.op_type == "Constant":
            try:
                consts[node.output[0]] = _constant(attrs, numpy_helper)
            except Exception as exc:
                unsupported.append(f"{label}: {_first_line(exc)}")
            continue
        if ins and all(n in consts for n in ins):
            _check_folded_size(node, ins, consts, opsets, f"{source}: {label}")
            try:
                outs = ReferenceEvaluator(node, opsets=opsets).run(None, {n: consts[n] for n in ins})
                consts.update((name, np.asarray(v)) for name, v in zip(node.output, outs) if name)
            except Exception as exc:
                unsupported.append(f"{label}: cannot evaluate on constants ({_first_line(exc)})")
            continue
        if node.op_type == "Shape" and len(ins) == 1 and ins[0] in ids or \
                node.op_type in ("Gather", "Unsqueeze", "Concat", "Slice", "Squeeze", "Cast") and \
                any(n in shapes for n in ins) and all(n in shapes or n in consts for n in ins):
            try:
                shapes[node.output[0]] = _shape_op(node.op_type, ins, attrs, shapes, consts)
            except _Unsupported as exc:
                unsupported.append(f"{label}: {exc}")
                shapes[node.output[0]] = [None]
            continue
        data_in = [n for n in ins if n in ids]
        try:
            if not data_in:
                raise _Unsupported("does not use the input")
            out = _node(builder, node.op_type, label, ins, data_in, attrs, consts, shapes, ids, dims[0])
        except InvalidArrayError as exc:
            raise InvalidArrayError(f"{source}: {label}: {exc}") from None
        except (_Unsupported, InvalidInputError) as exc:
            text = str(exc)
            unsupported.append(text if text.startswith(label) else f"{label}: {text}" if text else label)
            out = ids[data_in[0]] if data_in else 0
        if node.output:
            ids[node.output[0]] = out
    if graph.output[0].name not in ids:
        unsupported.append(f"output {graph.output[0].name!r}: not computed from the input")
    if unsupported:
        raise InvalidInputError(f"{source}: unsupported layers: {'; '.join(unsupported)} (supported: "
                                f"{SUPPORTED}{'/'.join(supported_activations())}, MaxPool, Add/Sum/Concat of "
                                f"branches)")
    net = builder.finish(ids[graph.output[0].name])
    return net.to_network(source) if net.is_chain() else net


def _node(builder: GraphBuilder, op: str, label: str, ins: list, data_in: list, attrs: dict, consts: dict,
          shapes: dict, ids: dict, batch) -> int:
    if len(data_in) > 1 or op in ("Sum", "Concat") and len(ins) == len(data_in):
        if op in ("Add", "Sum") and len(data_in) == len(ins):
            return builder.add([ids[n] for n in data_in], label)
        if op == "Concat" and len(data_in) == len(ins):
            return builder.concat([ids[n] for n in data_in], int(attrs.get("axis", 1)), label)
        raise _Unsupported(f"combines {len(data_in)} tensors (only Add, Sum and Concat of branches)")
    src = ids[data_in[0]]
    if op == "MaxPool":
        kernel = _attr_ints(attrs, "kernel_shape", None)
        if kernel is None:
            raise _Unsupported("no kernel_shape")
        nd = len(kernel)
        pads = _pads(attrs, nd)
        if isinstance(pads, str):
            raise _Unsupported(f"auto_pad={pads.upper()}")
        if int(attrs.get("storage_order", 0)):
            raise _Unsupported("storage_order=1")
        return builder.maxpool(src, kernel, _attr_ints(attrs, "strides", (1,) * nd), pads,
                               _attr_ints(attrs, "dilations", (1,) * nd), bool(attrs.get("ceil_mode", 0)), label)
    for layer in _convert(op, label, ins, attrs, consts, shapes, data_in[0], batch):
        src = builder.layer(src, layer, label)
    return src
