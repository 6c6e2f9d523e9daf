"""drift_monitor's validation steps: the planned partitions, one mapped validation per
partition (cached by content), and the reduce that gives the downstream tasks one document."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from driftloop.contracts import storage
from driftloop.contracts.storage import Partition
from driftloop.drift.partition_read import (
    is_store_fault,
)
from driftloop.drift.validation_results import (
    InsufficientValidData,
    PartitionVerdict,
    WindowValidation,
    summarize,
)

if TYPE_CHECKING:  # pragma: no cover
    from driftloop.config.drift_policy import Policy
    from driftloop.config.settings import Settings


from driftloop.drift.validation import (
    ArrowSuite,
    validate_partition,
    validate_partition_isolated,
    validate_partitions,
)
from driftloop.drift.verdict_cache import (
    CheckedPartition,
    VerdictCacheError,
    load_verdict,
    validate_partition_cached,
)

log = logging.getLogger(__name__)


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
