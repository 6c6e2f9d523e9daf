"""Per-partition schema validation of inference logs, and quarantine of failing partitions.

The Great Expectations suite is derived from :mod:`driftloop.contracts.schema` (the data contract):
exact column set, type family per column, not-null on non-nullable columns, value ranges,
allowed categories, the camera-id pattern, the embedding length and at least one row.

A partition (one day, possibly several Parquet part files) is read from S3 with pyarrow.
An unreadable part, or parts whose schemas disagree, make the partition invalid with a
reason naming the key; they never raise. A day without Parquet files is *missing*, which is
reported apart from *invalid*.

Failing partitions are copied (server-side) to
``quarantine/inference/dt=DAY/{content_id}/`` together with ``validation_result.json``;
originals are never touched, and re-running writes the same keys and bytes.

Heavy libraries (great_expectations, pandas, pyarrow) are imported lazily so that DAG files
may import this module at parse time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from driftloop.contracts import schema, storage

if TYPE_CHECKING:  # pragma: no cover
    import great_expectations as gx
    import pyarrow as pa

# GE reads this when a context is created; nothing of ours should phone home.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

log = logging.getLogger(__name__)

SUITE_NAME = "driftloop_inference_partition"
RESULT_FILE_NAME = "validation_result.json"
#: derived column holding the embedding's per-row length (GE has no list-length expectation);
#: -1 where the embedding column is not a list type, null where the embedding is null
EMBEDDING_LEN_COLUMN = "_embedding_len"

_DATASOURCE_NAME = "driftloop_validation"
_ASSET_NAME = "inference_partition"
_BATCH_DEFINITION_NAME = "whole_partition"
# result format: enough for auditors (counts + a few examples), bounded in size
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 10}
_EXAMPLES_IN_REASON = 3

# pandas type names GE accepts per family of the contract's pyarrow type strings
_FLOAT_TYPES = ["float16", "float32", "float64", "Float32Dtype", "Float64Dtype", "float"]
_INT_TYPES = [
    *(f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)),
    *(f"{sign}Int{bits}Dtype" for sign in ("", "U") for bits in (8, 16, 32, 64)),
    "int",
]
_STRING_TYPES = ["str", "StringDtype"]
_BOOL_TYPES = ["bool", "BooleanDtype"]


class InsufficientValidData(ValueError):
    """Too few valid partitions in a window to compute drift statistics."""


# --------------------------------------------------------------------------------------
# results


@dataclass
class PartitionVerdict:
    """The outcome of validating one day's partition."""

    day: str
    content_id: str
    valid: bool
    reasons: list[str] = field(default_factory=list)
    #: JSON-serialisable: the (time-independent) GE validation result, or the read error(s)
    result: dict[str, Any] = field(default_factory=dict)
    row_count: int = 0
    #: no Parquet file for the day: reported as missing, not as invalid
    missing: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartitionVerdict:
        return cls(
            day=data["day"],
            content_id=data["content_id"],
            valid=bool(data["valid"]),
            reasons=list(data.get("reasons", [])),
            result=dict(data.get("result", {})),
            row_count=int(data.get("row_count", 0)),
            missing=bool(data.get("missing", False)),
        )


@dataclass
class WindowValidation:
    """Validation summary of a window of days."""

    valid_days: list[str]
    #: day -> reasons
    invalid: dict[str, list[str]]
    missing_days: list[str]
    valid_share: float
    min_valid_share: float
    #: day -> content id of the invalid partition (names the quarantine folder)
    invalid_content_ids: dict[str, str] = field(default_factory=dict)

    @property
    def n_days(self) -> int:
        return len(self.valid_days) + len(self.invalid) + len(self.missing_days)

    @property
    def sufficient(self) -> bool:
        if self.min_valid_share <= 0:
            return True
        # a tiny tolerance so that e.g. 4/5 against 0.8 counts as "at the threshold"
        return self.n_days > 0 and self.valid_share + 1e-9 >= self.min_valid_share

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, window_name: str) -> str:
        lines = [
            f"window {window_name!r}: {len(self.valid_days)}/{self.n_days} days valid "
            f"(valid share {self.valid_share:.3f}, required {self.min_valid_share:.3f})"
        ]
        for day in sorted(self.invalid):
            cid = self.invalid_content_ids.get(day, "")
            where = storage.inference_prefix(day) + (f" (content {cid})" if cid else "")
            lines.append(f"  invalid partition {where}: " + "; ".join(self.invalid[day]))
        if self.missing_days:
            lines.append("  missing days (no parquet files): " + ", ".join(self.missing_days))
        return "\n".join(lines)

    def raise_if_insufficient(self, window_name: str) -> None:
        if not self.sufficient:
            raise InsufficientValidData(self.describe(window_name))


# --------------------------------------------------------------------------------------
# the suite


def _type_expectation(column: schema.Column):
    import great_expectations.expectations as gxe

    dtype = column.dtype
    if dtype.startswith("timestamp"):
        # pandas reports tz-aware datetimes as Timestamp, tz-naive ones as datetime64
        return gxe.ExpectColumnValuesToBeOfType(column=column.name, type_="Timestamp")
    if dtype in ("double", "float", "halffloat") or dtype.startswith("float"):
        type_list = _FLOAT_TYPES
    elif dtype.startswith(("int", "uint")):
        type_list = _INT_TYPES
    elif dtype in ("string", "large_string", "utf8", "large_utf8"):
        type_list = _STRING_TYPES
    elif dtype == "bool":
        type_list = _BOOL_TYPES
    elif "list" in dtype:
        return None  # checked through the derived length column
    else:
        raise ValueError(f"no type expectation for column {column.name!r} of type {dtype!r}")
    return gxe.ExpectColumnValuesToBeInTypeList(column=column.name, type_list=list(type_list))


def build_suite() -> gx.ExpectationSuite:
    """The expectation suite of one inference-log partition, derived from schema.COLUMNS."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    expectations: list = []
    has_embedding = schema.EMBEDDING_COLUMN in schema.BY_NAME
    column_set = [*schema.COLUMN_NAMES, *([EMBEDDING_LEN_COLUMN] if has_embedding else [])]
    expectations.append(gxe.ExpectTableColumnsToMatchSet(column_set=column_set, exact_match=True))
    expectations.append(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    for col in schema.COLUMNS:
        type_exp = _type_expectation(col)
        if type_exp is not None:
            expectations.append(type_exp)
        if not col.nullable:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=col.name))
        if col.min_value is not None or col.max_value is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=col.name, min_value=col.min_value, max_value=col.max_value
                )
            )
        if col.name in schema.ALLOWED_CATEGORIES:
            expectations.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column=col.name, value_set=list(schema.ALLOWED_CATEGORIES[col.name])
                )
            )
        if col.name == "camera_id":
            expectations.append(
                gxe.ExpectColumnValuesToMatchRegex(column=col.name, regex=schema.CAMERA_ID_REGEX)
            )
    if has_embedding:
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=EMBEDDING_LEN_COLUMN,
                min_value=schema.EMBEDDING_DIM,
                max_value=schema.EMBEDDING_DIM,
            )
        )
    # built in one go: adding expectations one by one needs an active context
    suite = gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations)
    if len(suite.expectations) != len(expectations):  # GE drops invalid ones with a log line
        raise RuntimeError("some expectations of the inference suite were rejected by GE")
    return suite


# --------------------------------------------------------------------------------------
# the GE context (slow to import and set up: make one and reuse it)


@dataclass
class ValidationContext:
    """A GE ephemeral context with the pandas batch definition and the suite, reusable."""

    gx_context: Any = field(repr=False)
    batch_definition: Any = field(repr=False)
    suite: Any = field(repr=False)


def make_context(gx_context: Any = None) -> ValidationContext:
    """The GE ephemeral context (analytics and progress bars off), our pandas datasource and
    the suite. Slow-ish (GE import): make one per task and pass it to every validation.
    ``gx_context``: an existing GE context to register the datasource on instead."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx_context if gx_context is not None else gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    datasource = context.data_sources.add_or_update_pandas(_DATASOURCE_NAME)
    asset = datasource.add_dataframe_asset(_ASSET_NAME)
    batch_definition = asset.add_batch_definition_whole_dataframe(_BATCH_DEFINITION_NAME)
    return ValidationContext(context, batch_definition, build_suite())


# --------------------------------------------------------------------------------------
# reading


def _read_part(s3, bucket: str, key: str, etag: str | None) -> tuple[pa.Table | None, str | None]:
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


def _check_part_schemas(tables: dict[str, pa.Table]) -> list[str]:
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


def _to_pandas(table: pa.Table):
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
# GE result -> reasons, and a time-independent JSON result


def _strip_tracebacks(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_tracebacks(v) for k, v in obj.items() if k != "exception_traceback"}
    if isinstance(obj, list):
        return [_strip_tracebacks(v) for v in obj]
    return obj


def _exception_messages(info: Any) -> list[str]:
    if not isinstance(info, dict):
        return []
    if info.get("raised_exception"):
        return [str(info.get("exception_message"))]
    out: list[str] = []
    for value in info.values():
        if isinstance(value, dict):
            out.extend(_exception_messages(value))
    return out


def _suite_order(suite) -> dict[tuple[str, str], int]:
    order = {}
    for i, exp in enumerate(suite.expectations):
        cfg = exp.configuration
        order[(cfg.type, str(cfg.kwargs.get("column", "")))] = i
    return order


def _stable_result(result_dict: dict[str, Any], suite) -> dict[str, Any]:
    """GE's result without ids, timestamps and tracebacks, results in suite order."""
    order = _suite_order(suite)
    results = []
    for r in result_dict.get("results", []):
        r = _strip_tracebacks(dict(r))
        cfg = dict(r.get("expectation_config") or {})
        cfg.pop("id", None)
        kwargs = dict(cfg.get("kwargs") or {})
        kwargs.pop("batch_id", None)
        cfg["kwargs"] = kwargs
        r["expectation_config"] = cfg
        results.append(r)
    results.sort(
        key=lambda r: order.get(
            (
                r["expectation_config"].get("type", ""),
                str(r["expectation_config"]["kwargs"].get("column", "")),
            ),
            len(order),
        )
    )
    meta = result_dict.get("meta") or {}
    return {
        "success": bool(result_dict.get("success")),
        "suite_name": result_dict.get("suite_name"),
        "statistics": result_dict.get("statistics"),
        "results": results,
        "meta": {"great_expectations_version": meta.get("great_expectations_version")},
    }


def _examples(result: dict[str, Any]) -> str:
    values = result.get("partial_unexpected_list") or []
    if not values:
        return ""
    shown = ", ".join(repr(v) for v in values[:_EXAMPLES_IN_REASON])
    return f" (e.g. {shown})"


def _reasons(stable: dict[str, Any]) -> list[str]:
    """Human-readable reasons from a stable GE result, one per failed expectation."""
    failed = [r for r in stable["results"] if not r.get("success")]
    missing: set[str] = set()
    mistyped: set[str] = set()
    reasons: list[str] = []
    # structural failures first: they explain (and silence) follow-on errors on a column
    for r in failed:
        cfg = r["expectation_config"]
        if cfg["type"] == "expect_table_columns_to_match_set":
            mismatched = ((r.get("result") or {}).get("details") or {}).get("mismatched") or {}
            for name in mismatched.get("missing", []):
                if name == EMBEDDING_LEN_COLUMN:
                    continue
                reasons.append(f"column {name!r} missing")
                missing.add(name)
            for name in mismatched.get("unexpected", []):
                reasons.append(f"unexpected column {name!r}")
    for r in failed:
        cfg, res = r["expectation_config"], r.get("result") or {}
        kind, kwargs = cfg["type"], cfg["kwargs"]
        column = kwargs.get("column")
        errors = _exception_messages(r.get("exception_info"))
        if kind == "expect_table_columns_to_match_set":
            continue
        if column == EMBEDDING_LEN_COLUMN:
            column = schema.EMBEDDING_COLUMN
        if column in missing:
            continue  # already explained; GE raised "column not found" for these
        if column in mistyped and kind != "expect_column_values_to_not_be_null":
            continue  # value checks on a column of the wrong type only repeat the type error
        if kind == "expect_table_row_count_to_be_between":
            reasons.append(f"table has {res.get('observed_value', 0)} rows (at least 1 expected)")
            continue
        if errors:
            reasons.append(f"column {column!r}: {kind} failed with an error: {errors[0]}")
            continue
        count = res.get("unexpected_count")
        if kind in (
            "expect_column_values_to_be_in_type_list",
            "expect_column_values_to_be_of_type",
        ):
            contract = schema.BY_NAME[column].dtype if column in schema.BY_NAME else "?"
            if "observed_value" in res:
                got = f"dtype {res['observed_value']}"
            else:
                got = f"{count} values of another type{_examples(res)}"
            reasons.append(f"column {column!r}: wrong type, expected {contract}, got {got}")
            mistyped.add(column)
        elif kind == "expect_column_values_to_not_be_null":
            reasons.append(f"column {column!r}: {count} nulls")
        elif (
            kind == "expect_column_values_to_be_between"
            and cfg["kwargs"].get("column") == EMBEDDING_LEN_COLUMN
        ):
            lens = res.get("partial_unexpected_list") or []
            if lens and all(v == -1 for v in lens):
                reasons.append(f"column {column!r}: not a list column")
            else:
                reasons.append(
                    f"column {column!r}: {count} rows with length != {schema.EMBEDDING_DIM}"
                    f"{_examples(res)}"
                )
        elif kind == "expect_column_values_to_be_between":
            reasons.append(
                f"column {column!r}: {count} values outside "
                f"[{kwargs.get('min_value')}, {kwargs.get('max_value')}]{_examples(res)}"
            )
        elif kind == "expect_column_values_to_be_in_set":
            reasons.append(
                f"column {column!r}: {count} values not in {list(kwargs.get('value_set', []))}"
                f"{_examples(res)}"
            )
        elif kind == "expect_column_values_to_match_regex":
            reasons.append(
                f"column {column!r}: {count} values do not match {kwargs.get('regex')}"
                f"{_examples(res)}"
            )
        else:  # an expectation added to the suite without a dedicated message
            reasons.append(f"column {column!r}: {kind} failed ({count} unexpected)")
    return reasons


# --------------------------------------------------------------------------------------
# validating


def _missing_verdict(partition: storage.Partition) -> PartitionVerdict:
    prefix = storage.inference_prefix(partition.day)
    return PartitionVerdict(
        day=partition.day,
        content_id=partition.content_id,
        valid=False,
        reasons=[f"{prefix}: no parquet files"],
        result={"error": "missing", "prefix": prefix},
        row_count=0,
        missing=True,
    )


def validate_partition(
    s3, bucket: str, partition: storage.Partition, *, context: Any = None
) -> PartitionVerdict:
    """Validate one day's partition; data problems become reasons, never exceptions.

    ``context``: a :class:`ValidationContext` from :func:`make_context` (reuse it across
    partitions), a GE data context to wrap, or None to create one.
    """
    if not partition.keys:
        return _missing_verdict(partition)
    ctx = context if isinstance(context, ValidationContext) else make_context(context)
    etags = partition.etags or (None,) * len(partition.keys)

    tables: dict[str, pa.Table] = {}
    read_errors: list[str] = []
    for key, etag in zip(partition.keys, etags, strict=True):
        table, error = _read_part(s3, bucket, key, etag)
        if error is not None:
            read_errors.append(error)
        else:
            tables[key] = table
    read_errors += _check_part_schemas(tables)
    if read_errors:
        return PartitionVerdict(
            day=partition.day,
            content_id=partition.content_id,
            valid=False,
            reasons=read_errors,
            result={"error": "unreadable partition", "read_errors": read_errors},
            row_count=sum(t.num_rows for t in tables.values()),
        )

    import pyarrow as pa

    parts = list(tables.values())
    combined = pa.concat_tables([parts[0], *(t.cast(parts[0].schema) for t in parts[1:])])
    pre_reasons = []
    if EMBEDDING_LEN_COLUMN in combined.column_names:  # would collide with the derived column
        pre_reasons.append(f"unexpected column {EMBEDDING_LEN_COLUMN!r}")
        combined = combined.drop_columns([EMBEDDING_LEN_COLUMN])
    df = _to_pandas(combined)
    try:
        batch = ctx.batch_definition.get_batch(batch_parameters={"dataframe": df})
        raw = batch.validate(ctx.suite, result_format=_RESULT_FORMAT).to_json_dict()
    except Exception as err:  # data GE cannot digest: invalid, and say why
        log.exception("great_expectations failed on %s", storage.inference_prefix(partition.day))
        reason = f"{storage.inference_prefix(partition.day)}: validation error ({type(err).__name__}: {err})"
        return PartitionVerdict(
            day=partition.day,
            content_id=partition.content_id,
            valid=False,
            reasons=[reason],
            result={"error": "validation error", "message": reason},
            row_count=combined.num_rows,
        )
    stable = _stable_result(raw, ctx.suite)
    reasons = pre_reasons + _reasons(stable)
    valid = stable["success"] and not pre_reasons
    if pre_reasons:
        stable["driftloop_reasons"] = pre_reasons
    if not valid and not reasons:  # defensive: a failure must always explain itself
        reasons = ["great_expectations reported failure (see result)"]
    verdict = PartitionVerdict(
        day=partition.day,
        content_id=partition.content_id,
        valid=valid,
        reasons=reasons,
        result=stable,
        row_count=combined.num_rows,
    )
    log.info(
        "validated %s (%d rows, %d parts): %s",
        storage.inference_prefix(partition.day),
        verdict.row_count,
        len(partition.keys),
        "valid" if valid else "; ".join(reasons),
    )
    return verdict


def validate_partitions(
    s3,
    bucket: str,
    partitions: Iterable[storage.Partition],
    *,
    context: Any = None,
) -> list[PartitionVerdict]:
    """Validate several partitions with one GE context."""
    partitions = list(partitions)
    if not isinstance(context, ValidationContext) and any(p.keys for p in partitions):
        context = make_context(context)
    return [validate_partition(s3, bucket, p, context=context) for p in partitions]


# --------------------------------------------------------------------------------------
# quarantine


def quarantine_prefix(day: date | str, content_id: str) -> str:
    return f"{storage.QUARANTINE_PREFIX}/{storage.inference_prefix(day)}{content_id}/"


def quarantine_partition(
    s3, bucket: str, verdict: PartitionVerdict, partition: storage.Partition
) -> list[str]:
    """Copy a failing partition and its validation result under ``quarantine/``.

    Server-side copies, originals untouched; idempotent (same keys, same bytes on re-run).
    Returns the quarantine URIs: the copies, then ``validation_result.json``.
    """
    if verdict.valid:
        raise ValueError(f"partition {partition.day} is valid: nothing to quarantine")
    if not partition.keys:
        raise ValueError(f"partition {partition.day} has no parquet files: nothing to quarantine")
    if verdict.day != partition.day or verdict.content_id != partition.content_id:
        raise ValueError(
            f"verdict ({verdict.day}, {verdict.content_id}) is not about partition "
            f"({partition.day}, {partition.content_id})"
        )
    source_prefix = storage.inference_prefix(partition.day)
    dest_prefix = quarantine_prefix(partition.day, partition.content_id)
    uris = []
    for key, etag in zip(partition.keys, partition.etags, strict=True):
        name = (
            key[len(source_prefix) :] if key.startswith(source_prefix) else key.rsplit("/", 1)[-1]
        )
        dest = dest_prefix + name
        _copy_once(s3, bucket, key, etag, dest)
        uris.append(storage.s3_uri(bucket, dest))
    document = {
        "day": verdict.day,
        "content_id": verdict.content_id,
        "valid": verdict.valid,
        "reasons": verdict.reasons,
        "row_count": verdict.row_count,
        # not has_success: the marker may appear later, and this document must not change
        "partition": {
            "keys": list(partition.keys),
            "etags": list(partition.etags),
            "sizes": list(partition.sizes),
        },
        "result": verdict.result,
    }
    uris.append(storage.put_json_once(s3, bucket, dest_prefix + RESULT_FILE_NAME, document))
    log.warning(
        "quarantined %s under %s: %s", source_prefix, dest_prefix, "; ".join(verdict.reasons)
    )
    return uris


def _copy_once(s3, bucket: str, key: str, etag: str, dest: str) -> None:
    from botocore.exceptions import ClientError

    try:
        head = s3.head_object(Bucket=bucket, Key=dest)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    else:
        if (head.get("Metadata") or {}).get("source-etag") == etag:
            return  # copied by an earlier run
        raise storage.WriteOnceViolation(
            f"s3://{bucket}/{dest} already exists and is not a copy of {key} (etag {etag})"
        )
    s3.copy_object(
        Bucket=bucket,
        Key=dest,
        CopySource={"Bucket": bucket, "Key": key},
        CopySourceIfMatch=etag,  # copy exactly the content that was validated
        MetadataDirective="REPLACE",
        Metadata={"source-key": key, "source-etag": etag},
        ContentType="application/vnd.apache.parquet"
        if key.endswith(".parquet")
        else "application/octet-stream",
    )


# --------------------------------------------------------------------------------------
# summary


def summarize(
    verdicts: Sequence[PartitionVerdict],
    expected_days: Iterable[date | str],
    min_valid_share: float,
) -> WindowValidation:
    """Valid / invalid / missing days of a window; share = valid days / all days.

    All days are the expected days plus any day a verdict is about. An expected day without
    a verdict, or whose verdict is ``missing``, is a missing day.
    """
    by_day: dict[str, PartitionVerdict] = {}
    for v in verdicts:
        if v.day in by_day:
            raise ValueError(f"two verdicts for day {v.day}")
        by_day[v.day] = v
    days = sorted({storage.day_str(d) for d in expected_days} | set(by_day))
    valid_days, missing_days = [], []
    invalid: dict[str, list[str]] = {}
    invalid_ids: dict[str, str] = {}
    for day in days:
        v = by_day.get(day)
        if v is None or v.missing:
            missing_days.append(day)
        elif v.valid:
            valid_days.append(day)
        else:
            invalid[day] = list(v.reasons)
            invalid_ids[day] = v.content_id
    share = len(valid_days) / len(days) if days else 0.0
    return WindowValidation(
        valid_days=valid_days,
        invalid=invalid,
        missing_days=missing_days,
        valid_share=share,
        min_valid_share=float(min_valid_share),
        invalid_content_ids=invalid_ids,
    )
