"""The performance check of a drift_monitor run: what is new in its window, measured or
estimated, stored, and summed up in ``reports/drift/<run>/performance.json``.

For the current champion (:mod:`driftloop.performance.champion`; none: nothing to do):

1. **measured** — each labeled day of the window the champion has no measured row for yet
   (rows of this same run are redone: a retry replaces them): its frames are read and
   checked (:mod:`driftloop.performance.labeled_days`), scored with the champion's FP32
   ONNX model the way the gate scores it (:func:`driftloop.evaluation.detector.evaluate_model`)
   and reduced to mAP@0.5 and mAP@0.5:0.95 with a bootstrap CI, over all cameras (``*``) and
   per camera (:mod:`driftloop.performance.scores`);
2. **estimated** — each complete inference-log day of the window not yet estimated: the ATC
   estimate of mAP@0.5:0.95 from the champion's logged ``confidence_max``
   (:mod:`driftloop.performance.atc`), with the version's calibration
   (:mod:`driftloop.performance.calibration`, made on first use);
3. rows into ``performance_days`` (:mod:`driftloop.performance.store`), then the document
   (write-once; a re-run of a run that wrote it gets it back unchanged).

``estimate_mae`` is the mean |estimated − measured| of mAP@0.5:0.95 over every stored day of
the champion that has both (all cameras), ``estimate_days`` how many such days there are.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from driftloop.config.settings import Settings
from driftloop.contracts import storage
from driftloop.performance import atc, store
from driftloop.performance.champion import (
    MEASURED_PRECISION,
    Champion,
    baseline_of,
    champion_onnx,
    current_champion,
    eval_dataset,
    no_baseline_note,
)
from driftloop.performance.labeled_days import labeled_days, load_labeled_day
from driftloop.performance.scores import N_RESAMPLES, camera_scores
from driftloop.performance.tables import ALL_CAMERAS

log = logging.getLogger(__name__)

DOCUMENT_NAME = "performance.json"
ROW_FIELDS = ("n_frames", "map50", "map50_95", "map50_95_low", "map50_95_high")


def document_key(run_id: str) -> str:
    from driftloop.drift.run import report_prefix

    return report_prefix(run_id) + DOCUMENT_NAME


def window_days(window_start: date, window_end: date) -> list[date]:
    if window_end < window_start:
        raise ValueError(f"window_end {window_end} is before window_start {window_start}")
    return [window_start + timedelta(days=i) for i in range((window_end - window_start).days + 1)]


def document(
    version: str | None,
    baseline: dict[str, Any] | None,
    rows: list[dict[str, Any]],
    mae: float | None,
    n_days: int,
    rejected: list[dict[str, str]],
    note: str | None = None,
) -> dict[str, Any]:
    """The ``performance.json`` shape the verdict codes against (rows: this run's new ones;
    ``note``: why nothing was measured, when nothing could be)."""
    keys = ("day", "source", "camera", *ROW_FIELDS)
    return {
        "model_version": version,
        "baseline": None
        if baseline is None
        else {k: baseline[k] for k in ("map50", "map50_95", "source")},
        "days": [{k: row[k] for k in keys} for row in rows],
        "estimate_mae": mae,
        "estimate_days": n_days,
        "rejected": list(rejected),
        "note": note,
    }


class _ChampionFiles:
    """The champion's ONNX files, downloaded (and hash-checked) on first use."""

    def __init__(self, champion: Champion, work: Path):
        self.champion, self.work, self.paths = champion, work, {}

    def __call__(self, kind: str) -> Path:
        if kind not in self.paths:
            self.paths[kind] = champion_onnx(self.champion, kind, self.work / "models")
        return self.paths[kind]


def measure_day(s3, bucket: str, champion: Champion, onnx, day: date, work: Path, **bootstrap):
    """``(rows without run fields, rejected)`` of one labeled day."""
    from driftloop.evaluation.detector import evaluate_model

    labeled = load_labeled_day(s3, bucket, day, work / f"frames-{day.isoformat()}")
    if not labeled.frames:
        return [], labeled.rejected
    result = evaluate_model(
        onnx(MEASURED_PRECISION), labeled.folder, split=None, label=f"{champion.label} {day}"
    )
    by_camera = camera_scores(result.records, labeled.cameras_of(result.records), **bootstrap)
    rows = [
        {"day": day.isoformat(), "source": "measured", "camera": camera, **scores}
        for camera, scores in by_camera.items()
    ]
    return rows, labeled.rejected


def estimate_logged_days(
    s3, settings: Settings, champion: Champion, baseline, onnx, days, work: Path
):
    """``(rows, rejected)`` of the ATC estimate of each day with champion rows in its logs."""
    from driftloop.performance.calibration import champion_calibration
    from driftloop.performance.logs import champion_confidences

    rows, rejected, calibration = [], [], None
    for day in days:
        found = champion_confidences(s3, settings.bucket, day, champion.version)
        rejected += found.rejected
        if not found.scores:
            continue
        if calibration is None:
            dataset = eval_dataset(champion, baseline)
            calibration = champion_calibration(
                s3, settings.bucket, champion, dataset, onnx, work / "calibration"
            )
        value = atc.estimate(found.scores, calibration["threshold"])
        rows.append(
            {"day": day.isoformat(), "source": "estimated", "camera": ALL_CAMERAS}
            | {"n_frames": len(found.scores), "map50": None, "map50_95": value}
            | {"map50_95_low": None, "map50_95_high": None}
        )
    return rows, rejected


def run_performance_check(
    settings: Settings,
    *,
    run_id: str,
    window_start: date,
    window_end: date,
    s3=None,
    engine=None,
    n_resamples: int = N_RESAMPLES,
) -> dict[str, Any]:
    """Measure and estimate what is new in the window for the champion, store the rows and
    write ``reports/drift/<run>/performance.json``; returns the document. ``s3``: the task's
    client (default: boto3's from the environment); ``engine``: the drift history's."""
    from driftloop.contracts.stores import absent_if_not_found
    from driftloop.drift import history, tracking

    s3 = s3 if s3 is not None else storage.s3_client()
    key = document_key(run_id)
    written = absent_if_not_found(lambda: storage.get_json(s3, settings.bucket, key))
    if written is not None:
        return written  # this run's check is on record
    days = window_days(window_start, window_end)
    client = tracking.client(settings.mlflow_tracking_uri)
    champion = current_champion(client, settings.registered_model)
    if champion is None:
        doc = document(None, None, [], None, 0, [])
        storage.put_json_once(s3, settings.bucket, key, doc)
        return doc
    baseline = baseline_of(settings, champion)
    if baseline is None:  # never evaluated by the gate: nothing to judge its accuracy against
        note = no_baseline_note(champion)
        log.warning("performance not measured: %s", note)
        doc = document(champion.version, None, [], None, 0, [], note)
        storage.put_json_once(s3, settings.bucket, key, doc)
        return doc
    engine = engine if engine is not None else history.engine_for(settings.database_url)
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="driftloop-performance-") as tmp:
        work = Path(tmp)
        onnx = _ChampionFiles(champion, work)
        done = store.days_done(engine, champion.version, "measured", days, except_run=run_id)
        for day in labeled_days(s3, settings.bucket, [d for d in days if d not in done]):
            new, bad = measure_day(
                s3, settings.bucket, champion, onnx, day, work, n_resamples=n_resamples
            )
            rows += new
            rejected += bad
        done = store.days_done(engine, champion.version, "estimated", days, except_run=run_id)
        new, bad = estimate_logged_days(
            s3, settings, champion, baseline, onnx, [d for d in days if d not in done], work
        )
        rows += new
        rejected += bad
    rows.sort(key=lambda r: (r["day"], r["source"], r["camera"] != ALL_CAMERAS, r["camera"]))
    base = {"model_version": champion.version, "run_id": run_id}
    store.write_rows(
        engine, [{**r, **base, "baseline_map50_95": baseline["map50_95"]} for r in rows]
    )
    mae, n_days = store.estimate_error(engine, champion.version)
    doc = document(champion.version, baseline, rows, mae, n_days, rejected)
    storage.put_json_once(s3, settings.bucket, key, doc)
    log.info(
        "performance of %s: %d new row(s), %d rejected object(s), estimate MAE %s over %d day(s)",
        champion.label,
        len(rows),
        len(rejected),
        mae,
        n_days,
    )
    return doc
