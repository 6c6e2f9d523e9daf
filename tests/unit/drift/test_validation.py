"""Unit tests of driftloop.drift.validation: GE suite, partition reading, quarantine, summary.

Every partition test runs on both engines (the ``ctx`` fixture): the Arrow engine the DAG uses
and GE's pandas validator, with the same expected verdicts and reasons."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftloop.contracts import schema, storage
from driftloop.contracts.stores import absent_if_not_found
from driftloop.drift import expectations, quarantine, validation, validation_results
from tests.unit.conftest import s3_client_for

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")

BUCKET = "driftloop-test"
DAY = "2024-05-01"
N_ROWS = 200


# ----------------------------------------------------------------------------- helpers


def valid_columns(n: int = N_ROWS, seed: int = 0) -> dict[str, list]:
    """Column name -> python values of a contract-conforming partition."""
    rng = np.random.default_rng(seed)
    base = np.datetime64("2024-05-01T00:00:00", "us")
    values: dict[str, list] = {}
    for col in schema.COLUMNS:
        if col.dtype.startswith("timestamp"):
            values[col.name] = [
                (base + np.timedelta64(int(i) * 1_000_000, "us")).astype(object) for i in range(n)
            ]
        elif col.name == "camera_id":
            values[col.name] = [f"cam-{i % 7:02d}" for i in range(n)]
        elif col.name in schema.ALLOWED_CATEGORIES:
            cats = schema.ALLOWED_CATEGORIES[col.name]
            values[col.name] = [cats[i % len(cats)] for i in range(n)]
        elif col.dtype == "string":
            values[col.name] = [f"{col.name}-{i}" for i in range(n)]
        elif col.role == "embedding":
            values[col.name] = rng.normal(size=(n, schema.EMBEDDING_DIM)).astype("float32").tolist()
        elif col.dtype.startswith("int"):
            values[col.name] = rng.integers(col.min_value, col.max_value + 1, size=n).tolist()
        else:
            lo, hi = col.min_value, col.max_value
            values[col.name] = rng.uniform(lo, hi, size=n).tolist()
    return values


def contract_table(values: dict[str, list]) -> pa.Table:
    return pa.Table.from_pydict(values, schema=schema.arrow_schema())


def loose_table(values: dict[str, list], types: dict[str, pa.DataType] | None = None) -> pa.Table:
    """A table with the contract's types where possible, nullable, for defective data."""
    contract = schema.arrow_schema()
    types = types or {}
    arrays, names = [], []
    for name, vals in values.items():
        typ = types.get(name) or (contract.field(name).type if name in contract.names else None)
        arrays.append(pa.array(vals, type=typ))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def put_partition(s3, parts: list[bytes], day: str = DAY) -> storage.Partition:
    for i, data in enumerate(parts):
        s3.put_object(
            Bucket=BUCKET, Key=f"{storage.inference_prefix(day)}part-{i:05d}.parquet", Body=data
        )
    s3.put_object(Bucket=BUCKET, Key=storage.success_key(day), Body=b"")
    return storage.list_partition(s3, BUCKET, day)


def split_in_two(table: pa.Table) -> list[bytes]:
    half = table.num_rows // 2
    return [parquet_bytes(table.slice(0, half)), parquet_bytes(table.slice(half))]


# ----------------------------------------------------------------------------- fixtures


ENGINES = ("arrow", "gx")


def make_engine(name: str):
    """A fresh validation context of the engine: the Arrow suite or a GE context."""
    if name == "arrow":
        return validation.ArrowSuite.from_contract()
    return expectations.make_context()


@pytest.fixture(scope="module", params=ENGINES)
def ctx(request):
    """The engine a test validates with: each partition test runs on both."""
    return make_engine(request.param)


@pytest.fixture(scope="module")
def aws_s3(moto_endpoint):
    """The session's moto S3 server (over HTTP, as the embedded stack runs it) with the
    module's bucket."""
    client = s3_client_for(moto_endpoint)
    if absent_if_not_found(lambda: client.head_bucket(Bucket=BUCKET)) is None:
        client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def s3(aws_s3):
    """The module's S3 client with an empty bucket."""
    for obj in storage.list_keys(aws_s3, BUCKET, ""):
        aws_s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    return aws_s3


def validate_table(s3, ctx, table: pa.Table) -> validation.PartitionVerdict:
    partition = put_partition(s3, split_in_two(table))
    return validation.validate_partition(s3, BUCKET, partition, context=ctx)


def assert_invalid_with(verdict: validation.PartitionVerdict, *fragments: str) -> None:
    assert not verdict.valid, verdict
    joined = "\n".join(verdict.reasons)
    for fragment in fragments:
        assert fragment in joined, f"{fragment!r} not in reasons:\n{joined}"
    json.dumps(verdict.result)  # always JSON-serialisable


# ----------------------------------------------------------------------------- the suite


def test_suite_is_derived_from_the_contract():
    suite = expectations.build_suite()
    configs = [e.configuration for e in suite.expectations]
    column_sets = [
        c.kwargs["column_set"] for c in configs if c.type == "expect_table_columns_to_match_set"
    ]
    assert len(column_sets) == 1
    assert set(column_sets[0]) == {*schema.COLUMN_NAMES, expectations.EMBEDDING_LEN_COLUMN}
    not_null = {
        c.kwargs["column"] for c in configs if c.type == "expect_column_values_to_not_be_null"
    }
    assert not_null == {c.name for c in schema.COLUMNS if not c.nullable}
    between = {
        c.kwargs["column"]: (c.kwargs["min_value"], c.kwargs["max_value"])
        for c in configs
        if c.type == "expect_column_values_to_be_between"
    }
    for col in schema.COLUMNS:
        if col.min_value is not None:
            assert between[col.name] == (col.min_value, col.max_value)
    assert between[expectations.EMBEDDING_LEN_COLUMN] == (
        schema.EMBEDDING_DIM,
        schema.EMBEDDING_DIM,
    )
    in_set = {
        c.kwargs["column"]: c.kwargs["value_set"]
        for c in configs
        if c.type == "expect_column_values_to_be_in_set"
    }
    assert {k: tuple(v) for k, v in in_set.items()} == schema.ALLOWED_CATEGORIES
    assert any(
        c.type == "expect_column_values_to_match_regex"
        and c.kwargs["regex"] == schema.CAMERA_ID_REGEX
        for c in configs
    )
    assert any(
        c.type == "expect_table_row_count_to_be_between" and c.kwargs["min_value"] == 1
        for c in configs
    )


# ----------------------------------------------------------------------------- valid data


def test_valid_partition_passes(s3, ctx):
    table = contract_table(valid_columns())
    verdict = validate_table(s3, ctx, table)
    assert verdict.valid, verdict.reasons
    assert verdict.reasons == []
    assert not verdict.missing
    assert verdict.row_count == N_ROWS
    assert verdict.day == DAY
    assert verdict.content_id == storage.list_partition(s3, BUCKET, DAY).content_id
    assert verdict.result["success"] is True
    assert verdict.result["statistics"]["unsuccessful_expectations"] == 0
    json.dumps(verdict.result)
    assert (
        validation.PartitionVerdict.from_dict(json.loads(json.dumps(verdict.to_dict()))) == verdict
    )


def test_validate_partitions_reuses_one_context_and_reports_missing(s3, ctx):
    good = put_partition(s3, split_in_two(contract_table(valid_columns())), day="2024-05-01")
    empty_day = storage.list_partition(s3, BUCKET, "2024-05-02")
    verdicts = validation.validate_partitions(s3, BUCKET, [good, empty_day], context=ctx)
    assert [v.day for v in verdicts] == ["2024-05-01", "2024-05-02"]
    assert verdicts[0].valid
    assert verdicts[1].missing
    assert not verdicts[1].valid
    assert "no parquet files" in verdicts[1].reasons[0]


# ----------------------------------------------------------------------------- defects


def test_missing_column(s3, ctx):
    values = valid_columns()
    del values["sharpness"]
    verdict = validate_table(s3, ctx, loose_table(values))
    assert_invalid_with(verdict, "column 'sharpness' missing")
    # the missing column explains itself once; no follow-on errors about it
    assert sum("sharpness" in r for r in verdict.reasons) == 1


def test_missing_embedding_column(s3, ctx):
    values = valid_columns()
    del values["embedding"]
    verdict = validate_table(s3, ctx, loose_table(values))
    assert_invalid_with(verdict, "column 'embedding' missing")
    assert verdict.reasons == ["column 'embedding' missing"]


def test_extra_column_is_accepted_and_flagged(s3, ctx):
    """Additive schema change: accepted, listed, ignored by drift statistics (issue 9)."""
    values = valid_columns()
    values["exposure"] = [1.0] * N_ROWS
    verdict = validate_table(s3, ctx, loose_table(values))
    assert verdict.valid, verdict.reasons
    assert verdict.extra_columns == ["exposure"]
    assert verdict.result["extra_columns"] == ["exposure"]
    assert verdict.warnings == [
        "additive columns accepted, ignored by drift statistics: 'exposure'"
    ]
    assert verdict.result["warnings"] == verdict.warnings


def test_extra_column_named_like_the_derived_length_column(s3, ctx):
    """A column named like the derived length column is an extra column: it can neither
    collide with nor mask the embedding-length check."""
    values = valid_columns()
    values[expectations.EMBEDDING_LEN_COLUMN] = [schema.EMBEDDING_DIM] * N_ROWS
    values["embedding"] = [row[:32] for row in values["embedding"]]
    verdict = validate_table(s3, ctx, loose_table(values, {"embedding": pa.list_(pa.float32())}))
    assert_invalid_with(
        verdict, f"column 'embedding': {N_ROWS} rows with length != {schema.EMBEDDING_DIM}"
    )
    assert verdict.extra_columns == [expectations.EMBEDDING_LEN_COLUMN]


def test_wrong_dtype_brightness_as_strings(s3, ctx):
    values = valid_columns()
    values["brightness"] = [f"{v:.2f}" for v in values["brightness"]]
    verdict = validate_table(s3, ctx, loose_table(values, {"brightness": pa.string()}))
    assert_invalid_with(verdict, "column 'brightness': wrong type, expected double")
    assert len([r for r in verdict.reasons if "brightness" in r]) == 1, verdict.reasons


def test_integer_column_as_float_is_wrong_type(s3, ctx):
    values = valid_columns()
    values["n_detections"] = [float(v) for v in values["n_detections"]]
    verdict = validate_table(s3, ctx, loose_table(values, {"n_detections": pa.float64()}))
    assert_invalid_with(verdict, "column 'n_detections': wrong type, expected int32")


def test_nulls(s3, ctx):
    values = valid_columns()
    for i in range(0, 2 * 41, 2):
        values["confidence_mean"][i] = None
    values["camera_id"][5] = None
    verdict = validate_table(s3, ctx, loose_table(values))
    assert_invalid_with(
        verdict, "column 'confidence_mean': 41 nulls", "column 'camera_id': 1 nulls"
    )


def test_null_embedding_rows(s3, ctx):
    values = valid_columns()
    values["embedding"][3] = None
    # variable-size list: pyarrow 25 cannot read back a null row of a fixed_size_list column
    verdict = validate_table(s3, ctx, loose_table(values, {"embedding": pa.list_(pa.float32())}))
    assert_invalid_with(verdict, "column 'embedding': 1 nulls")
    assert not any("length" in r for r in verdict.reasons), verdict.reasons


def test_out_of_range(s3, ctx):
    values = valid_columns()
    values["brightness"][0] = 300.0
    values["brightness"][1] = -1.0
    values["n_detections"][2] = 101
    verdict = validate_table(s3, ctx, loose_table(values))
    assert_invalid_with(
        verdict,
        "column 'brightness': 2 values outside [0.0, 255.0]",
        "300.0",
        "column 'n_detections': 1 values outside",
    )


def test_bad_category(s3, ctx):
    values = valid_columns()
    values["top_class"][7] = "referee"
    verdict = validate_table(s3, ctx, loose_table(values))
    assert_invalid_with(verdict, "column 'top_class': 1 values not in", "'referee'")


def test_bad_camera_id(s3, ctx):
    values = valid_columns()
    values["camera_id"][0] = "CAM_7"
    values["camera_id"][1] = "cam-1234"
    verdict = validate_table(s3, ctx, loose_table(values))
    assert_invalid_with(verdict, "column 'camera_id': 2 values do not match", "'CAM_7'")


def test_wrong_embedding_length_in_some_rows(s3, ctx):
    values = valid_columns()
    values["embedding"][10] = values["embedding"][10][:-1]
    values["embedding"][11] = values["embedding"][11] + [0.0]
    verdict = validate_table(s3, ctx, loose_table(values, {"embedding": pa.list_(pa.float32())}))
    assert_invalid_with(
        verdict, f"column 'embedding': 2 rows with length != {schema.EMBEDDING_DIM}"
    )


def test_wrong_fixed_embedding_size(s3, ctx):
    values = valid_columns()
    values["embedding"] = [row[:32] for row in values["embedding"]]
    verdict = validate_table(
        s3, ctx, loose_table(values, {"embedding": pa.list_(pa.float32(), 32)})
    )
    assert_invalid_with(
        verdict, f"column 'embedding': {N_ROWS} rows with length != {schema.EMBEDDING_DIM}", "32"
    )


def test_embedding_not_a_list(s3, ctx):
    values = valid_columns()
    values["embedding"] = ["[0.1, 0.2]"] * N_ROWS
    verdict = validate_table(s3, ctx, loose_table(values, {"embedding": pa.string()}))
    assert_invalid_with(verdict, "column 'embedding': not a list column")


def test_empty_table(s3, ctx):
    table = contract_table(valid_columns()).slice(0, 0)
    partition = put_partition(s3, [parquet_bytes(table)])
    verdict = validation.validate_partition(s3, BUCKET, partition, context=ctx)
    assert_invalid_with(verdict, "table has 0 rows")
    assert verdict.row_count == 0
    assert not verdict.missing


def test_truncated_file(s3, ctx):
    good, second = split_in_two(contract_table(valid_columns()))
    partition = put_partition(s3, [good, second[: len(second) // 2]])
    verdict = validation.validate_partition(s3, BUCKET, partition, context=ctx)
    bad_key = f"{storage.inference_prefix(DAY)}part-00001.parquet"
    assert_invalid_with(verdict, f"{bad_key}: unreadable parquet (")
    assert len(verdict.reasons) == 1
    assert verdict.result["read_errors"] == verdict.reasons


def test_empty_file(s3, ctx):
    good, _ = split_in_two(contract_table(valid_columns()))
    partition = put_partition(s3, [good, b""])
    verdict = validation.validate_partition(s3, BUCKET, partition, context=ctx)
    assert_invalid_with(verdict, "part-00001.parquet: unreadable parquet (empty file, 0 bytes)")


def test_not_parquet(s3, ctx):
    partition = put_partition(s3, [b"ts,image_id\n2024-05-01,x\n"])
    verdict = validation.validate_partition(s3, BUCKET, partition, context=ctx)
    assert_invalid_with(verdict, "part-00000.parquet: unreadable parquet (")


def test_part_with_different_schema(s3, ctx):
    values = valid_columns()
    good = contract_table(values).slice(0, 100)
    other = dict(values)
    del other["sharpness"]
    bad = loose_table(other).slice(100)
    partition = put_partition(s3, [parquet_bytes(good), parquet_bytes(bad)])
    verdict = validation.validate_partition(s3, BUCKET, partition, context=ctx)
    assert_invalid_with(
        verdict,
        "part-00001.parquet: schema differs from the other parts",
        "missing column 'sharpness'",
    )
    assert not any("part-00000" in r for r in verdict.reasons)


def test_object_changed_after_listing(s3, ctx):
    table = contract_table(valid_columns())
    partition = put_partition(s3, split_in_two(table))
    s3.put_object(Bucket=BUCKET, Key=partition.keys[0], Body=parquet_bytes(table.slice(0, 10)))
    verdict = validation.validate_partition(s3, BUCKET, partition, context=ctx)
    assert_invalid_with(verdict, f"{partition.keys[0]}: changed since the partition was listed")


def test_day_without_files_is_missing_not_invalid(s3, ctx):
    s3.put_object(Bucket=BUCKET, Key=storage.success_key(DAY), Body=b"")
    partition = storage.list_partition(s3, BUCKET, DAY)
    verdict = validation.validate_partition(s3, BUCKET, partition, context=ctx)
    assert verdict.missing
    assert not verdict.valid
    assert verdict.row_count == 0


# ----------------------------------------------------------------------------- quarantine


def _invalid_partition(s3, ctx):
    values = valid_columns()
    values["top_class"][0] = "referee"
    partition = put_partition(s3, split_in_two(loose_table(values)))
    verdict = validation.validate_partition(s3, BUCKET, partition, context=ctx)
    assert not verdict.valid
    return partition, verdict


def test_quarantine_copies_objects_and_result_and_keeps_originals(s3, ctx):
    partition, verdict = _invalid_partition(s3, ctx)
    originals = {k: storage.get_bytes(s3, BUCKET, k) for k in partition.keys}

    uris = quarantine.quarantine_partition(s3, BUCKET, verdict, partition)

    prefix = f"quarantine/inference/dt={DAY}/{partition.content_id}/"
    assert uris == [
        f"s3://{BUCKET}/{prefix}part-00000.parquet",
        f"s3://{BUCKET}/{prefix}part-00001.parquet",
        f"s3://{BUCKET}/{prefix}validation_result.json",
    ]
    for key, data in originals.items():
        name = key.rsplit("/", 1)[-1]
        assert storage.get_bytes(s3, BUCKET, prefix + name) == data
        assert storage.get_bytes(s3, BUCKET, key) == data  # original untouched
    assert storage.list_partition(s3, BUCKET, DAY) == partition  # same keys and etags
    doc = storage.get_json(s3, BUCKET, prefix + "validation_result.json")
    assert doc["reasons"] == verdict.reasons
    assert any("referee" in r for r in doc["reasons"])
    assert doc["content_id"] == partition.content_id
    assert doc["result"]["success"] is False


def test_quarantine_is_idempotent_across_validation_runs(s3, ctx):
    partition, verdict = _invalid_partition(s3, ctx)
    first = quarantine.quarantine_partition(s3, BUCKET, verdict, partition)
    key = storage.split_s3_uri(first[-1])[1]
    before = storage.get_bytes(s3, BUCKET, key)

    # a re-run validates again (a new context of the same engine) and quarantines again
    engine = "arrow" if isinstance(ctx, validation.ArrowSuite) else "gx"
    again = validation.validate_partition(s3, BUCKET, partition, context=make_engine(engine))
    assert again.result == verdict.result
    second = quarantine.quarantine_partition(s3, BUCKET, again, partition)

    assert second == first
    assert storage.get_bytes(s3, BUCKET, key) == before
    quarantined = storage.list_keys(s3, BUCKET, "quarantine/")
    assert len(quarantined) == len(first)


def test_quarantine_refuses_foreign_copy_and_valid_verdicts(s3, ctx):
    partition, verdict = _invalid_partition(s3, ctx)
    prefix = quarantine.quarantine_prefix(DAY, partition.content_id)
    s3.put_object(Bucket=BUCKET, Key=prefix + "part-00000.parquet", Body=b"something else")
    with pytest.raises(storage.WriteOnceViolation):
        quarantine.quarantine_partition(s3, BUCKET, verdict, partition)
    valid = validation.PartitionVerdict(day=DAY, content_id=partition.content_id, valid=True)
    with pytest.raises(ValueError, match="valid"):
        quarantine.quarantine_partition(s3, BUCKET, valid, partition)


# ----------------------------------------------------------------------------- summarize


def _verdict(day: str, valid: bool, reasons=(), missing: bool = False):
    return validation.PartitionVerdict(
        day=day, content_id=f"cid-{day}", valid=valid, reasons=list(reasons), missing=missing
    )


def test_summarize_missing_and_invalid_days():
    days = ["2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04", "2024-05-05"]
    verdicts = [
        _verdict("2024-05-01", True),
        _verdict("2024-05-02", False, ["column 'sharpness' missing"]),
        _verdict("2024-05-03", True),
        _verdict("2024-05-04", False, ["no parquet files"], missing=True),
        # 2024-05-05: no verdict at all
    ]
    summary = validation_results.summarize(verdicts, days, min_valid_share=0.5)
    assert summary.valid_days == ["2024-05-01", "2024-05-03"]
    assert summary.invalid == {"2024-05-02": ["column 'sharpness' missing"]}
    assert summary.missing_days == ["2024-05-04", "2024-05-05"]
    assert summary.valid_share == pytest.approx(2 / 5)
    with pytest.raises(validation_results.InsufficientValidData) as exc:
        summary.raise_if_insufficient("current")
    assert isinstance(exc.value, ValueError)
    message = str(exc.value)
    assert "'current'" in message
    assert "inference/dt=2024-05-02/" in message
    assert "column 'sharpness' missing" in message
    assert "cid-2024-05-02" in message
    assert "2024-05-04" in message
    assert "2024-05-05" in message
    json.dumps(summary.to_dict())


def test_summarize_share_exactly_at_threshold_passes():
    days = [f"2024-05-0{i}" for i in range(1, 6)]
    verdicts = [_verdict(d, True) for d in days[:4]] + [_verdict(days[4], False, ["bad"])]
    summary = validation_results.summarize(verdicts, days, min_valid_share=0.8)
    assert summary.valid_share == pytest.approx(0.8)
    summary.raise_if_insufficient("reference")  # does not raise
    below = validation_results.summarize(verdicts, days, min_valid_share=0.81)
    with pytest.raises(validation_results.InsufficientValidData, match="bad"):
        below.raise_if_insufficient("reference")


def test_summarize_accepts_dates_and_rejects_duplicates():
    from datetime import date

    summary = validation_results.summarize(
        [_verdict("2024-05-01", True)], [date(2024, 5, 1), date(2024, 5, 2)], 0.5
    )
    assert summary.valid_days == ["2024-05-01"]
    assert summary.missing_days == ["2024-05-02"]
    summary.raise_if_insufficient("w")
    with pytest.raises(ValueError, match="two verdicts"):
        validation_results.summarize([_verdict("2024-05-01", True)] * 2, [], 0.5)


def test_summarize_empty_window_is_insufficient():
    summary = validation_results.summarize([], [], min_valid_share=0.5)
    assert summary.valid_share == 0.0
    with pytest.raises(validation_results.InsufficientValidData):
        summary.raise_if_insufficient("empty")
