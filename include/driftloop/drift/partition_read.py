"""Reading a partition's Parquet parts from S3 for validation: exactly the listed content,
part by part and batch by batch (:func:`open_part`, :func:`iter_part_batches`), schemas
compared across parts, a pandas frame GE can check (plus the embedding's length), and the
checks GE cannot express: rows outside the partition's day and NaN values.

An unreadable part, or parts whose schemas disagree, become reasons naming the key; they
never raise. A store fault (a 500, a reset connection, a refused permission) does raise:
:func:`is_store_fault` tells the two apart, so that one partition's bad content never stops
the others while a sick store still fails the task for Airflow to retry. pyarrow and pandas
are imported inside the functions.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from driftloop.contracts import schema
from driftloop.contracts.stores import is_not_found
from driftloop.drift.expectations import EMBEDDING_LEN_COLUMN

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    import pyarrow.parquet as pq

#: S3 answers about one object of a partition (changed, archived to a cold storage class, a
#: key or metadata S3 cannot take), not about the store's health: retrying the task cannot
#: help, so the partition is set aside instead
_CONTENT_ERROR_CODES = frozenset(
    {
        "PreconditionFailed",
        "412",
        "InvalidObjectState",
        "KeyTooLongError",
        "MetadataTooLarge",
        "InvalidObjectName",
    }
)
#: rows outside the day shown as examples
OUTSIDE_DAY_EXAMPLES = 3


def is_store_fault(err: BaseException) -> bool:
    """Whether ``err`` is a fault of the store or the worker (retry the task) rather than
    something one partition's content caused (set that partition aside, go on with the rest).

    Store faults: S3 answers other than not-found and the content errors above (5xx,
    throttling, access denied ...), connection and timeout errors, running out of memory.
    Everything else — a request botocore refuses to build from the partition's key, a parse
    error, a write-once conflict in the quarantine — is about the partition."""
    from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

    if isinstance(err, ParamValidationError):
        return False  # e.g. a key or metadata value S3 cannot carry: the partition's doing
    if isinstance(err, ClientError):
        code = str(err.response.get("Error", {}).get("Code", ""))
        return not (is_not_found(err) or code in _CONTENT_ERROR_CODES)
    return isinstance(err, BotoCoreError | ConnectionError | TimeoutError | MemoryError)


def fetch_part(s3, bucket: str, key: str, etag: str | None) -> tuple[bytes | None, str | None]:
    """(bytes, None) or (None, reason) for one part file, exactly as listed (``IfMatch``)."""
    from botocore.exceptions import ClientError

    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if etag:
        kwargs["IfMatch"] = etag  # validate exactly the content the partition was listed with
    try:
        return s3.get_object(**kwargs)["Body"].read(), None
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in ("PreconditionFailed", "412"):
            return None, f"{key}: changed since the partition was listed (etag {etag})"
        if is_not_found(err):
            return None, f"{key}: object disappeared since the partition was listed"
        if not is_store_fault(err):  # e.g. archived to a cold storage class
            message = err.response.get("Error", {}).get("Message", "")
            return None, f"{key}: cannot be read ({code}: {message})"
        raise


def content_digest(data: bytes) -> str:
    """SHA-256 of a part's bytes: equal digests, the same file (ETags are no content hash
    for multipart or SSE-KMS uploads, and the bytes are in memory anyway)."""
    return hashlib.sha256(data).hexdigest()


def _unreadable(key: str, err: BaseException) -> str:
    return f"{key}: unreadable parquet ({type(err).__name__}: {err})"


#: errors of a Parquet file's bytes (as opposed to the store's)
PARQUET_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError)


def parse_part(key: str, data: bytes) -> tuple[pa.Table | None, str | None]:
    """(table, None) or (None, reason) for one part file's bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not data:
        return None, f"{key}: unreadable parquet (empty file, 0 bytes)"
    try:
        return pq.read_table(pa.BufferReader(data)), None
    except (pa.ArrowException, *PARQUET_ERRORS) as err:
        return None, _unreadable(key, err)


def open_part(key: str, data: bytes) -> tuple[pq.ParquetFile | None, str | None]:
    """(file, None) or (None, reason) for one part file's bytes: its footer read, ready to
    iterate record batches (:func:`iter_part_batches`) without copying the bytes.

    A file that cannot be opened gets the reason :func:`parse_part` gives (``read_table``'s
    words: they name the input source); it fails at the footer, so asking costs nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not data:
        return None, f"{key}: unreadable parquet (empty file, 0 bytes)"
    try:
        return pq.ParquetFile(pa.BufferReader(data)), None
    except (pa.ArrowException, *PARQUET_ERRORS) as err:
        _, reason = parse_part(key, data)
        return None, reason or _unreadable(key, err)


def iter_part_batches(key: str, parquet: pq.ParquetFile, columns: list[str], batch_size: int):
    """Record batches of ``columns``; yields ``(batch, None)``, then ``(None, reason)`` if a
    page cannot be decoded (the batches before it have been yielded).

    ``ParquetFile.iter_batches`` decodes page by page: at 1M rows in two row groups it peaks
    at about a fifth of what a dataset scan of the same bytes holds (which decodes a whole
    row group at once)."""
    import pyarrow as pa

    try:
        for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
            yield batch, None
    except (pa.ArrowException, *PARQUET_ERRORS) as err:
        yield None, _unreadable(key, err)


def read_part(s3, bucket: str, key: str, etag: str | None) -> tuple[pa.Table | None, str | None]:
    """(table, None) or (None, reason) for one Parquet part file."""
    data, error = fetch_part(s3, bucket, key, etag)
    if error is not None:
        return None, error
    return parse_part(key, data)


def split_extra_columns(table: pa.Table) -> tuple[pa.Table, list[str]]:
    """The table without the columns the contract does not name, and those columns' names.

    Additive columns are accepted (the serving side may add a field before the contract
    knows it); drift statistics read only the contract's columns, so they are dropped here."""
    extra = [name for name in table.column_names if name not in schema.BY_NAME]
    return (table.drop_columns(extra) if extra else table), extra


def contract_columns(table_schema: pa.Schema) -> tuple[pa.Schema, list[str]]:
    """:func:`split_extra_columns` on a schema: the contract's fields, and the other names."""
    import pyarrow as pa

    extra = [name for name in table_schema.names if name not in schema.BY_NAME]
    kept = [f for f in table_schema if f.name in schema.BY_NAME]
    return pa.schema(kept), extra


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


def signature(table_schema: pa.Schema) -> tuple[tuple[str, str], ...]:
    """Names and types of a schema, as part schemas are compared (list field names and
    nullability left out: they change on a Parquet round trip)."""
    return tuple(_signature(table_schema))


def check_part_schemas(schemas: dict[str, pa.Schema]) -> list[str]:
    """Reasons naming every part whose schema (names, types) differs from the others'."""
    sigs = {key: _signature(s) for key, s in schemas.items()}
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


# --------------------------------------------------------------------------------------
# checks GE cannot express on the pandas frame


def day_bounds(day: str) -> tuple[datetime, datetime]:
    """[start, end) of a partition's day in UTC."""
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return start, start + timedelta(days=1)


def timestamps_outside_day(table: pa.Table, day: str) -> dict[str, Any] | None:
    """Rows whose time column falls outside ``[day, day + 1)`` UTC, or None when all fall
    inside (or the column is missing / not a timestamp: GE reports that). A tz-naive column
    is read as UTC."""
    import pyarrow as pa
    import pyarrow.compute as pc

    name = schema.TIME_COLUMN
    if name not in table.column_names or not pa.types.is_timestamp(table.schema.field(name).type):
        return None
    column = table.column(name)
    start, end = day_bounds(day)
    tz_aware = column.type.tz is not None

    def bound(moment: datetime):
        return pa.scalar(moment if tz_aware else moment.replace(tzinfo=None), type=column.type)

    outside = pc.or_(pc.less(column, bound(start)), pc.greater_equal(column, bound(end)))
    count = int(pc.sum(outside).as_py() or 0)  # nulls are neither: the not-null check says so
    if not count:
        return None
    examples = pc.filter(column, pc.fill_null(outside, False)).slice(0, OUTSIDE_DAY_EXAMPLES)
    return {
        "column": name,
        "count": count,
        "day_start": start.isoformat(),
        "day_end": end.isoformat(),
        # arrow's own formatting: Python's datetime stops at year 9999, a timestamp does not
        "examples": examples.cast(pa.string()).to_pylist(),
    }


def nan_counts(table: pa.Table | pa.RecordBatch) -> dict[str, int]:
    """Rows holding a float NaN, per contract column of a float (or list of float) type.

    NaN is no measurement: in a feature it would poison every histogram and distance, so it
    is invalid, and reported as NaN — pandas, and so GE, would count it among the nulls."""
    import pyarrow as pa
    import pyarrow.compute as pc

    counts: dict[str, int] = {}
    for name in table.column_names:
        if name not in schema.BY_NAME:
            continue
        column = table.column(name)
        t = column.type
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        if pa.types.is_floating(t):
            n = int(pc.sum(pc.is_nan(column)).as_py() or 0)
        elif (
            pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
        ) and pa.types.is_floating(t.value_type):
            n = 0
            for chunk in chunks:  # parent indices count from each chunk's start
                flat = pc.list_flatten(chunk)
                nan = pc.is_nan(flat)
                if not pc.any(nan).as_py():  # the usual case: no NaN, no per-row count
                    continue
                parents = pc.list_parent_indices(chunk)
                n += int(pc.count_distinct(pc.filter(parents, nan)).as_py())
        else:
            continue
        if n:
            counts[name] = n
    return counts
