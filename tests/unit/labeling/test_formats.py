"""Label Studio tasks and YOLO txt of a labeling batch (driftloop.labeling.formats)."""

from __future__ import annotations

import pytest

from driftloop.contracts.schema import CLASS_NAMES
from driftloop.labeling import formats


def rect(value: dict) -> dict:
    return {"type": "rectanglelabels", "from_name": "label", "to_name": "image", "value": value}


def test_a_label_studio_box_round_trips_through_yolo():
    value = {"x": 12.5, "y": 40.0, "width": 5.0, "height": 6.25, "rotation": 0,
             "rectanglelabels": ["player"]}  # fmt: skip
    box = formats.value_to_yolo(value)
    assert box == pytest.approx((1, 0.15, 0.43125, 0.05, 0.0625))
    assert formats.yolo_to_value(box) == value
    text = formats.yolo_text([box])
    assert text == "1 0.150000 0.431250 0.050000 0.062500\n"


def test_a_yolo_box_round_trips_through_label_studio():
    box = (0, 0.5, 0.25, 0.2, 0.1)
    assert formats.value_to_yolo(formats.yolo_to_value(box)) == pytest.approx(box)


def test_a_prediction_is_in_percent_of_the_image_with_scores():
    boxes = [
        {"class_id": 0, "confidence": 0.9, "x1": 64.0, "y1": 48.0, "x2": 128.0, "y2": 96.0},
        {"class_id": 1, "confidence": 0.5, "x1": -10.0, "y1": 0.0, "x2": 32.0, "y2": 480.0},
    ]
    pred = formats.prediction("D-0001", "7", boxes, 640, 480)
    assert pred["model_version"] == "7"
    assert pred["score"] == pytest.approx(0.7)
    first = pred["result"][0]
    assert (first["original_width"], first["original_height"]) == (640, 480)
    assert first["value"] == {"x": 10.0, "y": 10.0, "width": 10.0, "height": 10.0,
                              "rotation": 0, "rectanglelabels": ["ball"]}  # fmt: skip
    assert pred["result"][1]["value"]["x"] == 0.0  # clipped to the frame
    assert formats.predicted_boxes(pred)[0] == pytest.approx((0, 0.15, 0.15, 0.1, 0.1))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["goalpost"]}, "unknown label"),
        ({"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": []}, "exactly one label"),
        ({"x": 98, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["ball"]}, "outside the image"),
        ({"x": -2, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["ball"]}, "outside the image"),
        ({"x": 1, "y": 1, "width": 0, "height": 5, "rectanglelabels": ["ball"]}, "outside the image"),
        ({"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 30, "rectanglelabels": ["ball"]}, "rotated"),
        ({"x": "a", "y": 1, "width": 5, "height": 5, "rectanglelabels": ["ball"]}, "numeric"),
    ],
)  # fmt: skip
def test_bad_boxes_are_refused(value, message):
    with pytest.raises(formats.AnnotationError, match=message):
        formats.result_to_yolo([rect(value)])


def test_only_rectangles_become_labels():
    with pytest.raises(formats.AnnotationError, match="result type 'choices'"):
        formats.result_to_yolo([{"type": "choices", "value": {"choices": ["blurry"]}}])
    assert formats.result_to_yolo([]) == []


def test_classes_and_label_config_name_the_project_classes():
    assert formats.classes_text().splitlines() == list(CLASS_NAMES)
    for name in CLASS_NAMES:
        assert f'<Label value="{name}"/>' in formats.LABEL_CONFIG
    assert 'name="label" toName="image"' in formats.LABEL_CONFIG
