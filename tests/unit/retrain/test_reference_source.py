"""The model card says what the candidate's drift reference was made from: its own outputs on
the training window's frames, or the window's inference logs (another model's outputs)."""

from __future__ import annotations

from driftloop.retrain.model_card import model_card

SNAPSHOT = {"sha256": "f" * 64, "counts": {"train": 10, "eval": 4}}
PLAN = {"days": ["2031-01-01", "2031-01-02"], "trigger": {"kind": "manual", "reason": "test"}}
URI = "s3://driftloop/profiles/reference/" + "r" * 64 + "/"


def _card(reference):
    decision = {"table": "decision: PROMOTE"}
    return model_card(SNAPSHOT, None, decision, {"version": "3"}, PLAN, reference)


def _section(card: str) -> str:
    return card.split("## Drift reference\n", 1)[1].split("\n## ", 1)[0]


def test_a_reference_of_scored_frames_is_the_models_own_outputs():
    reference = {
        "uri": URI,
        "source": "scored_frames",
        "frames_per_day": {"2031-01-01": 150, "2031-01-02": 120},
        "max_frames_per_day": 150,
    }
    section = _section(_card(reference))
    assert URI in section
    assert "this model's own outputs" in section
    assert "at most 150 a day (270 rows, 2 days)" in section


def test_a_reference_of_inference_logs_says_whose_predictions_they_are():
    reference = {"uri": URI, "source": "inference_logs", "frames_per_day": {"2031-01-01": 1000}}
    section = _section(_card(reference))
    assert "the training window's inference logs (1000 rows, 1 day)" in section
    assert "not this model's" in section


def test_a_reference_recorded_before_its_source_reads_as_inference_logs():
    assert "inference logs" in _section(_card({"uri": URI}))
    assert "## Drift reference" not in _card(None)
