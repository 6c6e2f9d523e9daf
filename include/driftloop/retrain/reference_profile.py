"""The drift reference of a new model: what ``drift_monitor`` later compares its outputs with.

:func:`training_window_reference` (the ``reference_profile`` task, after training and before
registration) builds the reference bundle (binning, sketch profile, bounded sample) of the
training window, from one of two sources, named in the result's ``source``:

- ``scored_frames`` — when every day of the window that had traffic has its frames stored
  (``frames/dt=D/_frames.jsonl``; a day with neither frames nor inference logs had no
  traffic and is left out): the CANDIDATE's own outputs on them, at most
  ``reference_scoring.max_frames_per_day`` frames a day of the drift policy
  (:mod:`.reference_profile_scoring`). Its detections, confidences and embedding are then the
  model's own, so drift is measured against what this model did on the data it learned from;
- ``inference_logs`` — otherwise (a day with logs but no frames: one model's outputs must
  describe the whole window, never a mix), for the whole window: its inference logs. Their
  image features are the data's, but their prediction columns and embedding come from the
  model that served those days (the previous champion).

Either way the partitions are validated as ``drift_monitor`` validates inference logs and only
the valid days make the reference (none valid fails); ``frames_per_day`` counts each day's rows.
:func:`log_reference_artifacts` copies the bundle into the training run next to the weights
before the version is registered, so a registered version always carries what it learned from.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from driftloop.config.settings import Settings

log = logging.getLogger(__name__)

#: ``source`` of a reference made from the candidate's outputs on the window's frames
SCORED_FRAMES = "scored_frames"
#: ``source`` of a reference made from the window's inference logs (the serving model's)
INFERENCE_LOGS = "inference_logs"


def training_window_reference(
    s3,
    settings: Settings,
    plan: Mapping[str, Any],
    training: Mapping[str, Any],
    run_id: str,
    *,
    sample_size: int,
    max_frames_per_day: int,
) -> dict[str, Any]:
    """The reference bundle of the training window (see the module doc), as a dict: the
    bundle's URIs, ``source``, the valid ``days``, ``frames_per_day`` and, for scored frames,
    the model that scored them and where its partitions are."""
    from driftloop.contracts.storage import list_partition, s3_uri
    from driftloop.drift.reference import build_reference_bundle
    from driftloop.retrain import reference_profile_scoring as scoring

    days = list(plan["days"])
    without_frames = scoring.days_without_frames(s3, settings.bucket, days)
    logged = {d: list_partition(s3, settings.bucket, d) for d in without_frames}
    missing = [d for d in without_frames if logged[d].keys]  # traffic whose frames are gone
    framed = [d for d in days if d not in without_frames]
    if framed and not missing:
        partitions, scored, model = scoring.score_window(
            s3,
            settings.bucket,
            framed,
            training,
            run_id,
            model_name=settings.registered_model,
            max_frames_per_day=max_frames_per_day,
        )
        source = SCORED_FRAMES
        details: dict[str, Any] = {
            "model_uri": model.uri,
            "model_sha256": model.sha256,
            "scoring_uri": s3_uri(settings.bucket, scoring.scoring_prefix(run_id)),
            "max_frames_per_day": max_frames_per_day,
            "days_without_traffic": without_frames,
            # per day: frames chosen, scored, and left out (unreadable, or the model failed)
            "scoring": {
                day: {key: done[key] for key in ("selected", "scored", "errors")}
                for day, done in scored.items()
            },
        }
    else:
        log.info(
            "no frames stored for %s: the reference comes from the inference logs",
            missing or without_frames,
        )
        listed = (logged.get(d) or list_partition(s3, settings.bucket, d) for d in days)
        partitions = [p for p in listed if p.keys]
        if not partitions:
            raise ValueError(f"no inference logs for the training window {days[0]}..{days[-1]}")
        source = INFERENCE_LOGS
        details = {"days_without_frames": missing or without_frames}
    valid, rows = valid_partitions(s3, settings.bucket, partitions, source)
    bundle = build_reference_bundle(s3, settings.bucket, valid, sample_size)
    return {
        **bundle.to_dict(),
        "source": source,
        "days": [p.day for p in valid],
        "frames_per_day": rows,
        **details,
    }


def valid_partitions(
    s3, bucket: str, partitions: Sequence, source: str
) -> tuple[list, dict[str, int]]:
    """The partitions that pass the inference-log contract's validation and their row counts
    by day; ValueError when none does (naming the first reasons)."""
    from driftloop.drift.validation import validate_partitions

    verdicts = {v.day: v for v in validate_partitions(s3, bucket, partitions)}
    valid = [p for p in partitions if verdicts[p.day].valid]
    invalid = {p.day: verdicts[p.day].reasons[:3] for p in partitions if not verdicts[p.day].valid}
    if invalid:
        log.warning("invalid %s partitions left out of the reference: %s", source, invalid)
    if not valid:
        raise ValueError(f"no valid partition ({source}) in the training window: {invalid}")
    return valid, {p.day: verdicts[p.day].row_count for p in valid}


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
