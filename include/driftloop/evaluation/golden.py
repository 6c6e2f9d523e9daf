"""The golden set: a fixed, versioned evaluation set that never changes and is never trained on.

This module reads it; the embedded stack's synthetic set is rendered and published by
:mod:`driftloop_dev.golden`.

``labeled/golden/{version}/`` holds ``images/golden-{version}-NNNN.png`` and
``labels/golden-{version}-NNNN.txt`` (YOLO txt, classes of
:data:`driftloop.contracts.schema.CLASS_NAMES`), and ``manifest.json`` (written last: its presence means the set is complete) with the
parameters and the SHA-256 of every file.

Every key is write-once. Once a version exists it is never regenerated, so a renderer or
library change cannot alter it: a new golden set is a new version. Dataset snapshots
(:mod:`driftloop.retrain.snapshot`) put every golden frame in the ``eval`` split and check
each file against this manifest.
"""

from __future__ import annotations

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


def load_golden_manifest(s3, bucket: str, version: str = DEFAULT_VERSION) -> dict[str, Any] | None:
    """The manifest of an existing (complete) golden set, or None."""
    key = golden_manifest_key(version)
    if not storage.exists(s3, bucket, key):
        return None
    return storage.get_json(s3, bucket, key)


def frame_keys(manifest: dict[str, Any]) -> list[str]:
    return sorted(manifest["files"])


class GoldenSetMissing(LookupError):
    """The golden set a snapshot names is not in the bucket: publish it first."""


def load_golden_set(s3, bucket: str, version: str = DEFAULT_VERSION) -> dict[str, Any]:
    """The manifest of golden set ``version``.

    The golden set is curated and published once, never made up at run time: a missing
    manifest is an error that names the key (the embedded stack publishes its synthetic set
    with ``driftloop_dev.golden.publish_golden_set``).
    """
    manifest = load_golden_manifest(s3, bucket, version)
    if manifest is None:
        raise GoldenSetMissing(
            f"golden set {version} missing: no s3://{bucket}/{golden_manifest_key(version)}; "
            "publish the evaluation set there (write-once, manifest last) or pick another "
            "golden_version"
        )
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ValueError(f"golden set {version}: malformed {golden_manifest_key(version)}")
    return manifest
