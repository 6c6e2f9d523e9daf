"""The model's embedding (driftloop.serving.embedding): the backbone's last feature map found
in an Ultralytics-named graph, exposed as an output, pooled and projected. A real exported
detector (FP32 and INT8) is tested in tests/integration/test_serve_batch.py."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from PIL import Image

from driftloop.contracts import schema
from driftloop.serving import embedding
from driftloop.serving.models import open_model
from driftloop.serving.scorer import run_model
from tests.unit.serving.nets import backbone_net


def test_the_projection_is_orthonormal_and_fixed_by_the_channel_count():
    p = embedding.projection(256)
    assert p.shape == (256, schema.EMBEDDING_DIM)
    np.testing.assert_allclose(p.T @ p, np.eye(schema.EMBEDDING_DIM), atol=1e-12)
    np.testing.assert_array_equal(p, embedding.projection(256))  # same architecture, same space
    assert not np.allclose(embedding.projection(128)[:64], p[:64])
    narrow = embedding.projection(16)  # fewer channels than dimensions: orthonormal rows
    assert narrow.shape == (16, schema.EMBEDDING_DIM)
    np.testing.assert_allclose(narrow @ narrow.T, np.eye(16), atol=1e-12)
    with pytest.raises(ValueError, match="at least one channel"):
        embedding.projection(0)


def test_embed_pools_then_projects():
    rng = np.random.default_rng(0)
    fmap = rng.normal(size=(1, 96, 5, 5)).astype(np.float32)
    vector = embedding.embed(fmap)
    assert vector.dtype == np.float32
    assert vector.shape == (schema.EMBEDDING_DIM,)
    expected = fmap[0].mean(axis=(1, 2), dtype=np.float64) @ embedding.projection(96)
    np.testing.assert_allclose(vector, expected, rtol=1e-5)
    # a constant map per channel: spatial size does not matter, only the channel means
    flat = np.broadcast_to(fmap[0].mean(axis=(1, 2))[None, :, None, None], (1, 96, 3, 7))
    np.testing.assert_allclose(embedding.embed(flat), vector, rtol=1e-4)
    with pytest.raises(ValueError, match=r"\[1, C, h, w\]"):
        embedding.embed(fmap[0])


@pytest.mark.parametrize("qdq", [False, True], ids=["fp32", "qdq"])
def test_the_feature_map_is_the_input_of_the_first_upsample(tmp_path, qdq):
    model = onnx.load(str(backbone_net(tmp_path / "net.onnx", qdq=qdq)))
    tensor = embedding.feature_map_tensor(model, "net")
    assert tensor == ("dq" if qdq else "/model.1/act/Relu_output_0")
    model, name = embedding.with_feature_map_output(model, "net")
    assert name == tensor
    assert [o.name for o in model.graph.output] == ["output0", tensor]
    embedding.with_feature_map_output(model, "net")  # idempotent
    assert len(model.graph.output) == 2


def test_a_graph_without_a_backbone_map_fails_naming_the_model(tmp_path):
    model = onnx.load(str(backbone_net(tmp_path / "net.onnx", resize=False)))
    with pytest.raises(ValueError, match=r"detector v7.*no '/model.<i>/' Resize"):
        embedding.feature_map_tensor(model, "detector v7")
    with pytest.raises(ValueError, match="detector v7"):
        open_model(tmp_path / "net.onnx", name="detector", version="7", workdir=tmp_path / "w")


def test_open_model_exposes_the_map_and_scores(tmp_path):
    path = backbone_net(tmp_path / "net.onnx", channels=16)
    model = open_model(path, name="detector", version="3", workdir=tmp_path / "w", threads=1)
    assert model.imgsz == (32, 32)
    assert model.projection.shape == (16, schema.EMBEDDING_DIM)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for _ in range(2)]
    first, second = (run_model(model, image) for image in images)
    assert first.error is None, first.error
    assert first.embedding.shape == (schema.EMBEDDING_DIM,)
    assert np.isfinite(first.embedding).all()
    assert not np.allclose(first.embedding, second.embedding)  # it depends on the frame
    assert first.latency_ms > 0
    assert 0.0 <= first.best_score <= 1.0
    assert len(first.boxes) == len(first.scores) == len(first.classes)
