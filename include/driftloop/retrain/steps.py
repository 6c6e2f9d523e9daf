"""The steps of ``retrain_detector``, as plain functions of their inputs.

Like :mod:`driftloop.drift.steps`: every DAG task is a thin wrapper that passes an S3 client, the
settings and earlier steps' JSON documents (URIs, never data) and returns a JSON document.
Every decision that matters lands in the audit ledger with the hashes of its inputs.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from driftloop.audit.ledger import sha256_bytes
from driftloop.config.settings import PACKAGE_DIR, Settings
from driftloop.contracts.storage import dumps_canonical, put_bytes

log = logging.getLogger(__name__)

REPO_ROOT = PACKAGE_DIR.parents[1]
DEFAULT_TRAINING_PYTHON = REPO_ROOT / ".venv-train" / "bin" / "python"
RETRAIN_REPORTS_PREFIX = "reports/retrain"
DEFAULT_BASE_YAML = "yolo11n.yaml"


def report_key(run_id: str, name: str) -> str:
    from driftloop.drift.steps import safe_run_id

    return f"{RETRAIN_REPORTS_PREFIX}/{safe_run_id(run_id)}/{name}"


def ledger(settings: Settings):
    from driftloop.audit.ledger import Ledger

    return Ledger(settings.database_url)


# --- plan -------------------------------------------------------------------------------


def resolve_trigger(
    params: Mapping[str, Any], asset_events: list[Mapping[str, Any]], run_type: str
) -> dict[str, Any]:
    """Why this run happens: a confirmed drift (with its event), the monthly cron, or a person."""
    if asset_events:
        extra = dict(asset_events[-1])
        return {
            "kind": "drift",
            "reason": f"drift confirmed in {', '.join(extra.get('drifted_features', [])) or 'features'}",
            "drift_event_id": extra.get("event_id"),
            "window_end": extra.get("window_end"),
        }
    if run_type == "scheduled":
        return {
            "kind": "schedule",
            "reason": "monthly retraining",
            "drift_event_id": None,
            "window_end": None,
        }
    event_id = params.get("drift_event_id")
    return {
        "kind": "manual",
        "reason": params.get("reason") or "manual trigger",
        # an operator retraining for a drift event after a review (auto_retrain off)
        "drift_event_id": None if event_id is None else int(event_id),
        "window_end": None,
    }


def take_up_drift_event(settings: Settings, plan: Mapping[str, Any], run_id: str) -> None:
    """A manual run for a drift event: the event must exist, and once the plan is to train,
    it is being actioned (a failed run turns it into RETRAINING_FAILED, see
    :func:`record_failure`)."""
    from driftloop.drift import history

    trigger = plan["trigger"]
    event_id = trigger.get("drift_event_id")
    if trigger["kind"] != "manual" or event_id is None:
        return
    engine = history.engine_for(settings.database_url)
    event = history.get_event(engine, int(event_id))
    if event is None:
        raise LookupError(f"Param drift_event_id: no drift event with id {event_id}")
    if plan["action"] == "train" and event["status"] != "ACTIONED":
        history.set_event_status(
            engine,
            int(event_id),
            "ACTIONED",
            actor=f"airflow:{run_id}",
            note=f"retraining by hand after {event['status']}",
        )


AUTO_RETRAIN_VARIABLE = "driftloop_auto_retrain"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def resolve_auto_retrain(policy_value: bool, variable_value: str | None) -> bool:
    """The policy file's ``auto_retrain``, unless the Airflow Variable overrides it. A value
    that is neither clearly on nor off is refused: a typo must not silently switch off
    retraining (or switch it on)."""
    if variable_value is None:
        return bool(policy_value)
    text = str(variable_value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(
        f"Airflow Variable {AUTO_RETRAIN_VARIABLE}={variable_value!r}: "
        f"expected one of {', '.join(_TRUE + _FALSE)}"
    )


def plan_retrain(
    params: Mapping[str, Any],
    trigger: Mapping[str, Any],
    *,
    today: date,
    auto_retrain: bool,
) -> dict[str, Any]:
    raw_days = params.get("last_n_days")
    last_n_days = 14 if raw_days is None else int(raw_days)
    if last_n_days < 1:
        raise ValueError(f"last_n_days must be >= 1, got {last_n_days}")
    end = (
        params.get("end_date")
        or trigger.get("window_end")
        or (today - timedelta(days=1)).isoformat()
    )
    end_day = date.fromisoformat(str(end))
    days = [(end_day - timedelta(days=last_n_days - 1 - i)).isoformat() for i in range(last_n_days)]
    action = "train"
    if params.get("dry_run"):
        action = "dry_run"
    elif trigger["kind"] == "drift" and not auto_retrain:
        action = "review"
    return {
        "trigger": dict(trigger),
        "action": action,
        "auto_retrain": auto_retrain,
        "days": days,
        "epochs": int(params.get("epochs", 5)),
        "imgsz": int(params.get("imgsz", 160)),
        "batch": int(params.get("batch", 16)),
        "hyperparameters": dict(params.get("hyperparameters") or {}),
        "base": params.get("base") or "champion",
    }


def open_review(settings: Settings, plan: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """auto_retrain is off: the confirmed drift waits for a person; nothing is trained."""
    entry = ledger(settings).append(
        "drift_event",
        actor="policy:auto_retrain=false",
        subject=f"drift_event:{plan['trigger'].get('drift_event_id')}",
        payload={"action": "review_opened", "plan": dict(plan)},
        idempotency_key=f"retrain_detector/{run_id}/open_review",
    )
    return {"ledger_id": entry.id, "drift_event_id": plan["trigger"].get("drift_event_id")}


# --- data -------------------------------------------------------------------------------


def snapshot(s3, settings: Settings, plan: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    from driftloop.retrain.snapshot import snapshot_dataset

    result = snapshot_dataset(s3, settings.bucket, days=plan["days"], source_run=run_id)
    document = result.to_dict()
    ledger(settings).append(
        "dataset_snapshot",
        actor=f"airflow:{run_id}",
        subject=f"dataset:{result.sha256}",
        payload={
            "uri": document["uri"],
            "days": list(plan["days"]),
            "counts": document.get("counts", {}),
        },
        input_hashes={"dataset": result.sha256},
        idempotency_key=f"retrain_detector/{run_id}/snapshot",
    )
    return document


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


# --- training ---------------------------------------------------------------------------


#: Ultralytics arguments by kind of start; the run's ``hyperparameters`` Param overrides them.
#: From scratch, a small dataset learns fastest with AdamW at 5e-3 and no warm-up. A fine-tune
#: starts from the champion's optimum: at that rate 6 epochs cost the demo's champion 0.07
#: mAP@0.5:0.95 and the gate rejected it; a 10x lower rate keeps what it knows.
DEFAULT_HYPERPARAMETERS = {
    "scratch": {"optimizer": "AdamW", "lr0": 0.005, "warmup_epochs": 0},
    "fine-tune": {"optimizer": "AdamW", "lr0": 0.0005, "warmup_epochs": 0},
}


def hyperparameters_for(base: str, requested: Mapping[str, Any] | None) -> dict[str, Any]:
    """The defaults for training from a model yaml or fine-tuning weights, then ``requested``."""
    kind = "scratch" if str(base).endswith((".yaml", ".yml")) else "fine-tune"
    return {**DEFAULT_HYPERPARAMETERS[kind], **dict(requested or {})}


def training_arguments(
    plan: Mapping[str, Any], snapshot_doc: Mapping[str, Any], base: str, run_id: str, xcom_path: str
) -> list[str]:
    """The entrypoint's arguments: the same for the local backend and the training pod."""
    hyperparameters = hyperparameters_for(base, plan.get("hyperparameters"))
    return [
        "--data", snapshot_doc["uri"],
        "--base", base,
        "--epochs", str(plan["epochs"]),
        "--imgsz", str(plan["imgsz"]),
        "--batch", str(plan.get("batch", 16)),
        "--experiment", "retrain-detector",
        "--run-name", f"retrain {plan['days'][-1]}",
        "--tags", f"airflow.run_id={run_id}", f"trigger={plan['trigger']['kind']}",
        "--xcom-path", xcom_path,
        "--hyp", *(f"{k}={v}" for k, v in sorted(hyperparameters.items())),
    ]  # fmt: skip


def resolve_base(settings: Settings, plan: Mapping[str, Any]) -> str:
    """Fine-tune from the champion's weights when there is one, else train from the yaml."""
    from driftloop.drift import tracking
    from driftloop.promotion import registry

    requested = plan["base"]
    if requested != "champion":
        return requested
    client = tracking.client(settings.mlflow_tracking_uri)
    champion = registry.version_with_alias(client, settings.registered_model, registry.CHAMPION)
    if champion is None:
        return DEFAULT_BASE_YAML
    return f"runs:/{champion.run_id}/weights/best.pt"


def train_local(
    settings: Settings, plan: Mapping[str, Any], snapshot_doc: Mapping[str, Any], run_id: str
) -> dict[str, Any]:
    """The local backend: the training entrypoint in the training virtualenv, on the CPU."""
    python = Path(os.environ.get("DRIFTLOOP_TRAINING_PYTHON", DEFAULT_TRAINING_PYTHON))
    if not python.exists():
        raise FileNotFoundError(f"training interpreter {python} not found: run `make train-env`")
    base = resolve_base(settings, plan)
    with tempfile.TemporaryDirectory(prefix="driftloop-train-") as work:
        xcom = Path(work) / "return.json"
        argv = [
            str(python),
            "-m",
            "driftloop.training.train",
            *training_arguments(plan, snapshot_doc, base, run_id, str(xcom)),
            "--device",
            "cpu",
            "--out",
            work,
        ]
        log.info("training: %s", " ".join(argv))
        env = {**os.environ, "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri or ""}
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"training entrypoint exited {done.returncode} (see the task log above)"
            )
        return json.loads(xcom.read_text())


# --- registration, evaluation, gate -----------------------------------------------------


def code_version() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        from driftloop import __version__

        return __version__


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


def register(
    s3, settings: Settings, plan, snapshot_doc, training, reference, run_id: str
) -> dict[str, Any]:
    from driftloop.drift import tracking
    from driftloop.promotion import registry

    client = tracking.client(settings.mlflow_tracking_uri)
    mlflow_run_id = training.get("mlflow_run_id") or training["run_id"]
    # before the version exists: a registered version always has its reference
    log_reference_artifacts(s3, client, mlflow_run_id, reference)
    version, created = registry.register_candidate(
        client,
        settings.registered_model,
        run_id=mlflow_run_id,
        airflow_run_id=run_id,
        tags={
            "dataset_sha256": snapshot_doc["sha256"],
            "code_version": code_version(),
            "trigger": plan["trigger"]["kind"],
            "drift_event_id": plan["trigger"].get("drift_event_id") or "-",
            tracking.REFERENCE_TAG: reference["uri"],
        },
        description=f"{plan['trigger']['reason']}; data {plan['days'][0]}..{plan['days'][-1]}",
    )
    if created:
        ledger(settings).append(
            "training_run",
            actor=f"airflow:{run_id}",
            subject=f"model:{settings.registered_model}/v{version.version}",
            payload={
                "mlflow_run_id": mlflow_run_id,
                "plan": dict(plan),
                "metrics": training.get("metrics", {}),
            },
            input_hashes={
                "dataset": snapshot_doc["sha256"],
                "reference": reference["reference_id"],
            },
            idempotency_key=f"retrain_detector/{run_id}/register",
        )
    return {
        "name": settings.registered_model,
        "version": str(version.version),
        "run_id": mlflow_run_id,
        "base": training.get("base"),  # as resolved: a model yaml or the champion's weights
        "created": created,
    }


#: Timed inferences per model for the latency check. Two models of the same architecture
#: differ only by noise; with one run per evaluation image (~170) their p95s were 6 % apart in
#: the demo, close to the 10 % tolerance. 600 runs cost ~6 s and steady the tail estimate.
LATENCY_RUNS = 600
LATENCY_WARMUP = 20


def _download(client, run_id: str, path: str, dest: Path) -> Path:
    return Path(client.download_artifacts(run_id, path, str(dest)))


def evaluate(
    s3, settings: Settings, snapshot_doc, candidate: Mapping[str, Any], policy, run_id: str
) -> dict[str, Any]:
    """Candidate and champion on the same evaluation split, in this one process:
    FP32/INT8 mAP per image for the paired bootstrap, p95 latency of the INT8 artifacts
    measured interleaved."""
    from driftloop.drift import tracking
    from driftloop.evaluation.bootstrap import paired_bootstrap_delta
    from driftloop.evaluation.detector import (
        evaluate_model,
        image_label_pairs,
        measure_latency_interleaved,
    )
    from driftloop.promotion import registry
    from driftloop.promotion.gate import EvalSummary
    from driftloop.retrain.snapshot import download_dataset

    client = tracking.client(settings.mlflow_tracking_uri)
    champion = registry.version_with_alias(client, settings.registered_model, registry.CHAMPION)
    if champion is not None and str(champion.version) == str(candidate["version"]):
        champion = None  # a re-run after promotion: nothing to compare against but itself
    with tempfile.TemporaryDirectory(prefix="driftloop-eval-") as work:
        work = Path(work)
        data = download_dataset(s3, snapshot_doc["uri"], work / "data")
        models = {"candidate": candidate["run_id"]}
        if champion is not None:
            models["champion"] = champion.run_id
        onnx = {
            (name, kind): _download(client, mlflow_run, f"onnx/model_{kind}.onnx", work / name)
            for name, mlflow_run in models.items()
            for kind in ("fp32", "int8")
        }
        results = {key: evaluate_model(path, data) for key, path in onnx.items()}
        images = [img for img, _ in image_label_pairs(data)]
        latency = measure_latency_interleaved(
            {name: onnx[(name, "int8")] for name in models},
            images,
            warmup=LATENCY_WARMUP,
            runs=max(LATENCY_RUNS, len(images)),
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

        delta = None
        if champion is not None:
            delta = paired_bootstrap_delta(
                results[("candidate", "fp32")].records,
                results[("champion", "fp32")].records,
                metric=policy.primary_metric,
                n_resamples=policy.bootstrap_n_resamples,
                confidence=policy.bootstrap_confidence,
            )
        document = {
            "candidate": {"version": candidate["version"], **summary("candidate").to_dict()},
            "champion": None
            if champion is None
            else {"version": str(champion.version), **summary("champion").to_dict()},
            "delta": None if delta is None else delta.to_dict(),
            "latency": latency,
            "dataset_sha256": snapshot_doc["sha256"],
        }
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
        payload={k: document[k] for k in ("candidate", "champion", "delta", "uri")},
        input_hashes={
            "dataset": snapshot_doc["sha256"],
            "evaluation": sha256_bytes(dumps_canonical(document)),
        },
        idempotency_key=f"retrain_detector/{run_id}/evaluate",
    )
    return document


def gate(
    settings: Settings, evaluation: Mapping[str, Any] | None, candidate, policy, run_id: str
) -> dict[str, Any]:
    """The promotion decision; fails closed when the evaluation is missing or broken."""
    from driftloop.evaluation.bootstrap import DeltaCI
    from driftloop.promotion.gate import EvalSummary, decide_promotion

    if evaluation is None:
        decision = {
            "promote": False,
            "target_alias": policy.promote_to,
            "reasons": ["evaluation failed or produced no result: fail closed"],
            "checks": [],
            "policy_version": policy.version,
        }
        table = "evaluation failed: no promotion"
    else:
        champion = evaluation.get("champion")
        result = decide_promotion(
            EvalSummary.from_dict(evaluation["candidate"]),
            EvalSummary.from_dict(champion) if champion else None,
            DeltaCI.from_dict(evaluation["delta"]) if evaluation.get("delta") else None,
            policy,
        )
        decision, table = result.to_dict(), result.table()
    decision["table"] = table
    decision["requires_approval"] = bool(decision["promote"]) and policy.approval == "required"
    ledger(settings).append(
        "gate_decision",
        actor="policy:promotion_gate",
        subject=f"model:{settings.registered_model}/v{candidate['version']}",
        payload=decision,
        input_hashes={"evaluation": sha256_bytes(dumps_canonical(evaluation))},
        idempotency_key=f"retrain_detector/{run_id}/gate",
    )
    return decision


# --- outcome ----------------------------------------------------------------------------


def promote(
    settings: Settings, candidate, decision, approval: Mapping[str, Any] | None, run_id: str
) -> dict[str, Any]:
    from driftloop.drift import tracking
    from driftloop.promotion import registry

    record_approval(settings, candidate, approval, run_id)
    client = tracking.client(settings.mlflow_tracking_uri)
    change = registry.promote(
        client, settings.registered_model, candidate["version"], target=decision["target_alias"]
    )
    actor = _actor(approval, default="policy:auto")
    registry.set_tags(
        client,
        settings.registered_model,
        candidate["version"],
        {"gate": "passed", "promoted_by": actor},
    )
    ledger(settings).append(
        "promotion",
        actor=actor,
        subject=f"model:{settings.registered_model}/v{candidate['version']}",
        payload={
            "aliases": change.to_dict(),
            "target": decision["target_alias"],
            "approval": approval,
        },
        idempotency_key=f"retrain_detector/{run_id}/promote",
    )
    return {"version": candidate["version"], **change.to_dict(), "actor": actor}


def reject(
    settings: Settings, candidate, decision, approval: Mapping[str, Any] | None, run_id: str
) -> dict[str, Any]:
    from driftloop.drift import tracking
    from driftloop.promotion import registry

    record_approval(settings, candidate, approval, run_id)
    client = tracking.client(settings.mlflow_tracking_uri)
    reasons = decision.get("reasons") or (
        [f"operator rejected: {approval.get('chosen_options')}"] if approval else ["rejected"]
    )
    registry.set_tags(
        client,
        settings.registered_model,
        candidate["version"],
        {"gate": "rejected", "gate_reasons": "; ".join(reasons)[:4900]},
    )
    ledger(settings).append(
        "rejection",
        actor=_actor(approval, default="policy:promotion_gate"),
        subject=f"model:{settings.registered_model}/v{candidate['version']}",
        payload={
            "reasons": reasons,
            "champion_untouched": registry.aliases(client, settings.registered_model),
        },
        idempotency_key=f"retrain_detector/{run_id}/reject",
    )
    return {"version": candidate["version"], "reasons": reasons}


def record_approval(
    settings: Settings, candidate, approval: Mapping[str, Any] | None, run_id: str
) -> None:
    """The operator's answer to the promotion request, as its own ledger row (who, what, when)."""
    if not approval:
        return
    ledger(settings).append(
        "approval",
        actor=_actor(approval, default="unknown"),
        subject=f"model:{settings.registered_model}/v{candidate['version']}",
        payload={"request": "promotion", **dict(approval)},
        idempotency_key=f"retrain_detector/{run_id}/approval",
    )


def _actor(approval: Mapping[str, Any] | None, default: str) -> str:
    if not approval:
        return default
    user = approval.get("responded_by_user") or {}
    return (
        str(user.get("name") or user.get("id") or "unknown")
        if isinstance(user, Mapping)
        else str(user)
    )


def apply_retention(settings: Settings, policy, run_id: str) -> dict[str, Any]:
    from driftloop.drift import tracking
    from driftloop.promotion import registry
    from driftloop.promotion.retention import plan_retention

    client = tracking.client(settings.mlflow_tracking_uri)
    plan = plan_retention(
        registry.version_infos(client, settings.registered_model),
        keep_last=policy.retention_keep_last,
    )
    archived = registry.apply_retention(
        client, settings.registered_model, plan, mode=policy.retention_archive
    )
    if archived:
        ledger(settings).append(
            "retention",
            actor="policy:retention",
            subject=f"model:{settings.registered_model}",
            payload={
                "archived": archived,
                "mode": policy.retention_archive,
                "keep_last": policy.retention_keep_last,
            },
            idempotency_key=f"retrain_detector/{run_id}/retention",
        )
    return {"archived": archived, "kept": sorted(int(v) for v in plan.keep)}


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
        "Served as the INT8 ONNX artifact; the FP32 ONNX and PyTorch weights are kept for audit.",
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
    """Model card and ``model.json`` (SHA-256 of every artifact, dataset hash, hyper-parameters)
    in the candidate's MLflow run, next to its weights and ONNX files."""
    from driftloop.audit.ledger import sha256_file
    from driftloop.drift import tracking

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
        card = model_card(snapshot_doc, evaluation, decision, candidate, plan)
        record = {
            "name": settings.registered_model,
            "version": candidate["version"],
            "mlflow_run_id": run_id,
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
            "code_version": code_version(),
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


def record_failure(
    settings: Settings, plan: Mapping[str, Any] | None, run_id: str, failed_tasks: list[str]
) -> dict[str, Any]:
    """A failed retraining: the drift event says so and the ledger records it; the champion
    is untouched because promotion only ever happens after a passed gate."""
    from driftloop.drift import history

    event_id = (plan or {}).get("trigger", {}).get("drift_event_id")
    if event_id:
        history.set_event_status(
            history.engine_for(settings.database_url),
            int(event_id),
            "RETRAINING_FAILED",
            actor=f"airflow:{run_id}",
            note=f"failed tasks: {', '.join(failed_tasks)}",
        )
    ledger(settings).append(
        "training_run",
        actor=f"airflow:{run_id}",
        subject=f"drift_event:{event_id}" if event_id else f"model:{settings.registered_model}",
        payload={"status": "failed", "failed_tasks": failed_tasks},
        idempotency_key=f"retrain_detector/{run_id}/failure",
    )
    return {"drift_event_id": event_id, "failed_tasks": failed_tasks}


# --- rollback ---------------------------------------------------------------------------


def rollback(settings: Settings, reason: str, actor: str, run_id: str) -> dict[str, Any]:
    """The one-step rollback: ``champion`` back to ``previous-champion``, recorded in the
    ledger with who asked and why. A re-run of the same DAG run returns the recorded change
    instead of rolling back a second time."""
    from driftloop.drift import tracking
    from driftloop.promotion import registry

    key = f"rollback_detector/{run_id}/rollback"
    book = ledger(settings)
    done = book.get(key)
    if done is not None:
        return {**done.payload, "ledger_id": done.id, "already_done": True}
    client = tracking.client(settings.mlflow_tracking_uri)
    change = registry.rollback(client, settings.registered_model)
    restored, withdrawn = change.after[registry.CHAMPION], change.before[registry.CHAMPION]
    registry.set_tags(client, settings.registered_model, withdrawn, {"rolled_back": reason[:4900]})
    entry = book.append(
        "rollback",
        actor=actor,
        subject=f"model:{settings.registered_model}/v{restored}",
        payload={
            "reason": reason,
            "withdrawn": withdrawn,
            "restored": restored,
            "aliases": change.to_dict(),
        },
        idempotency_key=key,
    )
    return {**entry.payload, "ledger_id": entry.id, "already_done": False}
