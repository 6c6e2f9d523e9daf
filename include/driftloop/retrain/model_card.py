"""The model card and ``model.json`` of a candidate (the ``model_record`` task).

Both go into the candidate's MLflow run next to its weights, whatever the gate decided: the
card says what the model is for, what it was trained on, how it scored against the champion
and why it was promoted or rejected; ``model.json`` holds the SHA-256 of every artifact of the
run and of its two logged ONNX models, the dataset hash and the hyper-parameters.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from driftloop.audit.hashing import sha256_bytes
from driftloop.config.settings import Settings
from driftloop.retrain.records import code_version
from driftloop.retrain.training_arguments import hyperparameters_for


def model_card(snapshot_doc, evaluation, decision, candidate, plan) -> str:
    """Markdown model card: data, metrics, decision, limits, intended use."""
    ev = evaluation or {}
    cand = ev.get("candidate") or {}
    champ = ev.get("champion") or {}
    lines = [
        f"# driftloop-detector v{candidate['version']}",
        "",
        "## Intended use",
        "Detects `ball` and `player` in fixed-camera sports frames for the driftloop demo service.",
        f"Served as the INT8 ONNX model (`models:/{candidate.get('name', 'driftloop-detector')}"
        "@champion`, ONNX flavor: "
        "`mlflow.onnx.load_model` or `mlflow.pyfunc.load_model`); the FP32 ONNX model and the "
        "PyTorch weights are kept for audit.",
        "",
        "## Training data",
        f"- dataset `datasets/{snapshot_doc['sha256']}/` (SHA-256 {snapshot_doc['sha256']})",
        f"- labeled frames of {plan['days'][0]} .. {plan['days'][-1]} plus the fixed golden set (evaluation only)",
        f"- splits: {json.dumps(snapshot_doc.get('counts', {}), sort_keys=True)}",
        f"- trigger: {plan['trigger']['kind']} — {plan['trigger']['reason']}",
        "",
        "## Evaluation (same split, same process as the champion)",
        "| metric | candidate | champion |",
        "|---|---|---|",
    ]
    for key in ("map50", "map50_95", "map50_int8", "p50_latency_ms", "p95_latency_ms", "n_images"):
        lines.append(f"| {key} | {cand.get(key, '-')} | {champ.get(key, '-')} |")
    if ev.get("delta"):
        d = ev["delta"]
        lines.append(
            f"\nPaired bootstrap delta of {d.get('metric')}: {d['point']:.4f} [{d['low']:.4f}, {d['high']:.4f}]"
        )
    lines += [
        "",
        "## Gate decision",
        "```",
        decision.get("table", ""),
        "```",
        "",
        "## Limits",
        "- Trained on synthetic-style frames at small image sizes; not validated on other sports, night scenes or moving cameras.",
        "- mAP is computed COCO-style (101-point) on the evaluation split; it is not comparable to Ultralytics' own mAP.",
        "- INT8 quantization excludes the detection head; accuracy loss versus FP32 is a gate check.",
    ]
    return "\n".join(lines) + "\n"


def write_model_record(
    settings: Settings, snapshot_doc, evaluation, decision, candidate, plan, reference
) -> dict[str, Any]:
    """Model card and ``model.json`` (SHA-256 of every artifact of the run and of its two logged
    ONNX models, under ``models/<fp32|int8>/``; dataset hash, hyper-parameters) in the
    candidate's MLflow run, next to its weights."""
    from driftloop.audit.hashing import sha256_file
    from driftloop.drift import tracking
    from driftloop.retrain.model_files import logged_model_files

    client = tracking.client(settings.mlflow_tracking_uri)
    run_id = candidate["run_id"]
    with tempfile.TemporaryDirectory(prefix="driftloop-card-") as work:
        work = Path(work)
        local = Path(client.download_artifacts(run_id, "", str(work / "artifacts")))
        hashes = {
            str(p.relative_to(local)): sha256_file(p)
            for p in sorted(local.rglob("*"))
            if p.is_file() and p.name not in ("model.json", "model_card.md")
        }
        for kind, model_id in sorted((candidate.get("model_ids") or {}).items()):
            files = logged_model_files(model_id, work / "models") if model_id else {}
            hashes.update({f"models/{kind}/{rel}": sha256_file(p) for rel, p in files.items()})
        card = model_card(snapshot_doc, evaluation, decision, candidate, plan)
        record = {
            "name": settings.registered_model,
            "version": candidate["version"],
            "mlflow_run_id": run_id,
            "model_uri": candidate.get("model_uri"),
            "models": candidate.get("models"),
            "dataset_sha256": snapshot_doc["sha256"],
            "reference_profile": reference["uri"],
            "hyper_parameters": {
                "epochs": plan["epochs"],
                "imgsz": plan["imgsz"],
                "batch": plan.get("batch"),
                "base": plan["base"],
                "resolved_base": candidate.get("base"),
                "ultralytics": hyperparameters_for(
                    candidate.get("base") or plan["base"], plan.get("hyperparameters")
                ),
            },
            "artifacts": hashes,
            "model_card_sha256": sha256_bytes(card.encode()),
            "gate": {"promote": decision.get("promote"), "reasons": decision.get("reasons", [])},
            "code_version": code_version(settings),
        }
        out = work / "record"
        out.mkdir()
        (out / "model_card.md").write_text(card)
        (out / "model.json").write_text(json.dumps(record, indent=2, sort_keys=True))
        client.log_artifacts(run_id, str(out))
    return {
        "artifacts": len(hashes),
        "model_json_sha256": sha256_bytes(json.dumps(record, sort_keys=True).encode()),
    }
