"""An ONNX model logged the way the training entrypoint logs it
(:func:`driftloop.training.tracking.log_onnx_model`), registered the way ``retrain_detector``
registers it (:func:`driftloop.promotion.registry.register_candidate`), against the real
``mlflow server`` of the embedded stack: what the MLflow UI's model-version page asks for
answers, and ``models:/<name>@champion`` loads in a fresh process with MLflow's own API.

A tiny one-node graph stands in for the detector (the trained one is scored in
tests/integration/test_retrain_dag.py): this is about MLflow, not about YOLO.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid

import pytest

pytestmark = pytest.mark.integration

SIZE = 32


def _tiny_onnx(path):
    import onnx
    from onnx import TensorProto, helper

    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])
    output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, SIZE, SIZE])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["images"], ["output0"], name="/model.0/act")],
        "tiny",
        [images],
        [output],
    )
    # IR 9 / opset 17: what the detector's export has, and what onnxruntime reads
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def registered(stack, tmp_path_factory):
    import mlflow
    import numpy as np

    from driftloop.promotion import registry
    from driftloop.training import tracking

    tracking_uri = stack.env["MLFLOW_TRACKING_URI"]
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    folder = tmp_path_factory.mktemp("tiny-model")
    path = _tiny_onnx(folder / "model_int8.onnx")
    sha = tracking.normalize_onnx(path)
    example = np.linspace(-1, 1, 3 * SIZE * SIZE, dtype=np.float32).reshape(1, 3, SIZE, SIZE)
    mlflow.set_experiment("model-logging-tests")
    with mlflow.start_run() as run:
        dataset = tracking.log_dataset_input(
            "s3://driftloop/datasets/" + "ab" * 32 + "/", "ab" * 32
        )
        logged = tracking.log_onnx_model(
            path,
            name=tracking.INT8_MODEL_NAME,
            example=example,
            metadata={"imgsz": SIZE, "sha256": sha},
            tags={"precision": "int8"},
        )
        mlflow.log_dict({"run_id": run.info.run_id}, "training_result.json")
    name = f"tiny-detector-{uuid.uuid4().hex[:8]}"
    version, _created = registry.register_candidate(
        client,
        name,
        model_uri=logged["model_uri"],
        run_id=run.info.run_id,
        airflow_run_id="model-logging-1",
        tags={registry.FP32_MODEL_TAG: logged["model_uri"]},
        description="tiny",
    )
    client.set_registered_model_alias(name, registry.CHAMPION, version.version)
    return {
        "client": client,
        "tracking_uri": tracking_uri,
        "name": name,
        "version": version,
        "logged": logged,
        "dataset": dataset,
        "run_id": run.info.run_id,
        "example": example,
        "sha": sha,
    }


def test_the_model_version_page_finds_the_model(registered):
    """The UI's model-version page reads ``MLmodel`` through the registry (it answered 500 when
    versions were run folders) and lists the model's own files."""
    import requests
    import yaml

    base = registered["tracking_uri"].rstrip("/")
    version = registered["version"]
    answer = requests.get(
        f"{base}/model-versions/get-artifact",
        params={"name": registered["name"], "version": version.version, "path": "MLmodel"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text[:500]
    mlmodel = yaml.safe_load(answer.text)
    assert "onnx" in mlmodel["flavors"]
    assert "python_function" in mlmodel["flavors"]
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert inputs == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [1, 3, SIZE, SIZE]},
         "name": "images"}
    ]  # fmt: skip
    assert mlmodel["metadata"]["sha256"] == registered["sha"]
    assert mlmodel["model_id"] == registered["logged"]["model_id"]

    client = registered["client"]
    files = {f.path for f in client.list_logged_model_artifacts(registered["logged"]["model_id"])}
    assert {"MLmodel", "model.onnx", "input_example.json", "requirements.txt"} <= files
    assert not any("xcom" in f for f in files)
    assert version.source == registered["logged"]["model_uri"]


def test_the_run_records_its_dataset_and_links_its_model(registered):
    client = registered["client"]
    run = client.get_run(registered["run_id"])
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == registered["dataset"]["name"]
    assert dataset_input.dataset.digest == "ab" * 18  # the sha256, cut to MLflow's 36 chars
    assert json.loads(dataset_input.dataset.source)["uri"].endswith("/datasets/" + "ab" * 32 + "/")
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags["mlflow.data.context"] == "training"
    assert tags["sha256"] == "ab" * 32
    # evaluation numbers land on the logged model's page, on that dataset
    from driftloop.retrain.model_files import log_evaluation_metrics

    model_id = registered["logged"]["model_id"]
    logged = log_evaluation_metrics(
        client,
        registered["run_id"],
        {"int8": model_id},
        {"map50_int8": 0.5, "p95_latency_ms": 3.0, "map50": 0.6},
        registered["dataset"],
    )
    assert logged == [f"eval/mAP50@{model_id}", f"eval/p95_latency_ms@{model_id}"]
    metrics = {m.key: m for m in client.get_logged_model(model_id).metrics}
    assert metrics["eval/mAP50"].value == 0.5
    assert metrics["eval/mAP50"].dataset_digest == registered["dataset"]["digest"]


SCORE = """
import json, sys
import mlflow, mlflow.onnx, mlflow.pyfunc, numpy as np
mlflow.set_tracking_uri(sys.argv[1])
uri = f"models:/{sys.argv[2]}@champion"
x = np.asarray(json.loads(sys.argv[3]), dtype=np.float32)
onnx_model = mlflow.onnx.load_model(uri)
out = mlflow.pyfunc.load_model(uri).predict(x)["output0"]
print(json.dumps({"graph_inputs": [i.name for i in onnx_model.graph.input],
                  "shape": list(out.shape), "sum": float(out.sum()),
                  "loaded": sorted(m for m in sys.modules if m in ("driftloop", "torch"))}))
"""


def test_the_champion_loads_by_alias_in_a_fresh_process(registered):
    example = registered["example"]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(SCORE),
            registered["tracking_uri"],
            registered["name"],
            json.dumps(example.tolist()),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["graph_inputs"] == ["images"]
    assert result["shape"] == [1, 3, SIZE, SIZE]
    assert result["sum"] == pytest.approx(float(example.clip(min=0).sum()), rel=1e-5)  # Relu
    assert result["loaded"] == []  # MLflow's API alone: no driftloop code, no torch
