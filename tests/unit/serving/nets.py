"""Small ONNX graphs named like an Ultralytics export (``/model.<i>/...``), for the embedding
and model-loading tests (numpy + onnx only)."""

from __future__ import annotations

import numpy as np


def backbone_net(
    path, *, size: int = 32, channels: int = 16, qdq: bool = True, resize: bool = True
):
    """images [1,3,S,S] -> /model.0 Conv/2 + Relu -> /model.1 Conv/2 (``channels``) + Relu
    [-> Q/DQ pair, as in a QDQ INT8 export] -> /model.2 Resize x2 -> /model.3 Conv 1x1 (6)
    -> output0 [1, 6, S/2 * S/2]: a YOLO-shaped output (4 box rows + 2 class rows)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weight(name, *shape):
        values = rng.normal(scale=0.5, size=shape).astype(np.float32)
        return numpy_helper.from_array(values, name=name)

    scalars = [
        numpy_helper.from_array(np.array(0.05, np.float32), "q_scale"),
        numpy_helper.from_array(np.array(0, np.uint8), "q_zero"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "up_scales"),
        numpy_helper.from_array(np.array([1, 6, -1], np.int64), "out_shape"),
    ]
    nodes = [
        helper.make_node(
            "Conv",
            ["images", "w0"],
            ["c0"],
            name="/model.0/conv/Conv",
            pads=[1] * 4,
            strides=[2, 2],
        ),
        helper.make_node("Relu", ["c0"], ["r0"], name="/model.0/act/Relu"),
        helper.make_node(
            "Conv", ["r0", "w1"], ["c1"], name="/model.1/conv/Conv", pads=[1] * 4, strides=[2, 2]
        ),
        helper.make_node("Relu", ["c1"], ["/model.1/act/Relu_output_0"], name="/model.1/act/Relu"),
    ]
    feature = "/model.1/act/Relu_output_0"
    if qdq:
        nodes += [
            helper.make_node("QuantizeLinear", [feature, "q_scale", "q_zero"], ["q"], name="q1"),
            helper.make_node("DequantizeLinear", ["q", "q_scale", "q_zero"], ["dq"], name="dq1"),
        ]
        feature = "dq"
    if resize:
        nodes.append(
            helper.make_node(
                "Resize", [feature, "", "up_scales"], ["up"], name="/model.2/Resize", mode="nearest"
            )
        )
    else:
        nodes.append(helper.make_node("Identity", [feature], ["up"], name="/model.2/Identity"))
    nodes += [
        helper.make_node("Conv", ["up", "w3"], ["c3"], name="/model.3/conv/Conv"),
        helper.make_node("Sigmoid", ["c3"], ["s3"], name="/model.3/Sigmoid"),
        helper.make_node("Reshape", ["s3", "out_shape"], ["output0"], name="/model.3/Reshape"),
    ]
    graph = helper.make_graph(
        nodes,
        "backbone",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)],
        initializer=[
            weight("w0", 8, 3, 3, 3),
            weight("w1", channels, 8, 3, 3),
            weight("w3", 6, channels, 1, 1),
            *scalars,
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
