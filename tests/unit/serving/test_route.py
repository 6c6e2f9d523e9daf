"""Routing decisions per stage (driftloop.serving.route) with routing documents built as the
spec writes them: which frames are paired, and who serves them."""

from __future__ import annotations

import pytest

from driftloop.serving.route import NO_DOCUMENT_SEQUENCE, FramePlan, route_for
from tests.unit.serving.docs import CHALLENGER, CHAMPION, PREVIOUS, aliases, bucket, doc

IDS = [f"2031-01-05-{i:04d}" for i in range(2000)]


def _plans(route):
    return {image_id: route.plan(image_id) for image_id in IDS}


def test_no_document_and_stage_serving_serve_the_champion_alone():
    for route in (
        route_for(None, aliases("serving")),
        route_for(doc("serving"), aliases("serving")),
    ):
        assert route.stage == "serving"
        assert route.rollout_id is None
        assert route.versions == (CHAMPION,)
        assert set(_plans(route).values()) == {FramePlan(CHAMPION)}
        assert route.role(CHAMPION) == "champion"
        assert route.note is None
    assert route_for(None, aliases("serving")).sequence == NO_DOCUMENT_SEQUENCE
    assert route_for(doc("serving"), aliases("serving")).sequence == 7


def test_shadow_pairs_every_frame_the_champion_serves():
    route = route_for(doc("shadow"), aliases("shadow"))
    assert route.versions == (CHAMPION, CHALLENGER)
    assert set(_plans(route).values()) == {FramePlan(CHAMPION, CHALLENGER)}
    assert (route.role(CHAMPION), route.role(CHALLENGER)) == ("baseline", "subject")
    half = route_for(doc("shadow", shadow_share=0.5), aliases("shadow"))
    paired = {i for i, p in _plans(half).items() if p.shadow == CHALLENGER}
    assert paired == {i for i in IDS if bucket(i) < 0.5}
    assert all(p.served == CHAMPION for p in _plans(half).values())


def test_canary_frames_are_served_by_the_subject_and_paired():
    route = route_for(doc("canary"), aliases("canary"))
    plans = _plans(route)
    canary = {i for i in IDS if bucket(i) < 0.3}
    assert 0.25 < len(canary) / len(IDS) < 0.35
    assert {i for i, p in plans.items() if p.served == CHALLENGER} == canary
    assert {i for i, p in plans.items() if p.shadow == CHAMPION} == canary
    assert all(plans[i] == FramePlan(CHAMPION) for i in IDS if i not in canary)
    # the same frames on every run: the bucket is a hash of the id, not a draw
    assert _plans(route_for(doc("canary"), aliases("canary"))) == plans


def test_guard_the_new_champion_serves_the_previous_one_shadows_a_share():
    route = route_for(doc("guard"), aliases("guard"))
    plans = _plans(route)
    assert all(p.served == CHAMPION for p in plans.values())
    assert {i for i, p in plans.items() if p.shadow == PREVIOUS} == {
        i for i in IDS if bucket(i) < 0.25
    }
    assert (route.role(CHAMPION), route.role(PREVIOUS)) == ("subject", "baseline")
    assert route.fallback(CHAMPION) is None  # the champion failed: nobody else serves


@pytest.mark.parametrize(
    ("stage", "held"),
    [
        ("shadow", {"champion": CHAMPION}),  # challenger alias gone (rejected meanwhile)
        ("canary", {"champion": CHALLENGER, "previous-champion": CHAMPION}),  # promoted already
        ("guard", {"champion": CHAMPION, "previous-champion": "1"}),
        ("serving", {"champion": CHALLENGER}),
    ],
)
def test_a_document_that_disagrees_with_the_aliases_is_not_followed(stage, held):
    route = route_for(doc(stage), held)
    assert route.stage == "serving"
    assert route.versions == (held["champion"],)
    assert route.rollout_id is None
    assert route.sequence == 7
    assert "serves alone" in route.note
    assert set(_plans(route).values()) == {FramePlan(held["champion"])}


def test_no_champion_alias_is_an_error():
    with pytest.raises(LookupError, match="no version holds the 'champion' alias"):
        route_for(None, {"challenger": CHALLENGER})


def test_pair_order_alternates_with_frame_parity():
    plan = FramePlan(CHAMPION, CHALLENGER)
    assert plan.order(0) == (CHAMPION, CHALLENGER)
    assert plan.order(1) == (CHALLENGER, CHAMPION)
    assert FramePlan(CHAMPION).order(1) == (CHAMPION,)


def test_roles_and_fallback():
    route = route_for(doc("canary"), aliases("canary"))
    assert route.fallback(CHALLENGER) == CHAMPION
    assert route.fallback(CHAMPION) is None
    with pytest.raises(ValueError, match="no role"):
        route.role(PREVIOUS)
    assert route.to_dict()["stage"] == "canary"
