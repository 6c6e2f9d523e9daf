"""Quarantine of failing partitions.

A failing partition is copied (server-side) to ``quarantine/inference/dt=DAY/{content_id}/``
together with ``validation_result.json``; originals are never touched, and re-running writes
the same keys and bytes. A partition quarantined again under a changed suite keeps its first
result and gets ``validation_result.{suite id}.json`` next to it.

Whatever a source key holds, the copy's key fits S3's 1,024-byte limit (a key that would not
is replaced by a hash of the source key) and the copy's metadata is ASCII (S3 metadata
cannot carry anything else): the source key is percent-encoded there (RFC 3986) and given
exactly, with the copy's key, in ``validation_result.json``.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date
from urllib.parse import quote

from driftloop.contracts import storage
from driftloop.contracts.stores import is_not_found
from driftloop.drift.validation_results import PartitionVerdict

log = logging.getLogger(__name__)

RESULT_FILE_NAME = "validation_result.json"
#: S3's limit on a key, in bytes of its UTF-8 encoding
MAX_KEY_BYTES = 1024
#: the longest metadata value written (S3 allows 2 KB of user metadata in all)
_MAX_METADATA_VALUE = 1024


def quarantine_prefix(day: date | str, content_id: str) -> str:
    return f"{storage.QUARANTINE_PREFIX}/{storage.inference_prefix(day)}{content_id}/"


def _key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def quarantine_key(dest_prefix: str, source_prefix: str, key: str) -> str:
    """Where the copy of ``key`` goes: its name below the partition's prefix, kept when the
    result fits S3's key limit, else ``sha256-<hash of the key>.parquet`` (always fits)."""
    name = key[len(source_prefix) :] if key.startswith(source_prefix) else key.rsplit("/", 1)[-1]
    dest = dest_prefix + name
    if len(dest.encode()) <= MAX_KEY_BYTES:
        return dest
    suffix = ".parquet" if key.endswith(".parquet") else ""
    return f"{dest_prefix}sha256-{_key_digest(key)}{suffix}"


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
    uris, copies = [], []
    for key, etag in zip(partition.keys, partition.etags, strict=True):
        dest = quarantine_key(dest_prefix, source_prefix, key)
        _copy_once(s3, bucket, key, etag, dest)
        uris.append(storage.s3_uri(bucket, dest))
        copies.append({"source_key": key, "source_etag": etag, "quarantine_key": dest})
    document = {
        "day": verdict.day,
        "content_id": verdict.content_id,
        "valid": verdict.valid,
        "reasons": verdict.reasons,
        "warnings": verdict.warnings,
        "row_count": verdict.row_count,
        # not has_success: the marker may appear later, and this document must not change
        "partition": {
            "keys": list(partition.keys),
            "etags": list(partition.etags),
            "sizes": list(partition.sizes),
        },
        "copies": copies,
        "result": verdict.result,
    }
    uris.append(_put_result(s3, bucket, dest_prefix, document))
    log.warning(
        "quarantined %s under %s: %s", source_prefix, dest_prefix, "; ".join(verdict.reasons)
    )
    return uris


def _suite_of(document: dict) -> str | None:
    """The suite id a result document was made under (None: before suite ids, or no suite
    ran, e.g. an unreadable partition)."""
    meta = (document.get("result") or {}).get("meta") or {}
    return meta.get("suite_id")


def _put_result(s3, bucket: str, dest_prefix: str, document: dict) -> str:
    """``validation_result.json``, written once. When it holds the result of another suite
    (or of the validator before suite ids: the partition was quarantined before the suite or
    the validator changed), this suite's result goes next to it as
    ``validation_result.{suite id}.json``; the first stays as it is. The same suite with a
    different result is a real disagreement and raises :class:`storage.WriteOnceViolation`."""
    key = dest_prefix + RESULT_FILE_NAME
    try:
        return storage.put_json_once(s3, bucket, key, document)
    except storage.WriteOnceViolation:
        suite = _suite_of(document)
        if suite is None or _suite_of(storage.get_json(s3, bucket, key)) == suite:
            raise
    stem, _, suffix = RESULT_FILE_NAME.rpartition(".")
    return storage.put_json_once(s3, bucket, f"{dest_prefix}{stem}.{suite}.{suffix}", document)


def copy_metadata(key: str, etag: str) -> dict[str, str]:
    """ASCII metadata naming the copy's source: its ETag, the SHA-256 of its key, and the
    key percent-encoded (RFC 3986) when that stays short; the exact key is in the result."""
    metadata = {"source-etag": etag, "source-key-sha256": _key_digest(key)}
    encoded = quote(key, safe="/")
    if len(encoded) <= _MAX_METADATA_VALUE:
        metadata["source-key"] = encoded
    return metadata


def _copy_once(s3, bucket: str, key: str, etag: str, dest: str) -> None:
    from botocore.exceptions import ClientError

    try:
        head = s3.head_object(Bucket=bucket, Key=dest)
    except ClientError as err:
        if not is_not_found(err):
            raise
    else:
        found = head.get("Metadata") or {}
        # copies before the key hash was recorded named their (ASCII) source key as it is
        same_source = found.get("source-key-sha256", _key_digest(found.get("source-key", "")))
        if found.get("source-etag") == etag and same_source == _key_digest(key):
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
        Metadata=copy_metadata(key, etag),
        ContentType="application/vnd.apache.parquet"
        if key.endswith(".parquet")
        else "application/octet-stream",
    )
