"""The inference-log contract names the column validation holds to the partition's day."""

from __future__ import annotations

from driftloop.contracts import schema


def test_time_column_is_a_utc_timestamp_outside_drift_statistics():
    column = schema.BY_NAME[schema.TIME_COLUMN]
    assert column.role == "time"
    assert column.dtype == "timestamp[us, tz=UTC]"
    assert not column.nullable  # a row without a time cannot be placed in a day
    assert not column.drift
    assert schema.arrow_schema().field(schema.TIME_COLUMN).type.tz == "UTC"
