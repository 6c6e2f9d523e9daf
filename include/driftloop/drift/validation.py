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
from driftloop.contracts.storage import Partition
from driftloop.contracts.stores import absent_if_not_found
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
    content_digest,
    contract_columns,
    fetch_part,
    is_store_fault,
    iter_part_batches,
    nan_counts,
    open_part,
    parse_part,
    signature,
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
class _Parts:
    """A partition's part files as read: tables (contract columns only, GE engine) or their
    schemas (Arrow engine), and what was seen."""

    tables: dict[str, pa.Table] = field(default_factory=dict)
    schemas: dict[str, pa.Schema] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    #: the part could not be fetched as listed (gone, changed, archived): the verdict says
    #: nothing about the content and is not cached
    fetch_failed: bool = False
    #: {"key", "same_as", "sha256"} per part whose bytes equal an earlier part's
    duplicates: list[dict[str, str]] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    rows: int = 0

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

    def fetch(self, s3, bucket: str, partition: storage.Partition):
        """``(key, bytes)`` of each part, exactly as listed, duplicates left out (and noted);
        a part that cannot be fetched is an error. One part's bytes at a time."""
        etags = partition.etags or (None,) * len(partition.keys)
        seen: dict[str, str] = {}  # content digest -> first key with that content
        for key, etag in zip(partition.keys, etags, strict=True):
            data, error = fetch_part(s3, bucket, key, etag)
            if error is not None:
                self.errors.append(error)
                self.fetch_failed = True
                continue
            # only parts of one size can hold the same bytes: the hash (a fifth of the
            # partition's validation at 1M rows) is taken for those alone
            if _may_be_duplicate(partition, key, len(data)):
                digest = content_digest(data)
                if digest in seen:  # the same file twice (a retried upload): counted once
                    self.duplicates.append({"key": key, "same_as": seen[digest], "sha256": digest})
                    continue
                seen[digest] = key
            yield key, data
            del data

    def note_extra(self, extra: Sequence[str]) -> None:
        self.extra_columns += [c for c in extra if c not in self.extra_columns]


def _may_be_duplicate(partition: storage.Partition, key: str, size: int) -> bool:
    """Whether another listed part has this part's size (only then can it hold the same
    bytes); True when the listing has no sizes."""
    if len(partition.sizes) != len(partition.keys):
        return True
    return any(
        other != key and other_size == size
        for other, other_size in zip(partition.keys, partition.sizes, strict=True)
    )


def _read_parts(s3, bucket: str, partition: storage.Partition) -> _Parts:
    """Every part as a whole table (the GE engine's reading)."""
    parts = _Parts()
    for key, data in parts.fetch(s3, bucket, partition):
        table, error = parse_part(key, data)
        if error is not None:
            parts.errors.append(error)
            continue
        table, extra = split_extra_columns(table)
        parts.note_extra(extra)
        parts.tables[key] = table
        parts.schemas[key] = table.schema
        parts.rows += table.num_rows
    parts.errors += check_part_schemas(parts.schemas)
    return parts


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


def _unreadable_verdict(partition: storage.Partition, parts: _Parts, seen: dict) -> _Validated:
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


def _seen(parts: _Parts) -> dict[str, Any]:
    return {
        "warnings": parts.warnings(),
        "extra_columns": parts.extra_columns,
        "duplicate_keys": [d["key"] for d in parts.duplicates],
    }


def _verdict(
    partition: storage.Partition,
    parts: _Parts,
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

    parts = _Parts()
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

    parts = _read_parts(s3, bucket, partition)
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


# --------------------------------------------------------------------------------------
# verdicts cached by content


class VerdictCacheError(ValueError):
    """A cached verdict that cannot be used (unreadable, or about another partition)."""


def verdict_key(partition: storage.Partition, suite_id: str) -> str:
    return f"{VERDICTS_PREFIX}/{suite_id}/dt={partition.day}/{partition.content_id}.json"


def _verdict_document(partition: storage.Partition, verdict: PartitionVerdict, suite_id: str):
    return {
        "format": VERDICT_FORMAT,
        "suite_id": suite_id,
        # not has_success: the marker may appear later, and this document must not change
        "partition": {
            "day": partition.day,
            "keys": list(partition.keys),
            "etags": list(partition.etags),
            "sizes": list(partition.sizes),
        },
        "verdict": verdict.to_dict(),
    }


def load_verdict(s3, uri: str, partition: storage.Partition | None = None) -> PartitionVerdict:
    """The verdict stored at ``uri``; a document that is not a verdict (of ``partition``)
    raises :class:`VerdictCacheError` naming the key. Store errors raise as they are."""
    document = absent_if_not_found(lambda: storage.get_json_uri(s3, uri))
    if document is None:  # deleted after it was written: only validating again brings it back
        raise VerdictCacheError(
            f"{uri} is gone since it was written; clear the partition's validate_partition "
            "task to validate it again"
        )
    try:
        if document["format"] != VERDICT_FORMAT:
            raise ValueError(f"format {document['format']!r}, expected {VERDICT_FORMAT!r}")
        verdict = PartitionVerdict.from_dict(document["verdict"])
    except (KeyError, TypeError, ValueError) as err:
        raise VerdictCacheError(
            f"{uri} is not a readable verdict ({type(err).__name__}: {err}); delete it to "
            "validate the partition again"
        ) from err
    if partition is not None and (verdict.day, verdict.content_id) != (
        partition.day,
        partition.content_id,
    ):
        raise VerdictCacheError(
            f"{uri} holds the verdict of ({verdict.day}, {verdict.content_id}), not of "
            f"({partition.day}, {partition.content_id}); delete it to validate again"
        )
    return verdict


@dataclass
class CheckedPartition:
    """A partition's verdict, where it is stored (None: not cacheable, travels inline) and
    whether it came from the cache."""

    verdict: PartitionVerdict
    uri: str | None
    cached: bool


def validate_partition_cached(
    s3, bucket: str, partition: storage.Partition, *, suite: ArrowSuite | None = None
) -> CheckedPartition:
    """The partition's verdict from the cache, else validated (Arrow engine, isolated: one
    partition's failure is its verdict) and, when it follows from the bytes alone, cached
    write-once. Only S3's not-found means "not cached"; other store errors raise."""
    suite = suite or ArrowSuite.from_contract()
    if not partition.keys:
        return CheckedPartition(_missing_verdict(partition), None, cached=False)
    try:
        key = verdict_key(partition, suite.suite_id)
    except ValueError:  # keys and ETags that do not pair up: no content id, nothing to cache
        key = None
    if key is not None:
        uri = storage.s3_uri(bucket, key)
        if absent_if_not_found(lambda: s3.head_object(Bucket=bucket, Key=key)) is not None:
            verdict = load_verdict(s3, uri, partition)
            log.info(
                "%s: verdict of content %s from %s: %s",
                storage.inference_prefix(partition.day),
                partition.content_id,
                uri,
                "valid" if verdict.valid else "; ".join(verdict.reasons),
            )
            return CheckedPartition(verdict, uri, cached=True)
    validated = _isolated(s3, bucket, partition, suite)
    if key is None or not validated.cacheable:
        return CheckedPartition(validated.verdict, None, cached=False)
    document = _verdict_document(partition, validated.verdict, suite.suite_id)
    return CheckedPartition(
        validated.verdict, storage.put_json_once(s3, bucket, key, document), cached=False
    )


# --- the DAG steps ------------------------------------------------------------------

WINDOWS = ("current", "reference")


def planned_validations(plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What the mapped validation runs over: ``{"window", "day", "partition"}`` per planned
    partition, the current window first (small: the partition's listing, no data)."""
    return [
        {"window": window, "day": p["day"], "partition": dict(p)}
        for window in WINDOWS
        for p in plan["partitions"][window]
    ]


def validate_planned_partition(
    s3, bucket: str, item: Mapping[str, Any], *, suite: ArrowSuite | None = None
) -> dict[str, Any]:
    """One mapped task: the partition's verdict (cached by content) and, when it fails, its
    quarantine. Returns a small document for :func:`summarize_validations`: the window, the
    day, the verdict's URI (or the verdict itself when it cannot be cached) and the
    quarantine entry of an invalid partition. Store faults raise (Airflow retries)."""
    partition = Partition.from_dict(item["partition"])
    checked = validate_partition_cached(s3, bucket, partition, suite=suite)
    verdict = checked.verdict
    out: dict[str, Any] = {
        "window": item["window"],
        "day": partition.day,
        "cached": checked.cached,
    }
    if checked.uri is not None:
        out["verdict_uri"] = checked.uri
    else:
        out["verdict"] = verdict.to_dict()
    if not verdict.valid and not verdict.missing:
        out["quarantine"] = _quarantine_isolated(s3, bucket, verdict, partition)
    return out


def summarize_validations(
    s3, plan: Mapping[str, Any], checked: Sequence[Mapping[str, Any]], policy: Policy
) -> dict[str, Any]:
    """The reduce step: the mapped outcomes (:func:`validate_planned_partition`) as the one
    document downstream steps read, or :class:`InsufficientValidData` naming the bad days.

    Returns ``valid`` (per window, the partitions to profile: duplicate part files left
    out), ``quarantined`` (window, day, reasons, uris, and ``quarantine_error`` when the copy
    failed), ``warnings`` (window, day, warnings of valid partitions: additive columns,
    duplicate part files) and ``missing_days``. Verdicts are read from their URIs; a planned
    partition without an outcome fails the step (it was never validated)."""
    by_item = {(c["window"], c["day"]): c for c in checked}
    result: dict[str, Any] = {
        "valid": {},
        "quarantined": [],
        "warnings": [],
        "missing_days": plan["missing_days"],
    }
    summaries = []
    for window in WINDOWS:
        partitions = [Partition.from_dict(p) for p in plan["partitions"][window]]
        verdicts = []
        result["valid"][window] = []
        for partition in partitions:
            outcome = by_item.get((window, partition.day))
            if outcome is None:
                raise ValueError(
                    f"no validation outcome for the {window} window's partition "
                    f"{storage.inference_prefix(partition.day)}"
                )
            if "verdict_uri" in outcome:
                verdict = load_verdict(s3, outcome["verdict_uri"], partition)
            else:
                verdict = PartitionVerdict.from_dict(outcome["verdict"])
            verdicts.append(verdict)
            if verdict.valid:
                counted = _without_keys(partition, verdict.duplicate_keys)
                result["valid"][window].append(counted.to_dict())
                if verdict.warnings:
                    entry = {"window": window, "day": verdict.day, "warnings": verdict.warnings}
                    result["warnings"].append(entry)
            elif not verdict.missing:
                result["quarantined"].append({"window": window, **outcome["quarantine"]})
        expected = plan[f"{window}_days"]
        if expected:
            summaries.append((window, summarize(verdicts, expected, policy.min_valid_share)))
    for window, summary in summaries:
        summary.raise_if_insufficient(window)
    return result


def validate_windows(
    s3, settings: Settings, plan: Mapping[str, Any], policy: Policy
) -> dict[str, Any]:
    """Validate every planned partition (cached verdicts reused), quarantine the failures,
    fail if too few days are valid: :func:`validate_planned_partition` for each partition,
    then :func:`summarize_validations`, in one process.

    One partition's failure of any kind — bad content, a crash while validating it, a
    quarantine copy S3 refuses — sets that partition aside with a reason and never stops the
    others; a store fault (:func:`is_store_fault`) fails the task so Airflow retries it."""
    suite = ArrowSuite.from_contract()
    checked = [
        validate_planned_partition(s3, settings.bucket, item, suite=suite)
        for item in planned_validations(plan)
    ]
    return summarize_validations(s3, plan, checked, policy)


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
    "ArrowSuite",
    "CheckedPartition",
    "InsufficientValidData",
    "PartitionVerdict",
    "VerdictCacheError",
    "WindowValidation",
    "load_verdict",
    "planned_validations",
    "summarize",
    "summarize_validations",
    "validate_partition",
    "validate_partition_cached",
    "validate_partition_isolated",
    "validate_partitions",
    "validate_planned_partition",
    "validate_windows",
]
