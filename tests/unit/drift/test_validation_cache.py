"""Verdicts cached by partition content and suite identity, the mapped validation step and its
reduce, against a moto S3 server over HTTP.

A daily check sees 13 of its 14 days again: their verdicts come from the cache, without
reading a byte of their Parquet; a changed partition (new content id) or a changed suite (new
suite id) is validated again. The reduce gives the document ``validate`` always returned.
"""

from __future__ import annotations

import dataclasses
import random
from contextlib import contextmanager

import pytest
from botocore.exceptions import ClientError

from driftloop.config.drift_policy import load_policy
from driftloop.config.settings import DEFAULT_POLICY_PATH, Settings
from driftloop.contracts import schema, storage
from driftloop.contracts.stores import absent_if_not_found
from driftloop.drift import (
    expectations,
    partition_parts,
    quarantine,
    validation,
    validation_results,
    validation_steps,
    verdict_cache,
)
from tests.unit.conftest import s3_client_for
from tests.unit.drift.test_validation import (
    contract_table,
    loose_table,
    parquet_bytes,
    split_in_two,
)
from tests.unit.drift.test_validation_bad_input import _answer, day_values, invalid_values

BUCKET = "driftloop-verdicts"
DAYS = ["2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04"]
REFERENCE_DAYS = ["2024-04-29", "2024-04-30"]


@pytest.fixture(scope="module")
def module_s3(moto_endpoint):
    client = s3_client_for(moto_endpoint)
    if absent_if_not_found(lambda: client.head_bucket(Bucket=BUCKET)) is None:
        client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def s3(module_s3):
    for obj in storage.list_keys(module_s3, BUCKET, ""):
        module_s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    return module_s3


@pytest.fixture(scope="module")
def policy():
    return load_policy(DEFAULT_POLICY_PATH)  # min_valid_share 0.7


def put_day(s3, day: str, parts: dict[str, bytes]) -> storage.Partition:
    for name, data in parts.items():
        s3.put_object(Bucket=BUCKET, Key=storage.inference_prefix(day) + name, Body=data)
    s3.put_object(Bucket=BUCKET, Key=storage.success_key(day), Body=b"")
    return storage.list_partition(s3, BUCKET, day)


def good_day(s3, day: str, seed: int = 0) -> storage.Partition:
    first, second = split_in_two(contract_table(day_values(day, seed=seed)))
    return put_day(s3, day, {"part-0.parquet": first, "part-1.parquet": second})


def bad_day(s3, day: str) -> storage.Partition:
    return put_day(s3, day, {"part-0.parquet": parquet_bytes(loose_table(invalid_values(day)))})


@contextmanager
def parquet_reads(s3):
    """The keys of the inference-log objects read (GET) inside the block."""
    keys: list[str] = []

    def record(params, **_):
        if params["Key"].startswith(storage.INFERENCE_PREFIX + "/"):
            keys.append(params["Key"])

    event = "provide-client-params.s3.GetObject"
    s3.meta.events.register(event, record)
    try:
        yield keys
    finally:
        s3.meta.events.unregister(event, record)


def verdict_objects(s3) -> list[str]:
    return [o["Key"] for o in storage.list_keys(s3, BUCKET, validation.VERDICTS_PREFIX + "/")]


# ------------------------------------------------------------------ the cache


def test_a_second_validation_reads_the_cached_verdict_and_not_the_partition(s3):
    partition = good_day(s3, DAYS[0])
    suite = validation.ArrowSuite.from_contract()
    with parquet_reads(s3) as first_reads:
        first = verdict_cache.validate_partition_cached(s3, BUCKET, partition, suite=suite)
    assert (first.cached, first.verdict.valid) == (False, True)
    assert sorted(first_reads) == sorted(partition.keys)
    key = verdict_cache.verdict_key(partition, suite.suite_id)
    assert first.uri == storage.s3_uri(BUCKET, key)
    assert key == (f"validation/verdicts/{suite.suite_id}/dt={DAYS[0]}/{partition.content_id}.json")
    document = storage.get_json(s3, BUCKET, key)
    assert document["suite_id"] == suite.suite_id
    assert document["partition"]["keys"] == list(partition.keys)

    with parquet_reads(s3) as second_reads:
        second = verdict_cache.validate_partition_cached(s3, BUCKET, partition, suite=suite)
    assert second.cached
    assert second_reads == []  # not one byte of Parquet read
    assert second.uri == first.uri
    assert second.verdict == first.verdict
    assert verdict_objects(s3) == [key]


def test_a_changed_partition_is_validated_again(s3):
    partition = good_day(s3, DAYS[0])
    suite = validation.ArrowSuite.from_contract()
    before = verdict_cache.validate_partition_cached(s3, BUCKET, partition, suite=suite)
    # the serving side rewrites a part: new bytes, new ETag, a new content id
    s3.put_object(
        Bucket=BUCKET,
        Key=partition.keys[0],
        Body=parquet_bytes(loose_table(invalid_values(DAYS[0]))),
    )
    changed = storage.list_partition(s3, BUCKET, DAYS[0])
    assert changed.content_id != partition.content_id
    with parquet_reads(s3) as reads:
        after = verdict_cache.validate_partition_cached(s3, BUCKET, changed, suite=suite)
    assert not after.cached
    assert sorted(reads) == sorted(changed.keys)
    assert not after.verdict.valid
    assert any("referee" in r for r in after.verdict.reasons)
    assert after.uri != before.uri
    assert len(verdict_objects(s3)) == 2  # the first verdict stays: write-once


def test_a_changed_suite_validates_again(s3, monkeypatch):
    partition = good_day(s3, DAYS[0])
    old_suite = validation.ArrowSuite.from_contract()
    assert verdict_cache.validate_partition_cached(
        s3, BUCKET, partition, suite=old_suite
    ).verdict.valid

    # the contract tightens a range: a new suite, a new suite id, a new verdict
    tightened = tuple(
        dataclasses.replace(c, max_value=100.0) if c.name == "brightness" else c
        for c in schema.COLUMNS
    )
    monkeypatch.setattr(schema, "COLUMNS", tightened)
    new_suite = validation.ArrowSuite.from_contract()
    assert new_suite.suite_id != old_suite.suite_id
    with parquet_reads(s3) as reads:
        checked = verdict_cache.validate_partition_cached(s3, BUCKET, partition, suite=new_suite)
    assert not checked.cached
    assert reads
    assert not checked.verdict.valid
    assert any("'brightness'" in r and "[0.0, 100.0]" in r for r in checked.verdict.reasons)
    assert f"/{new_suite.suite_id}/" in checked.uri
    # the validator's version is part of the identity too
    monkeypatch.setattr("driftloop.drift.arrow_validation.VALIDATOR_VERSION", "next")
    assert validation.suite_identity(new_suite.specs) != new_suite.suite_id


def test_verdicts_that_depend_on_more_than_the_bytes_are_not_cached(s3):
    """An archived part (S3 refuses to read it) or a missing day says nothing about content:
    such verdicts travel inline and the next run asks S3 again."""
    partition = good_day(s3, DAYS[0])
    event, handler = _answer("GetObject", partition.keys[0], 403, "InvalidObjectState")
    s3.meta.events.register(event, handler)
    try:
        outcome = validation_steps.validate_planned_partition(
            s3, BUCKET, {"window": "current", "day": DAYS[0], "partition": partition.to_dict()}
        )
    finally:
        s3.meta.events.unregister(event, handler)
    assert "verdict_uri" not in outcome
    assert outcome["verdict"]["reasons"] == [
        partition.keys[0] + ": cannot be read (InvalidObjectState: injected)"
    ]
    assert outcome["quarantine"]["day"] == DAYS[0]
    assert verdict_objects(s3) == []
    # restored: the same content is validated now, and cached
    again = verdict_cache.validate_partition_cached(s3, BUCKET, partition)
    assert again.verdict.valid
    assert not again.cached
    assert verdict_objects(s3) == [storage.split_s3_uri(again.uri)[1]]

    missing = verdict_cache.validate_partition_cached(
        s3, BUCKET, storage.list_partition(s3, BUCKET, DAYS[1])
    )
    assert missing.verdict.missing
    assert missing.uri is None


def test_a_cached_verdict_that_cannot_be_used_fails_closed(s3):
    partition = good_day(s3, DAYS[0])
    suite = validation.ArrowSuite.from_contract()
    key = verdict_cache.verdict_key(partition, suite.suite_id)
    s3.put_object(Bucket=BUCKET, Key=key, Body=b'{"format": "something else"}')
    with pytest.raises(verdict_cache.VerdictCacheError, match="delete it") as err:
        verdict_cache.validate_partition_cached(s3, BUCKET, partition, suite=suite)
    assert key in str(err.value)

    # a verdict about other content under this key (copied by hand) is refused too
    other = good_day(s3, DAYS[1])
    checked = verdict_cache.validate_partition_cached(s3, BUCKET, other, suite=suite)
    s3.put_object(Bucket=BUCKET, Key=key, Body=storage.get_bytes_uri(s3, checked.uri))
    with pytest.raises(verdict_cache.VerdictCacheError, match="not of"):
        verdict_cache.validate_partition_cached(s3, BUCKET, partition, suite=suite)


def test_a_store_fault_on_the_cache_fails_instead_of_validating_again(s3):
    """Only S3's not-found means "not cached": a 500 on the lookup fails the step."""
    partition = good_day(s3, DAYS[0])
    event, handler = _answer("HeadObject", validation.VERDICTS_PREFIX, 500, "InternalError")
    s3.meta.events.register(event, handler)
    try:
        with parquet_reads(s3) as reads, pytest.raises(ClientError):
            verdict_cache.validate_partition_cached(s3, BUCKET, partition)
    finally:
        s3.meta.events.unregister(event, handler)
    assert reads == []
    assert verdict_objects(s3) == []


def test_an_invalid_partition_is_quarantined_again_from_its_cached_verdict(s3, policy):
    """Quarantine as before: copied (never deleted) with its result, the same keys on every
    run, whether the verdict was made now or read from the cache."""
    bad = bad_day(s3, DAYS[0])
    good = [good_day(s3, d, seed=i) for i, d in enumerate(DAYS[1:])]
    plan = plan_of([bad, *good], [])
    first = validation_steps.validate_windows(s3, Settings(bucket=BUCKET), plan, policy)
    listed = storage.list_keys(s3, BUCKET, "quarantine/")
    with parquet_reads(s3) as reads:
        second = validation_steps.validate_windows(s3, Settings(bucket=BUCKET), plan, policy)
    assert reads == []
    assert second == first
    [entry] = first["quarantined"]
    assert entry["day"] == DAYS[0]
    assert any("referee" in r for r in entry["reasons"])
    assert storage.list_keys(s3, BUCKET, "quarantine/") == listed
    assert storage.list_partition(s3, BUCKET, DAYS[0]) == bad  # the original untouched


def test_a_partition_quarantined_by_an_earlier_suite_keeps_its_first_result(s3):
    """Quarantined before the Arrow validator (GE's document under the same content id):
    the new result goes next to it, the first stays; the same suite disagreeing raises."""
    bad = bad_day(s3, DAYS[0])
    gx_verdict = validation.validate_partition(s3, BUCKET, bad, context=expectations.make_context())
    first_uris = quarantine.quarantine_partition(s3, BUCKET, gx_verdict, bad)
    first_key = storage.split_s3_uri(first_uris[-1])[1]
    first_bytes = storage.get_bytes(s3, BUCKET, first_key)

    suite = validation.ArrowSuite.from_contract()
    arrow_verdict = validation.validate_partition(s3, BUCKET, bad, context=suite)
    uris = quarantine.quarantine_partition(s3, BUCKET, arrow_verdict, bad)
    assert uris[:-1] == first_uris[:-1]  # the same copies
    prefix = quarantine.quarantine_prefix(DAYS[0], bad.content_id)
    assert uris[-1] == storage.s3_uri(BUCKET, f"{prefix}validation_result.{suite.suite_id}.json")
    assert storage.get_bytes(s3, BUCKET, first_key) == first_bytes
    assert quarantine.quarantine_partition(s3, BUCKET, arrow_verdict, bad) == uris  # idempotent

    disagreeing = dataclasses.replace(arrow_verdict, reasons=["something else"])
    with pytest.raises(storage.WriteOnceViolation):
        quarantine.quarantine_partition(s3, BUCKET, disagreeing, bad)


# ------------------------------------------------------------------ mapped step and reduce


def plan_of(current: list[storage.Partition], reference: list[storage.Partition]) -> dict:
    return {
        "current_days": [p.day for p in current],
        "reference_days": [p.day for p in reference],
        "partitions": {
            "current": [p.to_dict() for p in current],
            "reference": [p.to_dict() for p in reference],
        },
        "missing_days": {"current": [], "reference": []},
    }


def test_planned_validations_list_both_windows_current_first():
    current = [storage.Partition(day=d, keys=(f"k{d}",), etags=("e",)) for d in DAYS[:2]]
    reference = [storage.Partition(day=REFERENCE_DAYS[0], keys=("r",), etags=("e",))]
    items = validation_steps.planned_validations(plan_of(current, reference))
    assert [(i["window"], i["day"]) for i in items] == [
        ("current", DAYS[0]),
        ("current", DAYS[1]),
        ("reference", REFERENCE_DAYS[0]),
    ]
    assert storage.Partition.from_dict(items[0]["partition"]) == current[0]


def test_the_reduce_of_the_mapped_outcomes_is_what_validate_windows_returns(s3, policy):
    """Mapped tasks finish in any order; the reduce gives the same document as the
    one-process path: valid partitions in plan order (a duplicate part left out), the
    quarantined day, the warnings, the missing days."""
    first, second = split_in_two(contract_table(day_values(DAYS[0])))
    duplicated = put_day(
        s3,
        DAYS[0],
        {"part-0.parquet": first, "part-0-retry.parquet": first, "part-1.parquet": second},
    )
    bad = bad_day(s3, DAYS[1])
    more_days = [*DAYS[2:], "2024-05-05", "2024-05-06"]
    good = [good_day(s3, d, seed=i) for i, d in enumerate(more_days)]
    reference = [good_day(s3, d, seed=9 + i) for i, d in enumerate(REFERENCE_DAYS)]
    plan = plan_of([duplicated, bad, *good], reference)
    plan["missing_days"]["current"] = ["2024-05-07"]  # 5 of 7 days valid: enough
    plan["current_days"] = [*DAYS[:2], *more_days, "2024-05-07"]

    outcomes = [
        validation_steps.validate_planned_partition(s3, BUCKET, item)
        for item in validation_steps.planned_validations(plan)
    ]
    assert all(set(o) >= {"window", "day", "verdict_uri", "cached"} for o in outcomes)
    assert [o["day"] for o in outcomes if "quarantine" in o] == [DAYS[1]]
    random.Random(0).shuffle(outcomes)
    reduced = validation_steps.summarize_validations(s3, plan, outcomes, policy)

    assert reduced == validation_steps.validate_windows(s3, Settings(bucket=BUCKET), plan, policy)
    assert [p["day"] for p in reduced["valid"]["current"]] == [DAYS[0], *more_days]
    assert [p["day"] for p in reduced["valid"]["reference"]] == REFERENCE_DAYS
    assert len(reduced["valid"]["current"][0]["keys"]) == 2  # the duplicate counts once
    [warning] = reduced["warnings"]
    assert (warning["window"], warning["day"]) == ("current", DAYS[0])
    [entry] = reduced["quarantined"]
    assert (entry["window"], entry["day"]) == ("current", DAYS[1])
    assert entry["uris"][-1].endswith("validation_result.json")
    assert reduced["missing_days"] == plan["missing_days"]


def test_the_reduce_fails_naming_the_bad_days_when_too_few_are_valid(s3, policy):
    bad = [bad_day(s3, d) for d in DAYS[:2]]
    good = [good_day(s3, d) for d in DAYS[2:]]
    plan = plan_of([*bad, *good], [])
    outcomes = [
        validation_steps.validate_planned_partition(s3, BUCKET, item)
        for item in validation_steps.planned_validations(plan)
    ]
    with pytest.raises(validation_results.InsufficientValidData) as err:
        validation_steps.summarize_validations(s3, plan, outcomes, policy)
    message = str(err.value)
    assert "window 'current': 2/4 days valid" in message
    for partition in bad:
        assert f"{storage.inference_prefix(partition.day)} (content {partition.content_id})" in (
            message
        )
    assert "referee" in message


def test_the_reduce_takes_inline_verdicts_and_refuses_an_unvalidated_partition(s3, policy):
    good = [good_day(s3, d) for d in DAYS]
    plan = plan_of(good, [])
    outcomes = [
        validation_steps.validate_planned_partition(s3, BUCKET, item)
        for item in validation_steps.planned_validations(plan)
    ]
    # a verdict that could not be cached travels inline
    uri = outcomes[0].pop("verdict_uri")
    outcomes[0]["verdict"] = verdict_cache.load_verdict(s3, uri).to_dict()
    reduced = validation_steps.summarize_validations(s3, plan, outcomes, policy)
    assert [p["day"] for p in reduced["valid"]["current"]] == DAYS
    with pytest.raises(ValueError, match=f"no validation outcome .*dt={DAYS[3]}"):
        validation_steps.summarize_validations(s3, plan, outcomes[:3], policy)
    # a verdict deleted between the mapped task and the reduce: clear the mapped task
    s3.delete_object(Bucket=BUCKET, Key=storage.split_s3_uri(outcomes[1]["verdict_uri"])[1])
    with pytest.raises(verdict_cache.VerdictCacheError, match="is gone"):
        validation_steps.summarize_validations(s3, plan, outcomes, policy)


def test_only_parts_of_one_size_are_hashed(s3, monkeypatch):
    """Duplicate parts are found by their SHA-256, taken only where two parts share a size
    (a fifth of the validation's cost at 1M rows otherwise)."""
    hashed: list[int] = []
    real_digest = partition_parts.content_digest

    def counting_digest(data):
        hashed.append(len(data))
        return real_digest(data)

    monkeypatch.setattr(partition_parts, "content_digest", counting_digest)
    table = contract_table(day_values(DAYS[0]))
    distinct = put_day(
        s3,
        DAYS[0],
        {"a.parquet": parquet_bytes(table.slice(0, 50)), "b.parquet": parquet_bytes(table)},
    )
    assert len(set(distinct.sizes)) == 2
    assert validation.validate_partition(s3, BUCKET, distinct).valid
    assert hashed == []

    twice = parquet_bytes(contract_table(day_values(DAYS[1])))
    duplicated = put_day(s3, DAYS[1], {"a.parquet": twice, "b.parquet": twice})
    verdict = validation.validate_partition(s3, BUCKET, duplicated)
    assert hashed == [len(twice), len(twice)]
    assert verdict.valid, verdict.reasons
    assert verdict.duplicate_keys == [duplicated.keys[1]]
