"""The golden set: a fixed, versioned evaluation set that never changes and is never trained on.

This module reads it; the embedded stack's synthetic set is rendered and published by
:mod:`driftloop_dev.golden`.

``labeled/golden/{version}/`` holds ``images/golden-{version}-NNNN.png`` and
``labels/golden-{version}-NNNN.txt`` (YOLO txt, classes of
:data:`driftloop.contracts.schema.CLASS_NAMES`), and ``manifest.json`` (written last: its presence means the set is complete) with the
parameters and the SHA-256 of every file. :func:`load_golden_set` refuses a malformed manifest and,
given the SHA-256 recorded for the manifest, any other; every file is checked against the
manifest before use (:func:`verify_golden_files`, and the snapshot's own check).

Every key is write-once. Once a version exists it is never regenerated, so a renderer or
library change cannot alter it: a new golden set is a new version. Dataset snapshots
(:mod:`driftloop.retrain.snapshot`) put every golden frame in the ``eval`` split and check
each file against this manifest.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from driftloop.contracts import storage

GOLDEN_PREFIX = f"{storage.LABELED_PREFIX}/golden"
DEFAULT_VERSION = "v1"
MANIFEST = "manifest.json"
FORMAT = "driftloop.golden/1"


def _check_version(version: str) -> str:
    if (
        not isinstance(version, str)
        or not version
        or not all(c.isalnum() or c in "._-" for c in version)
    ):
        raise ValueError(
            f"golden version must be a non-empty [A-Za-z0-9._-] string, got {version!r}"
        )
    return version


def golden_prefix(version: str = DEFAULT_VERSION) -> str:
    return f"{GOLDEN_PREFIX}/{_check_version(version)}/"


def golden_manifest_key(version: str = DEFAULT_VERSION) -> str:
    return f"{golden_prefix(version)}{MANIFEST}"


def golden_stem(version: str, i: int) -> str:
    return f"golden-{version}-{i:04d}"


class GoldenSetMissing(LookupError):
    """The golden set a snapshot names is not in the bucket: publish it first."""


class GoldenSetIntegrityError(ValueError):
    """A golden set's manifest or file is not what was recorded for it; names both hashes."""


_SHA256 = re.compile(r"[0-9a-f]{64}")


def golden_manifest_bytes(s3, bucket: str, version: str = DEFAULT_VERSION) -> bytes | None:
    """The exact bytes of golden set ``version``'s manifest, or None when S3 says it does not
    exist (any other error is raised: fail closed)."""
    from driftloop.contracts.stores import absent_if_not_found

    key = golden_manifest_key(version)
    return absent_if_not_found(lambda: storage.get_bytes(s3, bucket, key))


def load_golden_manifest(s3, bucket: str, version: str = DEFAULT_VERSION) -> dict[str, Any] | None:
    """The manifest of an existing (complete) golden set, or None."""
    data = golden_manifest_bytes(s3, bucket, version)
    return None if data is None else json.loads(data)


def frame_keys(manifest: dict[str, Any]) -> list[str]:
    return sorted(manifest["files"])


def check_golden_manifest(manifest: Any, version: str) -> dict[str, Any]:
    """The manifest when it is well formed: its format and version, and a SHA-256 for each of
    its files, every one under the version's prefix, images and labels in pairs."""
    key = golden_manifest_key(version)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise GoldenSetIntegrityError(f"golden set {version}: malformed {key} (no files)")
    if manifest.get("format") != FORMAT or str(manifest.get("version")) != version:
        raise GoldenSetIntegrityError(
            f"golden set {version}: {key} says format {manifest.get('format')!r} version "
            f"{manifest.get('version')!r}, expected {FORMAT!r} {version!r}"
        )
    prefix = golden_prefix(version)
    for file_key, sha in manifest["files"].items():
        if not str(file_key).startswith(prefix) or not (
            isinstance(sha, str) and _SHA256.fullmatch(sha)
        ):
            raise GoldenSetIntegrityError(
                f"golden set {version}: {key} lists {file_key!r} with hash {sha!r} (expected a "
                f"key under {prefix} and a SHA-256)"
            )
    if not manifest["files"] or len(manifest["files"]) % 2:
        raise GoldenSetIntegrityError(
            f"golden set {version}: {key} lists {len(manifest['files'])} files, not image/label pairs"
        )
    return manifest


def load_golden_set(
    s3, bucket: str, version: str = DEFAULT_VERSION, expected_sha256: str | None = None
) -> dict[str, Any]:
    """The manifest of golden set ``version``, well formed and — with ``expected_sha256``, the
    SHA-256 recorded for its manifest (e.g. by the deployment that published it) — exactly the
    recorded one. Each file is checked against the manifest where it is read (the snapshot,
    :func:`driftloop.retrain.frames.load_frames`; or :func:`verify_golden_files`).

    The golden set is curated and published once, never made up at run time: a missing
    manifest is an error that names the key (the embedded stack publishes its synthetic set
    with ``driftloop_dev.golden.publish_golden_set``).
    """
    data = golden_manifest_bytes(s3, bucket, version)
    if data is None:
        raise GoldenSetMissing(
            f"golden set {version} missing: no s3://{bucket}/{golden_manifest_key(version)}; "
            "publish the evaluation set there (write-once, manifest last) or pick another "
            "golden_version"
        )
    if expected_sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            raise GoldenSetIntegrityError(
                f"golden set {version}: s3://{bucket}/{golden_manifest_key(version)} has "
                f"SHA-256 {actual}, recorded {expected_sha256}"
            )
    try:
        manifest = json.loads(data)
    except ValueError as err:
        raise GoldenSetIntegrityError(
            f"golden set {version}: {golden_manifest_key(version)} is not JSON: {err}"
        ) from err
    return check_golden_manifest(manifest, version)


def verify_golden_files(s3, bucket: str, manifest: dict[str, Any], version: str) -> int:
    """Every file of the golden set against its manifest; returns how many were checked.
    GoldenSetIntegrityError names the first file that differs or is missing."""
    from driftloop.contracts.stores import absent_if_not_found

    for key, expected in sorted(check_golden_manifest(manifest, version)["files"].items()):
        data = absent_if_not_found(lambda key=key: storage.get_bytes(s3, bucket, key))
        if data is None:
            raise GoldenSetIntegrityError(f"golden set {version}: s3://{bucket}/{key} is missing")
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise GoldenSetIntegrityError(
                f"golden set {version}: s3://{bucket}/{key} has SHA-256 {actual}, "
                f"recorded {expected}"
            )
    return len(manifest["files"])
