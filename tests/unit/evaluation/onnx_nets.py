"""Small ONNX networks for the graph-signature and latency tests (Airflow environment:
numpy + onnx only)."""

from __future__ import annotations

import numpy as np


def conv_net(path, *, size: int = 32, seed: int = 0, width: int = 8, dynamic: bool = False):
    """images [1,3,S,S] -> Conv 3x3/2 (width) -> Relu -> Conv 1x1 (6) -> GlobalAveragePool
    -> Flatten -> Gemm [6,4] -> MatMul [4,5]: every op the MAC count knows, random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def weight(name, *shape):
        return numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name=name)

    nodes = [
        helper.make_node("Conv", ["images", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"]),
        helper.make_node("GlobalAveragePool", ["c2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w3"], ["h"]),
        helper.make_node("MatMul", ["h", "w4"], ["output0"]),
    ]
    dims = ["batch", 3, "h", "w"] if dynamic else [1, 3, size, size]
    graph = helper.make_graph(
        nodes,
        "net",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)],
        initializer=[
            weight("w1", width, 3, 3, 3),
            weight("w2", 6, width, 1, 1),
            weight("w3", 6, 4),
            weight("w4", 4, 5),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path
