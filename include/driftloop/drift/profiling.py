"""Reference, per-partition profiles and the full-data statistics of a drift check."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from driftloop.config.drift_policy import Policy
from driftloop.config.settings import Settings
from driftloop.contracts.storage import Partition, dumps_canonical, put_bytes
from driftloop.drift.run import report_prefix


def resolve_reference(
    s3, settings: Settings, plan: Mapping[str, Any], validated: Mapping[str, Any], policy: Policy
) -> dict[str, Any]:
    from driftloop.drift.reference import ReferenceBundle, build_reference_bundle

    reference = plan["reference"]
    if reference["kind"] == "champion":
        bundle = ReferenceBundle.from_uri(reference["uri"])
        return {"kind": "champion", "model_version": reference["model_version"], **bundle.to_dict()}
    partitions = [Partition.from_dict(p) for p in validated["valid"]["reference"]]
    bundle = build_reference_bundle(s3, settings.bucket, partitions, policy.sample_size)
    return {"kind": "sliding", "days": [p.day for p in partitions], **bundle.to_dict()}


def profile_current_partition(
    s3,
    settings: Settings,
    partition: Mapping[str, Any],
    reference: Mapping[str, Any],
    policy: Policy,
) -> dict[str, Any]:
    from driftloop.drift.reference import load_binning, profile_partition

    binning = load_binning(s3, reference["binning_uri"])
    ref = profile_partition(
        s3, settings.bucket, Partition.from_dict(partition), binning, policy.sample_size
    )
    return ref.to_dict()


def compute_statistics(
    s3,
    settings: Settings,
    reference: Mapping[str, Any],
    profiles: Sequence[Mapping[str, Any]],
    policy: Policy,
    run_id: str,
) -> dict[str, Any]:
    from driftloop.drift.compare import compare_windows, flat_metrics
    from driftloop.drift.reference import load_profile, load_sample, merge_window
    from driftloop.drift.sketch import table_to_parquet_bytes

    profiles = sorted(profiles, key=lambda r: r["day"])
    current_profile, current_sample = merge_window(s3, profiles, policy.sample_size)
    reference_profile = load_profile(s3, reference["profile_uri"])
    reference_sample = load_sample(s3, reference["sample_uri"])
    comparisons = compare_windows(
        reference_profile,
        current_profile,
        reference_sample,
        current_sample,
        mmd_sample_size=policy.mmd_sample_size,
        mmd_permutations=policy.mmd_permutations,
    )
    prefix = report_prefix(run_id)
    document = {
        "run_id": run_id,
        "reference": {
            "kind": reference["kind"],
            "reference_id": reference["reference_id"],
            "rows": reference_profile.rows,
            "days": reference_profile.days,
        },
        "current": {"rows": current_profile.rows, "days": current_profile.days},
        "features": [c.to_dict() for c in comparisons],
        "metrics": flat_metrics(comparisons),
    }
    statistics_uri = put_bytes(
        s3,
        settings.bucket,
        prefix + "statistics.json",
        dumps_canonical(document),
        "application/json",
    )
    sample_uri = put_bytes(
        s3,
        settings.bucket,
        prefix + "current_sample.parquet",
        table_to_parquet_bytes(current_sample),
    )
    put_bytes(
        s3,
        settings.bucket,
        prefix + "current_profile.json",
        dumps_canonical(current_profile.to_dict()),
        "application/json",
    )
    return {
        "statistics_uri": statistics_uri,
        "current_sample_uri": sample_uri,
        "current_rows": current_profile.rows,
        "reference_rows": reference_profile.rows,
    }
