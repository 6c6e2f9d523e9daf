"""Candidate vs champion on the same evaluation split, in one process (the ``evaluate`` task).

Both models are the logged ONNX models of MLflow (the candidate's from its registration, the
champion's from its version, ``models:/`` URIs downloaded here): FP32 and INT8 mAP per image
for the paired bootstrap of the delta, and the INT8 models' latency compared in paired
interleaved rounds (:func:`driftloop.evaluation.latency.compare_onnx_latency`: the CI of the
p95 ratio and both graph signatures, recorded under ``latency``), and the primary metric's
delta on each camera's images (:func:`driftloop.promotion.gate_slices.camera_slices`, under
``slices``; a frame's camera from the snapshot's ``frames.jsonl``). The result goes to
``reports/retrain/<run>/evaluation.json``, the ledger, and — as MLflow 3 model metrics — onto
the candidate's logged models.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from driftloop.audit.hashing import sha256_bytes
from driftloop.config.settings import Settings
from driftloop.contracts.storage import dumps_canonical, put_bytes
from driftloop.retrain.records import ledger, report_key

#: untimed rounds before the paired latency rounds (``latency.rounds`` of the policy): each
#: runs both models twice, so the sessions' first-call allocations are never timed
LATENCY_WARMUP_ROUNDS = 10


def evaluate(
    s3, settings: Settings, snapshot_doc, candidate: Mapping[str, Any], policy, run_id: str
) -> dict[str, Any]:
    """Candidate and champion on the same evaluation split, in this one process:
    FP32/INT8 mAP per image for the paired bootstrap; the INT8 models' latency in
    ``policy.latency.rounds`` paired rounds with the CI of the p95 ratio at
    ``policy.latency.confidence`` and both graph signatures (without a champion: the
    candidate's p50/p95 from as many runs, for the floor). The models are the logged MLflow
    models (the candidate's from its registration, the champion's from its version); the
    candidate's numbers are linked to them as model metrics."""
    from driftloop.drift import tracking
    from driftloop.evaluation.bootstrap import paired_bootstrap_delta
    from driftloop.evaluation.detector import evaluate_model, image_label_pairs
    from driftloop.evaluation.latency import RUNS_PER_ROUND, compare_onnx_latency
    from driftloop.evaluation.latency_table import measure_latency_interleaved
    from driftloop.promotion import registry
    from driftloop.promotion.gate import EvalSummary
    from driftloop.promotion.gate_slices import camera_slices
    from driftloop.retrain.model_files import (
        download_onnx,
        log_evaluation_metrics,
        recorded_onnx_hashes,
    )
    from driftloop.retrain.snapshot_io import download_dataset, snapshot_frames

    client = tracking.client(settings.mlflow_tracking_uri)
    champion = registry.version_with_alias(client, settings.registered_model, registry.CHAMPION)
    if champion is not None and str(champion.version) == str(candidate["version"]):
        champion = None  # a re-run after promotion: nothing to compare against but itself
    with tempfile.TemporaryDirectory(prefix="driftloop-eval-") as work:
        work = Path(work)
        data = download_dataset(s3, snapshot_doc["uri"], work / "data")
        camera_of = {stem: info.camera_id for stem, info in snapshot_frames(data).items()}
        models = {"candidate": candidate["models"]}
        if champion is not None:
            models["champion"] = registry.onnx_model_uris(champion)
        # every ONNX file is checked against its recorded SHA-256 before onnxruntime opens it
        hashes = recorded_onnx_hashes(
            client, settings.registered_model, candidate["version"], champion
        )
        onnx = {
            (name, kind): download_onnx(uris[kind], work / name / kind, hashes[name][kind])
            for name, uris in models.items()
            for kind in ("fp32", "int8")
        }
        results = {key: evaluate_model(path, data) for key, path in onnx.items()}
        images = [img for img, _ in image_label_pairs(data)]
        comparison = None
        if champion is not None:
            comparison = compare_onnx_latency(
                onnx[("candidate", "int8")],
                onnx[("champion", "int8")],
                images,
                rounds=policy.latency_rounds,
                warmup=LATENCY_WARMUP_ROUNDS,
                confidence=policy.latency_confidence,
            )
            latency = {"candidate": comparison.candidate, "champion": comparison.champion}
        else:  # nothing to compare with: the candidate's own p95, for the absolute floor
            latency = measure_latency_interleaved(
                {"candidate": onnx[("candidate", "int8")]},
                images,
                warmup=LATENCY_WARMUP_ROUNDS * RUNS_PER_ROUND,
                runs=policy.latency_rounds * RUNS_PER_ROUND,
            )

        def summary(name: str) -> EvalSummary:
            fp32, int8 = results[(name, "fp32")], results[(name, "int8")]
            return EvalSummary(
                fp32.map50,
                fp32.map50_95,
                int8.map50,
                latency[name]["p95_ms"],
                latency[name]["p50_ms"],
                fp32.n_images,
            )

        delta = slices = None
        if champion is not None:
            paired = results[("candidate", "fp32")].records, results[("champion", "fp32")].records
            delta = paired_bootstrap_delta(
                *paired,
                metric=policy.primary_metric,
                n_resamples=policy.bootstrap_n_resamples,
                confidence=policy.bootstrap_confidence,
            )
            slices = camera_slices(*paired, camera_of, policy)
        document = {
            "candidate": {"version": candidate["version"], **summary("candidate").to_dict()},
            "champion": None
            if champion is None
            else {"version": str(champion.version), **summary("champion").to_dict()},
            "delta": None if delta is None else delta.to_dict(),
            "latency": None if comparison is None else comparison.to_dict(),
            "slices": slices,
            "dataset_sha256": snapshot_doc["sha256"],
        }
    # on each logged model's page in MLflow: what it scored on this snapshot
    document["model_metrics"] = log_evaluation_metrics(
        client,
        candidate["run_id"],
        candidate.get("model_ids") or {},
        document["candidate"],
        candidate.get("dataset_input"),
    )
    document["uri"] = put_bytes(
        s3,
        settings.bucket,
        report_key(run_id, "evaluation.json"),
        dumps_canonical(document),
        "application/json",
    )
    ledger(settings).append(
        "evaluation",
        actor=f"airflow:{run_id}",
        subject=f"model:{settings.registered_model}/v{candidate['version']}",
        payload={
            k: document[k] for k in ("candidate", "champion", "delta", "latency", "slices", "uri")
        },
        input_hashes={
            "dataset": snapshot_doc["sha256"],
            "evaluation": sha256_bytes(dumps_canonical(document)),
        },
        idempotency_key=f"retrain_detector/{run_id}/evaluate",
    )
    return document
