"""Reference bundles: the binning, the merged profile and the sample a window is compared to.

A bundle lives under ``profiles/reference/{reference_id}/`` (``binning.json``,
``profile.json``, ``sample.parquet``, then ``manifest.json`` with the SHA-256 of each), written
once. The bundle is content-addressed: ``reference_id`` is the SHA-256 of its manifest's bytes,
so the URI a model version's tag holds pins every byte of its reference. Every read of a bundle
file (:func:`load_binning`, :func:`load_profile`, :func:`load_sample`,
:func:`read_bundle_file`) checks the manifest against the id and the file against the manifest
and raises :class:`ReferenceIntegrityError`, naming the object and both hashes, on a mismatch. ``drift_monitor`` builds one from the
sliding window before the current one when no champion exists; the retraining DAG builds one
from the champion's training window and stores its URI on the MLflow model version, so drift
is measured against what the model actually learned from.

Per-partition work is cached by content: samples under ``profiles/samples/…/{content_id}``
(independent of any binning) and sketches under ``profiles/{binning_id}/…/{content_id}``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from driftloop.contracts.storage import (
    PROFILES_PREFIX,
    Partition,
    dumps_canonical,
    exists,
    get_bytes,
    get_json,
    put_json_once,
    put_once,
    s3_uri,
    split_s3_uri,
)
from driftloop.drift.samples import merge_samples, parquet_bytes_to_table, table_to_parquet_bytes
from driftloop.drift.sketch import Binning, Profile, merge_profiles, sketch_partition
from driftloop.drift.sources import iter_partition_batches


def sample_key(partition: Partition, sample_size: int) -> str:
    return f"{PROFILES_PREFIX}/samples/k={sample_size}/dt={partition.day}/{partition.content_id}.parquet"


def profile_key(partition: Partition, binning_id: str) -> str:
    return f"{PROFILES_PREFIX}/{binning_id}/dt={partition.day}/{partition.content_id}.json"


def binning_key(binning_id: str) -> str:
    return f"{PROFILES_PREFIX}/binnings/{binning_id}.json"


def partition_sample(s3, bucket: str, partition: Partition, sample_size: int):
    """The partition's bottom-k sample, from the cache or computed (and cached) in one pass."""
    key = sample_key(partition, sample_size)
    if exists(s3, bucket, key):
        return parquet_bytes_to_table(get_bytes(s3, bucket, key))
    _, sample = sketch_partition(
        iter_partition_batches(s3, bucket, partition.keys),
        binning=None,
        day=partition.day,
        seed_key=partition.content_id,
        sample_size=sample_size,
    )
    put_once(s3, bucket, key, table_to_parquet_bytes(sample))
    return sample


@dataclass(frozen=True)
class PartitionProfileRef:
    day: str
    rows: int
    profile_uri: str
    sample_uri: str
    cached: bool

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def profile_partition(
    s3, bucket: str, partition: Partition, binning: Binning, sample_size: int
) -> PartitionProfileRef:
    """Sketch one partition on ``binning`` (cached by partition content and binning)."""
    p_key = profile_key(partition, binning.binning_id)
    s_key = sample_key(partition, sample_size)
    if exists(s3, bucket, p_key) and exists(s3, bucket, s_key):
        rows = int(get_json(s3, bucket, p_key)["rows"])
        return PartitionProfileRef(
            partition.day, rows, s3_uri(bucket, p_key), s3_uri(bucket, s_key), True
        )
    profile, sample = sketch_partition(
        iter_partition_batches(s3, bucket, partition.keys),
        binning=binning,
        day=partition.day,
        seed_key=partition.content_id,
        sample_size=sample_size,
    )
    put_json_once(s3, bucket, p_key, profile.to_dict())
    put_once(s3, bucket, s_key, table_to_parquet_bytes(sample))
    return PartitionProfileRef(
        partition.day, profile.rows, s3_uri(bucket, p_key), s3_uri(bucket, s_key), False
    )


BUNDLE_PREFIX = f"{PROFILES_PREFIX}/reference/"
BUNDLE_FILES = ("binning.json", "profile.json", "sample.parquet")
#: per-day histograms for the calibration (format 2 on; bundles of format 1 have none)
BUNDLE_DAY_COUNTS = "day_counts.json"
BUNDLE_MANIFEST = "manifest.json"
BUNDLE_FORMAT = "driftloop.reference/2"
_BUNDLE_FILE_KEY = re.compile(re.escape(BUNDLE_PREFIX) + r"(?P<id>[^/]+)/(?P<name>[^/]+)")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ReferenceIntegrityError(ValueError):
    """A reference bundle's file or manifest is not what its content address records."""


def bundle_manifest(s3, bucket: str, reference_id: str) -> dict[str, Any]:
    """The manifest of bundle ``reference_id``, checked: its bytes hash to the id."""
    from driftloop.contracts.stores import is_not_found

    key = f"{BUNDLE_PREFIX}{reference_id}/{BUNDLE_MANIFEST}"
    if not _SHA256.fullmatch(reference_id):
        raise ReferenceIntegrityError(
            f"reference bundle s3://{bucket}/{BUNDLE_PREFIX}{reference_id}/ is not content-"
            "addressed (its id is no SHA-256): built before bundles carried a manifest; "
            "rebuild it (retrain, or a sliding reference)"
        )
    try:
        data = get_bytes(s3, bucket, key)
    except Exception as err:
        if is_not_found(err):
            raise ReferenceIntegrityError(
                f"reference bundle manifest s3://{bucket}/{key} is missing"
            ) from err
        raise
    actual = hashlib.sha256(data).hexdigest()
    if actual != reference_id:
        raise ReferenceIntegrityError(
            f"reference bundle manifest s3://{bucket}/{key}: SHA-256 {actual}, "
            f"recorded {reference_id} (the bundle's id)"
        )
    return json.loads(data)


def read_bundle_file(s3, uri: str) -> bytes:
    """The bytes of ``uri``; when it is a file of a reference bundle, checked against the
    bundle's manifest (itself checked against the bundle's id) first."""
    bucket, key = split_s3_uri(uri)
    match = _BUNDLE_FILE_KEY.fullmatch(key)
    if match is None:
        return get_bytes(s3, bucket, key)
    manifest = bundle_manifest(s3, bucket, match["id"])
    expected = (manifest.get("files") or {}).get(match["name"])
    if expected is None:
        raise ReferenceIntegrityError(f"{uri}: not listed in its bundle's {BUNDLE_MANIFEST}")
    data = get_bytes(s3, bucket, key)
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ReferenceIntegrityError(f"{uri}: SHA-256 {actual}, recorded {expected}")
    return data


def verify_reference_bundle(s3, uri: str) -> dict[str, Any]:
    """Check every file of the bundle at ``uri`` (``s3://…/profiles/reference/{id}/``);
    returns its manifest. ReferenceIntegrityError on the first difference."""
    bundle = ReferenceBundle.from_uri(uri)
    bucket, _ = split_s3_uri(bundle.uri)
    manifest = bundle_manifest(s3, bucket, bundle.reference_id)
    for name in sorted(set(BUNDLE_FILES) | set(manifest.get("files") or {})):
        read_bundle_file(s3, bundle.uri + name)
    return manifest


def load_profile(s3, uri: str) -> Profile:
    return Profile.from_dict(json.loads(read_bundle_file(s3, uri)))


def load_sample(s3, uri: str):
    return parquet_bytes_to_table(read_bundle_file(s3, uri))


def load_binning(s3, uri: str) -> Binning:
    return Binning.from_dict(json.loads(read_bundle_file(s3, uri)))


def load_reference_days(s3, bundle_uri: str):
    """The per-day histograms of a reference bundle, or None for a bundle written before
    they existed (format 1: the calibration then knows sampling noise only, and says so)."""
    from driftloop.drift.compare import ReferenceDays

    bundle = ReferenceBundle.from_uri(bundle_uri)
    bucket, _ = split_s3_uri(bundle.uri)
    manifest = bundle_manifest(s3, bucket, bundle.reference_id)
    if BUNDLE_DAY_COUNTS not in (manifest.get("files") or {}):
        return None
    return ReferenceDays.from_dict(json.loads(read_bundle_file(s3, bundle.day_counts_uri)))


def merge_window(s3, refs: Sequence[PartitionProfileRef | dict], sample_size: int):
    """Merged profile and sample of a window from its partitions' cached sketches."""
    refs = [r if isinstance(r, dict) else r.to_dict() for r in refs]
    profile = merge_profiles(load_profile(s3, r["profile_uri"]) for r in refs)
    sample = merge_samples((load_sample(s3, r["sample_uri"]) for r in refs), sample_size)
    return profile, sample


@dataclass(frozen=True)
class ReferenceBundle:
    reference_id: str
    uri: str  # s3://bucket/profiles/reference/{id}/

    @property
    def binning_uri(self) -> str:
        return self.uri + "binning.json"

    @property
    def profile_uri(self) -> str:
        return self.uri + "profile.json"

    @property
    def sample_uri(self) -> str:
        return self.uri + "sample.parquet"

    @property
    def day_counts_uri(self) -> str:
        return self.uri + BUNDLE_DAY_COUNTS

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_id": self.reference_id,
            "uri": self.uri,
            "binning_uri": self.binning_uri,
            "profile_uri": self.profile_uri,
            "sample_uri": self.sample_uri,
        }

    @classmethod
    def from_uri(cls, uri: str) -> ReferenceBundle:
        uri = uri if uri.endswith("/") else uri + "/"
        return cls(uri.rstrip("/").rsplit("/", 1)[-1], uri)


def build_reference_bundle(
    s3, bucket: str, partitions: Sequence[Partition], sample_size: int
) -> ReferenceBundle:
    """Fit bins on the window's sample, sketch every partition on them, write the bundle.

    Two passes over the window's partitions (sample, then sketch), both cached per partition,
    so memory stays at one record batch plus the bounded sample.
    """
    if not partitions:
        raise ValueError("cannot build a reference from no partitions")
    window_sample = merge_samples(
        (partition_sample(s3, bucket, p, sample_size) for p in partitions), sample_size
    )
    binning = Binning.fit(window_sample)
    put_json_once(s3, bucket, binning_key(binning.binning_id), binning.to_dict())
    from driftloop.drift.compare import ReferenceDays

    refs = [profile_partition(s3, bucket, p, binning, sample_size) for p in partitions]
    profile, sample = merge_window(s3, refs, sample_size)
    day_profiles = [load_profile(s3, r.profile_uri) for r in refs]
    files = {
        "binning.json": dumps_canonical(binning.to_dict()),
        "profile.json": dumps_canonical(profile.to_dict()),
        "sample.parquet": table_to_parquet_bytes(sample),
        BUNDLE_DAY_COUNTS: dumps_canonical(ReferenceDays.from_profiles(day_profiles).to_dict()),
    }
    manifest = dumps_canonical(
        {
            "format": BUNDLE_FORMAT,
            "binning_id": binning.binning_id,
            "sample_size": sample_size,
            "partitions": sorted(p.content_id for p in partitions),
            "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        }
    )
    reference_id = hashlib.sha256(manifest).hexdigest()
    prefix = f"{BUNDLE_PREFIX}{reference_id}/"
    for name, data in files.items():
        kind = "application/json" if name.endswith(".json") else "application/octet-stream"
        put_once(s3, bucket, prefix + name, data, kind)
    put_once(s3, bucket, prefix + BUNDLE_MANIFEST, manifest, "application/json")  # last
    return ReferenceBundle(reference_id, s3_uri(bucket, prefix))
