"""Bad input never blocks good input (issue 9, item 6), against a moto S3 server over HTTP.

Each test names the gap of the issue it covers; each failed against the code before the fix:
a non-ASCII key crashed the whole step, timestamps outside the day passed, a duplicate part
counted twice, quarantine keys overflowed S3's limit, NaN was reported as null, an extra
column quarantined the day.
"""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import unquote

import pyarrow as pa
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from driftloop.config.drift_policy import load_policy
from driftloop.config.settings import DEFAULT_POLICY_PATH, Settings
from driftloop.contracts import storage
from driftloop.drift import quarantine, validation, validation_steps
from tests.unit.drift import test_validation as base
from tests.unit.drift.test_validation import (
    BUCKET,
    DAY,
    N_ROWS,
    assert_invalid_with,
    contract_table,
    loose_table,
    parquet_bytes,
    split_in_two,
    valid_columns,
)

# the fixtures of the validation tests: one moto server per module, an emptied bucket per test
aws_s3 = base.aws_s3
s3 = base.s3
ctx = base.ctx

#: S3 refuses longer keys (bytes of the UTF-8 encoding)
S3_KEY_LIMIT = 1024
DAYS = ["2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04"]


def put_parts(s3, parts: dict[str, bytes], day: str = DAY) -> storage.Partition:
    """Part files under the day's prefix by name, plus _SUCCESS; the listed partition."""
    for name, data in parts.items():
        s3.put_object(Bucket=BUCKET, Key=storage.inference_prefix(day) + name, Body=data)
    s3.put_object(Bucket=BUCKET, Key=storage.success_key(day), Body=b"")
    return storage.list_partition(s3, BUCKET, day)


def day_values(day: str, seed: int = 0) -> dict[str, list]:
    """Valid columns whose timestamps fall on ``day``."""
    values = valid_columns(seed=seed)
    shift = dt.date.fromisoformat(day) - dt.date.fromisoformat(DAY)
    values["ts"] = [t + shift for t in values["ts"]]
    return values


def invalid_values(day: str) -> dict[str, list]:
    values = day_values(day)
    values["top_class"][0] = "referee"
    return values


def plan_of(partitions: list[storage.Partition]) -> dict:
    days = [p.day for p in partitions]
    return {
        "current_days": days,
        "reference_days": [],
        "partitions": {"current": [p.to_dict() for p in partitions], "reference": []},
        "missing_days": {"current": [], "reference": []},
    }


def validate_windows(s3, partitions: list[storage.Partition]) -> dict:
    policy = load_policy(DEFAULT_POLICY_PATH)  # min_valid_share 0.7: 3 of 4 days suffice
    return validation_steps.validate_windows(
        s3, Settings(bucket=BUCKET), plan_of(partitions), policy
    )


def good_days(s3, days: list[str]) -> list[storage.Partition]:
    return [
        put_parts(s3, dict(zip(["part-0.parquet", "part-1.parquet"], split_in_two(
            contract_table(day_values(day, seed=i))), strict=True)), day)
        for i, day in enumerate(days)
    ]  # fmt: skip


# ------------------------------------------------------------------ one partition's failure


def test_invalid_partition_with_a_non_ascii_key_is_quarantined_and_the_others_go_on(s3):
    """Gap: the key went into S3 metadata, botocore refused it, the whole step failed."""
    key_name = "part-é-漢字-00000.parquet"
    first, second = split_in_two(loose_table(invalid_values(DAYS[0])))
    bad = put_parts(s3, {key_name: first, "part-00001.parquet": second}, DAYS[0])
    good = good_days(s3, DAYS[1:])

    result = validate_windows(s3, [bad, *good])

    assert [p["day"] for p in result["valid"]["current"]] == DAYS[1:]
    [entry] = result["quarantined"]
    assert entry["day"] == DAYS[0]
    assert "quarantine_error" not in entry
    assert any("referee" in r for r in entry["reasons"])
    source = storage.inference_prefix(DAYS[0]) + key_name
    prefix = quarantine.quarantine_prefix(DAYS[0], bad.content_id)
    copy = prefix + key_name
    assert f"s3://{BUCKET}/{copy}" in entry["uris"]
    assert storage.get_bytes(s3, BUCKET, copy) == first
    metadata = s3.head_object(Bucket=BUCKET, Key=copy)["Metadata"]
    assert all(v.isascii() for v in metadata.values())
    assert unquote(metadata["source-key"]) == source
    doc = storage.get_json(s3, BUCKET, prefix + quarantine.RESULT_FILE_NAME)
    etag = bad.etags[bad.keys.index(source)]
    assert {"source_key": source, "source_etag": etag, "quarantine_key": copy} in doc["copies"]
    # a re-run finds its own copies (metadata compared by key hash, not by the raw key)
    assert validate_windows(s3, [bad, *good])["quarantined"][0]["uris"] == entry["uris"]


def test_a_partition_whose_quarantine_fails_is_left_out_and_the_others_go_on(s3):
    """Any failure one partition causes (here: a foreign object at its quarantine key)
    sets that partition aside with the reason; it never stops the other days."""
    bad = put_parts(s3, {"part-0.parquet": parquet_bytes(loose_table(invalid_values(DAYS[0])))})
    prefix = quarantine.quarantine_prefix(DAYS[0], bad.content_id)
    s3.put_object(Bucket=BUCKET, Key=prefix + "part-0.parquet", Body=b"someone else's")
    good = good_days(s3, DAYS[1:])

    result = validate_windows(s3, [bad, *good])

    [entry] = result["quarantined"]
    assert entry["day"] == DAYS[0]
    assert entry["quarantine_error"].startswith("WriteOnceViolation: ")
    assert entry["uris"] == []
    assert [p["day"] for p in result["valid"]["current"]] == DAYS[1:]


def test_an_unexpected_error_on_one_partition_sets_it_aside_and_the_others_go_on(s3):
    """The safety net of validate_windows: an error no check foresaw (here a partition record
    whose ETags do not match its keys, as an edited XCom could hold) invalidates that
    partition with the error as its reason, and the quarantine failure is recorded."""
    listed = put_parts(s3, {"part-0.parquet": parquet_bytes(contract_table(day_values(DAYS[0])))})
    broken = storage.Partition(
        day=listed.day, keys=(*listed.keys, listed.keys[0] + ".x"), etags=listed.etags
    )
    good = good_days(s3, DAYS[1:])

    result = validate_windows(s3, [broken, *good])

    [entry] = result["quarantined"]
    assert entry["day"] == DAYS[0]
    [reason] = entry["reasons"]
    assert reason.startswith(f"inference/dt={DAYS[0]}/: validation failed (ValueError: ")
    assert entry["quarantine_error"].startswith("ValueError: ")
    assert [p["day"] for p in result["valid"]["current"]] == DAYS[1:]


class _ErrorBody:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_):
        yield self.data


def _answer(operation: str, key_part: str, status: int, code: str):
    """A botocore before-send handler: S3 answers ``status``/``code`` for requests about the
    keys that contain ``key_part``."""
    body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()

    def handler(request, **_):
        # GetObject names the key in the URL, CopyObject its source in x-amz-copy-source
        if key_part in unquote(request.url + str(request.headers.get("x-amz-copy-source"))):
            return AWSResponse(request.url, status, {}, _ErrorBody(body))
        return None

    return f"before-send.s3.{operation}", handler


def test_an_archived_object_sets_its_partition_aside_and_the_others_go_on(s3):
    """A failure of any kind that one partition causes: here S3 refuses to read (and to copy)
    an object moved to a cold storage class (403 InvalidObjectState)."""
    bad = put_parts(s3, {"part-0.parquet": parquet_bytes(contract_table(day_values(DAYS[0])))})
    good = good_days(s3, DAYS[1:])
    handlers = [
        _answer(op, f"dt={DAYS[0]}/part-0.parquet", 403, "InvalidObjectState")
        for op in ("GetObject", "CopyObject")
    ]
    for event, handler in handlers:
        s3.meta.events.register(event, handler)
    try:
        result = validate_windows(s3, [bad, *good])
    finally:
        for event, handler in handlers:
            s3.meta.events.unregister(event, handler)
    [entry] = result["quarantined"]
    assert entry["day"] == DAYS[0]
    assert entry["reasons"] == [bad.keys[0] + ": cannot be read (InvalidObjectState: injected)"]
    assert "InvalidObjectState" in entry["quarantine_error"]
    assert [p["day"] for p in result["valid"]["current"]] == DAYS[1:]


@pytest.mark.parametrize("operation", ["GetObject", "CopyObject"])
def test_a_store_fault_fails_the_step_instead_of_setting_the_partition_aside(s3, operation):
    """Fail closed: a 500 is no verdict on the partition's content; the task must fail (and
    Airflow retry it), not quarantine or skip a day that may be fine."""
    bad = put_parts(s3, {"part-0.parquet": parquet_bytes(loose_table(invalid_values(DAYS[0])))})
    good = good_days(s3, DAYS[1:])
    event, handler = _answer(operation, f"dt={DAYS[0]}/part-0.parquet", 500, "InternalError")
    s3.meta.events.register(event, handler)
    try:
        with pytest.raises(ClientError) as err:
            validate_windows(s3, [bad, *good])
    finally:
        s3.meta.events.unregister(event, handler)
    assert err.value.response["Error"]["Code"] == "InternalError"
    assert storage.list_keys(s3, BUCKET, "quarantine/") == []


# ------------------------------------------------------------------ content gaps


def test_timestamps_outside_the_partitions_day_are_rejected(s3, ctx):
    """Gap: rows of other days in dt=DAY were accepted (and counted as that day's data)."""
    values = day_values(DAY)
    values["ts"][0] = dt.datetime(2024, 4, 30, 23, 59, 59, tzinfo=dt.UTC)
    values["ts"][1] = dt.datetime(2024, 5, 2, 0, 0, 0, tzinfo=dt.UTC)  # the end is exclusive
    values["ts"][2] = dt.datetime(3000, 1, 1, tzinfo=dt.UTC)
    values["ts"][3] = dt.datetime(2024, 5, 1, 23, 59, 59, 999999, tzinfo=dt.UTC)  # inside
    table = contract_table(values)
    # a year Python's datetime cannot hold (the example is still shown)
    micros = pa.array([2**62], pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    ts = pa.concat_arrays([table.column("ts").combine_chunks(), micros])
    table = pa.concat_tables([table, table.slice(0, 1)]).set_column(
        0, table.schema.field("ts"), pa.chunked_array([ts])
    )
    partition = put_parts(s3, {"part-0.parquet": parquet_bytes(table)})
    verdict = validation.validate_partition(s3, BUCKET, partition, context=ctx)
    assert_invalid_with(
        verdict,
        "column 'ts': 4 rows outside the partition's day "
        "[2024-05-01T00:00:00+00:00, 2024-05-02T00:00:00+00:00) "
        "(e.g. 2024-04-30 23:59:59.000000Z)",
    )
    outside = verdict.result["timestamps_outside_day"]
    assert outside["count"] == 4
    assert outside["examples"] == [
        "2024-04-30 23:59:59.000000Z",
        "2024-05-02 00:00:00.000000Z",
        "3000-01-01 00:00:00.000000Z",
    ]
    json.dumps(verdict.to_dict())


def test_an_exact_duplicate_part_file_counts_once(s3, ctx):
    """Gap: the same file under two keys (a retried upload) doubled that day's rows."""
    first, second = split_in_two(contract_table(day_values(DAY)))
    partition = put_parts(
        s3, {"part-0.parquet": first, "part-0-retry.parquet": first, "part-1.parquet": second}
    )
    verdict = validation.validate_partition(s3, BUCKET, partition, context=ctx)
    assert verdict.valid, verdict.reasons
    assert verdict.row_count == N_ROWS
    duplicate = storage.inference_prefix(DAY) + "part-0.parquet"
    original = storage.inference_prefix(DAY) + "part-0-retry.parquet"  # listed first
    assert verdict.duplicate_keys == [duplicate]
    [entry] = verdict.result["duplicate_parts"]
    assert (entry["key"], entry["same_as"]) == (duplicate, original)
    assert verdict.warnings == [
        f"{duplicate}: same content as {original} (sha256 {entry['sha256'][:16]}…), counted once"
    ]

    result = validate_windows(s3, [partition, *good_days(s3, DAYS[1:])])
    [counted, *_] = result["valid"]["current"]
    assert list(counted["keys"]) == [original, storage.inference_prefix(DAY) + "part-1.parquet"]
    assert len(counted["etags"]) == len(counted["sizes"]) == 2
    assert result["warnings"] == [{"window": "current", "day": DAY, "warnings": verdict.warnings}]


def test_quarantine_keys_always_fit_s3s_key_limit(s3, ctx):
    """Gap: quarantine/…/{content_id}/ + a long part name exceeded 1,024 bytes (S3 answers
    KeyTooLongError; moto does not enforce it, so the length is checked here)."""
    long_name = "x" * 960 + ".parquet"  # the source key (992 bytes) is legal
    first, second = split_in_two(loose_table(invalid_values(DAY)))
    partition = put_parts(s3, {long_name: first, "part-1.parquet": second})
    source = storage.inference_prefix(DAY) + long_name
    assert len(source.encode()) <= S3_KEY_LIMIT
    verdict = validation.validate_partition(s3, BUCKET, partition, context=ctx)

    uris = quarantine.quarantine_partition(s3, BUCKET, verdict, partition)

    keys = [storage.split_s3_uri(u)[1] for u in uris]
    assert all(len(k.encode()) <= S3_KEY_LIMIT for k in keys), keys
    prefix = quarantine.quarantine_prefix(DAY, partition.content_id)
    doc = storage.get_json(s3, BUCKET, prefix + quarantine.RESULT_FILE_NAME)
    by_source = {c["source_key"]: c["quarantine_key"] for c in doc["copies"]}
    assert by_source[source].startswith(prefix + "sha256-")
    assert storage.get_bytes(s3, BUCKET, by_source[source]) == first
    assert by_source[storage.inference_prefix(DAY) + "part-1.parquet"] == prefix + "part-1.parquet"
    metadata = s3.head_object(Bucket=BUCKET, Key=by_source[source])["Metadata"]
    assert unquote(metadata["source-key"]) == source


def test_nan_is_reported_as_nan_not_as_null(s3, ctx):
    """Gap: pandas (and so GE) counts NaN among the nulls; NaN inside the embedding passed."""
    values = day_values(DAY)
    values["brightness"][0] = float("nan")
    values["brightness"][1] = float("nan")
    values["brightness"][2] = None
    values["contrast"][3] = float("nan")
    values["embedding"][4] = [float("nan")] * len(values["embedding"][4])
    verdict = validation.validate_partition(
        s3, BUCKET, put_parts(s3, {"p.parquet": parquet_bytes(loose_table(values))}), context=ctx
    )
    assert_invalid_with(
        verdict,
        "column 'brightness': 2 NaN values",
        "column 'brightness': 1 nulls",
        "column 'contrast': 1 NaN values",
        "column 'embedding': 1 rows with NaN values",
    )
    assert not any("contrast" in r and "null" in r for r in verdict.reasons), verdict.reasons
    assert verdict.result["NaN"] == {"brightness": 2, "contrast": 1, "embedding": 1}


def test_additive_column_in_one_part_is_accepted_and_missing_or_retyped_columns_are_not(s3, ctx):
    """Gap: an extra column in one part file made the parts' schemas differ: day quarantined."""
    first = contract_table(day_values(DAY)).slice(0, 100)
    values = day_values(DAY)
    values["exposure"] = ["auto"] * N_ROWS
    second = loose_table(values).slice(100)
    partition = put_parts(
        s3, {"part-0.parquet": parquet_bytes(first), "part-1.parquet": parquet_bytes(second)}
    )
    verdict = validation.validate_partition(s3, BUCKET, partition, context=ctx)
    assert verdict.valid, verdict.reasons
    assert verdict.extra_columns == ["exposure"]
    assert verdict.row_count == N_ROWS

    retyped = day_values(DAY)
    retyped["exposure"] = [1.0] * N_ROWS
    retyped["latency_ms"] = [str(v) for v in retyped["latency_ms"]]
    del retyped["sharpness"]
    table = loose_table(retyped, {"latency_ms": pa.string()})
    verdict = validation.validate_partition(
        s3, BUCKET, put_parts(s3, {"part-0.parquet": parquet_bytes(table)}, DAYS[1]), context=ctx
    )
    assert_invalid_with(
        verdict, "column 'sharpness' missing", "column 'latency_ms': wrong type, expected double"
    )
    assert verdict.extra_columns == ["exposure"]
