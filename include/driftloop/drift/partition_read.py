"""Reading a partition's Parquet parts from S3 for validation: exactly the listed content,
schemas compared across parts, a pandas frame GE can check (plus the embedding's length).

An unreadable part, or parts whose schemas disagree, become reasons naming the key; they
never raise. pyarrow and pandas are imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from driftloop.contracts import schema
from driftloop.drift.expectations import EMBEDDING_LEN_COLUMN

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa


def read_part(s3, bucket: str, key: str, etag: str | None) -> tuple[pa.Table | None, str | None]:
    """(table, None) or (None, reason) for one Parquet part file."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from botocore.exceptions import ClientError

    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if etag:
        kwargs["IfMatch"] = etag  # validate exactly the content the partition was listed with
    try:
        data = s3.get_object(**kwargs)["Body"].read()
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in ("PreconditionFailed", "412"):
            return None, f"{key}: changed since the partition was listed (etag {etag})"
        if code in ("NoSuchKey", "404", "NotFound"):
            return None, f"{key}: object disappeared since the partition was listed"
        raise
    if not data:
        return None, f"{key}: unreadable parquet (empty file, 0 bytes)"
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as err:
        return None, f"{key}: unreadable parquet ({type(err).__name__}: {err})"
    return table, None


def _type_str(t: pa.DataType) -> str:
    """Type string without list field names / nullability (they change on a Parquet round trip)."""
    import pyarrow as pa

    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{_type_str(t.value_type)}>[{t.list_size}]"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{_type_str(t.value_type)}>"
    return str(t)


def _signature(table_schema: pa.Schema) -> list[tuple[str, str]]:
    return [(f.name, _type_str(f.type)) for f in table_schema]


def _schema_differences(sig: list[tuple[str, str]], ref: list[tuple[str, str]]) -> list[str]:
    got, want = dict(sig), dict(ref)
    diffs = [f"missing column {name!r}" for name in want if name not in got]
    diffs += [f"unexpected column {name!r}" for name in got if name not in want]
    diffs += [
        f"column {name!r} is {got[name]} (other parts: {want[name]})"
        for name in want
        if name in got and got[name] != want[name]
    ]
    if not diffs and [n for n, _ in sig] != [n for n, _ in ref]:
        diffs.append("columns in a different order")
    return diffs


def check_part_schemas(tables: dict[str, pa.Table]) -> list[str]:
    """Reasons naming every part whose schema (names, types) differs from the others'."""
    sigs = {key: _signature(t.schema) for key, t in tables.items()}
    distinct = {tuple(s) for s in sigs.values()}
    if len(distinct) <= 1:
        return []
    # the reference: the part schema closest to the contract, then the most common one
    contract = _signature(schema.arrow_schema())
    counts: dict[tuple, int] = {}
    for s in sigs.values():
        counts[tuple(s)] = counts.get(tuple(s), 0) + 1
    ref = list(
        min(counts, key=lambda s: (len(_schema_differences(list(s), contract)), -counts[s], s))
    )
    reasons = []
    for key, sig in sigs.items():
        if sig != ref:
            diffs = _schema_differences(sig, ref)
            reasons.append(f"{key}: schema differs from the other parts ({'; '.join(diffs)})")
    return reasons


def _decode_dictionaries(table: pa.Table) -> pa.Table:
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(f.type.value_type))
    return table


def to_validation_frame(table: pa.Table):
    """pandas frame for GE: nullable ints stay ints, plus the derived embedding length."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _decode_dictionaries(table)
    if schema.EMBEDDING_COLUMN in table.column_names:
        emb = table.column(schema.EMBEDDING_COLUMN)
        t = emb.type
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            lengths = pc.list_value_length(emb).cast(pa.int64())
        else:
            lengths = pa.array([-1] * len(emb), type=pa.int64())
    else:
        lengths = pa.nulls(table.num_rows, type=pa.int64())
    nullable_ints = {
        pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(),
        pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }  # fmt: skip
    df = table.to_pandas(types_mapper=nullable_ints.get)
    if schema.EMBEDDING_COLUMN in schema.BY_NAME and EMBEDDING_LEN_COLUMN not in df.columns:
        df[EMBEDDING_LEN_COLUMN] = lengths.to_pandas(types_mapper=nullable_ints.get)
    return df
