"""The labeling queue's pick (driftloop.labeling.select) on hand-made frames."""

from __future__ import annotations

import random

import pytest

from driftloop.config.labeling_policy import Labeling
from driftloop.labeling.select import Candidate, score_of, select


def policy(budget: int = 4, **quotas: float) -> Labeling:
    zero = {"uncertainty": 0.0, "disagreement": 0.0, "novelty": 0.0, "new_camera": 0.0}
    return Labeling(budget_per_day=budget, quotas={**zero, **quotas})


def plain(frame_id: str, camera: str = "cam-01", **signals) -> Candidate:
    return Candidate(frame_id, camera, **signals)


def ids(picks) -> list[str]:
    return [p.frame_id for p in picks]


def test_each_signal_picks_its_frame():
    frames = [
        plain("calm-1", uncertainty=0.1),
        plain("calm-2", uncertainty=0.1),
        plain("unsure", uncertainty=0.95),
        plain("disputed", uncertainty=0.1, disagreement=0.9),
        plain("far", uncertainty=0.1, novelty=0.99),
        plain("new-cam", "cam-05", uncertainty=0.1, new_camera=True),
    ]
    for signal, expected in [
        ("uncertainty", "unsure"),
        ("disagreement", "disputed"),
        ("novelty", "far"),
        ("new_camera", "new-cam"),
    ]:
        picks = select(frames, policy(budget=1, **{signal: 1.0}))
        assert ids(picks) == [expected], signal
        assert picks[0].picked_by == f"quota:{signal}"
        assert picks[0].reasons, "a picked frame says why"


def test_the_score_ranks_without_quotas_and_says_why():
    frames = [
        plain("a", uncertainty=0.2),
        plain("b", uncertainty=0.9, disagreement=0.8),
        plain("c", novelty=0.7),
    ]
    picks = select(frames, policy(budget=2))
    assert ids(picks) == ["b", "c"]
    assert [p.picked_by for p in picks] == ["score", "score"]
    assert picks[0].score == pytest.approx((0.9 + 0.8) / 4)
    assert picks[0].reasons[0].startswith("the model is unsure")
    assert any("disagree" in r for r in picks[0].reasons)


def test_weights_change_the_order():
    frames = [plain("unsure", uncertainty=0.9), plain("far", novelty=0.8)]
    heavy_novelty = Labeling(
        budget_per_day=1,
        quotas={"uncertainty": 0, "disagreement": 0, "novelty": 0, "new_camera": 0},
        weights={"uncertainty": 1, "disagreement": 1, "novelty": 3, "new_camera": 1},
    )
    assert ids(select(frames, policy(budget=1))) == ["unsure"]
    assert ids(select(frames, heavy_novelty)) == ["far"]


def test_the_budget_is_respected_and_zero_scores_are_not_picked():
    frames = [plain(f"f{i:03d}", uncertainty=(i % 10) / 10) for i in range(100)]
    picks = select(frames, policy(budget=7, uncertainty=0.5, novelty=0.5))
    assert len(picks) == 7
    assert len(set(ids(picks))) == 7
    nothing = [plain("still", uncertainty=0.0), plain("sure")]
    assert select(nothing, policy(budget=5)) == []


def test_a_new_cameras_quota_takes_the_new_cameras_in_turn():
    frames = [plain(f"five-{i}", "cam-05", uncertainty=0.9, new_camera=True) for i in range(4)]
    frames += [plain(f"six-{i}", "cam-06", uncertainty=0.1, new_camera=True) for i in range(4)]
    picks = select(frames, policy(budget=4, new_camera=1.0))
    assert sorted(p.camera_id for p in picks) == ["cam-05", "cam-05", "cam-06", "cam-06"]
    assert all("not in the reference" in p.reasons[0] for p in picks)


def test_quotas_then_the_rest_by_score():
    frames = [plain(f"u{i}", uncertainty=0.9 - i / 100) for i in range(5)]
    frames.append(plain("far", novelty=0.6))
    picks = select(frames, policy(budget=4, novelty=0.25))
    assert {p.frame_id: p.picked_by for p in picks} == {
        "far": "quota:novelty",
        "u0": "score",
        "u1": "score",
        "u2": "score",
    }


def test_the_same_input_gives_the_same_picks_in_any_order():
    frames = [
        plain(f"f{i:03d}", f"cam-0{i % 5}", uncertainty=(i * 7 % 11) / 11, novelty=(i % 3) / 3)
        for i in range(60)
    ]
    first = select(frames, policy(budget=10, uncertainty=0.3, novelty=0.3))
    shuffled = frames[:]
    random.Random(1).shuffle(shuffled)
    again = select(shuffled, policy(budget=10, uncertainty=0.3, novelty=0.3))
    assert [p.to_dict() for p in first] == [p.to_dict() for p in again]


def test_no_frame_is_picked_on_two_days():
    day1 = [plain(f"f{i:02d}", uncertainty=0.5 + i / 100) for i in range(20)]
    first = select(day1, policy(budget=5))
    # the next day sees the same frames again (re-served) and some new ones
    day2 = day1 + [plain(f"g{i:02d}", uncertainty=0.3) for i in range(3)]
    second = select(day2, policy(budget=5), exclude=ids(first))
    assert len(second) == 5
    assert not set(ids(first)) & set(ids(second))
    # a frame already labeled never competes either
    third = select(day2, policy(budget=50), exclude=[*ids(first), *ids(second), "g00"])
    assert not {"g00", *ids(first), *ids(second)} & set(ids(third))


def test_bad_candidates_are_named():
    with pytest.raises(ValueError, match=r"'x'.*uncertainty"):
        Candidate("x", "cam-01", uncertainty=1.5)
    with pytest.raises(ValueError, match="'a' is a candidate twice"):
        select([plain("a"), plain("a")], policy())


def test_policy_rejects_quotas_beyond_the_budget():
    with pytest.raises(ValueError, match=r"quotas add up to 1\.2"):
        Labeling(quotas={"uncertainty": 0.6, "novelty": 0.6, "disagreement": 0, "new_camera": 0})
    assert score_of(plain("z").signals(), Labeling()) == 0.0
