"""Reference bundles: the binning, the merged profile and the sample a window is compared to.

A bundle lives under ``profiles/reference/{reference_id}/`` (``binning.json``,
``profile.json``, ``sample.parquet``), written once. ``drift_monitor`` builds one from the
sliding window before the current one when no champion exists; the retraining DAG builds one
from the champion's training window and stores its URI on the MLflow model version, so drift
is measured against what the model actually learned from.

Per-partition work is cached by content: samples under ``profiles/samples/…/{content_id}``
(independent of any binning) and sketches under ``profiles/{binning_id}/…/{content_id}``.
"""

from __future__ import annotations

import hashlib
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
from driftloop.drift.sketch import (
    Binning,
    Profile,
    iter_partition_batches,
    merge_profiles,
    merge_samples,
    parquet_bytes_to_table,
    sketch_partition,
    table_to_parquet_bytes,
)


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


def load_profile(s3, uri: str) -> Profile:
    bucket, key = split_s3_uri(uri)
    return Profile.from_dict(get_json(s3, bucket, key))


def load_sample(s3, uri: str):
    bucket, key = split_s3_uri(uri)
    return parquet_bytes_to_table(get_bytes(s3, bucket, key))


def load_binning(s3, uri: str) -> Binning:
    bucket, key = split_s3_uri(uri)
    return Binning.from_dict(get_json(s3, bucket, key))


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
    refs = [profile_partition(s3, bucket, p, binning, sample_size) for p in partitions]
    profile, sample = merge_window(s3, refs, sample_size)
    identity = dumps_canonical(
        [binning.binning_id, sample_size, sorted(p.content_id for p in partitions)]
    )
    reference_id = hashlib.sha256(identity).hexdigest()[:24]
    prefix = f"{PROFILES_PREFIX}/reference/{reference_id}/"
    put_json_once(s3, bucket, prefix + "binning.json", binning.to_dict())
    put_json_once(s3, bucket, prefix + "profile.json", profile.to_dict())
    put_once(s3, bucket, prefix + "sample.parquet", table_to_parquet_bytes(sample))
    return ReferenceBundle(reference_id, s3_uri(bucket, prefix))
