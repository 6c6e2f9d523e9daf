"""The candidate's own outputs on its training window: the frames its drift reference is made of.

A reference made from the window's inference logs describes the model that SERVED those days
(the previous champion): its detections, confidences and embedding. Right after a promotion
``drift_monitor`` would then compare the new champion's outputs with another model's and alarm.
So when every day of the window has its frames stored (``frames/dt=D/_frames.jsonl``, the
serving side's manifest), the candidate scores them itself, exactly as serving would:

1. at most ``max_frames_per_day`` frames a day (:func:`select_frames`: spread evenly over the
   day's traffic, deterministic);
2. the candidate's serving artifact — the INT8 ONNX model the training run logged
   (``onnx.int8_model_uri`` of the training result), checked against the SHA-256 the training
   recorded for it — loaded and run by the serving package itself
   (:func:`driftloop.serving.models.open_model`, :class:`driftloop.serving.scorer.FrameScorer`
   on the stage ``serving`` route, one intra-op thread as in serving);
3. one contract partition a day, written once: ``reference-scoring/<run_id>/dt=D/part-0.parquet``
   (the inference-log rows, :func:`driftloop.serving.records.inference_table`;
   ``model_version`` = the logged INT8 model's id: the candidate has no version yet), then
   ``_SUCCESS`` holding which model scored how many frames.

A re-run of the same DAG run reuses a finished day (its ``_SUCCESS``) when the same model
scored it; a day finished by another model, or a part without ``_SUCCESS`` (an attempt that
stopped between its two writes), is an error naming the keys: write-once keys are never
replaced. A frame that cannot be read or that the model fails on is left out and counted; a day
where no frame could be scored fails.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftloop.contracts import storage

log = logging.getLogger(__name__)

SCORING_PREFIX = "reference-scoring"
PART_NAME = "part-0.parquet"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def scoring_prefix(run_id: str) -> str:
    """Where the scored partitions of DAG run ``run_id`` live."""
    return f"{SCORING_PREFIX}/{run_id}/"


def scoring_day_prefix(run_id: str, day: str) -> str:
    return f"{scoring_prefix(run_id)}dt={storage.day_str(day)}/"


def select_frames(frames: Sequence[Any], limit: int) -> list[Any]:
    """At most ``limit`` of a day's frames (anything with ``ts`` and ``image_id``), in capture
    order: the middle frame of each of ``limit`` equal runs of the day's frames by capture
    time, so busy hours keep their share of the traffic. Depends on the frames only, not on
    the manifest's line order: a re-run picks the same frames."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"max_frames_per_day must be an integer >= 1, got {limit!r}")
    ordered = sorted(frames, key=lambda frame: (frame.ts, frame.image_id))
    n = len(ordered)
    if n <= limit:
        return ordered
    return [ordered[(2 * i + 1) * n // (2 * limit)] for i in range(limit)]


@dataclass(frozen=True)
class CandidateModel:
    """The candidate's serving artifact as the training result names it."""

    uri: str  # the logged INT8 ONNX model (models:/m-…)
    sha256: str  # what its model.onnx hashed to when the training exported it
    label: str  # the rows' model_version: the logged model's id (no registered version yet)

    @classmethod
    def from_training(cls, training: Mapping[str, Any]) -> CandidateModel:
        onnx = training.get("onnx") or {}
        uri, sha256 = onnx.get("int8_model_uri"), onnx.get("int8_sha256")
        if not uri:
            raise ValueError(
                "the training result has no logged INT8 ONNX model (onnx.int8_model_uri): was "
                "it trained with --no-export?"
            )
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            raise ValueError(
                f"the training result records no SHA-256 of its INT8 model {uri} "
                f"(onnx.int8_sha256 = {sha256!r}): nothing unrecorded is scored"
            )
        label = onnx.get("int8_model_id") or training.get("mlflow_run_id") or training["run_id"]
        return cls(uri=uri, sha256=sha256, label=str(label))


def days_without_frames(s3, bucket: str, days: Sequence[str]) -> list[str]:
    """The days of the window WITHOUT a frame manifest ([]: the candidate can score them all).
    Only S3's "not found" means absent; any other error raises."""
    from driftloop.serving import layout

    return [day for day in days if not storage.exists(s3, bucket, layout.manifest_key(day))]


def finished_day(
    s3, bucket: str, run_id: str, day: str, model: CandidateModel
) -> dict[str, Any] | None:
    """The ``_SUCCESS`` document of a day this DAG run already scored with ``model``; None when
    nothing is there. Another model's day, or a part without ``_SUCCESS``, raises."""
    prefix = scoring_day_prefix(run_id, day)
    keys = [o["Key"] for o in storage.list_keys(s3, bucket, prefix)]
    marker = prefix + storage.SUCCESS_MARKER
    if marker in keys:
        done = storage.get_json(s3, bucket, marker)
        if done.get("model_sha256") != model.sha256:
            raise ValueError(
                f"s3://{bucket}/{marker}: {day} was scored by the INT8 model "
                f"{done.get('model_uri')} (SHA-256 {done.get('model_sha256')}), but this run's "
                f"candidate is {model.uri} (SHA-256 {model.sha256}); scored partitions are "
                "written once: start a new DAG run"
            )
        return done
    if keys:
        raise ValueError(
            f"s3://{bucket}/{prefix} holds {keys[:5]} without {storage.SUCCESS_MARKER} (an "
            "earlier attempt stopped while writing): remove them to score the day again"
        )
    return None


def score_day(
    s3, bucket: str, run_id: str, day: str, scorer, model: CandidateModel, limit: int
) -> dict[str, Any]:
    """Score the selected frames of ``day`` with ``scorer`` (a stage-``serving``
    :class:`~driftloop.serving.scorer.FrameScorer` of the candidate alone), write the day's
    partition and its ``_SUCCESS``; returns the ``_SUCCESS`` document."""
    from driftloop.serving.batch import PARQUET_CONTENT_TYPE, _read_frame, read_manifest, to_parquet
    from driftloop.serving.records import inference_table

    manifest = read_manifest(s3, bucket, day)
    frames = select_frames(manifest, limit)
    rows, errors = [], []
    for index, frame in enumerate(frames):
        image, problem = _read_frame(s3, bucket, frame)
        if problem is None:
            scored = scorer.score(frame, image, index)
        else:
            scored = scorer.unreadable(frame, problem)
        if scored.inference_row is not None:
            rows.append(scored.inference_row)
        else:
            errors.extend(f"{frame.image_id}: {r.error}" for r in scored.results.values())
    if not rows:
        raise ValueError(
            f"the candidate {model.uri} scored none of the {len(frames)} frames of {day} "
            f"(first error: {errors[0] if errors else None})"
        )
    if errors:
        log.warning(
            "%s: %d of %d frames not scored, e.g. %s", day, len(errors), len(frames), errors[0]
        )
    prefix = scoring_day_prefix(run_id, day)
    table = inference_table(rows)
    storage.put_once(s3, bucket, prefix + PART_NAME, to_parquet(table), PARQUET_CONTENT_TYPE)
    done = {
        "day": storage.day_str(day),
        "model_uri": model.uri,
        "model_sha256": model.sha256,
        "model_version": model.label,
        "manifest_frames": len(manifest),
        "selected": len(frames),
        "scored": len(rows),
        "errors": len(errors),
        "max_frames_per_day": limit,
    }
    storage.put_json_once(s3, bucket, prefix + storage.SUCCESS_MARKER, done)  # last
    return done


def open_candidate(model: CandidateModel, name: str, workdir: Path):
    """The candidate's INT8 model as a serving model (downloaded, hash checked, prepared)."""
    from driftloop.retrain.model_files import download_onnx
    from driftloop.serving.models import open_model

    path = download_onnx(model.uri, workdir / "download", model.sha256)
    return open_model(path, name=name, version=model.label, workdir=workdir / "prepared")


def day_partition(s3, bucket: str, run_id: str, day: str) -> storage.Partition:
    """A scored day as a :class:`~driftloop.contracts.storage.Partition` (what validation and
    the reference bundle read), listed like an inference-log day."""
    return storage.list_partition(s3, bucket, day, scoring_day_prefix(run_id, day))


def score_window(
    s3,
    bucket: str,
    days: Sequence[str],
    training: Mapping[str, Any],
    run_id: str,
    *,
    model_name: str,
    max_frames_per_day: int,
) -> tuple[list[storage.Partition], dict[str, dict[str, Any]], CandidateModel]:
    """Score every day of the window with the candidate (see the module doc); returns the
    days' partitions, their ``_SUCCESS`` documents by day, and the model that scored them.
    The model is downloaded only when a day is still to be scored."""
    from driftloop.promotion.registry import CHAMPION
    from driftloop.serving.route import route_for
    from driftloop.serving.scorer import FrameScorer

    model = CandidateModel.from_training(training)
    select_frames([], max_frames_per_day)  # a bad limit fails before anything is read
    done = {day: finished_day(s3, bucket, run_id, day, model) for day in days}
    pending = [day for day, marker in done.items() if marker is None]
    if pending:
        with tempfile.TemporaryDirectory(prefix="driftloop-reference-scoring-") as work:
            serving = open_candidate(model, model_name, Path(work))
            # serving mode: the candidate alone, as the champion route runs it
            scorer = FrameScorer(route_for(None, {CHAMPION: model.label}), {model.label: serving})
            for day in pending:
                done[day] = score_day(s3, bucket, run_id, day, scorer, model, max_frames_per_day)
                log.info("scored %s with %s: %s", day, model.label, done[day])
    partitions = [day_partition(s3, bucket, run_id, day) for day in days]
    return partitions, done, model
