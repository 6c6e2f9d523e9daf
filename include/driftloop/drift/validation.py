"""Validation of a drift check's partitions: a verdict per day, a summary per window.

A partition (one day, possibly several Parquet part files) is read from S3
(:mod:`.partition_read`) and checked against the contract's Great Expectations suite
(:mod:`.expectations`); data problems become reasons, never exceptions. A day without
Parquet files is *missing*, which is reported apart from *invalid*. Failing partitions are
quarantined (:mod:`.quarantine`); too few valid days in a window fails the run, naming them
(:mod:`.validation_results`). One partition's failure of any kind never stops the others;
only a store fault fails the step.

Heavy libraries (great_expectations, pandas, pyarrow) are imported lazily so that DAG files
may import this module at parse time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from driftloop.contracts import storage
from driftloop.contracts.storage import Partition
from driftloop.drift.expectations import (
    RESULT_FORMAT,
    ValidationContext,
    make_context,
    reasons_of,
    stable_result,
)
from driftloop.drift.partition_read import (
    check_part_schemas,
    content_digest,
    fetch_part,
    is_store_fault,
    nan_counts,
    parse_part,
    split_extra_columns,
    timestamps_outside_day,
    to_validation_frame,
)
from driftloop.drift.validation_results import (
    InsufficientValidData,
    PartitionVerdict,
    WindowValidation,
    summarize,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from driftloop.config.drift_policy import Policy
    from driftloop.config.settings import Settings

log = logging.getLogger(__name__)


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


@dataclass
class _Parts:
    """A partition's part files as read: tables (contract columns only) and what was seen."""

    tables: dict[str, pa.Table] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    #: {"key", "same_as", "sha256"} per part whose bytes equal an earlier part's
    duplicates: list[dict[str, str]] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)

    def findings(self) -> dict[str, Any]:
        return {"extra_columns": self.extra_columns, "duplicate_parts": self.duplicates}

    def warnings(self) -> list[str]:
        out = []
        if self.extra_columns:
            names = ", ".join(repr(c) for c in self.extra_columns)
            out.append(f"additive columns accepted, ignored by drift statistics: {names}")
        out += [
            f"{d['key']}: same content as {d['same_as']} (sha256 {d['sha256'][:16]}…), counted once"
            for d in self.duplicates
        ]
        return out


def _read_parts(s3, bucket: str, partition: storage.Partition) -> _Parts:
    parts = _Parts()
    etags = partition.etags or (None,) * len(partition.keys)
    seen: dict[str, str] = {}  # content digest -> first key with that content
    for key, etag in zip(partition.keys, etags, strict=True):
        data, error = fetch_part(s3, bucket, key, etag)
        if error is None:
            digest = content_digest(data)
            if digest in seen:  # the same file twice (a retried upload): its rows count once
                parts.duplicates.append({"key": key, "same_as": seen[digest], "sha256": digest})
                continue
            seen[digest] = key
            table, error = parse_part(key, data)
        if error is not None:
            parts.errors.append(error)
            continue
        table, extra = split_extra_columns(table)
        parts.extra_columns += [c for c in extra if c not in parts.extra_columns]
        parts.tables[key] = table
    parts.errors += check_part_schemas(parts.tables)
    return parts


def _content_reasons(table: pa.Table, day: str) -> tuple[list[str], dict[str, Any]]:
    """Reasons (and result entries) of the checks GE cannot make on the pandas frame."""
    import pyarrow as pa

    reasons = []
    nans = nan_counts(table)
    for name, n in nans.items():
        rows = "" if pa.types.is_floating(table.schema.field(name).type) else "rows with "
        reasons.append(f"column {name!r}: {n} {rows}NaN values")
    outside = timestamps_outside_day(table, day)
    if outside:
        reasons.append(
            f"column {outside['column']!r}: {outside['count']} rows outside the partition's day "
            f"[{outside['day_start']}, {outside['day_end']}) (e.g. {outside['examples'][0]})"
        )
    return reasons, {"NaN": nans, "timestamps_outside_day": outside}


def validate_partition(
    s3, bucket: str, partition: storage.Partition, *, context: Any = None
) -> PartitionVerdict:
    """Validate one day's partition; data problems become reasons, never exceptions.

    ``context``: a :class:`ValidationContext` from :func:`make_context` (reuse it across
    partitions), a GE data context to wrap, or None to create one. Store faults raise.
    """
    if not partition.keys:
        return _missing_verdict(partition)
    ctx = context if isinstance(context, ValidationContext) else make_context(context)
    parts = _read_parts(s3, bucket, partition)
    common = {"day": partition.day, "content_id": partition.content_id}
    seen = {
        "warnings": parts.warnings(),
        "extra_columns": parts.extra_columns,
        "duplicate_keys": [d["key"] for d in parts.duplicates],
    }
    if parts.errors:
        return PartitionVerdict(
            **common,
            valid=False,
            reasons=parts.errors,
            result={
                "error": "unreadable partition",
                "read_errors": parts.errors,
                **parts.findings(),
            },
            row_count=sum(t.num_rows for t in parts.tables.values()),
            **seen,
        )

    import pyarrow as pa

    tables = list(parts.tables.values())
    combined = pa.concat_tables([tables[0], *(t.cast(tables[0].schema) for t in tables[1:])])
    content_reasons, content_result = _content_reasons(combined, partition.day)
    scalar_nans = {  # NaN in a list column does not make its row null for GE
        k: v
        for k, v in content_result["NaN"].items()
        if pa.types.is_floating(combined.schema.field(k).type)
    }
    df = to_validation_frame(combined)
    where = storage.inference_prefix(partition.day)
    try:
        batch = ctx.batch_definition.get_batch(batch_parameters={"dataframe": df})
        raw = batch.validate(ctx.suite, result_format=RESULT_FORMAT).to_json_dict()
    except Exception as err:  # data GE cannot digest: invalid, and say why
        log.exception("great_expectations failed on %s", where)
        reason = f"{where}: validation error ({type(err).__name__}: {err})"
        return PartitionVerdict(
            **common,
            valid=False,
            reasons=[reason],
            result={"error": "validation error", "message": reason, **parts.findings()},
            row_count=combined.num_rows,
            **seen,
        )
    stable = stable_result(raw, ctx.suite)
    reasons = reasons_of(stable, scalar_nans) + content_reasons
    valid = stable["success"] and not content_reasons
    if not valid and not reasons:  # defensive: a failure must always explain itself
        reasons = ["great_expectations reported failure (see result)"]
    stable.update(parts.findings(), **content_result, warnings=seen["warnings"])
    verdict = PartitionVerdict(
        **common, valid=valid, reasons=reasons, result=stable, row_count=combined.num_rows, **seen
    )
    log.info(
        "validated %s (%d rows, %d parts): %s%s",
        where,
        verdict.row_count,
        len(partition.keys),
        "valid" if valid else "; ".join(reasons),
        "".join(f"; warning: {w}" for w in verdict.warnings),
    )
    return verdict


def validate_partition_isolated(
    s3, bucket: str, partition: storage.Partition, *, context: Any = None
) -> PartitionVerdict:
    """:func:`validate_partition`, where any failure caused by this partition makes it
    invalid with the failure as its reason, so it never stops the other partitions. Store
    faults (:func:`is_store_fault`) still raise: the task fails and Airflow retries it."""
    try:
        return validate_partition(s3, bucket, partition, context=context)
    except Exception as err:
        if is_store_fault(err):
            raise
        where = storage.inference_prefix(partition.day)
        log.exception("validating %s failed; setting the partition aside", where)
        reason = f"{where}: validation failed ({type(err).__name__}: {err})"
        return PartitionVerdict(
            day=partition.day,
            content_id=_content_id_or_blank(partition),
            valid=False,
            reasons=[reason],
            result={"error": "validation failed", "message": reason},
        )


def _content_id_or_blank(partition: storage.Partition) -> str:
    """The partition's content id, or "" for a record too broken to have one (keys and
    ETags that do not pair up): the verdict must still be made."""
    try:
        return partition.content_id
    except ValueError:
        return ""


def validate_partitions(
    s3,
    bucket: str,
    partitions: Iterable[storage.Partition],
    *,
    context: Any = None,
) -> list[PartitionVerdict]:
    """Validate several partitions with one GE context; one partition's failure never stops
    the others (:func:`validate_partition_isolated`)."""
    partitions = list(partitions)
    if not isinstance(context, ValidationContext) and any(p.keys for p in partitions):
        context = make_context(context)
    return [validate_partition_isolated(s3, bucket, p, context=context) for p in partitions]


# --- the DAG step -------------------------------------------------------------------


def validate_windows(
    s3, settings: Settings, plan: Mapping[str, Any], policy: Policy
) -> dict[str, Any]:
    """Validate every partition, quarantine the failures, fail if too few days are valid.

    One partition's failure of any kind — bad content, a crash while validating it, a
    quarantine copy S3 refuses — sets that partition aside with a reason and never stops the
    others; a store fault (:func:`is_store_fault`) fails the task so Airflow retries it.
    Returns ``valid`` (per window, the partitions to profile: duplicate part files left
    out), ``quarantined`` (window, day, reasons, uris, and ``quarantine_error`` when the copy
    failed), ``warnings`` (window, day, warnings of valid partitions: additive columns,
    duplicate part files) and ``missing_days``."""
    result: dict[str, Any] = {
        "valid": {},
        "quarantined": [],
        "warnings": [],
        "missing_days": plan["missing_days"],
    }
    summaries = []
    context = None
    for window in ("current", "reference"):
        partitions = [Partition.from_dict(p) for p in plan["partitions"][window]]
        if context is None and any(p.keys for p in partitions):
            context = make_context()
        verdicts = [
            validate_partition_isolated(s3, settings.bucket, p, context=context) for p in partitions
        ]
        result["valid"][window] = []
        for partition, verdict in zip(partitions, verdicts, strict=True):
            if verdict.valid:
                counted = _without_keys(partition, verdict.duplicate_keys)
                result["valid"][window].append(counted.to_dict())
                if verdict.warnings:
                    entry = {"window": window, "day": verdict.day, "warnings": verdict.warnings}
                    result["warnings"].append(entry)
            elif not verdict.missing:
                entry = _quarantine_isolated(s3, settings.bucket, verdict, partition)
                result["quarantined"].append({"window": window, **entry})
        expected = plan[f"{window}_days"]
        if expected:
            summaries.append((window, summarize(verdicts, expected, policy.min_valid_share)))
    for window, summary in summaries:
        summary.raise_if_insufficient(window)
    return result


def _without_keys(partition: Partition, keys: Sequence[str]) -> Partition:
    """The partition without the given part files (duplicates: their rows count once)."""
    if not keys:
        return partition
    drop = set(keys)
    kept = [i for i, key in enumerate(partition.keys) if key not in drop]
    return Partition(
        day=partition.day,
        keys=tuple(partition.keys[i] for i in kept),
        etags=tuple(partition.etags[i] for i in kept) if partition.etags else (),
        sizes=tuple(partition.sizes[i] for i in kept) if partition.sizes else (),
        has_success=partition.has_success,
    )


def _quarantine_isolated(
    s3, bucket: str, verdict: PartitionVerdict, partition: Partition
) -> dict[str, Any]:
    """Quarantine a failing partition; a failure the partition caused (a key S3 cannot take,
    a foreign object at the quarantine key) is recorded, the partition stays left out, and
    the other partitions go on. Store faults raise."""
    from driftloop.drift.quarantine import quarantine_partition

    entry: dict[str, Any] = {"day": verdict.day, "reasons": verdict.reasons, "uris": []}
    try:
        entry["uris"] = quarantine_partition(s3, bucket, verdict, partition)
    except Exception as err:
        if is_store_fault(err):
            raise
        log.exception("quarantining %s failed", storage.inference_prefix(verdict.day))
        entry["quarantine_error"] = f"{type(err).__name__}: {err}"
    log.warning("left out %s: %s", verdict.day, "; ".join(verdict.reasons))
    return entry


__all__ = [
    "InsufficientValidData",
    "PartitionVerdict",
    "WindowValidation",
    "summarize",
    "validate_partition",
    "validate_partition_isolated",
    "validate_partitions",
    "validate_windows",
]
