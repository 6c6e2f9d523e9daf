"""Quarantine of failing partitions.

A failing partition is copied (server-side) to ``quarantine/inference/dt=DAY/{content_id}/``
together with ``validation_result.json``; originals are never touched, and re-running writes
the same keys and bytes.
"""

from __future__ import annotations

import logging
from datetime import date

from driftloop.contracts import storage
from driftloop.drift.validation import PartitionVerdict

log = logging.getLogger(__name__)

RESULT_FILE_NAME = "validation_result.json"


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
