"""What an ONNX serving artifact computes, independent of its weights' values.

:func:`graph_signature` reads a model's graph and returns a :class:`GraphSignature`: the input
and output shapes, the op types in graph order, the shapes and types of the initializers, and
an estimate of the arithmetic — multiply-accumulates (MACs) of every ``Conv``, ``Gemm`` and
``MatMul`` (and their integer / QLinear forms) from the shapes ONNX shape inference gives —
with a SHA-256 fingerprint over all of it.

Two models with the same fingerprint run the same operators on tensors of the same shapes: on
one host and one thread setting they do the same work, so a latency difference between them
can only come from the measurement (or from gross value-dependent effects such as FP32
denormals). The promotion gate uses that (see :mod:`driftloop.promotion.gate`), and records
both signatures with every evaluation.

Imports ``onnx`` inside :func:`graph_signature` only; :class:`GraphSignature` itself is plain
data (the gate reads it from the ledger without onnx).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: op type -> (index of the input whose last axis is the reduction, kind of reduction)
#: ``weight``: MACs = output elements x product of the weight's dims after the first
#: (Cin/group x kH x kW of a convolution); ``lhs``: MACs = output elements x the left
#: operand's last dim (K of a matrix product).
_MAC_OPS: dict[str, tuple[int, str]] = {
    "Conv": (1, "weight"),
    "ConvInteger": (1, "weight"),
    "QLinearConv": (3, "weight"),
    "MatMul": (0, "lhs"),
    "MatMulInteger": (0, "lhs"),
    "QLinearMatMul": (0, "lhs"),
    "Gemm": (0, "gemm"),
}


@dataclass(frozen=True)
class GraphSignature:
    """The shape of an ONNX model's computation (see the module doc).

    ``macs``: multiply-accumulates of the counted ops, None when a shape needed for one of
    them is unknown (then ``macs_complete`` is False and ``macs`` counts the known ones);
    ``flops`` is ``2 x macs``. ``op_types``: one entry per node, in graph order.
    """

    fingerprint: str
    inputs: list[list[Any]]
    outputs: list[list[Any]]
    op_types: list[str]
    initializer_shapes: list[list[Any]]
    macs: int
    macs_complete: bool
    n_parameters: int
    mac_ops: dict[str, int] = field(default_factory=dict)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def n_nodes(self) -> int:
        return len(self.op_types)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; the op list is summarised as counts per op type (the fingerprint covers
        the order)."""
        return {
            "fingerprint": self.fingerprint,
            "inputs": [list(x) for x in self.inputs],
            "outputs": [list(x) for x in self.outputs],
            "n_nodes": self.n_nodes,
            "op_counts": dict(sorted(Counter(self.op_types).items())),
            "n_initializers": len(self.initializer_shapes),
            "n_parameters": self.n_parameters,
            "macs": self.macs,
            "flops": self.flops,
            "macs_complete": self.macs_complete,
            "mac_ops": dict(sorted(self.mac_ops.items())),
        }


def same_graph(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool | None:
    """Whether two signature documents (:meth:`GraphSignature.to_dict`) have the same
    fingerprint; None when either is missing or has none."""
    fa, fb = (a or {}).get("fingerprint"), (b or {}).get("fingerprint")
    if not fa or not fb:
        return None
    return fa == fb


def _dims(type_proto) -> list[Any] | None:
    """Static dims of a tensor type (an int, or the symbol / '?' of a dynamic one)."""
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
        for d in type_proto.tensor_type.shape.dim
    ]


def _static(dims: Sequence[Any] | None) -> bool:
    return dims is not None and all(isinstance(d, int) and d > 0 for d in dims)


def _node_macs(node, shapes: Mapping[str, list[Any]]) -> int | None:
    """MACs of one Conv/Gemm/MatMul-like node, or None when a needed shape is unknown."""
    index, kind = _MAC_OPS[node.op_type]
    out = shapes.get(node.output[0])
    operand = shapes.get(node.input[index]) if len(node.input) > index else None
    if not _static(out) or not _static(operand):
        return None
    elements = math.prod(out)
    if kind == "weight":  # [Cout, Cin/group, kH, kW]
        return elements * math.prod(operand[1:])
    if kind == "lhs":  # [..., M, K] @ [..., K, N]
        return elements * operand[-1]
    trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
    return elements * (operand[0] if trans_a else operand[-1])


def graph_signature(path: str | Path) -> GraphSignature:
    """The :class:`GraphSignature` of the ONNX model at ``path`` (shapes from ONNX shape
    inference, so a static-shape export gets a complete MAC count)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # an opset shape inference does not know: count what the graph says
        inferred = model
    graph = inferred.graph
    dtype_name = onnx.helper.tensor_dtype_to_np_dtype
    shapes: dict[str, list[Any]] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        dims = _dims(value.type)
        if dims is not None:
            shapes[value.name] = dims
    initializers = []
    n_parameters = 0
    for init in graph.initializer:
        dims = list(init.dims)
        shapes[init.name] = dims
        initializers.append([str(dtype_name(init.data_type)), *dims])
        n_parameters += math.prod(dims) if dims else 1
    init_names = {init.name for init in graph.initializer}

    def io(values) -> list[list[Any]]:
        return [
            [str(dtype_name(v.type.tensor_type.elem_type)), *(_dims(v.type) or [])]
            for v in values
            if v.name not in init_names
        ]

    op_types = [node.op_type for node in graph.node]
    macs, complete = 0, True
    mac_ops: Counter[str] = Counter()
    for node in graph.node:
        if node.op_type not in _MAC_OPS:
            continue
        n = _node_macs(node, shapes)
        if n is None:
            complete = False
            continue
        macs += n
        mac_ops[node.op_type] += n
    inputs, outputs = io(graph.input), io(graph.output)
    # initializers as a sorted multiset: an exporter may list them in another order
    initializer_shapes = sorted(initializers, key=lambda s: json.dumps(s))
    content = {
        "inputs": inputs,
        "outputs": outputs,
        "op_types": op_types,
        "initializers": initializer_shapes,
        "macs": macs,
        "macs_complete": complete,
    }
    fingerprint = hashlib.sha256(
        json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    return GraphSignature(
        fingerprint=fingerprint,
        inputs=inputs,
        outputs=outputs,
        op_types=op_types,
        initializer_shapes=initializer_shapes,
        macs=macs,
        macs_complete=complete,
        n_parameters=n_parameters,
        mac_ops=dict(mac_ops),
    )
