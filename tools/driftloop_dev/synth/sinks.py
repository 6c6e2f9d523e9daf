"""Where a synthetic world goes: anything with ``write(key, data, content_type)``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from driftloop.contracts import storage


@runtime_checkable
class Sink(Protocol):
    def write(self, key: str, data: bytes, content_type: str) -> None: ...


class S3Sink:
    """Writes objects to an S3 bucket through a boto3 client."""

    def __init__(self, s3, bucket: str):
        self.s3 = s3
        self.bucket = bucket
        self.count = 0
        self.bytes = 0

    def write(self, key: str, data: bytes, content_type: str) -> None:
        storage.put_bytes(self.s3, self.bucket, key, data, content_type)
        self.count += 1
        self.bytes += len(data)

    def __repr__(self) -> str:
        return f"S3Sink(bucket={self.bucket!r})"


class MemorySink:
    """Keeps objects in a dict (key -> bytes), for tests and in-process use."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}

    def write(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = bytes(data)
        self.content_types[key] = content_type

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def __getitem__(self, key: str) -> bytes:
        return self.objects[key]

    def __contains__(self, key: object) -> bool:
        return key in self.objects

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


class DirectorySink:
    """Writes objects as files under a local directory (key = relative path)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def write(self, key: str, data: bytes, content_type: str) -> None:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"key escapes the sink's directory: {key!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
