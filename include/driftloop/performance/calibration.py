"""The champion's ATC calibration (:mod:`driftloop.performance.atc`), made once per version.

``performance/calibration/<registered model>/<version>.json`` (write-once): the threshold
``t``, fitted on the eval split of the snapshot the champion was trained on, with what it was
fitted from. Making it scores that split twice:

* the measured precision's model (FP32, as a labeled day is measured:
  :func:`driftloop.evaluation.detector.evaluate_model`) gives the target, mAP@0.5:0.95;
* the served model (INT8, loaded and run as serving runs it:
  :func:`driftloop.serving.models.open_model`, :func:`driftloop.serving.scorer.run_model`)
  gives each image's ``confidence_max``, the number the inference logs hold.

Later checks read the stored document back; a version is calibrated once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from driftloop.contracts import storage
from driftloop.performance import atc
from driftloop.performance.champion import MEASURED_PRECISION, SERVED_PRECISION, Champion

log = logging.getLogger(__name__)

CALIBRATION_PREFIX = "performance/calibration"
METHOD = "average-thresholded-confidence"
SCORE = "confidence_max"


def calibration_key(model: str, version: str) -> str:
    return f"{CALIBRATION_PREFIX}/{model}/{version}.json"


def calibration_document(
    champion: Champion,
    dataset_sha256: str,
    target: dict[str, Any],
    scores: list[float],
) -> dict[str, Any]:
    """The stored calibration: threshold fitted on ``scores`` to ``target["map50_95"]``."""
    threshold = atc.fit_threshold(scores, target["map50_95"])
    return {
        "model": champion.name,
        "model_version": champion.version,
        "method": METHOD,
        "score": SCORE,
        "threshold": threshold,
        "dataset_sha256": dataset_sha256,
        "split": "eval",
        "n_images": len(scores),
        "eval_map50": target["map50"],
        "eval_map50_95": target["map50_95"],
        "estimate_on_eval": atc.estimate(scores, threshold),
        "precision": {"target": MEASURED_PRECISION, "scores": SERVED_PRECISION},
    }


def served_scores(int8_path: Path, images: list[Path], workdir: Path) -> list[float]:
    """Each image's ``confidence_max`` from the served model, run as serving runs it."""
    from PIL import Image

    from driftloop.serving.models import open_model
    from driftloop.serving.scorer import run_model

    model = open_model(int8_path, name="champion", version="calibration", workdir=workdir)
    out = []
    for path in images:
        with Image.open(path) as image:
            result = run_model(model, image.convert("RGB"))
        if result.error is not None:
            raise RuntimeError(f"served model failed on calibration image {path}: {result.error}")
        out.append(atc.top_confidence(result.scores, result.best_score))
    return out


def fit_calibration(
    s3,
    bucket: str,
    champion: Champion,
    dataset_sha256: str,
    onnx: Callable[[str], Path],
    work: Path,
) -> dict[str, Any]:
    """Download the snapshot, score its eval split with both models, fit the threshold."""
    from driftloop.evaluation.detector import evaluate_model, image_label_pairs
    from driftloop.retrain.snapshot_io import dataset_uri, download_dataset

    data = download_dataset(s3, dataset_uri(bucket, dataset_sha256), work / "snapshot")
    result = evaluate_model(
        onnx(MEASURED_PRECISION), data, split="eval", label=f"{champion.label} (calibration)"
    )
    images = [image for image, _ in image_label_pairs(data, "eval")]
    scores = served_scores(onnx(SERVED_PRECISION), images, work / "served")
    target = {"map50": result.map50, "map50_95": result.map50_95}
    if target["map50_95"] != target["map50_95"]:  # NaN: the eval split has no ground truth
        raise ValueError(f"snapshot {dataset_sha256}: its eval split has no labeled object")
    return calibration_document(champion, dataset_sha256, target, scores)


def champion_calibration(
    s3,
    bucket: str,
    champion: Champion,
    dataset_sha256: str,
    onnx: Callable[[str], Path],
    work: Path,
) -> dict[str, Any]:
    """The stored calibration of the champion, made and stored (write-once) when absent."""
    from driftloop.contracts.stores import absent_if_not_found

    key = calibration_key(champion.name, champion.version)
    stored = absent_if_not_found(lambda: storage.get_json(s3, bucket, key))
    if stored is not None:
        if stored.get("dataset_sha256") != dataset_sha256 or stored.get("method") != METHOD:
            raise ValueError(
                f"s3://{bucket}/{key} was fitted on {stored.get('dataset_sha256')} with "
                f"{stored.get('method')}, not {dataset_sha256} with {METHOD}"
            )
        return stored
    document = fit_calibration(s3, bucket, champion, dataset_sha256, onnx, work)
    storage.put_json_once(s3, bucket, key, document)
    log.info(
        "%s: ATC threshold %.4f on %d eval images (mAP@0.5:0.95 %.4f) -> s3://%s/%s",
        champion.label,
        document["threshold"],
        document["n_images"],
        document["eval_map50_95"],
        bucket,
        key,
    )
    return document
