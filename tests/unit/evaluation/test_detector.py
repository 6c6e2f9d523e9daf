"""driftloop.evaluation.detector (letterbox, decode, NMS, labels, evaluate_model) and
driftloop.evaluation.latency, end to end on constant ONNX models.

Airflow environment only (numpy, onnx, onnxruntime, PIL — no torch); fast.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from driftloop.evaluation import detector as ev
from driftloop.evaluation.latency_table import measure_latency_interleaved

# --------------------------------------------------------------------------- letterbox


@pytest.mark.parametrize(
    ("size", "imgsz", "ratio", "left", "top"),
    [
        ((160, 160), 160, 1.0, 0, 0),  # the synthetic frames: identity
        ((200, 100), 160, 0.8, 0, 40),  # wide: pad top/bottom
        ((90, 120), 160, 4 / 3, 20, 0),  # tall, upscaled: pad left/right
        ((321, 160), 160, 160 / 321, 0, 40),  # odd padding: the extra pixel goes bottom
    ],
)
def test_letterbox_geometry_and_round_trip(size, imgsz, ratio, left, top):
    w, h = size
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB")
    tensor, lb = ev.letterbox(image, imgsz)

    assert tensor.shape == (1, 3, imgsz, imgsz)
    assert tensor.dtype == np.float32
    assert tensor.flags["C_CONTIGUOUS"]
    assert tensor.min() >= 0.0
    assert tensor.max() <= 1.0
    assert lb.ratio == pytest.approx(ratio)
    assert (lb.left, lb.top, lb.width, lb.height) == (left, top, w, h)
    if top:  # padding rows are grey 114
        assert np.allclose(tensor[0, :, : top - 1, :], 114 / 255)
    if left:
        assert np.allclose(tensor[0, :, :, : left - 1], 114 / 255)

    # boxes in the original image -> input pixels (as the model sees them) -> back
    boxes = np.array([[0, 0, w, h], [10.5, 20.25, 40.0, 60.0], [w / 3, h / 4, w / 2, h / 2]])
    in_input = boxes * lb.ratio + np.array([lb.left, lb.top, lb.left, lb.top])
    assert np.allclose(ev.scale_boxes(in_input, lb), boxes)


def test_letterbox_identity_keeps_pixels():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)
    tensor, _ = ev.letterbox(Image.fromarray(pixels, "RGB"), 160)
    assert np.allclose(tensor[0].transpose(1, 2, 0) * 255, pixels, atol=1e-3)


def test_scale_boxes_clips_to_the_image():
    lb = ev.Letterbox(ratio=0.5, left=0, top=10, width=100, height=50)
    out = ev.scale_boxes(np.array([[-5.0, 0.0, 60.0, 50.0]]), lb)
    assert out.tolist() == [[0.0, 0.0, 100.0, 50.0]]


# --------------------------------------------------------------------------- NMS


def _reference_nms(boxes, scores, thr):
    """Textbook greedy NMS, one pair at a time."""

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep, removed = [], set()
    for i in order:
        if i in removed:
            continue
        keep.append(i)
        for j in order:
            if j not in removed and j != i and j not in keep and iou(boxes[i], boxes[j]) > thr:
                removed.add(j)
    return keep


def _random_boxes(rng, n, extent=100.0):
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(5, 40, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_brute_force(seed, thr):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, 60)
    scores = rng.uniform(0, 1, 60)
    assert ev.nms(boxes, scores, thr).tolist() == _reference_nms(boxes, scores, thr)


@pytest.mark.parametrize("seed", range(3))
def test_batched_nms_is_per_class(seed):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, 80)
    scores = rng.uniform(0, 1, 80)
    classes = rng.integers(0, 3, 80)
    kept = set(ev.batched_nms(boxes, scores, classes, 0.5).tolist())
    expected = set()
    for c in range(3):
        idx = np.nonzero(classes == c)[0]
        expected.update(int(idx[k]) for k in _reference_nms(boxes[idx], scores[idx], 0.5))
    assert kept == expected


def test_nms_edge_cases():
    assert ev.nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    same = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], dtype=float)
    assert ev.nms(same, np.array([0.5, 0.5]), 0.5).tolist() == [0]  # tie: lower index wins
    assert ev.nms(same, np.array([0.4, 0.9]), 0.5).tolist() == [1]


# --------------------------------------------------------------------------- decode


def _output(rows):
    """A YOLO output [1, 4 + nc, N] from rows (cx, cy, w, h, score_0, score_1)."""
    return np.asarray(rows, dtype=np.float32).T[None]


def test_decode_synthetic_output():
    out = _output(
        [
            (50, 50, 20, 40, 0.05, 0.90),  # player
            (51, 50, 20, 40, 0.02, 0.80),  # same player, suppressed
            (52, 50, 20, 40, 0.70, 0.10),  # overlaps but class ball: kept (class-aware)
            (120, 30, 10, 10, 0.60, 0.01),  # ball
            (10, 10, 8, 8, 0.0005, 0.0002),  # below the threshold
        ]
    )
    det = ev.decode(out, conf=0.001, iou=0.7)
    assert det.classes.tolist() == [1, 0, 0]
    assert det.scores == pytest.approx([0.90, 0.70, 0.60])
    assert det.boxes[0] == pytest.approx([40, 30, 60, 70])
    assert det.boxes[2] == pytest.approx([115, 25, 125, 35])

    assert len(ev.decode(out, conf=0.65)) == 2
    assert len(ev.decode(out, max_det=1)) == 1
    # multi-label: every class above conf is a candidate; the third anchor's player score
    # (0.10) is then suppressed by the 0.90 player, its ball score (0.70) survives
    multi = ev.decode(out, conf=0.05, multi_label=True)
    assert sorted(zip(multi.classes.tolist(), np.round(multi.scores, 2).tolist(), strict=True)) == [
        (0, 0.6),
        (0, 0.7),
        (1, 0.9),
    ]
    lone = _output([(50, 50, 20, 40, 0.30, 0.90)])  # one anchor, two classes
    assert sorted(ev.decode(lone, multi_label=True).classes.tolist()) == [0, 1]
    assert ev.decode(lone).classes.tolist() == [1]


def test_decode_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected a batch of one image"):
        ev.decode(np.zeros((2, 6, 10), np.float32))
    with pytest.raises(ValueError, match=r"expected a YOLO output \[1, 4 \+ nc, N\]"):
        ev.decode(np.zeros((1, 4, 10), np.float32))


# --------------------------------------------------------------------------- labels


def test_read_labels_and_pairs(tmp_path):
    (tmp_path / "images" / "eval").mkdir(parents=True)
    (tmp_path / "labels" / "eval").mkdir(parents=True)
    Image.new("RGB", (200, 100)).save(tmp_path / "images" / "eval" / "a.png")
    Image.new("RGB", (200, 100)).save(tmp_path / "images" / "eval" / "b.png")
    (tmp_path / "labels" / "eval" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n\n")
    pairs = ev.image_label_pairs(tmp_path)
    assert [p.name for p, _ in pairs] == ["a.png", "b.png"]
    boxes, classes = ev.read_labels(pairs[0][1], 200, 100)
    assert classes.tolist() == [1]
    assert boxes.tolist() == [[80.0, 30.0, 120.0, 70.0]]
    boxes, classes = ev.read_labels(pairs[1][1], 200, 100)  # no label file: background
    assert boxes.shape == (0, 4)
    assert classes.shape == (0,)
    # a folder of images with a sibling labels folder (YOLO convention)
    assert ev.image_label_pairs(tmp_path / "images" / "eval")[0][1] == pairs[0][1]
    with pytest.raises(FileNotFoundError):
        ev.image_label_pairs(tmp_path / "nope")


# --------------------------------------------------------------------------- end to end


def _constant_detector(path, output: np.ndarray, imgsz: int = 64):
    """An ONNX model that ignores its image and returns ``output`` (a fixed YOLO tensor)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = numpy_helper.from_array(output.astype(np.float32), name="const")
    # output = const + 0 * mean(images): keeps the input wired in
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["const", "z"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "const",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))],
        initializer=[out, numpy_helper.from_array(np.zeros((), np.float32), name="zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_evaluate_model_and_latency(tmp_path, caplog):
    # one 128x64 image (letterboxed into 64x64: ratio 0.5, pad 16 top) with a player and a ball
    data = tmp_path / "ds"
    (data / "images" / "eval").mkdir(parents=True)
    (data / "labels" / "eval").mkdir(parents=True)
    Image.new("RGB", (128, 64), (60, 130, 60)).save(data / "images" / "eval" / "f1.png")
    # player: x 20..40, y 10..50 ; ball: x 100..110, y 20..30 (original pixels)
    (data / "labels" / "eval" / "f1.txt").write_text(
        f"1 {30 / 128} {30 / 64} {20 / 128} {40 / 64}\n0 {105 / 128} {25 / 64} {10 / 128} {10 / 64}\n"
    )
    # the model's view: ratio 0.5, top pad 16
    good = _output([(15, 16 + 15, 10, 20, 0.01, 0.95), (52.5, 16 + 12.5, 5, 5, 0.9, 0.0)])
    shifted = _output([(17, 16 + 15, 10, 20, 0.01, 0.95), (52.5, 16 + 12.5, 5, 5, 0.9, 0.0)])
    perfect = _constant_detector(tmp_path / "perfect.onnx", good)
    off = _constant_detector(tmp_path / "off.onnx", shifted)

    caplog.set_level(logging.INFO, logger="driftloop.evaluation.detector")
    result = ev.evaluate_model(perfect, data, label="candidate fp32")
    assert result.n_images == 1
    progress = [r.getMessage() for r in caplog.records if r.name == "driftloop.evaluation.detector"]
    assert progress[0] == f"candidate fp32: scoring 1 images of {data} at 64x64"
    assert progress[1].startswith("candidate fp32: scored 1/1 images (100 %, ")
    assert progress[2] == "candidate fp32: mAP@0.5 1.0000, mAP@0.5:0.95 1.0000"
    assert result.map50 == pytest.approx(1.0)
    assert result.map50_95 == pytest.approx(1.0)
    assert result.records[0]["gt_counts"] == {"0": 1, "1": 1}
    worse = ev.evaluate_model(off, data)
    assert worse.map50 == pytest.approx(1.0)
    assert worse.map50_95 < result.map50_95

    images = [data / "images" / "eval" / "f1.png"]
    latency = measure_latency_interleaved(
        {"perfect": perfect, "off": off}, images, warmup=2, runs=7
    )
    assert set(latency) == {"perfect", "off"}
    for stats in latency.values():
        assert stats["n"] == 7
        assert 0 < stats["p50_ms"] <= stats["p95_ms"]
    with pytest.raises(ValueError, match="no models to time"):
        measure_latency_interleaved({}, images)
