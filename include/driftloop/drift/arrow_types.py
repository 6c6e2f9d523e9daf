"""Arrow types as Great Expectations sees them on a pandas frame: the dtype names its type
checks compare, and which Arrow types its checks accept."""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftloop.drift.expectations import (
    ExpectationSpec,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa


# how pandas (and so GE) sees an Arrow type


def pandas_dtype_name(t: pa.DataType) -> str | None:
    """``dtype.type.__name__`` of the pandas column an Arrow column becomes in the validation
    frame (what GE reports as the observed type), or None for a column of Python objects."""
    import pyarrow as pa

    if pa.types.is_timestamp(t):
        return "Timestamp" if t.tz is not None else "datetime64"
    if pa.types.is_duration(t):
        return "timedelta64"
    if pa.types.is_floating(t):
        return str(t.to_pandas_dtype().__name__)  # float16 / float32 / float64
    if pa.types.is_integer(t):
        return str(t)  # nullable IntXDtype / UIntXDtype: dtype.type is numpy's intX
    if pa.types.is_boolean(t):
        return "bool"
    return None


def _dtype_token(t: pa.DataType) -> str:
    """The name a suite's type list uses for the pandas dtype of a typed column."""
    import pyarrow as pa

    if pa.types.is_integer(t):
        name = str(t)  # int32 -> Int32Dtype, uint8 -> UInt8Dtype (the nullable dtypes)
        return ("UInt" + name[4:] if name.startswith("uint") else "Int" + name[3:]) + "Dtype"
    if pa.types.is_boolean(t):
        return "BooleanDtype"
    return pandas_dtype_name(t) or "object"


def object_value_type(t: pa.DataType) -> str | None:
    """The Python type name of the values of a column pandas holds as objects (None: every
    value is missing)."""
    import pyarrow as pa

    if pa.types.is_null(t):
        return None
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "str"
    if (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_binary_view(t)
    ):
        return "bytes"
    if is_list_type(t):
        return "ndarray"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_decimal(t):
        return "Decimal"
    if pa.types.is_struct(t):
        return "dict"
    return "list" if pa.types.is_map(t) else type(t).__name__


def is_list_type(t: pa.DataType) -> bool:
    import pyarrow as pa

    return (
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_list_view(t)
        or pa.types.is_large_list_view(t)
    )


def _is_stringlike(t: pa.DataType) -> bool:
    import pyarrow as pa

    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_numeric(t: pa.DataType) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _accepted_types(spec: ExpectationSpec) -> list[str]:
    if spec.type == "expect_column_values_to_be_of_type":
        return [spec.kwargs["type_"]]
    return list(spec.kwargs["type_list"])


def type_check_is_per_value(t: pa.DataType) -> bool:
    """GE checks the dtype of a typed column, each value of an object column."""
    return pandas_dtype_name(t) is None


def type_accepted(t: pa.DataType, spec: ExpectationSpec) -> bool:
    """Whether the column's type passes a type expectation (dtype, or each value's type)."""
    accepted = _accepted_types(spec)
    if type_check_is_per_value(t):
        value_type = object_value_type(t)
        return value_type is None or value_type in accepted
    if spec.type == "expect_column_values_to_be_of_type":
        return pandas_dtype_name(t) in accepted
    return _dtype_token(t) in accepted
