"""Retention planning over registered-model versions."""

from __future__ import annotations

import pytest

from driftloop.promotion.retention import RetentionPlan, VersionInfo, apply_plan, plan_retention


def versions(n, **aliases):
    """Versions 1..n, created in order; ``aliases``: {alias_with_underscores: version}."""
    by_version: dict[int, set[str]] = {}
    for alias, v in aliases.items():
        by_version.setdefault(v, set()).add(alias.replace("_", "-"))
    return [VersionInfo(v, by_version.get(v, set()), 1_000 * v, False) for v in range(1, n + 1)]


def test_keeps_the_newest_and_archives_the_rest():
    plan = plan_retention(versions(15), keep_last=10)
    assert plan.keep == list(range(15, 5, -1))
    assert plan.archive == [5, 4, 3, 2, 1]
    assert plan.protected == []
    assert not plan.empty


def test_protected_versions_are_kept_whatever_their_age():
    vs = versions(20, champion=2, previous_champion=1, challenger=3)
    plan = plan_retention(vs, keep_last=5)
    assert plan.keep == [20, 19, 18, 17, 16, 3, 2, 1]
    assert sorted(plan.protected) == [1, 2, 3]
    assert not set(plan.archive) & {1, 2, 3}
    assert plan.archive == list(range(15, 3, -1))


def test_protected_among_the_newest_counts_towards_n():
    plan = plan_retention(versions(12, champion=12, challenger=11), keep_last=3)
    assert plan.keep == [12, 11, 10]
    assert plan.archive == list(range(9, 0, -1))


def test_fewer_versions_than_n_archives_nothing():
    plan = plan_retention(versions(4, champion=1), keep_last=10)
    assert plan.keep == [4, 3, 2, 1]
    assert plan.archive == []
    assert plan.empty
    assert plan_retention([], keep_last=10) == RetentionPlan([], [], [], [], 10)


def test_already_archived_versions_are_not_archived_again():
    vs = versions(8)
    vs = [VersionInfo(v.version, v.aliases, v.created_ms, v.version <= 3) for v in vs]
    plan = plan_retention(vs, keep_last=3)
    assert plan.keep == [8, 7, 6]
    assert plan.archive == [5, 4]
    assert plan.already_archived == [3, 2, 1]


def test_an_archived_version_holding_an_alias_is_kept():
    vs = versions(6, champion=1)
    vs[0] = VersionInfo(1, {"champion"}, 1_000, True)  # e.g. rolled back onto it
    plan = plan_retention(vs, keep_last=2)
    assert 1 in plan.keep
    assert 1 not in plan.archive
    assert 1 not in plan.already_archived


def test_plan_is_idempotent():
    vs = versions(25, champion=4, previous_champion=9, challenger=2)
    first = plan_retention(vs, keep_last=10)
    after = apply_plan(vs, first)
    second = plan_retention(after, keep_last=10)
    assert second.archive == []
    assert second.keep == first.keep
    assert sorted(second.already_archived) == sorted(first.archive)
    # and once more, with a new version registered: exactly one more falls out
    newer = [*after, VersionInfo(26, set(), 26000, False)]
    third = plan_retention(newer, keep_last=10)
    assert third.archive == [16]


def test_newest_is_by_creation_time_then_version():
    vs = [
        VersionInfo(1, set(), 5_000, False),  # re-registered late
        VersionInfo(2, set(), 1_000, False),
        VersionInfo(3, set(), 1_000, False),
    ]
    plan = plan_retention(vs, keep_last=2)
    assert plan.keep == [1, 3]
    assert plan.archive == [2]


def test_keep_last_zero_keeps_only_protected():
    plan = plan_retention(versions(5, champion=3), keep_last=0)
    assert plan.keep == [3]
    assert plan.archive == [5, 4, 2, 1]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="keep_last"):
        plan_retention(versions(3), keep_last=-1)
    with pytest.raises(ValueError, match="twice"):
        plan_retention(versions(3) + versions(1), keep_last=2)


def test_plan_to_dict():
    plan = plan_retention(versions(3, champion=1), keep_last=1)
    assert plan.to_dict() == {
        "keep_last": 1,
        "keep": [3, 1],
        "archive": [2],
        "protected": [1],
        "already_archived": [],
    }
