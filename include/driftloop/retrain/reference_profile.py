"""The drift reference of a training window: what ``drift_monitor`` later compares against.

:func:`training_window_reference` (the ``reference_profile`` task) builds the reference bundle
(binning, sketch profile, bounded sample) of the window's valid inference-log partitions;
:func:`log_reference_artifacts` copies it into the training run next to the weights before the
version is registered, so a registered version always carries what it learned from.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from driftloop.config.settings import Settings


def training_window_reference(
    s3, settings: Settings, plan: Mapping[str, Any], sample_size: int
) -> dict[str, Any]:
    """The reference bundle of the training window's inference logs (valid partitions only):
    stored with the model version so drift_monitor compares against what it learned from."""
    from driftloop.contracts.storage import list_partition
    from driftloop.drift.reference import build_reference_bundle
    from driftloop.drift.validation import validate_partitions

    partitions = [
        p for p in (list_partition(s3, settings.bucket, d) for d in plan["days"]) if p.keys
    ]
    if not partitions:
        raise ValueError(
            f"no inference logs for the training window {plan['days'][0]}..{plan['days'][-1]}"
        )
    verdicts = {v.day: v for v in validate_partitions(s3, settings.bucket, partitions)}
    valid = [p for p in partitions if verdicts[p.day].valid]
    if not valid:
        raise ValueError("no valid inference-log partition in the training window")
    bundle = build_reference_bundle(s3, settings.bucket, valid, sample_size)
    return {**bundle.to_dict(), "days": [p.day for p in valid]}


#: artifact folder of a training run holding the reference drift profile of its window
REFERENCE_ARTIFACT_DIR = "drift_reference"
REFERENCE_FILES = ("binning.json", "profile.json", "sample.parquet")


def log_reference_artifacts(s3, client, mlflow_run_id: str, reference: Mapping[str, Any]) -> None:
    """Copy the training window's reference bundle into the run's artifacts, next to the
    weights: the model version carries what it learned from, whatever happens to the bucket.
    (``drift_monitor`` reads the S3 original through the version's ``drift_reference_uri`` tag.)"""
    from driftloop.contracts.storage import get_bytes_uri
    from driftloop.drift.reference import ReferenceBundle

    bundle_uri = ReferenceBundle.from_uri(reference["uri"]).uri
    with tempfile.TemporaryDirectory(prefix="driftloop-reference-") as work:
        folder = Path(work) / REFERENCE_ARTIFACT_DIR
        folder.mkdir()
        for name in REFERENCE_FILES:
            (folder / name).write_bytes(get_bytes_uri(s3, bundle_uri + name))
        (folder / "reference.json").write_text(
            json.dumps(dict(reference), indent=2, sort_keys=True)
        )
        client.log_artifacts(mlflow_run_id, str(folder), REFERENCE_ARTIFACT_DIR)
