"""The rollout guard's evidence read from the stack's S3 (moto over HTTP): ``stage_evidence``
compares exactly the routing document's sequence — not the rollout's earlier sequence beside it
in the same partitions — and finds the labels of its frames by the day of their part."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.promotion.serving_synth import ROLLOUT_ID, World, put_label, put_part, slo_for

pytestmark = pytest.mark.integration

BUCKET = "driftloop-rollout-evidence"


def test_stage_evidence_reads_the_documents_sequence_and_its_labels(s3):
    from driftloop.config.settings import Settings
    from driftloop.promotion.rollout_evidence import stage_evidence

    s3.create_bucket(Bucket=BUCKET)
    settings = Settings.from_env().model_copy(update={"bucket": BUCKET})
    # sequence 6 was the shadow stage: a much worse subject; sequence 7, the canary, is fine
    shadow = World(400, hours=4, sequence=6, stage="shadow", subject_miss=0.7, id_prefix="s-")
    canary = World(240, hours=2, sequence=7, stage="canary", labeled=150, id_prefix="c-")
    later = World(240, hours=2, sequence=7, stage="canary", seed=2, id_prefix="d-")
    put_part(s3, BUCKET, "2026-11-30", shadow, "a")
    _, labels = put_part(s3, BUCKET, "2026-11-30", canary, "b")
    put_part(s3, BUCKET, "2026-12-01", later, "c")
    for image_id, (classes, xyxy) in labels.items():
        put_label(s3, BUCKET, "2026-11-30", image_id, classes, xyxy)
    # a label is looked up on the day of the frame's part: this one is on another day
    put_label(s3, BUCKET, "2026-11-30", "d-0000000", np.array([1]), np.array([[1.0, 1, 9, 9]]))

    doc = {"format": 1, "stage": "canary", "rollout_id": ROLLOUT_ID, "sequence": 7}
    # two equally good models: a 5-point mAP margin keeps 150 labels' noise from holding it
    comparison = stage_evidence(s3, settings, doc, slo_for("canary", map_tolerance=0.05))

    assert comparison.frames == 480
    assert comparison.rows["subject"] == 480
    assert comparison.labeled_frames == 150
    assert comparison.stage == "canary"
    assert comparison.verdict == "pass", comparison.reasons
    map_check = next(c for c in comparison.checks if c["name"] == "map50_95_delta")
    assert map_check["n"] == 150
    assert map_check["status"] == "pass"

    shadow_doc = {**doc, "stage": "shadow", "sequence": 6}
    assert stage_evidence(s3, settings, shadow_doc, slo_for("shadow")).verdict == "fail"
