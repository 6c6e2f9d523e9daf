"""``dag.test()`` of retrain_detector with the local backend on the embedded stack.

A real tiny YOLO training run in ``.venv-train`` (CPU), real ONNX export and INT8
quantization, evaluation with ONNX Runtime, the MLflow registry and the audit ledger:

1. no champion yet: a 3-epoch candidate is judged by the floors alone and promoted;
2. re-running that same DAG run creates no second version and no duplicate ledger rows;
3. a candidate with 0 useful epochs (random weights) cannot beat the champion: it is
   rejected with the gate's reasons as tags, and the champion alias does not move;
4. with ``approval: required`` a passing candidate waits for the on-call operator, who
   approves it; ``rollback_detector`` then puts the previous champion back, once;
5. a retraining for a drift event that fails marks the event RETRAINING_FAILED.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, load_dag

pytestmark = pytest.mark.integration

END = "2031-06-30"  # dates no other test writes
TRAINING_PYTHON = REPO / ".venv-train" / "bin" / "python"


@pytest.fixture(scope="module")
def retrain_world(stack, s3, tmp_path_factory):
    if not TRAINING_PYTHON.exists():
        pytest.skip(
            "the training environment .venv-train is missing: `make train-env` (make test builds it)"
        )
    from driftloop.config.settings import Settings
    from driftloop_dev.synth import S3Sink, generate_world

    generate_world(
        S3Sink(s3, Settings.from_env().bucket), "stable", days=14, end_date=END,
        rows_per_day=200, labeled_per_day=40,
    )  # fmt: skip
    # the floors of this test's policy suit a 3-epoch model on 160 px frames
    policy = yaml.safe_load((REPO / "include/driftloop/config/promotion_policy.yaml").read_text())
    # (the latency check itself is unit-tested; here two identical models share a busy machine)
    policy.update(
        {"min_map50": 0.2, "min_map50_95": 0.08, "max_p95_latency_ms": 1000.0,
         "latency_tolerance": 0.5}
    )  # fmt: skip
    folder = Path(tmp_path_factory.mktemp("policy"))
    path = folder / "promotion_policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    (folder / "approval_required.yaml").write_text(
        yaml.safe_dump({**policy, "approval": "required"})
    )
    saved = os.environ.get("DRIFTLOOP_PROMOTION_POLICY_PATH")
    os.environ["DRIFTLOOP_PROMOTION_POLICY_PATH"] = str(path)
    yield
    if saved is None:
        os.environ.pop("DRIFTLOOP_PROMOTION_POLICY_PATH", None)
    else:
        os.environ["DRIFTLOOP_PROMOTION_POLICY_PATH"] = saved


def _run(conf: dict, logical_date: datetime, dag_id: str = "retrain_detector"):
    # the run id derives from run_after: the same date re-runs the same DAG run (cleared, as in the UI)
    dag_run = load_dag(dag_id).test(
        run_conf=conf, logical_date=logical_date, run_after=logical_date
    )
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    return dag_run, states


def _xcom(dag_run, task_id: str):
    ti = next(t for t in dag_run.get_task_instances() if t.task_id == task_id)
    return ti.xcom_pull(task_ids=task_id)


def test_retrain_promotes_then_rejects_a_useless_candidate(retrain_world, stack, tmp_path):
    from mlflow import MlflowClient

    from driftloop.audit.wiring import ledger_for
    from driftloop.config.settings import Settings
    from driftloop.promotion import registry

    settings = Settings.from_env()
    client = MlflowClient(stack.env["MLFLOW_TRACKING_URI"])
    ledger = ledger_for(settings)
    name = settings.registered_model
    common = {
        "end_date": END,
        "last_n_days": 14,
        "imgsz": 160,
        "batch": 8,
        "reason": "integration test",
    }

    # 1. the first model: no champion, the floors alone decide
    first_date = datetime(2031, 7, 1, tzinfo=UTC)
    first, states = _run({**common, "epochs": 3, "base": "yolo11n.yaml"}, first_date)
    assert states["promote"] == "success", states
    assert states["reject"] == "skipped"
    assert states["record_failure"] == "skipped"
    candidate = _xcom(first, "register_candidate")
    decision = _xcom(first, "gate")
    assert decision["promote"] is True
    assert "floor" in decision["table"].lower()
    assert registry.aliases(client, name)["champion"] == candidate["version"]

    version = client.get_model_version(name, candidate["version"])
    tags = version.tags
    snapshot = _xcom(first, "snapshot_dataset")
    assert tags["dataset_sha256"] == snapshot["sha256"]
    assert tags["trigger"] == "manual"
    assert tags["code_version"]
    assert tags["drift_reference_uri"].startswith(f"s3://{settings.bucket}/profiles/reference/")
    # no frames stored for the window: the reference is its inference logs, as the card says
    reference = _xcom(first, "reference_profile")
    assert (reference["source"], reference["uri"]) == (
        "inference_logs",
        tags["drift_reference_uri"],
    )
    artifacts = {a.path for a in client.list_artifacts(version.run_id)}
    assert {"weights", "plots", "model_card.md", "model.json", "training_result.json"} <= artifacts
    assert "xcom.json" not in artifacts
    record = json.loads(
        Path(client.download_artifacts(version.run_id, "model.json", str(tmp_path))).read_text()
    )
    assert record["dataset_sha256"] == snapshot["sha256"]
    assert record["hyper_parameters"]["resolved_base"] == "yolo11n.yaml"
    assert record["hyper_parameters"]["ultralytics"]["lr0"] == 0.005  # from scratch
    assert {"weights/best.pt", "models/int8/model.onnx", "models/fp32/MLmodel"} <= set(
        record["artifacts"]
    )
    assert "drift_reference/profile.json" in record["artifacts"]
    # the version is the run's INT8 MLflow model; its FP32 twin is named by a tag
    assert version.source == candidate["model_uri"]
    assert version.source.startswith("models:/m-")
    assert tags["fp32_model_uri"] == candidate["models"]["fp32"] != version.source
    assert len(tags["code_version"]) == 40  # the git commit the training ran from
    # the evaluation is linked to the logged models (MLflow 3 model metrics)
    int8_metrics = {
        m.key for m in client.get_logged_model(registry.logged_model_id(version.source)).metrics
    }
    assert {"eval/mAP50", "eval/p95_latency_ms"} <= int8_metrics
    # the task's extra links: the training run and the version in the MLflow UI
    mlflow_ui = stack.env["MLFLOW_TRACKING_URI"].rstrip("/")
    register_ti = next(t for t in first.get_task_instances() if t.task_id == "register_candidate")
    run_url = register_ti.xcom_pull(task_ids="register_candidate", key="mlflow_run_url")
    model_url = register_ti.xcom_pull(task_ids="register_candidate", key="registered_model_url")
    assert run_url.startswith(f"{mlflow_ui}/#/experiments/")
    assert run_url.endswith(version.run_id)
    assert model_url == f"{mlflow_ui}/#/models/{name}/versions/{candidate['version']}"
    train_ti = next(t for t in first.get_task_instances() if t.task_id == "train")
    assert train_ti.xcom_pull(task_ids="train", key="mlflow_run_url") == run_url
    evaluation = _xcom(first, "evaluate")
    assert evaluation["champion"] is None
    cand = evaluation["candidate"]
    assert cand["map50"] > 0.2
    assert cand["p95_latency_ms"] > 0
    assert abs(cand["map50"] - cand["map50_int8"]) <= 0.01  # INT8 costs at most 1 pp
    rows_after_first = ledger.count()
    kinds = [e.kind for e in ledger.entries(subject=f"model:{name}/v{candidate['version']}")]
    assert kinds == [
        "training_run",
        "evaluation",
        "gate_decision",
        "promotion_intent",
        "promotion",
        # the routing document serving follows (no previous champion: stage serving)
        "rollout_intent",
        "rollout",
    ]
    sha = snapshot["sha256"]
    assert [e.kind for e in ledger.entries(subject=f"dataset:{sha}")] == ["dataset_snapshot"]

    # 2. the same DAG run again: same version, no duplicate ledger rows
    again, states = _run({**common, "epochs": 3, "base": "yolo11n.yaml"}, first_date)
    assert again.run_id == first.run_id
    assert _xcom(again, "register_candidate")["version"] == candidate["version"]
    assert _xcom(again, "register_candidate")["created"] is False
    assert len(client.search_model_versions(f"name='{name}'")) == 1
    assert ledger.count() == rows_after_first

    # 3. a candidate with no useful training cannot beat the champion
    second, states = _run(
        {**common, "epochs": 0, "base": "yolo11n.yaml"}, datetime(2031, 7, 2, tzinfo=UTC)
    )
    assert states["reject"] == "success", states
    assert states["promote"] == "skipped", states
    useless = _xcom(second, "register_candidate")
    decision = _xcom(second, "gate")
    assert decision["promote"] is False
    assert decision["reasons"]
    assert registry.aliases(client, name)["champion"] == candidate["version"]  # untouched
    rejected = client.get_model_version(name, useless["version"])
    assert rejected.tags["gate"] == "rejected"
    assert rejected.tags["gate_reasons"]
    evaluation = _xcom(second, "evaluate")
    assert evaluation["delta"]["high"] < 0  # clearly worse, with a paired bootstrap CI
    # no camera may regress: the delta on each camera's evaluation images (cameras from the
    # labeled days' frames.jsonl; the golden set has none), each camera a check of the gate
    slices = evaluation["slices"]
    assert slices["metric"] == "map50_95"
    assert slices["unattributed"] == _xcom(second, "snapshot_dataset")["counts"]["golden"]
    attributed = sum(s["n_images"] for s in slices["slices"])
    assert attributed + slices["unattributed"] == evaluation["candidate"]["n_images"]
    judged = [s for s in slices["slices"] if s["status"] == "judged"]
    assert judged
    assert all(s["delta"]["confidence"] == slices["slice_confidence"] for s in judged)
    names = {c["name"] for c in decision["checks"]}
    assert {"camera_slices", *(f"camera {s['camera']}" for s in judged)} <= names
    assert ledger.verify().ok


SCORE_WITH_MLFLOW = """
import json, sys
import mlflow, mlflow.onnx, mlflow.pyfunc
from driftloop.evaluation.detector import decode, load_input
mlflow.set_tracking_uri(sys.argv[1])
uri = f"models:/{sys.argv[2]}@champion"
graph = mlflow.onnx.load_model(uri).graph
model = mlflow.pyfunc.load_model(uri)
size = graph.input[0].type.tensor_type.shape.dim[2].dim_value
results = []
for path in sys.argv[3:]:
    tensor, _ = load_input(path, size)
    output = model.predict(tensor)[graph.output[0].name]
    found = decode(output)
    results.append({"shape": list(output.shape), "n": len(found),
                    "classes": sorted({int(c) for c in found.classes})})
print(json.dumps({"size": size, "results": results, "torch": "torch" in sys.modules}))
"""


def test_the_champion_loads_by_alias_in_a_fresh_process(retrain_world, stack, s3, tmp_path):
    """What serving does: ``models:/<name>@champion`` with MLflow's own API (``mlflow.onnx``
    for the graph, ``mlflow.pyfunc`` to score), in a process of its own; evaluation images of
    the champion's dataset get detections of the known classes."""
    import subprocess
    import sys

    from mlflow import MlflowClient

    from driftloop.config.settings import Settings
    from driftloop.contracts.storage import split_s3_uri

    settings = Settings.from_env()
    client = MlflowClient(stack.env["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias(settings.registered_model, "champion")
    bucket, prefix = split_s3_uri(
        f"s3://{settings.bucket}/datasets/{champion.tags['dataset_sha256']}/images/eval/"
    )
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]][:8]
    images = []
    for key in keys:
        images.append(tmp_path / key.rsplit("/", 1)[-1])
        s3.download_file(bucket, key, str(images[-1]))
    done = subprocess.run(
        [sys.executable, "-c", SCORE_WITH_MLFLOW, stack.env["MLFLOW_TRACKING_URI"],
         settings.registered_model, *map(str, images)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    scored = json.loads(done.stdout.strip().splitlines()[-1])
    assert scored["size"] == 160
    assert scored["torch"] is False
    # 4 box rows + 2 classes (ball, player); 20² + 10² + 5² anchors at 160 px
    assert all(r["shape"] == [1, 6, 525] for r in scored["results"])
    assert sum(r["n"] for r in scored["results"]) >= len(images)  # a trained champion finds things
    assert set().union(*(r["classes"] for r in scored["results"])) <= {0, 1}


def test_operator_approves_a_promotion_then_rolls_it_back(retrain_world, stack, monkeypatch):
    """Continues from the champion promoted above."""
    from mlflow import MlflowClient

    from driftloop.audit.wiring import ledger_for
    from driftloop.config.settings import Settings
    from driftloop.promotion import registry
    from driftloop_dev.oncall import HITLResponder, OnCallUser

    settings = Settings.from_env()
    client = MlflowClient(stack.env["MLFLOW_TRACKING_URI"])
    ledger = ledger_for(settings)
    name = settings.registered_model
    champion = registry.aliases(client, name)["champion"]  # from the test above
    policy_path = Path(os.environ["DRIFTLOOP_PROMOTION_POLICY_PATH"])
    monkeypatch.setenv(
        "DRIFTLOOP_PROMOTION_POLICY_PATH", str(policy_path.with_name("approval_required.yaml"))
    )

    # the champion's own weights, re-exported: the paired delta is exactly 0, the gate passes
    oncall = OnCallUser(id="7", name="oncall-alice")
    rejected = max(
        (v for v in client.search_model_versions(f"name='{name}'")),
        key=lambda v: int(v.version),
    ).version  # the useless candidate the gate rejected above
    responder = HITLResponder(
        "retrain_detector",
        "await_promotion_approval",
        "Promote",
        oncall,
        timeout=900,
        before_answer=forge_xcoms(rejected),
    )
    responder.start()
    run, states = _run(
        {"end_date": END, "imgsz": 160, "batch": 8, "epochs": 0, "base": "champion",
         "reason": "re-certify the champion"},
        datetime(2031, 7, 3, tzinfo=UTC),
    )  # fmt: skip
    responder.join(timeout=5)
    assert responder.error is None, responder.error
    assert responder.answered_run_id == run.run_id
    assert states["await_promotion_approval"] == "success", states
    assert states["promote"] == "success", states
    assert states["reject"] == "skipped", states
    assert states["approved_by_policy"] == "skipped"
    # the XComs were forged during the wait; the records were not
    assert _xcom(run, "gate")["candidate_version"] == rejected
    decision = ledger.get(f"retrain_detector/{run.run_id}/gate").payload
    assert decision["promote"]
    assert decision["requires_approval"]
    candidate = decision["candidate_version"]
    assert candidate != rejected
    assert _xcom(run, "evaluate")["delta"]["point"] == 0.0
    slices = _xcom(run, "evaluate")["slices"]["slices"]
    assert {s["delta"]["point"] for s in slices if s["delta"]} == {0.0}  # and on every camera
    aliases = registry.aliases(client, name)
    assert aliases["champion"] == candidate
    assert aliases["previous-champion"] == champion
    assert client.get_model_version(name, candidate).tags["promoted_by"] == "oncall-alice"
    kinds = [e.kind for e in ledger.entries(subject=f"model:{name}/v{candidate}")]
    assert kinds == [
        "training_run",
        "evaluation",
        "gate_decision",
        "approval",
        "promotion_intent",
        "promotion",
        # the routing document: the new champion's guard period against previous-champion
        "rollout_intent",
        "rollout",
    ]
    promotion = ledger.entries(kind="promotion", subject=f"model:{name}/v{candidate}")[0]
    # the XComs forged during the wait changed nothing: the ledger and the HITL record decide
    assert promotion.actor == "oncall-alice"
    assert aliases["champion"] != rejected
    approval = ledger.entries(kind="approval", subject=f"model:{name}/v{candidate}")[0]
    assert approval.actor == "oncall-alice"
    assert approval.payload["chosen_options"] == ["Promote"]
    assert promotion.payload["approval"]["chosen_options"] == ["Promote"]
    # the registered version carries the reference profile of its training window
    reference = {
        a.path for a in client.list_artifacts(run_id_of(client, name, candidate), "drift_reference")
    }
    assert {
        f"drift_reference/{f}"
        for f in ("binning.json", "profile.json", "sample.parquet", "reference.json")
    } <= reference

    # the operator rolls back: champion returns to the previous one, once
    rollback_date = datetime(2031, 7, 4, tzinfo=UTC)
    _, states = _run({"reason": "INC-42: false alarms"}, rollback_date, "rollback_detector")
    assert states == {"rollback": "success"}
    assert registry.aliases(client, name) == {"champion": champion}
    assert client.get_model_version(name, candidate).tags["rolled_back"] == "INC-42: false alarms"
    entry = ledger.entries(kind="rollback")[-1]
    assert entry.payload["withdrawn"] == candidate
    assert entry.payload["restored"] == champion
    again, states = _run({"reason": "INC-42: false alarms"}, rollback_date, "rollback_detector")
    assert states == {"rollback": "success"}
    assert _xcom(again, "rollback")["already_done"]
    assert registry.aliases(client, name) == {"champion": champion}
    assert len(ledger.entries(kind="rollback")) == 1
    # nothing left to roll back to: a clear failure, nothing moves
    _, states = _run(
        {"reason": "second thoughts"}, datetime(2031, 7, 5, tzinfo=UTC), "rollback_detector"
    )
    assert states == {"rollback": "failed"}
    assert registry.aliases(client, name) == {"champion": champion}
    assert ledger.verify().ok


def forge_xcoms(version: str):
    """What a user with XCom edit rights can do through the REST API while the run waits for
    its approval: point the candidate and the gate's decision at another (rejected) version,
    and claim the answer came from someone else. Promotion must ignore all of it."""

    def forge(session, run_id: str) -> None:
        from airflow.models.xcom import XComModel

        forged = {
            ("register_candidate", "return_value"): {"version": version, "name": "x"},
            ("gate", "return_value"): {
                "promote": True,
                "requires_approval": False,
                "target_alias": "champion",
                "candidate_version": version,
                "champion_version": None,
            },
            ("await_promotion_approval", "hitl_answer"): {
                "chosen_options": ["Promote"],
                "responded_by_user": {"id": "666", "name": "mallory"},
            },
        }
        for (task_id, key), value in forged.items():
            XComModel.set(
                key=key,
                value=value,
                dag_id="retrain_detector",
                task_id=task_id,
                run_id=run_id,
                serialize=False,  # stored as given, as the REST API stores a JSON value
                session=session,
            )
        session.flush()

    return forge


def run_id_of(client, name: str, version: str) -> str:
    return client.get_model_version(name, version).run_id


def test_failed_retraining_for_a_drift_event_marks_it(stack):
    """No labeled frames in the window: the snapshot fails at once (no retry can help), the
    drift event it was for becomes RETRAINING_FAILED and the ledger says which tasks failed."""
    from driftloop.audit.wiring import ledger_for
    from driftloop.config.settings import Settings
    from driftloop.drift import history

    settings = Settings.from_env()
    engine = history.engine_for(settings.database_url)
    event_id = history.open_event(
        engine, "drift_monitor/test-failed-retrain", "critical", ["brightness"]
    )
    run, states = _run(
        {"end_date": "2035-01-31", "epochs": 1, "drift_event_id": event_id,
         "reason": "retrain after review"},
        datetime(2035, 2, 1, tzinfo=UTC),
    )  # fmt: skip
    assert str(run.state) == "failed"
    assert states["snapshot_dataset"] == "failed"
    assert states["record_failure"] == "success"
    assert states["train"] == "upstream_failed"
    assert states["promote"] != "success"
    event = history.get_event(engine, event_id)
    assert event["status"] == "RETRAINING_FAILED"
    assert "snapshot_dataset" in event["note"]
    entry = ledger_for(settings).entries(subject=f"drift_event:{event_id}")[-1]
    assert entry.payload == {"status": "failed", "failed_tasks": ["snapshot_dataset"]}
    # an unknown event is refused up front, naming the Param
    run, states = _run(
        {"end_date": "2035-01-31", "drift_event_id": 999999, "reason": "typo"},
        datetime(2035, 2, 2, tzinfo=UTC),
    )
    assert states["plan"] == "failed"
    assert str(run.state) == "failed"
