"""What a labeling batch looks like to the labeling tools: Label Studio tasks and YOLO txt.

**Label Studio** (import: *Tasks → Import* of ``tasks.json``; labeling interface:
``label_config.xml``; images read from S3 through a *Source Cloud Storage* on the bucket, so
``data.image`` is ``s3://bucket/key``). One task per frame::

    {"data": {"image": "s3://b/frames/dt=D/D-0007.png", "frame_id": "D-0007",
              "camera_id": "cam-05", "day": "D", "batch": "labeling/D/", "queue_score": 0.81,
              "reasons": "..."},
     "predictions": [{"model_version": "7", "score": 0.64,
                      "result": [{"id": "D-0007-7-0", "type": "rectanglelabels",
                                  "from_name": "label", "to_name": "image",
                                  "original_width": 640, "original_height": 480,
                                  "image_rotation": 0, "score": 0.91,
                                  "value": {"x": 12.5, "y": 40.0, "width": 5.0, "height": 6.25,
                                            "rotation": 0, "rectanglelabels": ["ball"]}}]}]}

``value`` is in percent of the image (x, y: the top-left corner). The served model's
prediction comes first; on a frame the other model scored too, its prediction follows.

**YOLO**: ``yolo/labels/<frame_id>.txt``, a line ``class cx cy w h`` per box (fractions of the
image, 6 decimals), and ``yolo/classes.txt`` (the class names, one a line, in class-id order:
:data:`driftloop.contracts.schema.CLASS_NAMES`).

Reading a returned annotation back (:func:`result_to_yolo`) checks it: a rectangle with a
label outside the class list, more or fewer than one label, a rotation, or a box outside the
image raises :class:`AnnotationError` (its caller names the task).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from driftloop.contracts.schema import CLASS_NAMES

FROM_NAME = "label"
TO_NAME = "image"
RECTANGLE = "rectanglelabels"
#: slack, in percent of the image, for boxes touching an edge (tools round)
EDGE_TOLERANCE = 1e-3
LABEL_CONFIG = (
    "<View>\n"
    f'  <Image name="{TO_NAME}" value="$image"/>\n'
    f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}">\n'
    + "".join(f'    <Label value="{name}"/>\n' for name in CLASS_NAMES)
    + "  </RectangleLabels>\n"
    "</View>\n"
)


class AnnotationError(ValueError):
    """An annotation that cannot become a YOLO label."""


Box = tuple[int, float, float, float, float]  # class id, cx, cy, w, h (fractions)


def xyxy_to_yolo(class_id: int, xyxy: Sequence[float], width: int, height: int) -> Box:
    """A box in image pixels (x1, y1, x2, y2) as YOLO fractions, clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    x1, x2 = sorted((min(max(x1, 0.0), width), min(max(x2, 0.0), width)))
    y1, y2 = sorted((min(max(y1, 0.0), height), min(max(y2, 0.0), height)))
    return (
        int(class_id),
        (x1 + x2) / 2 / width,
        (y1 + y2) / 2 / height,
        (x2 - x1) / width,
        (y2 - y1) / height,
    )


def yolo_to_value(box: Box) -> dict[str, Any]:
    """A YOLO box as a Label Studio rectangle ``value`` (percent, top-left corner)."""
    class_id, cx, cy, w, h = box
    if not 0 <= class_id < len(CLASS_NAMES):
        raise AnnotationError(f"class id {class_id} is not in {list(CLASS_NAMES)}")
    return {
        "x": round((cx - w / 2) * 100, 6),
        "y": round((cy - h / 2) * 100, 6),
        "width": round(w * 100, 6),
        "height": round(h * 100, 6),
        "rotation": 0,
        RECTANGLE: [CLASS_NAMES[class_id]],
    }


def value_to_yolo(value: Mapping[str, Any]) -> Box:
    """A Label Studio rectangle ``value`` as a YOLO box; :class:`AnnotationError` on an
    unknown label, a rotated box, or a box outside the image."""
    labels = value.get(RECTANGLE)
    if not isinstance(labels, list) or len(labels) != 1:
        raise AnnotationError(f"a box needs exactly one label, got {labels!r}")
    if labels[0] not in CLASS_NAMES:
        raise AnnotationError(f"unknown label {labels[0]!r} (the classes: {list(CLASS_NAMES)})")
    try:
        x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
        rotation = float(value.get("rotation") or 0.0)
    except (KeyError, TypeError, ValueError):
        raise AnnotationError(f"a box needs numeric x, y, width, height: {dict(value)}") from None
    if abs(rotation) > 1e-9:
        raise AnnotationError(f"a rotated box ({rotation} degrees): YOLO boxes are axis-aligned")
    t = EDGE_TOLERANCE
    if not (w > 0 and h > 0 and x >= -t and y >= -t and x + w <= 100 + t and y + h <= 100 + t):
        raise AnnotationError(
            f"box outside the image: x={x}, y={y}, width={w}, height={h} (percent)"
        )
    x1, y1 = max(x, 0.0) / 100, max(y, 0.0) / 100
    x2, y2 = min(x + w, 100.0) / 100, min(y + h, 100.0) / 100
    return (CLASS_NAMES.index(labels[0]), (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)


def result_to_yolo(results: Sequence[Mapping[str, Any]]) -> list[Box]:
    """The boxes of an annotation's ``result`` list; anything but rectangles is an error."""
    boxes = []
    for item in results:
        if not isinstance(item, Mapping):
            raise AnnotationError(f"a result item must be an object, got {item!r}")
        if item.get("type") != RECTANGLE:
            raise AnnotationError(
                f"result type {item.get('type')!r}: only {RECTANGLE} can become a YOLO label"
            )
        if not isinstance(item.get("value"), Mapping):
            raise AnnotationError("a rectangle without a value")
        boxes.append(value_to_yolo(item["value"]))
    return boxes


def yolo_text(boxes: Sequence[Box]) -> str:
    """A YOLO label file: ``class cx cy w h`` a line, 6 decimals (empty: no objects)."""
    return "".join(f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for c, cx, cy, w, h in boxes)


def classes_text() -> str:
    return "".join(f"{name}\n" for name in CLASS_NAMES)


def prediction(
    frame_id: str,
    model_version: str,
    boxes: Sequence[Mapping[str, Any]],
    width: int,
    height: int,
) -> dict[str, Any]:
    """A Label Studio prediction of one model on one frame (``boxes``: serving-record boxes,
    xyxy in image pixels with ``class_id`` and ``confidence``)."""
    result = []
    for i, b in enumerate(boxes):
        box = xyxy_to_yolo(b["class_id"], (b["x1"], b["y1"], b["x2"], b["y2"]), width, height)
        if box[3] <= 0 or box[4] <= 0:
            continue  # a box entirely outside the frame
        result.append(
            {
                "id": f"{frame_id}-{model_version}-{i}",
                "type": RECTANGLE,
                "from_name": FROM_NAME,
                "to_name": TO_NAME,
                "original_width": int(width),
                "original_height": int(height),
                "image_rotation": 0,
                "score": round(float(b["confidence"]), 6),
                "value": yolo_to_value(box),
            }
        )
    scores = [r["score"] for r in result]
    return {
        "model_version": str(model_version),
        "score": round(sum(scores) / len(scores), 6) if scores else 0.0,
        "result": result,
    }


def predicted_boxes(pred: Mapping[str, Any]) -> list[Box]:
    """The YOLO boxes of a prediction (what ``yolo/labels/<frame>.txt`` holds)."""
    return result_to_yolo(pred["result"])


def task(data: Mapping[str, Any], predictions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"data": dict(data), "predictions": [dict(p) for p in predictions]}
