"""External anchors of the audit ledger: one write-once S3 object per row.

``s3://<bucket>/audit/anchors/<id:012d>.json`` holds the canonical JSON of
``{"id", "recorded_at", "row_hash", "row_mac"}`` of ledger row ``id``. It is written with
:func:`driftloop.contracts.storage.put_once` (``If-None-Match: *``) right after the row is
committed, so nobody can replace it, and whoever can rewrite the database table — but not this
prefix — cannot make the anchors agree with a rewritten or truncated ledger. In production the
prefix lives under S3 Object Lock (compliance mode) or a bucket policy that denies
``s3:DeleteObject``/``s3:PutObject`` overwrites to every service but the ledger writer.

The document's bytes are a function of the row, so a re-run writes identical bytes (a no-op),
and ``verify`` can compare a listed object's ETag (the MD5 of a single-part upload) with the
MD5 of the bytes the row should have produced without downloading each anchor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from driftloop.audit.hashing import canonical_json

ANCHOR_PREFIX = "audit/anchors/"
ANCHOR_FIELDS = ("id", "recorded_at", "row_hash", "row_mac")


def anchor_bytes(row: Mapping[str, Any]) -> bytes:
    """The anchor document of a ledger row (its bytes are a function of the row)."""
    doc = {name: row.get(name) for name in ANCHOR_FIELDS}
    doc["id"] = int(doc["id"])
    return canonical_json(doc).encode("utf-8")


@dataclass(frozen=True)
class ListedAnchor:
    id: int
    key: str
    etag: str  # without quotes
    size: int

    def holds(self, data: bytes) -> bool | None:
        """Whether the object holds ``data``: True/False when its ETag is an MD5 and decides,
        None when it cannot (multipart or SSE-KMS ETags): then read the object."""
        if self.size != len(data):
            return False
        if "-" in self.etag or len(self.etag) != 32:
            return None
        return self.etag == hashlib.md5(data, usedforsecurity=False).hexdigest()


class AnchorStore:
    """The anchors of one ledger, in ``bucket`` under ``prefix`` (an S3 client's calls only)."""

    def __init__(self, s3, bucket: str, prefix: str = ANCHOR_PREFIX) -> None:
        if not bucket:
            raise ValueError("the anchor store needs a bucket")
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"

    def key(self, row_id: int) -> str:
        # zero-padded: lexicographic order of the keys is id order (LIST with StartAfter)
        return f"{self.prefix}{int(row_id):012d}.json"

    def uri(self, row_id: int) -> str:
        return f"s3://{self.bucket}/{self.key(row_id)}"

    def put(self, row: Mapping[str, Any]) -> str:
        """Write the anchor of ``row`` once (identical bytes again: a no-op; different bytes
        under its key: :class:`~driftloop.contracts.storage.WriteOnceViolation`)."""
        from driftloop.contracts.storage import put_once

        return put_once(
            self.s3, self.bucket, self.key(row["id"]), anchor_bytes(row), "application/json"
        )

    def listed(self, after_id: int = 0) -> Iterator[ListedAnchor]:
        """Anchors with id > ``after_id``, in id order (S3 LIST; a missing bucket raises)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        if after_id > 0:
            kwargs["StartAfter"] = self.key(after_id)
        for page in self.s3.get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(self.prefix) :]
                stem = name.removesuffix(".json")
                if not stem.isdigit() or not name.endswith(".json"):
                    continue  # not an anchor (a stray object under the prefix)
                yield ListedAnchor(
                    int(stem), obj["Key"], obj["ETag"].strip('"'), int(obj.get("Size", -1))
                )

    def read(self, row_id: int) -> dict[str, Any]:
        import json

        from driftloop.contracts.storage import get_bytes

        return json.loads(get_bytes(self.s3, self.bucket, self.key(row_id)))

    def matches(self, listed: ListedAnchor, row: Mapping[str, Any]) -> bool:
        """Whether a listed anchor holds exactly what ``row`` should have anchored."""
        expected = anchor_bytes(row)
        decided = listed.holds(expected)
        if decided is None:
            from driftloop.contracts.storage import get_bytes

            return get_bytes(self.s3, self.bucket, listed.key) == expected
        return decided
