"""Per-frame scoring (driftloop.serving.scorer) with fake models: who runs, in which order,
who serves, what a model's error does, and the rows a frame leaves."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image

from driftloop.contracts import schema
from driftloop.serving.records import inference_table, serving_table
from driftloop.serving.route import route_for
from driftloop.serving.scorer import Frame, FrameScorer, ModelResult
from tests.unit.serving.docs import CHALLENGER, CHAMPION, PREVIOUS, aliases, bucket, doc

IMAGE = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8))
TS = datetime(2031, 1, 5, 12, 0, tzinfo=UTC)


class FakeModels:
    """``score_model`` of fake models: records the calls, fails where told."""

    def __init__(self, failing=()):
        self.calls: list[str] = []
        self.failing = set(failing)

    def __call__(self, model, image) -> ModelResult:
        version = model
        self.calls.append(version)
        if version in self.failing:
            return ModelResult.failed(version, RuntimeError(f"v{version} broke"))
        n = int(version)  # version v finds v - 1 players
        return ModelResult(
            version=version,
            latency_ms=10.0 * n,
            boxes=np.tile([[1.0, 2.0, 5.0, 9.0]], (n - 1, 1)),
            scores=np.full(n - 1, 0.5 + n / 100),
            classes=np.ones(n - 1, dtype=np.int64),
            best_score=0.5 + n / 100,
            embedding=np.full(schema.EMBEDDING_DIM, n, np.float32),
        )


def _scorer(stage, failing=(), **overrides):
    route = route_for(doc(stage, **overrides), aliases(stage))
    fake = FakeModels(failing)
    return FrameScorer(route, {v: v for v in route.versions}, score_model=fake), fake


def _frame(i: int) -> Frame:
    return Frame(
        f"2031-01-05-{i:04d}", f"frames/dt=2031-01-05/2031-01-05-{i:04d}.png", TS, "cam-01"
    )


def _first(predicate):
    return next(i for i in range(1000) if predicate(bucket(_frame(i).image_id)))


def test_shadow_runs_both_back_to_back_alternating_and_serves_the_champion():
    scorer, fake = _scorer("shadow")
    even, odd = scorer.score(_frame(0), IMAGE, 0), scorer.score(_frame(1), IMAGE, 1)
    assert fake.calls == [CHAMPION, CHALLENGER, CHALLENGER, CHAMPION]
    for scored in (even, odd):
        assert scored.served_by == CHAMPION
        assert scored.paired
        rows = {r["model_version"]: r for r in scored.serving_rows}
        assert rows[CHAMPION]["role"] == "baseline"
        assert rows[CHAMPION]["served"]
        assert rows[CHALLENGER]["role"] == "subject"
        assert not rows[CHALLENGER]["served"]
        assert {r["stage"] for r in rows.values()} == {"shadow"}
        assert {r["sequence"] for r in rows.values()} == {7}
        assert scored.inference_row["model_version"] == CHAMPION
        assert scored.inference_row["n_detections"] == int(CHAMPION) - 1
        assert scored.inference_row["embedding"][0] == float(CHAMPION)


def test_canary_subject_frames_fall_back_to_the_champion_when_the_subject_fails():
    scorer, _ = _scorer("canary", failing={CHALLENGER})
    canary = _frame(_first(lambda u: u < 0.3))
    scored = scorer.score(canary, IMAGE, 0)
    assert scored.served_by == CHAMPION
    rows = {r["model_version"]: r for r in scored.serving_rows}
    assert rows[CHALLENGER]["error"] == "RuntimeError: v4 broke"
    assert not rows[CHALLENGER]["served"]
    assert rows[CHALLENGER]["latency_ms"] is None
    assert rows[CHAMPION]["served"]
    assert rows[CHAMPION]["error"] is None
    assert scored.inference_row["model_version"] == CHAMPION
    # a frame outside the canary: the champion alone
    other = scorer.score(_frame(_first(lambda u: u >= 0.3)), IMAGE, 1)
    assert [r["model_version"] for r in other.serving_rows] == [CHAMPION]
    assert other.serving_rows[0]["role"] == "baseline"


def test_canary_subject_serves_its_frames():
    scorer, _ = _scorer("canary")
    scored = scorer.score(_frame(_first(lambda u: u < 0.3)), IMAGE, 0)
    assert scored.served_by == CHALLENGER
    assert scored.inference_row["model_version"] == CHALLENGER
    served = [r for r in scored.serving_rows if r["served"]]
    assert [(r["model_version"], r["role"]) for r in served] == [(CHALLENGER, "subject")]


def test_a_failing_champion_leaves_its_frame_unserved_and_the_shadow_unserved_too():
    scorer, _ = _scorer("shadow", failing={CHAMPION})
    scored = scorer.score(_frame(0), IMAGE, 0)
    assert scored.served_by is None
    assert scored.inference_row is None
    assert not any(r["served"] for r in scored.serving_rows)
    errors = {r["model_version"]: r["error"] for r in scored.serving_rows}
    assert errors == {CHAMPION: "RuntimeError: v3 broke", CHALLENGER: None}


def test_a_failing_shadow_model_does_not_touch_serving():
    scorer, _ = _scorer("guard", failing={PREVIOUS}, shadow_share=1.0)
    scored = scorer.score(_frame(0), IMAGE, 0)
    assert scored.served_by == CHAMPION
    rows = {r["model_version"]: r for r in scored.serving_rows}
    assert rows[PREVIOUS]["error"]
    assert rows[PREVIOUS]["role"] == "baseline"
    assert rows[CHAMPION]["role"] == "subject"
    assert rows[CHAMPION]["served"]


def test_an_unreadable_frame_is_recorded_not_served():
    scorer, fake = _scorer("shadow")
    scored = scorer.unreadable(_frame(3), "UnidentifiedImageError: not a PNG")
    assert fake.calls == []
    assert scored.inference_row is None
    (row,) = scored.serving_rows
    assert (row["model_version"], row["served"], row["error"]) == (
        CHAMPION,
        False,
        "UnidentifiedImageError: not a PNG",
    )


def test_rows_make_valid_tables():
    scorer, _ = _scorer("canary", failing={CHALLENGER})
    scored = [scorer.score(_frame(i), IMAGE, i) for i in range(40)]
    serving = serving_table([r for s in scored for r in s.serving_rows])
    assert serving.num_rows == sum(len(s.results) for s in scored)
    inference = inference_table([s.inference_row for s in scored])
    assert inference.schema == schema.arrow_schema()
    assert set(inference.column("model_version").to_pylist()) == {CHAMPION}


def test_a_route_needs_its_models():
    route = route_for(doc("shadow"), aliases("shadow"))
    with pytest.raises(ValueError, match=r"needs versions \['4'\]"):
        FrameScorer(route, {CHAMPION: object()})
