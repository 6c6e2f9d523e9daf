"""Score an ONNX detector (FP32 or INT8) on labeled images: numpy + onnxruntime + PIL only.

This runs in the Airflow environment (no torch, no ultralytics), and its preprocessing is
the one the INT8 calibration in :mod:`driftloop.training.export` uses, so the quantizer sees
exactly the tensors the evaluation (and serving) feeds the model.

Pipeline, one image at a time:

1. :func:`letterbox` — resize keeping the aspect ratio, pad with grey 114 to the model's
   square input, RGB, float32 in [0, 1], NCHW (Ultralytics' ``LetterBox(auto=False)``);
2. the ONNX session; a YOLOv8/YOLO11 export's output is ``[1, 4 + nc, N]``: box centre,
   size (input pixels) and per-class scores (already sigmoid'ed);
3. :func:`decode` — confidence threshold, best class per anchor (or every class above the
   threshold with ``multi_label``), class-aware :func:`nms`, ``max_det``;
4. :func:`scale_boxes` — back to original image pixels;
5. :func:`driftloop.evaluation.matching.match_image` — COCO-style greedy matching per IoU
   threshold 0.50:0.05:0.95, giving one record per image in
   :mod:`driftloop.evaluation.coco_map`'s format (``ImageRecord.to_dict``)::

       {"image_id": stem, "gt_counts": {"<class id>": n_boxes},
        "predictions": [[confidence, [tp@0.50, tp@0.55, …, tp@0.95], class_id], …]}

:func:`evaluate_model` returns the records plus mAP@0.5 and mAP@0.5:0.95 from
:mod:`driftloop.evaluation.coco_map` (pycocotools' 101-point interpolated AP averaged over
classes with ground truth), the definition the gate's paired bootstrap uses, and logs its
progress ("scored 120/480 images"). Latency is measured by :mod:`driftloop.evaluation.latency`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from driftloop.evaluation.coco_map import map_scores, per_class_scores
from driftloop.evaluation.matching import image_record
from driftloop.evaluation.progress import ProgressLog

log = logging.getLogger(__name__)

PAD_VALUE = 114
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
#: defaults of an mAP evaluation (Ultralytics' ``val``): keep nearly everything, NMS at 0.7
EVAL_CONF = 0.001
EVAL_IOU = 0.7
MAX_DET = 300
MAX_NMS = 30_000  # candidates kept (by confidence) before NMS
MAX_WH = 7680.0  # class offset of class-aware NMS: larger than any box coordinate


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Letterbox:
    """How an image was mapped into the model input: ``input = original * ratio + (left, top)``."""

    ratio: float
    left: int
    top: int
    width: int  # original image size
    height: int


def letterbox(image: Image.Image, imgsz: int | tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """The model input for ``image`` (``[1, 3, H, W]`` float32 RGB in [0, 1]) and its mapping.

    Same geometry as Ultralytics' ``LetterBox(auto=False, scale_fill=False, center=True)``:
    scale by ``min(H/h, W/w)``, round the new size, pad evenly (the odd pixel goes
    bottom/right) with grey 114. Bilinear resize (PIL), only when the size changes.
    """
    new_h, new_w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    image = image.convert("RGB")
    w, h = image.size
    r = min(new_h / h, new_w / w)
    unpad_w, unpad_h = round(w * r), round(h * r)
    dw, dh = (new_w - unpad_w) / 2, (new_h - unpad_h) / 2
    if (unpad_w, unpad_h) != (w, h):
        image = image.resize((unpad_w, unpad_h), Image.Resampling.BILINEAR)
    top, left = round(dh - 0.1), round(dw - 0.1)
    canvas = np.full((new_h, new_w, 3), PAD_VALUE, dtype=np.uint8)
    canvas[top : top + unpad_h, left : left + unpad_w] = np.asarray(image, dtype=np.uint8)
    tensor = canvas.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(tensor), Letterbox(r, left, top, w, h)


def load_input(path: str | Path, imgsz: int | tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    with Image.open(path) as image:
        return letterbox(image, imgsz)


def scale_boxes(boxes: np.ndarray, lb: Letterbox) -> np.ndarray:
    """xyxy boxes in model-input pixels → original image pixels (clipped to the image)."""
    out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    out[:, [0, 2]] = (out[:, [0, 2]] - lb.left) / lb.ratio
    out[:, [1, 3]] = (out[:, [1, 3]] - lb.top) / lb.ratio
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, lb.width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, lb.height)
    return out


# --------------------------------------------------------------------------- boxes


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    half = xywh[:, 2:] / 2
    return np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS: indices of the kept boxes, highest score first. A box is dropped when its
    IoU with an already kept box is above ``iou_threshold`` (ties in score: lower index first)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    x0, y0, x1, y1 = boxes.T
    areas = (x1 - x0).clip(0) * (y1 - y0).clip(0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = (np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest])).clip(0)
        h = (np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest])).clip(0)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other (each class is
    shifted by ``class * MAX_WH`` so its boxes cannot overlap another class's)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    offsets = np.asarray(classes, dtype=np.float64).reshape(-1, 1) * MAX_WH
    return nms(boxes + offsets, scores, iou_threshold)


@dataclass(frozen=True)
class Detections:
    """Detections of one image: xyxy boxes, confidences, class ids (highest confidence first)."""

    boxes: np.ndarray  # [n, 4] float64
    scores: np.ndarray  # [n] float64
    classes: np.ndarray  # [n] int64

    def __len__(self) -> int:
        return len(self.scores)


def decode(
    output: np.ndarray,
    *,
    conf: float = EVAL_CONF,
    iou: float = EVAL_IOU,
    max_det: int = MAX_DET,
    multi_label: bool = False,
) -> Detections:
    """Detections (in model-input pixels) from a YOLO output ``[1, 4 + nc, N]`` (or
    ``[4 + nc, N]``): rows 0–3 are cx, cy, w, h, the rest per-class scores."""
    out = np.asarray(output, dtype=np.float32)
    if out.ndim == 3:
        if out.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, got output shape {out.shape}")
        out = out[0]
    if out.ndim != 2 or out.shape[0] < 5:
        raise ValueError(f"expected a YOLO output [1, 4 + nc, N], got shape {output.shape}")
    pred = out.T  # [N, 4 + nc]
    cls_scores = pred[:, 4:]
    if multi_label:
        idx, cls = np.nonzero(cls_scores > conf)
        scores = cls_scores[idx, cls]
    else:
        cls = cls_scores.argmax(axis=1)
        scores = cls_scores[np.arange(len(pred)), cls]
        idx = np.nonzero(scores > conf)[0]
        cls, scores = cls[idx], scores[idx]
    if len(idx) > MAX_NMS:
        top = np.argsort(-scores, kind="stable")[:MAX_NMS]
        idx, cls, scores = idx[top], cls[top], scores[top]
    boxes = xywh_to_xyxy(pred[idx, :4])
    keep = batched_nms(boxes, scores, cls, iou)[:max_det]
    return Detections(
        boxes[keep], scores[keep].astype(np.float64), cls[keep].astype(np.int64, copy=False)
    )


# --------------------------------------------------------------------------- ground truth


def read_labels(path: str | Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A YOLO label file → (xyxy boxes in pixels, class ids). A missing file is no objects."""
    path = Path(path)
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if parts:
                rows.append([float(v) for v in parts[:5]])
    if not rows:
        return np.zeros((0, 4)), np.zeros(0, dtype=np.int64)
    arr = np.asarray(rows, dtype=np.float64)
    boxes = xywh_to_xyxy(arr[:, 1:5] * np.array([width, height, width, height]))
    return boxes, arr[:, 0].astype(np.int64)


def image_label_pairs(eval_dir: str | Path, split: str | None = "eval") -> list[tuple[Path, Path]]:
    """``(image, label file)`` pairs of an evaluation folder, sorted by image name.

    ``eval_dir`` is a dataset root (``images/<split>/`` + ``labels/<split>/``), or a folder
    with ``images/`` and ``labels/``, or a folder of images whose labels follow YOLO's
    convention (the last ``images`` path component replaced by ``labels``).
    """
    root = Path(eval_dir)
    if split and (root / "images" / split).is_dir():
        images_dir, labels_dir = root / "images" / split, root / "labels" / split
    elif (root / "images").is_dir():
        images_dir, labels_dir = root / "images", root / "labels"
    elif root.is_dir():
        images_dir, labels_dir, parts = root, root, list(root.parts)
        if "images" in parts:
            parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
            labels_dir = Path(*parts)
    else:
        raise FileNotFoundError(f"evaluation folder {root} does not exist")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no images in {images_dir}")
    return [(p, labels_dir / f"{p.stem}.txt") for p in images]


# --------------------------------------------------------------------------- evaluation


@dataclass
class EvalResult:
    records: list[dict[str, Any]]
    map50: float
    map50_95: float
    n_images: int
    per_class: dict[int, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "map50": self.map50,
            "map50_95": self.map50_95,
            "n_images": self.n_images,
            "per_class": {str(k): v for k, v in self.per_class.items()},
            "seconds": round(self.seconds, 3),
        }


def session(onnx_path: str | Path, *, threads: int | None = None):
    """A CPU onnxruntime session (``threads=1``: single-threaded, for stable latencies)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def input_size(sess) -> tuple[int, int]:
    """(H, W) of a session's static image input (a dynamic one must be given explicitly)."""
    shape = sess.get_inputs()[0].shape
    h, w = shape[2], shape[3]
    if not (isinstance(h, int) and isinstance(w, int)):
        raise ValueError(f"model input has a dynamic shape {shape}: pass imgsz")
    return h, w


#: a detector as the evaluation sees it: an NCHW float32 input → its raw output
#: ``[1, 4 + nc, N]`` (ONNX Runtime here; a PyTorch model in ``bench/model_quality.py``)
Runner = Callable[[np.ndarray], np.ndarray]


def onnx_runner(sess) -> Runner:
    name = sess.get_inputs()[0].name
    return lambda tensor: sess.run(None, {name: tensor})[0]


def predict(run: Runner, path: str | Path, imgsz: tuple[int, int], **decode_kwargs) -> Detections:
    """Detections of one image file, in its own pixels."""
    tensor, lb = load_input(path, imgsz)
    det = decode(run(tensor), **decode_kwargs)
    return Detections(scale_boxes(det.boxes, lb), det.scores, det.classes)


def score_runner(
    run: Runner,
    size: tuple[int, int],
    eval_dir: str | Path,
    *,
    split: str | None = "eval",
    conf: float = EVAL_CONF,
    iou: float = EVAL_IOU,
    max_det: int = MAX_DET,
    label: str = "detector",
) -> EvalResult:
    """Run a detector on every labeled image of ``eval_dir`` (see :func:`image_label_pairs`)
    at input size ``size`` (H, W) and score it: per-image records, mAP@0.5, mAP@0.5:0.95.
    Progress goes to this module's logger, the lines named by ``label``."""
    began = time.perf_counter()
    pairs = image_label_pairs(eval_dir, split)
    log.info("%s: scoring %d images of %s at %dx%d", label, len(pairs), eval_dir, *size)
    progress = ProgressLog(log, f"{label}: scored", len(pairs), "images")
    records = []
    for done, (image_path, label_path) in enumerate(pairs, start=1):
        det = predict(run, image_path, size, conf=conf, iou=iou, max_det=max_det)
        with Image.open(image_path) as image:
            width, height = image.size
        gt_boxes, gt_classes = read_labels(label_path, width, height)
        records.append(image_record(image_path.stem, det, gt_boxes, gt_classes))
        progress.update(done)
    map50, map50_95 = map_scores(records)
    log.info("%s: mAP@0.5 %.4f, mAP@0.5:0.95 %.4f", label, map50, map50_95)
    return EvalResult(
        records=records,
        map50=map50,
        map50_95=map50_95,
        n_images=len(records),
        per_class=per_class_scores(records),
        seconds=time.perf_counter() - began,
    )


def evaluate_model(
    onnx_path: str | Path,
    eval_dir: str | Path,
    *,
    split: str | None = "eval",
    imgsz: int | tuple[int, int] | None = None,
    conf: float = EVAL_CONF,
    iou: float = EVAL_IOU,
    max_det: int = MAX_DET,
    threads: int | None = None,
    label: str | None = None,
) -> EvalResult:
    """:func:`score_runner` for an ONNX file (input size from the model unless given);
    progress lines are named by ``label``, by default the file's path."""
    sess = session(onnx_path, threads=threads)
    if imgsz is None:
        size = input_size(sess)
    else:
        size = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    return score_runner(
        onnx_runner(sess),
        size,
        eval_dir,
        split=split,
        conf=conf,
        iou=iou,
        max_det=max_det,
        label=str(onnx_path) if label is None else label,
    )
