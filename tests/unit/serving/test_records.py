"""What the scorer writes: the serving-record schema (the spec's columns, exactly) and the
inference-log rows (exactly the contract's schema)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from driftloop.contracts import schema
from driftloop.serving import records

TS = datetime(2031, 1, 5, 10, 30, tzinfo=UTC)
FEATURES = {
    "brightness": 120.0,
    "contrast": 40.0,
    "saturation": 0.4,
    "sharpness": 300.0,
    "mean_r": 80.0,
    "mean_g": 150.0,
    "mean_b": 70.0,
}


def test_the_serving_record_schema_is_the_specs():
    box = pa.struct(
        [
            pa.field(name, kind, nullable=False)
            for name, kind in (
                ("class_id", pa.int32()),
                ("confidence", pa.float32()),
                ("x1", pa.float32()),
                ("y1", pa.float32()),
                ("x2", pa.float32()),
                ("y2", pa.float32()),
            )
        ]
    )
    expected = [
        ("ts", pa.timestamp("us", tz="UTC"), False),
        ("image_id", pa.string(), False),
        ("camera_id", pa.string(), False),
        ("model_version", pa.string(), False),
        ("role", pa.string(), False),
        ("served", pa.bool_(), False),
        ("stage", pa.string(), False),
        ("sequence", pa.int64(), False),
        ("rollout_id", pa.string(), True),
        ("latency_ms", pa.float64(), True),
        ("n_detections", pa.int32(), True),
        ("confidence_mean", pa.float64(), True),
        ("boxes", pa.list_(box), True),
        ("error", pa.string(), True),
    ]
    got = [(f.name, f.type, f.nullable) for f in records.SERVING_RECORD_SCHEMA]
    assert got == expected


def _row(**overrides):
    boxes = records.box_rows(
        np.array([[1.0, 2.0, 11.0, 12.0], [5.0, 5.0, 9.0, 30.0]]),
        np.array([0.9, 0.5]),
        np.array([0, 1]),
    )
    values = {
        "ts": TS,
        "image_id": "2031-01-05-0001",
        "camera_id": "cam-01",
        "model_version": "4",
        "role": "subject",
        "served": False,
        "stage": "shadow",
        "sequence": 7,
        "rollout_id": "rollout-4-20310105T000000Z",
        "latency_ms": 12.5,
        "boxes": boxes,
        "error": None,
    }
    return records.serving_row(**{**values, **overrides})


def test_serving_rows_with_detections_and_with_an_error():
    ok = _row()
    assert ok["n_detections"] == 2
    assert ok["confidence_mean"] == pytest.approx(0.7)
    failed = _row(boxes=None, latency_ms=None, error="RuntimeError: boom", role="baseline")
    assert failed["n_detections"] is None
    assert failed["latency_ms"] is None
    assert failed["confidence_mean"] is None
    empty = _row(boxes=[], rollout_id=None, stage="serving", role="champion", sequence=0)
    assert (empty["n_detections"], empty["confidence_mean"]) == (0, None)
    table = records.serving_table([ok, failed, empty])
    assert table.schema == records.SERVING_RECORD_SCHEMA
    assert table.column("boxes").to_pylist()[0][0] == {
        "class_id": 0,
        "confidence": pytest.approx(0.9),
        "x1": 1.0,
        "y1": 2.0,
        "x2": 11.0,
        "y2": 12.0,
    }
    assert table.column("error").to_pylist() == [None, "RuntimeError: boom", None]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"role": "observer"}, "role must be one of"),
        ({"stage": "beta"}, "stage must be one of"),
        ({"error": "x"}, "either detections or an error"),
        ({"boxes": None}, "either detections or an error"),
    ],
)
def test_bad_serving_rows_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        _row(**overrides)


def _inference(scores, classes, best=0.1):
    return records.inference_row(
        ts=TS,
        image_id="2031-01-05-0001",
        camera_id="cam-02",
        model_version="3",
        features=FEATURES,
        embedding=np.arange(schema.EMBEDDING_DIM, dtype=np.float32),
        scores=np.asarray(scores, dtype=np.float64),
        classes=np.asarray(classes, dtype=np.int64),
        best_score=best,
        latency_ms=8.0,
    )


def test_inference_rows_follow_the_contract():
    found = _inference([0.4, 0.9, 0.5], [1, 0, 1])
    assert found["top_class"] == "ball"  # the most confident detection's class
    assert found["n_detections"] == 3
    assert found["confidence_mean"] == pytest.approx(0.6)
    assert found["confidence_max"] == pytest.approx(0.9)
    nothing = _inference([], [], best=0.17)
    assert nothing["top_class"] == "none"
    assert nothing["n_detections"] == 0
    # no nulls in the contract: the best candidate below the threshold, as the generator does
    assert nothing["confidence_mean"] == nothing["confidence_max"] == pytest.approx(0.17)
    table = records.inference_table([found, nothing])
    assert table.schema == schema.arrow_schema()
    assert table.column("embedding").to_pylist()[1] == list(range(schema.EMBEDDING_DIM))
    assert records.inference_table([]).num_rows == 0
    with pytest.raises(ValueError, match="embedding must have 64 values"):
        records.inference_row(
            **{
                "ts": TS,
                "image_id": "x",
                "camera_id": "cam-01",
                "model_version": "3",
                "features": FEATURES,
                "embedding": np.zeros(3, np.float32),
                "scores": np.zeros(0),
                "classes": np.zeros(0),
                "best_score": 0.0,
                "latency_ms": 1.0,
            }
        )
