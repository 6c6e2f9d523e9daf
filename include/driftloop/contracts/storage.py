"""S3 layout and write-once object helpers.

Every function takes a boto3 S3 client, so Airflow tasks can pass the client of their
connection (``S3Hook(aws_conn_id).get_conn()``) and command-line tools the one from boto3's
environment (``s3_client()``). Keys follow DESIGN.md's data contracts.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

INFERENCE_PREFIX = "inference"
LABELED_PREFIX = "labeled"
QUARANTINE_PREFIX = "quarantine"
PROFILES_PREFIX = "profiles"
REPORTS_PREFIX = "reports/drift"
DATASETS_PREFIX = "datasets"
SUCCESS_MARKER = "_SUCCESS"


class WriteOnceViolation(RuntimeError):
    """A write-once key already holds different content."""


def s3_client():
    """A boto3 S3 client configured from the environment (``AWS_ENDPOINT_URL_S3`` …)."""
    import boto3

    return boto3.client("s3")


def day_str(day: date | str) -> str:
    return day if isinstance(day, str) else day.isoformat()


def inference_prefix(day: date | str) -> str:
    return f"{INFERENCE_PREFIX}/dt={day_str(day)}/"


def success_key(day: date | str) -> str:
    return f"{inference_prefix(day)}{SUCCESS_MARKER}"


def labeled_prefix(day: date | str) -> str:
    return f"{LABELED_PREFIX}/dt={day_str(day)}/"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"s3 URI needs a bucket and a key: {uri!r}")
    return bucket, key


@dataclass(frozen=True)
class Partition:
    """One day of inference logs as listed in S3."""

    day: str
    keys: tuple[str, ...] = ()
    etags: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()
    has_success: bool = False

    @property
    def content_id(self) -> str:
        """Identifies the partition's content: changes whenever any object changes."""
        digest = hashlib.sha256()
        for key, etag in zip(self.keys, self.etags, strict=True):
            digest.update(f"{key}\0{etag}\n".encode())
        return digest.hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Partition:
        return cls(
            day=data["day"],
            keys=tuple(data.get("keys", ())),
            etags=tuple(data.get("etags", ())),
            sizes=tuple(data.get("sizes", ())),
            has_success=bool(data.get("has_success", False)),
        )


def list_keys(s3, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """All objects under ``prefix`` (paginated), sorted by key."""
    objects: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects.extend(page.get("Contents", []))
    return sorted(objects, key=lambda o: o["Key"])


def list_partition(s3, bucket: str, day: date | str, prefix: str | None = None) -> Partition:
    """The day's inference-log partition as listed now; ``prefix``: a day of contract
    partitions kept elsewhere (a candidate's scored reference frames)."""
    objects = list_keys(s3, bucket, prefix or inference_prefix(day))
    parquet = [o for o in objects if o["Key"].endswith(".parquet")]
    return Partition(
        day=day_str(day),
        keys=tuple(o["Key"] for o in parquet),
        etags=tuple(o["ETag"].strip('"') for o in parquet),
        sizes=tuple(int(o["Size"]) for o in parquet),
        has_success=any(o["Key"].endswith("/" + SUCCESS_MARKER) for o in objects),
    )


def exists(s3, bucket: str, key: str) -> bool:
    return _head_or_none(s3, bucket, key) is not None


def get_bytes(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def get_json(s3, bucket: str, key: str) -> Any:
    return json.loads(get_bytes(s3, bucket, key))


def put_bytes(
    s3, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream"
) -> str:
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    return s3_uri(bucket, key)


#: S3 answers 409 ConditionalRequestConflict when another conditional write of the same key
#: is in flight; the write is retried (it then succeeds or meets the winner's object)
CONDITIONAL_WRITE_ATTEMPTS = 5


def _error_code(err) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _http_status(err) -> int | None:
    return err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def put_once(
    s3, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream"
) -> str:
    """Write ``data`` to a write-once key. The key is created with S3's conditional write
    (``If-None-Match: *``), which succeeds only if no object holds the key, so of two
    writers racing for one key exactly one creates it; the other sees the winner's object.

    Re-running a step writes the same bytes to the same key, which is a no-op (one HEAD,
    nothing uploaded); different bytes under an existing key mean two runs disagree, and
    that raises :class:`WriteOnceViolation` rather than overwriting. The existing object is
    compared by size and ETag (the MD5 of a single-part, unencrypted upload) and, when the
    ETag is no MD5 (a multipart upload, SSE-KMS), by its bytes.

    The store must honour conditional writes (AWS S3 since August 2024, current MinIO, the
    moto server of the tests): one that ignored the header would let a racing writer
    overwrite silently.
    """
    head = _head_or_none(s3, bucket, key)
    if head is None:
        if _create(s3, bucket, key, data, content_type):
            return s3_uri(bucket, key)
        head = s3.head_object(Bucket=bucket, Key=key)  # another writer created it meanwhile
    if not _same_content(s3, bucket, key, data, head):
        raise WriteOnceViolation(f"s3://{bucket}/{key} already exists with different content")
    return s3_uri(bucket, key)


def _head_or_none(s3, bucket: str, key: str) -> dict[str, Any] | None:
    """The object's metadata, or None when S3 says it does not exist (and only then)."""
    from driftloop.contracts.stores import absent_if_not_found

    return absent_if_not_found(lambda: s3.head_object(Bucket=bucket, Key=key))


def _create(s3, bucket: str, key: str, data: bytes, content_type: str) -> bool:
    """Conditional write: True when this call created the key, False when it exists."""
    from botocore.exceptions import ClientError

    attempt = 1
    while True:
        try:
            s3.put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type, IfNoneMatch="*"
            )
            return True
        except ClientError as err:
            code = _error_code(err)
            if code == "PreconditionFailed" or _http_status(err) == 412:
                return False
            if code != "ConditionalRequestConflict" or attempt >= CONDITIONAL_WRITE_ATTEMPTS:
                raise
        time.sleep(0.05 * 2**attempt)
        attempt += 1


def _same_content(s3, bucket: str, key: str, data: bytes, head: Mapping[str, Any]) -> bool:
    """Whether the object at an existing key (``head``: its metadata) holds exactly ``data``."""
    if int(head.get("ContentLength", -1)) != len(data):
        return False
    if head["ETag"].strip('"') == hashlib.md5(data, usedforsecurity=False).hexdigest():
        return True
    # an ETag that is not the MD5 of the bytes (multipart, SSE-KMS) decides nothing
    return get_bytes(s3, bucket, key) == data


def dumps_canonical(obj: Any) -> bytes:
    """JSON with sorted keys and no incidental whitespace: equal objects, equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def put_json_once(s3, bucket: str, key: str, obj: Any) -> str:
    return put_once(s3, bucket, key, dumps_canonical(obj), "application/json")


def get_json_uri(s3, uri: str) -> Any:
    return get_json(s3, *split_s3_uri(uri))


def get_bytes_uri(s3, uri: str) -> bytes:
    return get_bytes(s3, *split_s3_uri(uri))
