"""The Arrow engine against GE's pandas validator: same verdicts, reasons and result documents.

The partitions: every defect the synthetic world makes (``scenarios.CORRUPT_LAYOUT``, written by
``partition_files`` exactly as the serving side's files), good days of that world, and the
hand-made defects of the validation tests; then a matrix of column types for the type checks.
Both engines read the same objects from a moto S3 server over HTTP.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest

from driftloop.contracts import schema, storage
from driftloop.contracts.stores import absent_if_not_found
from driftloop.drift import arrow_validation, expectations, validation
from driftloop.drift.partition_read import to_validation_frame
from driftloop_dev.synth import world_spec
from driftloop_dev.synth.inference import partition_files
from driftloop_dev.synth.scenarios import CORRUPT_LAYOUT
from tests.unit.conftest import s3_client_for
from tests.unit.drift.test_validation import (
    loose_table,
    parquet_bytes,
    split_in_two,
    valid_columns,
)

BUCKET = "driftloop-engines"
DAYS = 28
END = "2025-02-28"
ROWS = 240
#: GE's result keys of a failed expectation that raised: only whether it raised is compared
#: (GE's messages are keyed by its internal metric ids)
RAISED = "raised_exception"


@pytest.fixture(scope="module")
def s3(moto_endpoint):
    client = s3_client_for(moto_endpoint)
    if absent_if_not_found(lambda: client.head_bucket(Bucket=BUCKET)) is None:
        client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def gx_ctx():
    return expectations.make_context()


@pytest.fixture(scope="module")
def arrow_suite():
    return validation.ArrowSuite.from_contract()


@pytest.fixture(scope="module")
def corrupt_world():
    return world_spec(
        "corrupt", days=DAYS, end_date=END, rows_per_day=ROWS, labeled_per_day=0, files_per_day=2
    )


def put_world_day(s3, spec, day_index: int) -> storage.Partition:
    day = spec.date_of(day_index).isoformat()
    for key, data in partition_files(spec, day_index):
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    return storage.list_partition(s3, BUCKET, day)


def comparable(result: dict) -> dict:
    """A result document without what only says which engine wrote it (meta), and with a
    raised expectation reduced to the fact that it raised."""
    out = {k: v for k, v in result.items() if k != "meta"}
    results = []
    for r in result.get("results", []):
        r = dict(r)
        info = r.get("exception_info") or {}
        raised = bool(info.get(RAISED)) or any(
            isinstance(v, dict) and v.get(RAISED) for v in info.values()
        )
        r["exception_info"] = {RAISED: raised}
        if raised:
            r["result"] = {}
        results.append(r)
    if "results" in result:
        out["results"] = results
    return json.loads(json.dumps(out, default=str))


def assert_same(gx_verdict, arrow_verdict) -> None:
    assert arrow_verdict.valid == gx_verdict.valid
    assert arrow_verdict.reasons == gx_verdict.reasons
    assert arrow_verdict.row_count == gx_verdict.row_count
    assert arrow_verdict.warnings == gx_verdict.warnings
    gx_doc, arrow_doc = comparable(gx_verdict.result), comparable(arrow_verdict.result)
    for gx_r, arrow_r in zip(gx_doc.get("results", []), arrow_doc.get("results", []), strict=True):
        assert arrow_r == gx_r, gx_r["expectation_config"]
    assert arrow_doc == gx_doc


def both(s3, partition, gx_ctx, arrow_suite):
    gx_verdict = validation.validate_partition(s3, BUCKET, partition, context=gx_ctx)
    arrow_verdict = validation.validate_partition(s3, BUCKET, partition, context=arrow_suite)
    return gx_verdict, arrow_verdict


# ------------------------------------------------------------ the synthetic world's defects


@pytest.mark.parametrize(("offset", "defect"), CORRUPT_LAYOUT, ids=[d for _, d in CORRUPT_LAYOUT])
def test_every_defect_of_the_synthetic_world_gets_the_same_verdict(
    s3, corrupt_world, gx_ctx, arrow_suite, offset, defect
):
    day_index = DAYS - 1 - offset
    assert corrupt_world.day_params(day_index).defect == defect
    partition = put_world_day(s3, corrupt_world, day_index)
    gx_verdict, arrow_verdict = both(s3, partition, gx_ctx, arrow_suite)
    assert not gx_verdict.valid, defect
    assert gx_verdict.reasons
    assert_same(gx_verdict, arrow_verdict)
    assert arrow_verdict.result.get("meta", {}).get("suite_id", arrow_suite.suite_id) == (
        arrow_suite.suite_id
    )


@pytest.mark.parametrize("day_index", [0, 9, 20])
def test_good_days_of_the_synthetic_world_are_valid_on_both(
    s3, corrupt_world, gx_ctx, arrow_suite, day_index
):
    assert corrupt_world.day_params(day_index).defect is None
    partition = put_world_day(s3, corrupt_world, day_index)
    gx_verdict, arrow_verdict = both(s3, partition, gx_ctx, arrow_suite)
    assert gx_verdict.valid, gx_verdict.reasons
    assert_same(gx_verdict, arrow_verdict)
    assert arrow_verdict.result["meta"] == {
        "validator": arrow_validation.VALIDATOR_VERSION,
        "suite_id": arrow_suite.suite_id,
    }


# ------------------------------------------------------------ hand-made defects

NAN = float("nan")


def _set(name, rows, value):
    def change(values):
        for i in rows:
            values[name][i] = value

    return change


def _embedding_rows(change_row):
    def change(values):
        values["embedding"] = [change_row(i, row) for i, row in enumerate(values["embedding"])]

    return change


DEFECTS = {
    # name: (change of the column values, arrow types of the changed columns)
    "nulls in strings, ints and floats": (
        lambda v: [
            _set("camera_id", [3, 150], None)(v),
            _set("n_detections", [4], None)(v),
            _set("latency_ms", [0, 199], None)(v),
        ],
        {},
    ),
    "NaN next to nulls": (
        lambda v: [
            _set("brightness", [0, 1, 130], NAN)(v),
            _set("brightness", [2], None)(v),
            _set("contrast", [199], NAN)(v),
        ],
        {},
    ),
    "NaN in the embedding": (
        _embedding_rows(lambda i, r: [NAN] * len(r) if i in (4, 120) else r),
        {"embedding": pa.list_(pa.float32())},
    ),
    "out of range in many rows": (
        lambda v: [
            _set("brightness", range(0, 200, 7), 300.0)(v),
            _set("n_detections", [5, 6, 180], 101)(v),
        ],
        {},
    ),
    "categories and camera ids": (
        lambda v: [
            _set("top_class", [7, 8, 190], "referee")(v),
            _set("top_class", [9], "")(v),
            _set("camera_id", [0, 1, 160], "CAM_7")(v),
            _set("camera_id", [2], "cam-1234")(v),
        ],
        {},
    ),
    "embedding lengths": (
        _embedding_rows(lambda i, r: r[:-1] if i in (10, 150) else ([*r, 0.0] if i == 11 else r)),
        {"embedding": pa.list_(pa.float32())},
    ),
    "null embedding row": (
        _embedding_rows(lambda i, r: None if i == 3 else r),
        {"embedding": pa.list_(pa.float32())},
    ),
    "embedding of the wrong fixed size": (
        _embedding_rows(lambda i, r: r[:32]),
        {"embedding": pa.list_(pa.float32(), 32)},
    ),
    "embedding not a list": (
        _embedding_rows(lambda i, r: "[0.1]"),
        {"embedding": pa.string()},
    ),
    "integers as floats": (
        lambda v: v.update(n_detections=[float(x) for x in v["n_detections"]]),
        {"n_detections": pa.float64()},
    ),
    "floats as strings": (
        lambda v: v.update(latency_ms=[f"{x:.3f}" for x in v["latency_ms"]]),
        {"latency_ms": pa.string()},
    ),
    "naive timestamps": (
        lambda v: v.update(ts=[t.replace(tzinfo=None) for t in v["ts"]]),
        {"ts": pa.timestamp("us")},
    ),
    "timestamps outside the day": (
        lambda v: [
            _set("ts", [0], dt.datetime(2024, 4, 30, 23, 59, tzinfo=dt.UTC))(v),
            _set("ts", [170, 171], dt.datetime(2024, 5, 2, tzinfo=dt.UTC))(v),
        ],
        {},
    ),
    "two missing columns": (lambda v: [v.pop("sharpness"), v.pop("camera_id")], {}),
    "an extra column": (lambda v: v.update(exposure=[1.0] * len(v["ts"])), {}),
}


@pytest.mark.parametrize("name", list(DEFECTS))
def test_hand_made_defects_get_the_same_verdict_and_document(s3, gx_ctx, arrow_suite, name):
    change, types = DEFECTS[name]
    values = valid_columns()
    values["ts"] = [t.replace(tzinfo=dt.UTC) for t in values["ts"]]
    change(values)
    table = loose_table(values, types)
    day = "2024-05-01"
    for obj in storage.list_keys(s3, BUCKET, storage.inference_prefix(day)):
        s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    for i, data in enumerate(split_in_two(table)):
        key = f"{storage.inference_prefix(day)}part-{i}.parquet"
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    partition = storage.list_partition(s3, BUCKET, day)
    gx_verdict, arrow_verdict = both(s3, partition, gx_ctx, arrow_suite)
    assert_same(gx_verdict, arrow_verdict)
    if name != "an extra column":
        assert not arrow_verdict.valid, name


def test_batches_and_parts_do_not_change_the_document(s3, arrow_suite, monkeypatch):
    """Counts and first examples add up over batches and parts: tiny batches, many parts
    and one part give the same document (examples in row order, global row indices)."""
    values = valid_columns()
    values["ts"] = [t.replace(tzinfo=dt.UTC) for t in values["ts"]]
    for i in range(0, 200, 9):
        values["brightness"][i] = 300.0
    values["camera_id"][150] = "CAM_7"
    values["top_class"][199] = "referee"
    table = loose_table(values)

    day = "2024-05-01"

    def verdict_of(parts: list[bytes]):
        for obj in storage.list_keys(s3, BUCKET, storage.inference_prefix(day)):
            s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
        for i, data in enumerate(parts):
            s3.put_object(
                Bucket=BUCKET, Key=f"{storage.inference_prefix(day)}p-{i:02d}.parquet", Body=data
            )
        partition = storage.list_partition(s3, BUCKET, day)
        return validation.validate_partition(s3, BUCKET, partition, context=arrow_suite)

    whole = verdict_of([parquet_bytes(table)])
    monkeypatch.setattr(validation, "BATCH_ROWS", 7)
    pieces = [parquet_bytes(table.slice(i, 23)) for i in range(0, table.num_rows, 23)]
    sliced = verdict_of(pieces)
    assert len(sliced.result["results"]) == len(whole.result["results"])
    assert sliced.reasons == whole.reasons
    assert comparable(sliced.result) == comparable(whole.result)
    brightness = next(
        r["result"]
        for r in whole.result["results"]
        if r["expectation_config"]["kwargs"].get("column") == "brightness"
        and r["expectation_config"]["type"] == "expect_column_values_to_be_between"
    )
    assert brightness["unexpected_count"] == len(range(0, 200, 9))
    assert brightness["partial_unexpected_index_list"] == list(range(0, 90, 9))


# ------------------------------------------------------------ the type checks, type by type

TYPES = [
    pa.float16(),
    pa.float32(),
    pa.float64(),
    pa.int8(),
    pa.int32(),
    pa.uint16(),
    pa.int64(),
    pa.bool_(),
    pa.string(),
    pa.large_string(),
    pa.binary(),
    pa.date32(),
    pa.timestamp("ms"),
    pa.timestamp("us", tz="UTC"),
    pa.timestamp("ns", tz="Europe/Paris"),
    pa.duration("s"),
    pa.decimal128(10, 2),
    pa.list_(pa.float64()),
    pa.null(),
    pa.dictionary(pa.int8(), pa.string()),
]


def _values_of(t: pa.DataType, n: int) -> pa.Array:
    """``n`` values of type ``t`` (a few nulls where the type allows), from integers."""
    base = pa.array(np.arange(n) % 7, pa.int64())
    if pa.types.is_null(t):
        return pa.nulls(n)
    if pa.types.is_dictionary(t):
        return pa.array([f"cam-0{i % 5}" for i in range(n)]).dictionary_encode()
    if pa.types.is_list(t):
        return pa.array([[float(i)] for i in range(n)], t)
    if pa.types.is_binary(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        text = pa.array([f"cam-0{i % 5}" for i in range(n)], pa.string())
        return text.cast(t)
    if pa.types.is_decimal(t):
        return base.cast(pa.float64()).cast(t)
    if pa.types.is_date(t) or pa.types.is_timestamp(t) or pa.types.is_duration(t):
        return base.cast(pa.int32() if pa.types.is_date(t) else pa.int64()).cast(t)
    return base.cast(t)


def _ge_doc(ctx, table: pa.Table) -> dict:
    df = to_validation_frame(table)
    batch = ctx.batch_definition.get_batch(batch_parameters={"dataframe": df})
    raw = batch.validate(ctx.suite, result_format=expectations.RESULT_FORMAT).to_json_dict()
    return expectations.stable_result(raw, ctx.suite)


def _ge_doc_or_error(ctx, table: pa.Table) -> tuple[dict | None, str | None]:
    try:
        return _ge_doc(ctx, table), None
    except TypeError as err:
        return None, str(err)


def _arrow_doc(suite, table: pa.Table) -> dict:
    columns = {f.name: arrow_validation.value_type_of(f.type) for f in table.schema}
    evaluation = arrow_validation.SuiteEvaluation(suite.specs, columns)
    for batch in table.to_batches(max_chunksize=17):
        evaluation.add_batch(batch)
    return evaluation.result()


@pytest.mark.parametrize("column", ["brightness", "n_detections", "camera_id", "ts"])
@pytest.mark.parametrize("arrow_type", TYPES, ids=str)
def test_type_checks_agree_with_ge_for_every_column_type(gx_ctx, arrow_suite, column, arrow_type):
    table = pa.table(
        {
            name: pa.array(vals, schema.arrow_schema().field(name).type)
            for name, vals in valid_columns(n=60).items()
        }
    )
    i = table.schema.get_field_index(column)
    table = table.set_column(i, column, _values_of(arrow_type, table.num_rows))
    arrow_doc = _arrow_doc(arrow_suite, table)
    json.dumps(arrow_doc)  # a document as it is stored: JSON as it is
    gx_doc, gx_error = _ge_doc_or_error(gx_ctx, table)
    if gx_doc is None:  # GE cannot write its document (a Timedelta example): Arrow still can
        assert "cannot be serialized" in gx_error
        reasons = expectations.reasons_of(arrow_doc)
        assert any(f"column {column!r}: wrong type" in r for r in reasons), reasons
        return
    assert expectations.reasons_of(arrow_doc) == expectations.reasons_of(gx_doc)
    pairs = [
        (gx_r, arrow_r)
        for gx_r, arrow_r in zip(
            comparable(gx_doc)["results"], comparable(arrow_doc)["results"], strict=True
        )
        if gx_r["expectation_config"]["kwargs"].get("column") == column
    ]
    [(gx_type, arrow_type_result)] = [
        (g, a) for g, a in pairs if g["expectation_config"]["type"] in arrow_validation.TYPE_CHECKS
    ]
    assert arrow_type_result == gx_type
    if gx_type["success"]:  # on a column of the wrong type the value checks make no reason
        for gx_r, arrow_r in pairs:
            assert arrow_r == gx_r


def test_reasons_keep_column_order_whichever_batch_finds_them(s3, gx_ctx, arrow_suite, monkeypatch):
    """NaN in a later column found in the first batch, in an earlier column in the last:
    the reasons still follow the columns, as GE's whole-frame validation has them."""
    values = valid_columns()
    values["ts"] = [t.replace(tzinfo=dt.UTC) for t in values["ts"]]
    values["contrast"][0] = NAN  # first batch
    values["brightness"][199] = NAN  # last batch; brightness comes before contrast
    day = "2024-05-01"
    for obj in storage.list_keys(s3, BUCKET, storage.inference_prefix(day)):
        s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{storage.inference_prefix(day)}part-0.parquet",
        Body=parquet_bytes(loose_table(values)),
    )
    partition = storage.list_partition(s3, BUCKET, day)
    monkeypatch.setattr(validation, "BATCH_ROWS", 50)
    gx_verdict, arrow_verdict = both(s3, partition, gx_ctx, arrow_suite)
    assert arrow_verdict.reasons == gx_verdict.reasons
    assert [r.split(":")[0] for r in arrow_verdict.reasons] == [
        "column 'brightness'",
        "column 'contrast'",
    ]
