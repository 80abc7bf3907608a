"""Activations that ONNX exporters spell as several nodes, fused back into one node before loading.

The ONNX loader reads a straight line of nodes; a decomposed activation branches (its input feeds two
nodes). Recognised, with constants equal to the expected ones up to float32 rounding (relative 1e-6)
and commuted operands of Add / Mul:

* GELU, erf form (torch < opset 20):  0.5 * (x * (1 + erf(x / sqrt(2)))), or (0.5 * x) * (...), with
  x * (1 / sqrt(2)) for the division                                                -> Gelu
* GELU, tanh form:  0.5 * (x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * (x * (x * x))))))  -> Gelu(tanh)
* SiLU:  x * sigmoid(x)                                                            -> Silu

Every intermediate tensor must be used only inside the pattern. Anything else is left as it is, so an
unmatched piece is reported by the loader with its op type (e.g. "(Erf)" or a Mul combining two tensors).
"""
from __future__ import annotations

import math

import numpy as np

# steps: (op type, operands); an operand is "x", the output of an earlier step (int), or a constant
_SQRT2 = math.sqrt(2.0)
PATTERNS = {
    "gelu": [("Div", ("x", _SQRT2)), ("Erf", (0,)), ("Add", (1, 1.0)), ("Mul", ("x", 2)), ("Mul", (3, 0.5))],
    "gelu_erf_mul": [("Mul", ("x", 1.0 / _SQRT2)), ("Erf", (0,)), ("Add", (1, 1.0)), ("Mul", ("x", 2)),
                     ("Mul", (3, 0.5))],
    # (0.5 * x) * (1 + erf(.)): the half taken first (tf2onnx and hand-written graphs)
    "gelu_half": [("Mul", ("x", 0.5)), ("Div", ("x", _SQRT2)), ("Erf", (1,)), ("Add", (2, 1.0)), ("Mul", (0, 3))],
    "gelu_half_mul": [("Mul", ("x", 0.5)), ("Mul", ("x", 1.0 / _SQRT2)), ("Erf", (1,)), ("Add", (2, 1.0)),
                      ("Mul", (0, 3))],
    "gelu_tanh": [("Mul", ("x", "x")), ("Mul", ("x", 0)), ("Mul", (1, 0.044715)), ("Add", ("x", 2)),
                  ("Mul", (3, math.sqrt(2.0 / math.pi))), ("Tanh", (4,)), ("Add", (5, 1.0)), ("Mul", ("x", 6)),
                  ("Mul", (7, 0.5))],
    "silu": [("Sigmoid", ("x",)), ("Mul", ("x", 0))],
}
_FUSED = {"gelu": ("Gelu", "none"), "gelu_erf_mul": ("Gelu", "none"), "gelu_half": ("Gelu", "none"),
          "gelu_half_mul": ("Gelu", "none"), "gelu_tanh": ("Gelu", "tanh"),
          "silu": ("Silu", None)}
_COMMUTATIVE = ("Add", "Mul")


def _scalar(name: str, consts: dict):
    if name not in consts:
        return None
    v = np.asarray(consts[name])
    return float(v.reshape(-1)[0]) if v.size == 1 and v.dtype.kind == "f" else None


def _operand_ok(name: str, want, x: str, outs: list, consts: dict) -> bool:
    if want == "x":
        return name == x
    if isinstance(want, int):
        return want < len(outs) and name == outs[want]
    v = _scalar(name, consts)
    return v is not None and math.isclose(v, want, rel_tol=1e-6)


def _match(nodes: list, used: set, consumers: dict, x: str, steps: list, consts: dict) -> list | None:
    """Indices of the nodes realising ``steps`` on input ``x``, or None."""
    outs, idx = [], []
    for op, operands in steps:
        sources = [x if w == "x" else outs[w] for w in operands if w == "x" or isinstance(w, int)]
        found = None
        for k in sorted({k for s in sources for k in consumers.get(s, ())}):
            node = nodes[k]
            ins = [n for n in node.input if n]
            if k in used or k in idx or node.op_type != op or len(ins) != len(operands) or len(node.output) < 1:
                continue
            orders = [ins, ins[::-1]] if op in _COMMUTATIVE and len(ins) == 2 else [ins]
            if any(all(_operand_ok(n, w, x, outs, consts) for n, w in zip(o, operands)) for o in orders):
                found = k
                break
        if found is None:
            return None
        idx.append(found)
        outs.append(nodes[found].output[0])
    inside = set(idx)
    for out in outs[:-1]:  # intermediates feed only the pattern
        if any(k not in inside for k in consumers.get(out, ())):
            return None
    return idx


def fuse_activations(nodes: list, consts: dict) -> list:
    """``nodes`` (a graph's NodeProtos in order) with every recognised decomposed activation replaced by
    one node (Gelu with its ``approximate`` attribute, or the internal op Silu) placed at its last node."""
    from onnx import helper, numpy_helper
    consts = dict(consts)
    for node in nodes:
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(a.t)
    consumers: dict[str, list[int]] = {}
    for k, node in enumerate(nodes):
        for n in node.input:
            if n:
                consumers.setdefault(n, []).append(k)
    used: set = set()
    replace: dict[int, object] = {}
    for k, node in enumerate(nodes):
        for x in [n for n in node.input if n and n not in consts]:
            for name, steps in PATTERNS.items():
                if k in used or nodes[k].op_type != steps[0][0]:
                    continue
                idx = _match(nodes, used, consumers, x, steps, consts)
                if idx is None or idx[0] != k:
                    continue
                used.update(idx)
                op, approx = _FUSED[name]
                out = nodes[idx[-1]].output[0]
                kwargs = {"approximate": approx} if approx else {}
                replace[idx[-1]] = helper.make_node(op, [x], [out], name=f"{nodes[idx[-1]].name or out} "
                                                                        f"(fused {name})", **kwargs)
    return [replace.get(k, node) for k, node in enumerate(nodes) if k not in used or k in replace]
