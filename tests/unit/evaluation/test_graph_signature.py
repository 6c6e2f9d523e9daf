"""driftloop.evaluation.graph_signature on small hand-built ONNX graphs: MACs counted from
inferred shapes, and a fingerprint that follows the computation, not the weights."""

from __future__ import annotations

import json

import pytest

from driftloop.evaluation.graph_signature import graph_signature, same_graph
from tests.unit.evaluation.onnx_nets import conv_net


def test_macs_of_conv_gemm_and_matmul_from_inferred_shapes(tmp_path):
    sig = graph_signature(conv_net(tmp_path / "net.onnx", size=32))
    # conv 3x3/2: [1,8,16,16] outputs x 3*3*3; conv 1x1: [1,6,16,16] x 8; gemm 1x6x4; matmul 1x4x5
    expected = {"Conv": 8 * 16 * 16 * 27 + 6 * 16 * 16 * 8, "Gemm": 6 * 4, "MatMul": 4 * 5}
    assert sig.mac_ops == expected
    assert sig.macs == sum(expected.values()) == 67628
    assert sig.flops == 2 * sig.macs
    assert sig.macs_complete
    assert sig.op_types == [
        "Conv",
        "Relu",
        "Conv",
        "GlobalAveragePool",
        "Flatten",
        "Gemm",
        "MatMul",
    ]
    assert sig.inputs == [["float32", 1, 3, 32, 32]]
    assert sig.outputs == [["float32", 1, 5]]
    assert sig.n_parameters == 8 * 27 + 6 * 8 + 24 + 20
    doc = json.loads(json.dumps(sig.to_dict()))
    assert doc["op_counts"] == {
        "Conv": 2, "Flatten": 1, "Gemm": 1, "GlobalAveragePool": 1, "MatMul": 1, "Relu": 1,
    }  # fmt: skip
    assert (doc["n_nodes"], doc["n_initializers"], doc["flops"]) == (7, 4, 2 * 67628)


def test_other_weights_same_fingerprint_other_shapes_another(tmp_path):
    a = graph_signature(conv_net(tmp_path / "a.onnx", seed=0))
    b = graph_signature(conv_net(tmp_path / "b.onnx", seed=1))
    assert a.fingerprint == b.fingerprint  # another initialisation: the same computation
    assert same_graph(a.to_dict(), b.to_dict()) is True
    bigger = graph_signature(conv_net(tmp_path / "c.onnx", size=48))
    wider = graph_signature(conv_net(tmp_path / "d.onnx", width=16))
    assert len({a.fingerprint, bigger.fingerprint, wider.fingerprint}) == 3
    assert same_graph(a.to_dict(), bigger.to_dict()) is False
    # 48 px: 24x24 instead of 16x16 convolution outputs, 2.25x the convolutions' work
    assert bigger.mac_ops["Conv"] == pytest.approx(2.25 * a.mac_ops["Conv"])
    assert same_graph(a.to_dict(), None) is None
    assert same_graph({"fingerprint": ""}, a.to_dict()) is None


def test_a_dynamic_input_leaves_the_count_incomplete(tmp_path):
    sig = graph_signature(conv_net(tmp_path / "dyn.onnx", dynamic=True))
    assert not sig.macs_complete
    assert sig.inputs == [["float32", "batch", 3, "h", "w"]]
    # every product's output size depends on the unknown batch: none can be counted, and the
    # gate reads such a signature's FLOPs as unknown (flops_ratio None)
    assert (sig.macs, sig.mac_ops) == (0, {})
