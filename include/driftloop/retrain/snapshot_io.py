"""Snapshot files in S3: the layout under ``datasets/{sha256}/``, writing it once, reading it back.

:func:`write_snapshot` writes a snapshot's files, then its manifest (write-once: a file an
interrupted run left behind must hold the same bytes); :func:`record_request` keeps the
provenance of each request; :func:`download_dataset` copies a snapshot to a local folder,
checks every file against the manifest and points ``data.yaml`` at that folder — the training
entrypoint (in the training image) and the evaluation use it. No Airflow, no torch.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from driftloop.contracts import schema, storage
from driftloop.contracts.labeled import FRAMES_INDEX, LabeledFrameInfo, parse_frames_index
from driftloop.retrain.frames import DEFAULT_WORKERS, SPLITS, get_object_or_none, map_in_threads

MANIFEST = "manifest.json"
DATA_YAML = "data.yaml"
#: camera, source and batch of each window frame (the labeled days' ``frames.jsonl`` format)
FRAMES_FILE = FRAMES_INDEX
REQUESTS_DIR = "requests"
HASH_RULE = (
    "sha256 of the lines '<sha256 of file>  <relative path>\\n' (sha256sum format) of every "
    "file in `files`, sorted by path; manifest.json and requests/ are not part of it"
)

_CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".txt": "text/plain",
    ".yaml": "application/yaml",
    ".jsonl": "application/x-ndjson",
}


def listing_sha256(files: dict[str, str]) -> str:
    """The dataset hash of ``{relative path: sha256 of bytes}`` (see the module doc)."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{files[path]}  {path}\n".encode())
    return digest.hexdigest()


def data_yaml_bytes() -> bytes:
    """The snapshot's Ultralytics dataset file; ``path`` is resolved by the consumer."""
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(schema.CLASS_NAMES))
    return (
        "# driftloop dataset snapshot; `path` is set to the local folder by download_dataset()\n"
        "path: .\n"
        "train: images/train\n"
        "val: images/val\n"
        "test: images/eval\n"
        f"names:\n{names}"
    ).encode()


def dataset_prefix(sha256: str) -> str:
    return f"{storage.DATASETS_PREFIX}/{sha256}/"


def dataset_uri(bucket: str, sha256: str) -> str:
    return storage.s3_uri(bucket, dataset_prefix(sha256))


def safe_run_name(source_run: str) -> str:
    """A key-safe file name for a run id (``manual__2024-06-30T12:00:00+00:00`` …): unsafe
    characters become ``_`` and a short hash of the original keeps distinct ids distinct."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", source_run)[:160].strip(".") or "run"
    if safe != source_run:
        safe += "-" + hashlib.sha256(source_run.encode()).hexdigest()[:8]
    return safe


def _content_type(path: str) -> str:
    return _CONTENT_TYPES.get(PurePosixPath(path).suffix.lower(), "application/octet-stream")


def write_snapshot(
    s3,
    bucket: str,
    manifest: dict[str, Any],
    local: dict[str, Path | bytes],
    workers: int,
) -> bool:
    """Write the snapshot's files, then its manifest; False when it existed already."""
    prefix = dataset_prefix(manifest["sha256"])
    manifest_key = prefix + MANIFEST
    if storage.exists(s3, bucket, manifest_key):
        return False
    # one listing instead of a HEAD per key: what an interrupted run left behind
    present = {
        o["Key"][len(prefix) :]: o["ETag"].strip('"') for o in storage.list_keys(s3, bucket, prefix)
    }

    def write(path: str) -> None:
        content = local[path]
        data = content if isinstance(content, bytes) else content.read_bytes()
        if path not in present:
            storage.put_bytes(s3, bucket, prefix + path, data, _content_type(path))
        elif present[path] != hashlib.md5(data, usedforsecurity=False).hexdigest():
            raise storage.WriteOnceViolation(
                f"s3://{bucket}/{prefix}{path} already exists with different content"
            )

    map_in_threads(write, sorted(manifest["files"]), workers)
    try:  # last: the manifest's presence marks a complete snapshot
        storage.put_json_once(s3, bucket, manifest_key, manifest)
    except storage.WriteOnceViolation:
        return False  # a concurrent request (other days, same content) finished first
    return True


def record_request(s3, bucket: str, sha256: str, source_run: str, request: dict[str, Any]) -> str:
    """Write the provenance of one snapshot request; returns its key. A retry of the same
    run writes the same bytes (a no-op); should the same run id ever ask for something
    else, its record goes next to the first one instead of over it."""
    base = f"{dataset_prefix(sha256)}{REQUESTS_DIR}/{safe_run_name(source_run)}"
    key = f"{base}.json"
    try:
        storage.put_json_once(s3, bucket, key, request)
    except storage.WriteOnceViolation:
        key = f"{base}--{hashlib.sha256(storage.dumps_canonical(request)).hexdigest()[:12]}.json"
        storage.put_json_once(s3, bucket, key, request)
    return key


def parse_dataset_uri(uri: str) -> tuple[str, str, str]:
    bucket, key = storage.split_s3_uri(uri)
    match = re.fullmatch(rf"{storage.DATASETS_PREFIX}/([0-9a-f]{{64}})/?(?:{MANIFEST})?", key)
    if not match:
        raise ValueError(f"not a dataset snapshot URI (s3://bucket/datasets/<sha256>/): {uri!r}")
    return bucket, dataset_prefix(match.group(1)), match.group(1)


def load_manifest(s3, uri: str) -> dict[str, Any]:
    """The manifest of the snapshot at ``uri``; ValueError if there is none (incomplete)."""
    bucket, prefix, _ = parse_dataset_uri(uri)
    data = get_object_or_none(s3, bucket, prefix + MANIFEST)
    if data is None:
        raise ValueError(f"no {MANIFEST} under s3://{bucket}/{prefix}: not a complete snapshot")
    return json.loads(data)


def snapshot_frames(root: str | Path) -> dict[str, LabeledFrameInfo]:
    """``{stem: info}`` of the window frames of a downloaded snapshot (:func:`download_dataset`'s
    folder), from its ``frames.jsonl``; ``{}`` for a snapshot made before snapshots had one
    (its manifest does not list it): every frame is then camera ``unknown``, as is every
    golden frame (use :func:`driftloop.contracts.labeled.info_of`). A snapshot whose manifest
    lists the file but whose folder lacks it is an error."""
    root = Path(root)
    manifest = json.loads((root / MANIFEST).read_text())
    if FRAMES_FILE not in (manifest.get("files") or {}):
        return {}
    path = root / FRAMES_FILE
    if not path.is_file():
        raise ValueError(f"{path} is missing: snapshot {manifest.get('sha256')} lists it")
    return parse_frames_index(path.read_bytes(), str(path))


def _safe_relpath(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return (
        bool(parts)
        and not PurePosixPath(path).is_absolute()
        and ".." not in parts
        and "\\" not in path
    )


def download_dataset(
    s3, uri: str, dest_dir: str | Path, *, max_workers: int = DEFAULT_WORKERS
) -> Path:
    """Copy the snapshot at ``uri`` to ``dest_dir`` and return that folder (resolved).

    Every file is checked against the manifest's sha256 (ValueError naming the first file
    that differs or is missing, in path order; such a file is never written), and the
    manifest against the snapshot's own hash. Files already present with the right bytes
    are not downloaded again; files in ``dest_dir`` that are not part of the snapshot are an
    error (they would end up in training). ``data.yaml``'s ``path`` is then set to the
    absolute folder, and ``manifest.json`` is copied next to it.
    """
    import yaml

    bucket, prefix, sha256 = parse_dataset_uri(uri)
    manifest_bytes = get_object_or_none(s3, bucket, prefix + MANIFEST)
    if manifest_bytes is None:
        raise ValueError(f"no {MANIFEST} under s3://{bucket}/{prefix}: not a complete snapshot")
    manifest = json.loads(manifest_bytes)
    files: dict[str, str] = manifest.get("files") or {}
    if manifest.get("sha256") != sha256 or listing_sha256(files) != sha256:
        raise ValueError(
            f"{MANIFEST} of s3://{bucket}/{prefix} does not match the snapshot hash {sha256}"
        )
    unsafe = [p for p in files if not _safe_relpath(p) or p == MANIFEST]
    if unsafe or DATA_YAML not in files:
        raise ValueError(
            f"{MANIFEST} of s3://{bucket}/{prefix} lists bad paths: {unsafe or 'no data.yaml'}"
        )

    dest = Path(dest_dir).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    stray = sorted(
        p.relative_to(dest).as_posix()
        for p in dest.rglob("*")
        if p.is_file()
        and p.relative_to(dest).as_posix() not in files
        and p.relative_to(dest).as_posix() != MANIFEST
        and p.suffix not in (".cache", ".part")  # Ultralytics' label caches, our partials
    )
    if stray:
        raise ValueError(f"{dest} holds files that are not part of snapshot {sha256}: {stray[:5]}")

    def fetch(path: str) -> str | None:
        """None when ``path`` is in place and verified, else why not."""
        target = dest / path
        if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == files[path]:
            return None
        data = get_object_or_none(s3, bucket, prefix + path)
        if data is None:
            return "missing in S3"
        actual = hashlib.sha256(data).hexdigest()
        if actual != files[path]:
            return f"sha256 {actual} != manifest {files[path]}"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(data)
        partial.replace(target)
        return None

    for path, problem in zip(
        sorted(files), map_in_threads(fetch, sorted(files), max_workers), strict=True
    ):
        if problem is not None:
            raise ValueError(f"snapshot {sha256}: file {path} failed verification: {problem}")

    for split in SPLITS:  # data.yaml points at existing folders even for an empty split
        (dest / "images" / split).mkdir(parents=True, exist_ok=True)
        (dest / "labels" / split).mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((dest / DATA_YAML).read_bytes())
    config["path"] = str(dest)
    (dest / DATA_YAML).write_text(yaml.safe_dump(config, sort_keys=False))
    (dest / MANIFEST).write_bytes(manifest_bytes)
    return dest
