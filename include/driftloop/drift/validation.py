"""Validation of a drift check's partitions: a verdict per day, a summary per window.

A partition (one day, possibly several Parquet part files) is read from S3
(:mod:`.partition_read`) and checked against the contract's Great Expectations suite
(:mod:`.expectations`); data problems become reasons, never exceptions. A day without
Parquet files is *missing*, which is reported apart from *invalid*. Failing partitions are
quarantined (:mod:`.quarantine`); too few valid days in a window fails the run, naming them.

Heavy libraries (great_expectations, pandas, pyarrow) are imported lazily so that DAG files
may import this module at parse time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from driftloop.contracts import storage
from driftloop.contracts.storage import Partition
from driftloop.drift.expectations import (
    EMBEDDING_LEN_COLUMN,
    RESULT_FORMAT,
    ValidationContext,
    make_context,
    reasons_of,
    stable_result,
)
from driftloop.drift.partition_read import check_part_schemas, read_part, to_validation_frame

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from driftloop.config.drift_policy import Policy
    from driftloop.config.settings import Settings

log = logging.getLogger(__name__)


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
        table, error = read_part(s3, bucket, key, etag)
        if error is not None:
            read_errors.append(error)
        else:
            tables[key] = table
    read_errors += check_part_schemas(tables)
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
    df = to_validation_frame(combined)
    try:
        batch = ctx.batch_definition.get_batch(batch_parameters={"dataframe": df})
        raw = batch.validate(ctx.suite, result_format=RESULT_FORMAT).to_json_dict()
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
    stable = stable_result(raw, ctx.suite)
    reasons = pre_reasons + reasons_of(stable)
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


# --- the DAG step -------------------------------------------------------------------


def validate_windows(
    s3, settings: Settings, plan: Mapping[str, Any], policy: Policy
) -> dict[str, Any]:
    """Validate every partition, quarantine the failures, fail if too few days are valid."""
    from driftloop.drift.quarantine import quarantine_partition

    result: dict[str, Any] = {"valid": {}, "quarantined": [], "missing_days": plan["missing_days"]}
    summaries = []
    for window in ("current", "reference"):
        partitions = [Partition.from_dict(p) for p in plan["partitions"][window]]
        expected = plan[f"{window}_days"]
        verdicts = validate_partitions(s3, settings.bucket, partitions)
        by_day = {p.day: p for p in partitions}
        for verdict in verdicts:
            if not verdict.valid:
                uris = quarantine_partition(s3, settings.bucket, verdict, by_day[verdict.day])
                result["quarantined"].append(
                    {"window": window, "day": verdict.day, "reasons": verdict.reasons, "uris": uris}
                )
                log.warning("quarantined %s: %s", verdict.day, "; ".join(verdict.reasons))
        result["valid"][window] = [by_day[v.day].to_dict() for v in verdicts if v.valid]
        if expected:
            summaries.append((window, summarize(verdicts, expected, policy.min_valid_share)))
    for window, summary in summaries:
        summary.raise_if_insufficient(window)
    return result
