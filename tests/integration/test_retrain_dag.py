"""``dag.test()`` of retrain_detector with the local backend on the embedded stack.

A real tiny YOLO training run in ``.venv-train`` (CPU), real ONNX export and INT8
quantization, evaluation with ONNX Runtime, the MLflow registry and the audit ledger:

1. no champion yet: a 3-epoch candidate is judged by the floors alone and promoted;
2. re-running that same DAG run creates no second version and no duplicate ledger rows;
3. a candidate with 0 useful epochs (random weights) cannot beat the champion: it is
   rejected with the gate's reasons as tags, and the champion alias does not move.
"""

from __future__ import annotations

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
    from driftloop.settings import Settings
    from driftloop.synth import S3Sink, generate_world

    generate_world(
        S3Sink(s3, Settings.from_env().bucket), "stable", days=14, end_date=END,
        rows_per_day=200, labeled_per_day=40,
    )  # fmt: skip
    # the floors of this test's policy suit a 3-epoch model on 160 px frames
    policy = yaml.safe_load((REPO / "include/driftloop/policy/promotion_policy.yaml").read_text())
    policy.update({"min_map50": 0.2, "min_map50_95": 0.08, "max_p95_latency_ms": 1000.0})
    path = Path(tmp_path_factory.mktemp("policy")) / "promotion_policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    import os

    saved = os.environ.get("DRIFTLOOP_PROMOTION_POLICY_PATH")
    os.environ["DRIFTLOOP_PROMOTION_POLICY_PATH"] = str(path)
    yield
    if saved is None:
        os.environ.pop("DRIFTLOOP_PROMOTION_POLICY_PATH", None)
    else:
        os.environ["DRIFTLOOP_PROMOTION_POLICY_PATH"] = saved


def _run(conf: dict, logical_date: datetime):
    # the run id derives from run_after: the same date re-runs the same DAG run (cleared, as in the UI)
    dag_run = load_dag("retrain_detector").test(
        run_conf=conf, logical_date=logical_date, run_after=logical_date
    )
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    return dag_run, states


def _xcom(dag_run, task_id: str):
    ti = next(t for t in dag_run.get_task_instances() if t.task_id == task_id)
    return ti.xcom_pull(task_ids=task_id)


def test_retrain_promotes_then_rejects_a_useless_candidate(retrain_world, stack):
    from mlflow import MlflowClient

    from driftloop import registry
    from driftloop.ledger import Ledger
    from driftloop.settings import Settings

    settings = Settings.from_env()
    client = MlflowClient(stack.env["MLFLOW_TRACKING_URI"])
    ledger = Ledger(settings.database_url)
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
    assert states["reject"] == "skipped" and states["record_failure"] == "skipped"
    candidate = _xcom(first, "register_candidate")
    decision = _xcom(first, "gate")
    assert decision["promote"] is True and "floor" in decision["table"].lower()
    assert registry.aliases(client, name)["champion"] == candidate["version"]

    version = client.get_model_version(name, candidate["version"])
    tags = version.tags
    snapshot = _xcom(first, "snapshot_dataset")
    assert tags["dataset_sha256"] == snapshot["sha256"]
    assert tags["trigger"] == "manual" and tags["code_version"]
    assert tags["drift_reference_uri"].startswith(f"s3://{settings.bucket}/profiles/reference/")
    artifacts = {a.path for a in client.list_artifacts(version.run_id)}
    assert {"weights", "onnx", "model_card.md", "model.json"} <= artifacts
    onnx = {a.path for a in client.list_artifacts(version.run_id, "onnx")}
    assert {"onnx/model_fp32.onnx", "onnx/model_int8.onnx"} <= onnx
    evaluation = _xcom(first, "evaluate")
    assert evaluation["champion"] is None
    cand = evaluation["candidate"]
    assert cand["map50"] > 0.2 and cand["p95_latency_ms"] > 0
    assert abs(cand["map50"] - cand["map50_int8"]) <= 0.01  # INT8 costs at most 1 pp
    rows_after_first = ledger.count()
    kinds = [e.kind for e in ledger.entries(subject=f"model:{name}/v{candidate['version']}")]
    assert kinds == ["training_run", "gate_decision", "promotion"]

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
    assert states["reject"] == "success" and states["promote"] == "skipped", states
    useless = _xcom(second, "register_candidate")
    decision = _xcom(second, "gate")
    assert decision["promote"] is False and decision["reasons"]
    assert registry.aliases(client, name)["champion"] == candidate["version"]  # untouched
    rejected = client.get_model_version(name, useless["version"])
    assert rejected.tags["gate"] == "rejected" and rejected.tags["gate_reasons"]
    evaluation = _xcom(second, "evaluate")
    assert evaluation["delta"]["high"] < 0  # clearly worse, with a paired bootstrap CI
    assert ledger.verify().ok
