"""An embedding from the model itself: the backbone's last feature map, pooled and projected.

The inference log's ``embedding`` (``schema.EMBEDDING_DIM`` float32) is what the drift monitor's
embedding methods compare. It comes from the served model: at load time the ONNX graph gets
one extra output — the backbone's last feature map — and each frame's map is global-average
pooled (``[1, C, h, w]`` → ``[C]``) and projected to 64 dimensions with a fixed orthonormal
projection. The projection is seeded by the channel count alone, so every version with the
same architecture embeds into the same space (a retrained model's embeddings stay comparable
with its predecessor's, and a change of architecture changes the space visibly).

Which tensor is the backbone's last feature map: Ultralytics exports name every node after
its module path (``/model.<i>/...``). The head begins with an upsampling (``Resize``) of the
backbone's output (``/model.11/Resize`` reads ``/model.10/...`` in YOLO11, ``/model.10/Resize``
reads ``/model.9/...`` in YOLOv8), so the data input of the lowest-numbered module's
``Resize`` is the tensor, found the same way in the FP32 export and in the QDQ INT8 model
(whose Q/DQ pairs are walked through). A graph where none is found fails, naming the model:
there is no silent fallback to some other tensor.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np  # noqa: TID253 (the scorer's process, never a DAG file)

from driftloop.contracts import schema

_MODULE_SCOPE = re.compile(r"^/model\.(\d+)/")
#: nodes between a layer and its consumer that change no meaning (the INT8 model's Q/DQ pairs)
_PASS_THROUGH = ("QuantizeLinear", "DequantizeLinear", "Identity", "Cast")


def _scope(node) -> int | None:
    match = _MODULE_SCOPE.match(node.name)
    return int(match.group(1)) if match else None


def feature_map_tensor(model, label: str) -> str:
    """The name of the backbone's last feature map in an Ultralytics ONNX graph (see the
    module doc); ``label`` names the model in the error."""
    upsamples = sorted(
        (scope, node.name, node)
        for node in model.graph.node
        if node.op_type == "Resize" and (scope := _scope(node)) is not None
    )
    if not upsamples:
        raise ValueError(
            f"{label}: cannot find the backbone's last feature map: no '/model.<i>/' Resize "
            "node (the head's first upsampling) in the ONNX graph; is it an Ultralytics YOLO "
            "detector export?"
        )
    head_scope, _, resize = upsamples[0]
    producers = {out: node for node in model.graph.node for out in node.output}
    tensor = resize.input[0]
    node = producers.get(tensor)
    while node is not None and _scope(node) is None and node.op_type in _PASS_THROUGH:
        node = producers.get(node.input[0])
    if node is None or (scope := _scope(node)) is None or scope >= head_scope:
        raise ValueError(
            f"{label}: cannot find the backbone's last feature map: the input {tensor!r} of "
            f"{resize.name!r} does not come from a '/model.<i>/' layer before it"
        )
    return tensor


def with_feature_map_output(model, label: str) -> tuple[Any, str]:
    """The model with the backbone's last feature map added as a graph output (in place),
    and that output's name."""
    from onnx import TensorProto, helper

    tensor = feature_map_tensor(model, label)
    if tensor not in {o.name for o in model.graph.output}:
        model.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
    return model, tensor


def projection(channels: int, dim: int = schema.EMBEDDING_DIM) -> np.ndarray:
    """A fixed ``[channels, dim]`` float64 projection with orthonormal columns (orthonormal
    rows when ``channels < dim``), seeded by the channel count: same architecture, same
    projection, on every machine (QR of a seeded gaussian, signs fixed by R's diagonal)."""
    if channels < 1:
        raise ValueError(f"a feature map needs at least one channel, got {channels}")
    rng = np.random.default_rng(channels)
    tall, wide = max(channels, dim), min(channels, dim)
    q, r = np.linalg.qr(rng.standard_normal((tall, wide)))
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    return q if channels >= dim else q.T


def embed(feature_map: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The ``schema.EMBEDDING_DIM`` float32 embedding of one ``[1, C, h, w]`` feature map:
    global average pool, then :func:`projection` (``weights``: a cached one)."""
    fmap = np.asarray(feature_map)
    if fmap.ndim != 4 or fmap.shape[0] != 1:
        raise ValueError(f"expected a feature map [1, C, h, w], got shape {fmap.shape}")
    pooled = fmap[0].mean(axis=(1, 2), dtype=np.float64)
    weights = projection(pooled.shape[0]) if weights is None else weights
    if weights.shape[0] != pooled.shape[0]:
        raise ValueError(
            f"projection of {weights.shape[0]} channels for a map of {pooled.shape[0]} channels"
        )
    return (pooled @ weights).astype(np.float32)
