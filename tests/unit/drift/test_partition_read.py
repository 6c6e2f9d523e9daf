"""Pure checks of driftloop.drift.partition_read: store fault vs partition content, NaN
counts, timestamps outside the day, additive columns (no S3 needed)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)

from driftloop.contracts import schema
from driftloop.drift import partition_read


def s3_error(status: int, code: str) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    "err",
    [
        s3_error(500, "InternalError"),
        s3_error(503, "SlowDown"),
        s3_error(403, "AccessDenied"),
        s3_error(400, "RequestTimeout"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ConnectionClosedError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        ConnectionResetError(),
        MemoryError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_store_and_worker_faults_fail_the_task(err):
    assert partition_read.is_store_fault(err)


@pytest.mark.parametrize(
    "err",
    [
        s3_error(404, "NoSuchKey"),
        s3_error(412, "PreconditionFailed"),
        s3_error(403, "InvalidObjectState"),
        s3_error(400, "KeyTooLongError"),
        ParamValidationError(report="Non ascii characters found in S3 metadata"),
        ValueError("bad partition record"),
        pa.ArrowInvalid("bad parquet"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_one_partition_causes_set_it_aside(err):
    assert not partition_read.is_store_fault(err)


def test_nan_counts_rows_per_float_column_across_chunks():
    emb_type = pa.list_(pa.float32(), 2)
    nan = float("nan")
    table = pa.table(
        {
            "brightness": pa.chunked_array([[1.0, nan, None], [nan, 2.0]]),
            # rows: [nan, nan] (one row, two NaN), [1, 2], null | [1, nan], [3, 4]
            "embedding": pa.chunked_array(
                [
                    pa.array([[nan, nan], [1.0, 2.0], None], emb_type),
                    pa.array([[1.0, nan], [3.0, 4.0]], emb_type),
                ]
            ),
            "camera_id": pa.chunked_array([["a", "b", "c"], ["d", "e"]]),
            "exposure": pa.chunked_array([[nan, nan, nan], [nan, nan]]),  # not in the contract
        }
    )
    assert partition_read.nan_counts(table) == {"brightness": 2, "embedding": 2}


@pytest.mark.parametrize("tz", ["UTC", None])
def test_timestamps_outside_day_with_naive_and_aware_columns(tz):
    def ts(*args):
        return dt.datetime(*args, tzinfo=dt.UTC if tz else None)

    day = "2024-05-01"
    column = pa.array(
        [ts(2024, 5, 1), ts(2024, 5, 1, 23, 59), ts(2024, 5, 2), None], pa.timestamp("ms", tz=tz)
    )
    found = partition_read.timestamps_outside_day(pa.table({"ts": column}), day)
    assert found["count"] == 1
    assert found["examples"][0].startswith("2024-05-02 00:00:00.000")
    assert partition_read.timestamps_outside_day(pa.table({"ts": ["x"]}), day) is None


def test_split_extra_columns_keeps_the_contracts_columns_only():
    table = pa.table({"exposure": [1], "brightness": [2.0], "_embedding_len": [3]})
    kept, extra = partition_read.split_extra_columns(table)
    assert kept.column_names == ["brightness"]
    assert extra == ["exposure", "_embedding_len"]
    assert set(kept.column_names) <= set(schema.COLUMN_NAMES)
