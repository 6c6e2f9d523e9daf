"""Validation of a drift check's partitions: a verdict per day, a summary per window.

A partition (one day, possibly several Parquet part files) is read from S3
(:mod:`.partition_read`) and checked against the contract's Great Expectations suite
(:mod:`.expectations`); data problems become reasons, never exceptions. A day without
Parquet files is *missing*, which is reported apart from *invalid*. Failing partitions are
quarantined (:mod:`.quarantine`); too few valid days in a window fails the run, naming them
(:mod:`.validation_results`). One partition's failure of any kind never stops the others;
only a store fault fails the step.

Two engines evaluate the suite. The default reads a partition part by part and record batch
by record batch and evaluates the suite with Arrow compute (:mod:`.arrow_validation`):
memory is one part's bytes and one batch. GE's pandas validator (pass a GE
:class:`~.expectations.ValidationContext`) reads the whole partition into one frame; it is
kept as the reference the Arrow engine is tested against. Both give the same verdicts,
reasons and result documents.

Verdicts are cached by content, like profiles: ``validation/verdicts/{suite id}/dt=DAY/
{content id}.json``, written once. The suite id hashes the expectations, the contract and
the validator's version, so a changed suite validates again; the content id changes whenever
a part file does. A daily run therefore reads only the new or changed partitions.
Verdicts that depend on more than the bytes (a part that disappeared, changed since the
listing, or sits in a cold storage class) are never cached.

The DAG validates each planned partition in its own mapped task
(:func:`validate_planned_partition`) and reduces their outcomes to one document
(:func:`summarize_validations`); :func:`validate_windows` does both in one process.

Heavy libraries (great_expectations, pandas, pyarrow) are imported lazily so that DAG files
may import this module at parse time.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from driftloop.contracts import schema, storage
from driftloop.drift.expectations import (
    RESULT_FORMAT,
    SUITE_NAME,
    ExpectationSpec,
    ValidationContext,
    make_context,
    reasons_of,
    stable_result,
    suite_spec,
)
from driftloop.drift.partition_read import (
    OUTSIDE_DAY_EXAMPLES,
    check_part_schemas,
    contract_columns,
    is_store_fault,
    iter_part_batches,
    nan_counts,
    open_part,
    signature,
    timestamps_outside_day,
    to_validation_frame,
)
from driftloop.drift.validation_results import (
    PartitionVerdict,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa


from driftloop.drift.partition_parts import Parts, read_parts

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# the Arrow engine's suite and its identity

#: how many rows one record batch holds (the unit of memory of the Arrow engine)
BATCH_ROWS = 65_536
#: cached verdicts: ``{prefix}/{suite id}/dt=DAY/{content id}.json``
VERDICTS_PREFIX = "validation/verdicts"
VERDICT_FORMAT = "driftloop.verdict/1"


@dataclass(frozen=True)
class ArrowSuite:
    """The suite as the Arrow engine evaluates it, and its identity (what cached verdicts
    are keyed by). Cheap to make: no GE import."""

    specs: tuple[ExpectationSpec, ...]
    suite_id: str

    @classmethod
    def from_contract(cls) -> ArrowSuite:
        specs = suite_spec()
        return cls(specs, suite_identity(specs))


def suite_identity(specs: Sequence[ExpectationSpec]) -> str:
    """A hash of everything a verdict depends on besides the data: the expectations, the
    contract (columns, types, ranges, the time column the day check reads) and the version
    of the validator. Any change gives a new id, so no verdict of the old suite is reused."""
    from driftloop.drift.arrow_validation import VALIDATOR_VERSION

    document = {
        "suite": SUITE_NAME,
        "expectations": [s.to_dict() for s in specs],
        "contract": [asdict(c) for c in schema.COLUMNS],
        "time_column": schema.TIME_COLUMN,
        "embedding_column": schema.EMBEDDING_COLUMN,
        "validator": VALIDATOR_VERSION,
    }
    return hashlib.sha256(storage.dumps_canonical(document)).hexdigest()[:16]


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
class _ContentChecks:
    """The checks GE cannot make on the pandas frame, added up over batches: NaN values and
    rows outside the partition's day."""

    day: str
    nan: dict[str, int] = field(default_factory=dict)
    outside: dict[str, Any] | None = None

    def add(self, batch) -> None:
        for name, n in nan_counts(batch).items():
            self.nan[name] = self.nan.get(name, 0) + n
        found = timestamps_outside_day(batch, self.day)
        if found is None:
            return
        if self.outside is None:
            self.outside = found
        else:
            self.outside["count"] += found["count"]
            room = OUTSIDE_DAY_EXAMPLES - len(self.outside["examples"])
            self.outside["examples"] += found["examples"][: max(room, 0)]

    def reasons(self, columns: Mapping[str, pa.DataType]) -> list[str]:
        import pyarrow as pa

        reasons = []
        for name in columns:  # in column order, whichever batch found NaN first
            if name not in self.nan:
                continue
            rows = "" if pa.types.is_floating(columns[name]) else "rows with "
            reasons.append(f"column {name!r}: {self.nan[name]} {rows}NaN values")
        outside = self.outside
        if outside:
            reasons.append(
                f"column {outside['column']!r}: {outside['count']} rows outside the partition's "
                f"day [{outside['day_start']}, {outside['day_end']}) (e.g. {outside['examples'][0]})"
            )
        return reasons

    def result(self) -> dict[str, Any]:
        return {"NaN": dict(sorted(self.nan.items())), "timestamps_outside_day": self.outside}

    def scalar_nans(self, columns: Mapping[str, pa.DataType]) -> dict[str, int]:
        """NaN counts of the float columns (in a list column NaN does not make its row null
        for GE, so only these are taken out of GE's null counts)."""
        import pyarrow as pa

        return {k: v for k, v in self.nan.items() if pa.types.is_floating(columns[k])}


@dataclass
class _Validated:
    verdict: PartitionVerdict
    #: whether the verdict follows from the partition's bytes alone (and may be cached)
    cacheable: bool


def _unreadable_verdict(partition: storage.Partition, parts: Parts, seen: dict) -> _Validated:
    verdict = PartitionVerdict(
        day=partition.day,
        content_id=partition.content_id,
        valid=False,
        reasons=parts.errors,
        result={"error": "unreadable partition", "read_errors": parts.errors, **parts.findings()},
        row_count=parts.rows,
        **seen,
    )
    return _Validated(verdict, cacheable=not parts.fetch_failed)


def _seen(parts: Parts) -> dict[str, Any]:
    return {
        "warnings": parts.warnings(),
        "extra_columns": parts.extra_columns,
        "duplicate_keys": [d["key"] for d in parts.duplicates],
    }


def _verdict(
    partition: storage.Partition,
    parts: Parts,
    stable: dict[str, Any],
    content: _ContentChecks,
    columns: Mapping[str, pa.DataType],
) -> PartitionVerdict:
    """The verdict of a readable partition from its suite result and content checks."""
    content_reasons = content.reasons(columns)
    reasons = reasons_of(stable, content.scalar_nans(columns)) + content_reasons
    valid = stable["success"] and not content_reasons
    if not valid and not reasons:  # defensive: a failure must always explain itself
        reasons = ["great_expectations reported failure (see result)"]
    seen = _seen(parts)
    stable.update(parts.findings(), **content.result(), warnings=seen["warnings"])
    verdict = PartitionVerdict(
        day=partition.day,
        content_id=partition.content_id,
        valid=valid,
        reasons=reasons,
        result=stable,
        row_count=parts.rows,
        **seen,
    )
    log.info(
        "validated %s (%d rows, %d parts): %s%s",
        storage.inference_prefix(partition.day),
        verdict.row_count,
        len(partition.keys),
        "valid" if valid else "; ".join(reasons),
        "".join(f"; warning: {w}" for w in verdict.warnings),
    )
    return verdict


def _validate_with_arrow(s3, bucket: str, partition: storage.Partition, suite: ArrowSuite):
    """One pass over the partition, part by part, batch by batch: the suite and the content
    checks evaluated with Arrow compute. Memory: one part's bytes and one record batch."""
    from driftloop.drift.arrow_validation import SuiteEvaluation, value_type_of

    parts = Parts()
    evaluation: SuiteEvaluation | None = None
    first_signature = None
    content = _ContentChecks(partition.day)
    for key, data in parts.fetch(s3, bucket, partition):
        parquet, error = open_part(key, data)
        if error is not None:
            parts.errors.append(error)
            continue
        kept, extra = contract_columns(parquet.schema_arrow)
        parts.note_extra(extra)
        if evaluation is None:
            columns = {f.name: value_type_of(f.type) for f in kept}
            evaluation = SuiteEvaluation(suite.specs, columns)
            first_signature = signature(kept)
        # a part whose schema differs makes the partition unreadable (check_part_schemas
        # says why); it is still decoded, so that a corrupt page in it is reported too
        evaluate = signature(kept) == first_signature
        rows, failed = 0, False
        for batch, error in iter_part_batches(key, parquet, kept.names, BATCH_ROWS):
            if error is not None:
                parts.errors.append(error)
                failed = True
                break
            rows += batch.num_rows
            if evaluate:
                evaluation.add_batch(batch)
                content.add(batch)
        if not failed:
            parts.schemas[key] = kept
            parts.rows += rows
        del parquet, data
    parts.errors += check_part_schemas(parts.schemas)
    if parts.errors:
        return _unreadable_verdict(partition, parts, _seen(parts))
    stable = evaluation.result()
    stable["meta"]["suite_id"] = suite.suite_id
    verdict = _verdict(partition, parts, stable, content, evaluation.columns)
    return _Validated(verdict, cacheable=True)


def _validate_with_gx(s3, bucket: str, partition: storage.Partition, ctx: ValidationContext):
    """GE's pandas validator on the whole partition as one frame (the reference engine)."""
    import pyarrow as pa

    parts = read_parts(s3, bucket, partition)
    seen = _seen(parts)
    if parts.errors:
        return _unreadable_verdict(partition, parts, seen)
    tables = list(parts.tables.values())
    combined = pa.concat_tables([tables[0], *(t.cast(tables[0].schema) for t in tables[1:])])
    content = _ContentChecks(partition.day)
    content.add(combined)
    columns = {f.name: f.type for f in combined.schema}
    df = to_validation_frame(combined)
    where = storage.inference_prefix(partition.day)
    try:
        batch = ctx.batch_definition.get_batch(batch_parameters={"dataframe": df})
        raw = batch.validate(ctx.suite, result_format=RESULT_FORMAT).to_json_dict()
    except Exception as err:  # data GE cannot digest: invalid, and say why
        log.exception("great_expectations failed on %s", where)
        reason = f"{where}: validation error ({type(err).__name__}: {err})"
        verdict = PartitionVerdict(
            day=partition.day,
            content_id=partition.content_id,
            valid=False,
            reasons=[reason],
            result={"error": "validation error", "message": reason, **parts.findings()},
            row_count=combined.num_rows,
            **seen,
        )
        return _Validated(verdict, cacheable=False)
    stable = stable_result(raw, ctx.suite)
    return _Validated(_verdict(partition, parts, stable, content, columns), cacheable=True)


def _validate(s3, bucket: str, partition: storage.Partition, context: Any) -> _Validated:
    if not partition.keys:
        return _Validated(_missing_verdict(partition), cacheable=False)
    if context is None or isinstance(context, ArrowSuite):
        return _validate_with_arrow(s3, bucket, partition, context or ArrowSuite.from_contract())
    ctx = context if isinstance(context, ValidationContext) else make_context(context)
    return _validate_with_gx(s3, bucket, partition, ctx)


def validate_partition(
    s3, bucket: str, partition: storage.Partition, *, context: Any = None
) -> PartitionVerdict:
    """Validate one day's partition; data problems become reasons, never exceptions.

    ``context`` picks the engine: None or an :class:`ArrowSuite` (reuse it across
    partitions) for the Arrow engine; a :class:`ValidationContext` from :func:`make_context`,
    or a GE data context to wrap, for GE's pandas validator. Store faults raise.
    """
    return _validate(s3, bucket, partition, context).verdict


def _isolated(s3, bucket: str, partition: storage.Partition, context: Any) -> _Validated:
    try:
        return _validate(s3, bucket, partition, context)
    except Exception as err:
        if is_store_fault(err):
            raise
        where = storage.inference_prefix(partition.day)
        log.exception("validating %s failed; setting the partition aside", where)
        reason = f"{where}: validation failed ({type(err).__name__}: {err})"
        verdict = PartitionVerdict(
            day=partition.day,
            content_id=_content_id_or_blank(partition),
            valid=False,
            reasons=[reason],
            result={"error": "validation failed", "message": reason},
        )
        return _Validated(verdict, cacheable=False)


def validate_partition_isolated(
    s3, bucket: str, partition: storage.Partition, *, context: Any = None
) -> PartitionVerdict:
    """:func:`validate_partition`, where any failure caused by this partition makes it
    invalid with the failure as its reason, so it never stops the other partitions. Store
    faults (:func:`is_store_fault`) still raise: the task fails and Airflow retries it."""
    return _isolated(s3, bucket, partition, context).verdict


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
    """Validate several partitions with one suite (or GE context); one partition's failure
    never stops the others (:func:`validate_partition_isolated`)."""
    partitions = list(partitions)
    if context is None:
        context = ArrowSuite.from_contract()
    elif not isinstance(context, ValidationContext | ArrowSuite):
        context = make_context(context)
    return [validate_partition_isolated(s3, bucket, p, context=context) for p in partitions]
