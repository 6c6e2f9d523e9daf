"""Validation verdicts cached by partition content and suite identity: written once under
``validation/verdicts/{suite id}/dt=DAY/{content id}.json``; only S3's "not found" means not
cached, anything else unreadable fails closed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from driftloop.contracts import storage
from driftloop.contracts.stores import absent_if_not_found
from driftloop.drift.validation_results import (
    PartitionVerdict,
)

if TYPE_CHECKING:  # pragma: no cover
    pass


from driftloop.drift.validation import (
    VERDICT_FORMAT,
    VERDICTS_PREFIX,
    ArrowSuite,
    _isolated,
    _missing_verdict,
)

log = logging.getLogger(__name__)


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
