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
    """The reference bundle of the check: the one the plan pinned (the champion's training
    window, a frozen one: ``uri``), else built from the valid reference days the plan listed
    (the sliding window, or an accepted new normal). Carries the plan's ``rule``,
    ``event_id`` and ``reason`` on to the decision and the history."""
    from driftloop.drift.reference import ReferenceBundle, build_reference_bundle

    reference = plan["reference"]
    keep = ("kind", "model_version", "rule", "event_id", "reason")
    out = {k: reference[k] for k in keep if reference.get(k) is not None}
    if reference.get("uri"):
        return {**out, **ReferenceBundle.from_uri(reference["uri"]).to_dict()}
    partitions = [Partition.from_dict(p) for p in validated["valid"]["reference"]]
    bundle = build_reference_bundle(s3, settings.bucket, partitions, policy.sample_size)
    return {**out, "days": [p.day for p in partitions], **bundle.to_dict()}


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
    """Every window of the check (the whole current window and the policy's recent days)
    against the reference, calibrated (:func:`driftloop.drift.compare.compare_check`), written
    to ``statistics.json``: ``features`` holds the whole window's comparisons, ``windows``
    the recent windows' ones."""
    from driftloop.drift.compare import FULL_WINDOW, compare_check, feature_methods, flat_metrics
    from driftloop.drift.reference import (
        load_binning,
        load_profile,
        load_reference_days,
        load_sample,
    )
    from driftloop.drift.samples import merge_samples, table_to_parquet_bytes
    from driftloop.drift.sketch import merge_profiles

    profiles = sorted(profiles, key=lambda r: r["day"])
    # each day's sketch is read once: the windows of the check and the merged window come from them
    current_days = [
        (load_profile(s3, r["profile_uri"]), load_sample(s3, r["sample_uri"])) for r in profiles
    ]
    current_profile = merge_profiles(p for p, _ in current_days)
    current_sample = merge_samples((t for _, t in current_days), policy.sample_size)
    reference_profile = load_profile(s3, reference["profile_uri"])
    reference_sample = load_sample(s3, reference["sample_uri"])
    reference_days = load_reference_days(s3, reference["uri"])
    embedding = load_binning(s3, reference["binning_uri"]).columns.embedding
    comparisons = compare_check(
        reference_profile,
        reference_sample,
        current_days,
        methods=feature_methods(policy, reference_profile, embedding.column if embedding else None),
        reference_days=reference_days,
        recent_days=policy.recent_days,
        mmd_sample_size=policy.mmd_sample_size,
        mmd_permutations=policy.mmd_permutations,
        draws=policy.calibration_draws,
        embedding=embedding,
    )
    windows: dict[str, list[dict[str, Any]]] = {}
    for comparison in comparisons:
        if comparison.window != FULL_WINDOW:
            windows.setdefault(comparison.window, []).append(comparison.to_dict())
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
        "features": [c.to_dict() for c in comparisons if c.window == FULL_WINDOW],
        "windows": windows,
        "calibration": {
            "draws": policy.calibration_draws,
            "reference_day_histograms": len(reference_days.days) if reference_days else 0,
            # a bundle written before per-day histograms: sampling noise only
            "day_to_day_variation": "measured" if reference_days else "not available",
        },
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
