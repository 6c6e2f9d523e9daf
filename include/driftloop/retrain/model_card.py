"""The model card and ``model.json`` of a candidate (the ``model_record`` task).

Both go into the candidate's MLflow run next to its weights right after the gate, whatever it
decided, and before any approval or promotion: the card says what the model is for, what it was
trained on, how it scored against the champion and what the gate decided; ``model.json`` holds
the SHA-256 of every artifact of the run and of its two logged ONNX models, the dataset hash
and the hyper-parameters. The SHA-256 of the exact ``model.json`` bytes is the version's
``model_record_sha256`` tag; :func:`check_model_record` checks the two agree (promotion does,
before it moves an alias; a fine-tune does, before it trusts the champion's weight hash).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from driftloop.audit.hashing import sha256_bytes, sha256_file
from driftloop.config.settings import Settings
from driftloop.retrain.records import code_version
from driftloop.retrain.training_arguments import hyperparameters_for

#: model-version tag: SHA-256 of the exact bytes of the version's ``model.json``
MODEL_RECORD_TAG = "model_record_sha256"
RECORD_FILE = "model.json"
CARD_FILE = "model_card.md"
RECORD_FILES = (RECORD_FILE, CARD_FILE)
#: the PyTorch weights in a training run (what a fine-tune starts from)
WEIGHTS_ARTIFACT = "weights/best.pt"


def model_card(snapshot_doc, evaluation, decision, candidate, plan, reference=None) -> str:
    """Markdown model card: data, drift reference, metrics, decision, limits, intended use."""
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
        *reference_lines(reference),
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
    if ev.get("slices"):
        lines += ["", *slice_lines(ev["slices"])]
    if ev.get("latency"):
        lines += ["", *latency_lines(ev["latency"])]
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


def reference_lines(reference: dict[str, Any] | None) -> list[str]:
    """The drift reference for the card: where it is and what it was made from."""
    if not reference:
        return []
    per_day = reference.get("frames_per_day") or {}
    rows = f"{sum(per_day.values())} rows, {len(per_day)} day{'' if len(per_day) == 1 else 's'}"
    if reference.get("source") == "scored_frames":
        made_of = (
            f"this model's own outputs (INT8, serving mode) on the training window's frames, "
            f"at most {reference.get('max_frames_per_day')} a day ({rows})"
        )
    else:  # the window's inference logs (also a reference made before the source was recorded)
        made_of = (
            f"the training window's inference logs ({rows}): their predictions and embedding "
            "are the serving model's of those days, not this model's"
        )
    return ["", "## Drift reference", f"- `{reference.get('uri')}`: {made_of}"]


def slice_lines(slices: dict[str, Any]) -> list[str]:
    """Per camera (the gate's no-camera-may-regress check): images, both models' primary
    metric, the paired delta with its Bonferroni-adjusted CI, or "too few to judge"."""
    metric = slices.get("metric", "")

    def num(x: Any) -> str:
        return "-" if x is None else f"{x:.4f}"

    lines = [
        f"Per camera ({metric}; a camera fails when its whole interval lies below "
        f"-{slices.get('tolerance')}; unattributed images: {slices.get('unattributed')}):",
        "",
        f"| camera | images | candidate | champion | delta [CI at {slices.get('slice_confidence') or '-'}] |",
        "|---|---|---|---|---|",
    ]
    for s in slices.get("slices") or ():
        d = s.get("delta")
        if d:
            delta = f"{num(d.get('point'))} [{num(d.get('low'))}, {num(d.get('high'))}]"
        elif s.get("status") == "no_boxes":
            delta = "no ground-truth box: no mAP"
        else:
            delta = f"too few to judge (< {slices.get('min_images')} images)"
        cand, champ = (s.get(k) or {} for k in ("candidate", "champion"))
        lines.append(
            f"| {s.get('camera')} | {s.get('n_images')} | {num(cand.get(metric))} "
            f"| {num(champ.get(metric))} | {delta} |"
        )
    return lines


def latency_lines(latency: dict[str, Any]) -> list[str]:
    """The paired latency comparison for the card: ratio, CI, rounds, method, graphs."""
    from driftloop.evaluation.latency import LatencyComparison

    comparison = LatencyComparison.from_dict(latency)
    graphs = []
    for name, graph in (
        ("candidate", comparison.candidate_graph),
        ("champion", comparison.champion_graph),
    ):
        if graph:
            graphs.append(
                f"{name} {str(graph.get('fingerprint'))[:12]} "
                f"({(graph.get('flops') or 0) / 1e9:.2f} GFLOPs, {graph.get('n_nodes')} nodes)"
            )
    same = {True: "same graph", False: "different graphs", None: "graphs unknown"}
    return [
        f"Latency (INT8 ONNX): {comparison.summary()} "
        f"({comparison.n_resamples} bootstrap resamples in blocks of "
        f"{comparison.block_rounds} rounds).",
        f"Method: {comparison.method}.",
        f"Graph signatures: {same[comparison.same_graph]}"
        + (f" — {'; '.join(graphs)}." if graphs else "."),
    ]


def write_model_record(
    settings: Settings, snapshot_doc, evaluation, decision, candidate, plan, reference
) -> dict[str, Any]:
    """Model card and ``model.json`` of the candidate, from the gate's decision (before any
    approval or promotion), in its MLflow run next to its weights; then the SHA-256 of the exact
    ``model.json`` bytes as the version's :data:`MODEL_RECORD_TAG` tag, what
    :func:`check_model_record` (and promotion) compares against.

    ``model.json``: SHA-256 of every artifact of the run and of its two logged ONNX models
    (under ``models/<fp32|int8>/``), the dataset hash, the drift reference, the
    hyper-parameters and the gate's decision. The hashes are checked against the ones recorded
    when the model was made (the run's ``driftloop.weights_sha256`` tag for ``weights/best.pt``;
    the version's ``int8_sha256`` / ``fp32_sha256`` for the ONNX files): a mismatch raises and
    nothing is written."""
    from driftloop.drift import tracking
    from driftloop.retrain.model_files import logged_model_files

    client = tracking.client(settings.mlflow_tracking_uri)
    run_id = candidate["run_id"]
    version = str(candidate["version"])
    if (client.get_model_version(settings.registered_model, version).tags or {}).get(
        MODEL_RECORD_TAG
    ):
        # written by an earlier attempt (promotion may already rest on it): keep it, checked
        record, record_sha256 = verified_model_record(client, settings.registered_model, version)
        return {
            "artifacts": len(record.get("artifacts", {})),
            "model_json_sha256": record_sha256,
            "version": version,
            "already_recorded": True,
        }
    with tempfile.TemporaryDirectory(prefix="driftloop-card-") as work:
        work = Path(work)
        local = Path(client.download_artifacts(run_id, "", str(work / "artifacts")))
        hashes = {
            str(p.relative_to(local)): sha256_file(p)
            for p in sorted(local.rglob("*"))
            if p.is_file() and p.name not in RECORD_FILES
        }
        for kind, model_id in sorted((candidate.get("model_ids") or {}).items()):
            files = logged_model_files(model_id, work / "models") if model_id else {}
            hashes.update({f"models/{kind}/{rel}": sha256_file(p) for rel, p in files.items()})
        check_recorded_hashes(client, settings.registered_model, version, run_id, hashes)
        card = model_card(snapshot_doc, evaluation, decision, candidate, plan, reference)
        record = {
            "name": settings.registered_model,
            "version": version,
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
            "evaluation_uri": (evaluation or {}).get("uri"),
            "code_version": code_version(settings),
        }
        data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
        out = work / "record"
        out.mkdir()
        (out / CARD_FILE).write_text(card)
        (out / RECORD_FILE).write_bytes(data)
        client.log_artifacts(run_id, str(out))
    record_sha256 = sha256_bytes(data)
    # after the file: a tag never names bytes that are not there (a re-run rewrites both)
    client.set_model_version_tag(
        settings.registered_model, version, MODEL_RECORD_TAG, record_sha256
    )
    return {"artifacts": len(hashes), "model_json_sha256": record_sha256, "version": version}


def check_recorded_hashes(
    client, name: str, version: str, run_id: str, hashes: dict[str, str]
) -> None:
    """The hashes about to go into ``model.json`` are the ones recorded when the files were
    made; ValueError naming the file and both hashes otherwise."""
    from driftloop.retrain.model_files import onnx_sha256_tags
    from driftloop.training.run import WEIGHTS_SHA256_TAG

    expected: dict[str, str] = {}
    weights_sha = (client.get_run(run_id).data.tags or {}).get(WEIGHTS_SHA256_TAG)
    if weights_sha:
        expected[WEIGHTS_ARTIFACT] = weights_sha
    tagged = onnx_sha256_tags(client.get_model_version(name, version))
    for kind, sha in tagged.items():
        # the logged MLflow model's file, or the run artifact of a version from before those
        logged, artifact = f"models/{kind}/model.onnx", f"onnx/model_{kind}.onnx"
        expected[logged if logged in hashes or artifact not in hashes else artifact] = sha
    for path, sha in sorted(expected.items()):
        if hashes.get(path) != sha:
            raise ValueError(
                f"{name} v{version}: {path} has SHA-256 {hashes.get(path) or '(missing)'} in "
                f"the run, but {sha} was recorded when it was made: refusing to record it"
            )


class ModelRecordError(ValueError):
    """A version's ``model.json`` is missing, or not the one its tag records."""


def verified_model_record(client, name: str, version: str) -> tuple[dict[str, Any], str]:
    """``(model.json, its SHA-256)`` of version ``version``, after checking that the file's
    bytes hash to the version's :data:`MODEL_RECORD_TAG`; ModelRecordError naming the version
    otherwise. A registry error other than "not found" is raised as it is (fail closed)."""
    from driftloop.contracts.stores import is_not_found

    model = client.get_model_version(name, version)
    expected = (model.tags or {}).get(MODEL_RECORD_TAG)
    if not expected:
        raise ModelRecordError(
            f"{name} v{version} has no {MODEL_RECORD_TAG} tag: its model.json was never recorded"
        )
    with tempfile.TemporaryDirectory(prefix="driftloop-record-") as work:
        try:
            path = Path(client.download_artifacts(model.run_id, RECORD_FILE, work))
            data = path.read_bytes()
        except Exception as err:
            if not (is_not_found(err) or isinstance(err, FileNotFoundError)):
                raise
            raise ModelRecordError(
                f"{name} v{version}: run {model.run_id} has no {RECORD_FILE}"
            ) from err
    actual = sha256_bytes(data)
    if actual != expected:
        raise ModelRecordError(
            f"{name} v{version}: {RECORD_FILE} has SHA-256 {actual}, but the version's "
            f"{MODEL_RECORD_TAG} tag records {expected}"
        )
    record = json.loads(data)
    if str(record.get("version")) != str(version) or record.get("name") != name:
        raise ModelRecordError(
            f"{name} v{version}: {RECORD_FILE} describes {record.get('name')} "
            f"v{record.get('version')}"
        )
    return record, actual


def check_model_record(settings: Settings, version: str | int) -> str:
    """The SHA-256 of version ``version``'s ``model.json``, downloaded from its run and checked
    against the version's :data:`MODEL_RECORD_TAG` tag; ModelRecordError (naming the version)
    when the file or the tag is missing or they differ."""
    from driftloop.drift import tracking

    client = tracking.client(settings.mlflow_tracking_uri)
    return verified_model_record(client, settings.registered_model, str(version))[1]
