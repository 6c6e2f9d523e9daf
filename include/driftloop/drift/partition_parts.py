"""A partition's part files as validation reads them: fetched exactly as listed, duplicate
uploads counted once, extra columns noted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from driftloop.contracts import storage
from driftloop.drift.partition_read import (
    check_part_schemas,
    content_digest,
    fetch_part,
    parse_part,
    split_extra_columns,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa


@dataclass
class Parts:
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
            if may_be_duplicate(partition, key, len(data)):
                digest = content_digest(data)
                if digest in seen:  # the same file twice (a retried upload): counted once
                    self.duplicates.append({"key": key, "same_as": seen[digest], "sha256": digest})
                    continue
                seen[digest] = key
            yield key, data
            del data

    def note_extra(self, extra: Sequence[str]) -> None:
        self.extra_columns += [c for c in extra if c not in self.extra_columns]


def may_be_duplicate(partition: storage.Partition, key: str, size: int) -> bool:
    """Whether another listed part has this part's size (only then can it hold the same
    bytes); True when the listing has no sizes."""
    if len(partition.sizes) != len(partition.keys):
        return True
    return any(
        other != key and other_size == size
        for other, other_size in zip(partition.keys, partition.sizes, strict=True)
    )


def read_parts(s3, bucket: str, partition: storage.Partition) -> Parts:
    """Every part as a whole table (the GE engine's reading)."""
    parts = Parts()
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
