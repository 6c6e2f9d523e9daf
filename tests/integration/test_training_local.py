"""The training entrypoint, export and ONNX evaluation, as the local backend runs them.

A synthetic labeled world goes to the stack's S3 and is snapshotted by
:mod:`driftloop.retrain.snapshot` (``s3://driftloop/datasets/{sha}/``, golden set in eval);
``python -m driftloop.training.train`` then runs as a subprocess of ``.venv-train/bin/python``
(torch, Ultralytics) against the real ``mlflow server``; ``python -m
driftloop.training.export`` makes the FP32 and INT8 models; this process (the Airflow
environment: no torch) evaluates both with :mod:`driftloop.evaluation.detector`.

Training from scratch (yolo11n.yaml) for 3 epochs: with ~100 images (7 batches an epoch) a
from-scratch YOLO stays at mAP 0 for ~14 epochs, so the train split is ~400 images, batch 8,
AdamW lr0=0.005 and no warmup (Ultralytics' warmup lasts at least 100 iterations — the whole
run). Measured on 2 CPU cores: ~45-50 s of training, 65 s for the entrypoint; eval split
(110 window + 48 golden frames): FP32 mAP50 0.495 / mAP50-95 0.260, INT8 0.495 / 0.259.
The test asserts mAP50 > 0.3 and an INT8 loss of at most 1 pp.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

TRAIN_PYTHON = REPO / ".venv-train" / "bin" / "python"
BUCKET = "driftloop"
# a date range no other test uses (they share the session's bucket)
END = date(2031, 3, 31)
DAYS = 40
LABELED_PER_DAY = 15
EPOCHS = 3
HYP = ["warmup_epochs=0", "optimizer=AdamW", "lr0=0.005"]
MAP50_FLOOR = 0.30  # observed 0.495 after 3 epochs
INT8_MAX_LOSS = 0.01  # observed 0.0004

TIMINGS: dict[str, float] = {}

if not TRAIN_PYTHON.exists():
    pytest.skip(
        f"{TRAIN_PYTHON} is missing: create the training environment with `make train-env` "
        "(`make test` does)",
        allow_module_level=True,
    )


def _run(args: list[str], env: dict[str, str], log: Path, timeout: float = 600):
    began = time.perf_counter()
    with open(log, "wb") as out:
        done = subprocess.run(
            [str(TRAIN_PYTHON), *args],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    seconds = time.perf_counter() - began
    text = log.read_text(errors="replace")
    return done.returncode, text, seconds


@pytest.fixture(scope="module")
def work(tmp_path_factory, stack):
    root = tmp_path_factory.mktemp("training")
    env = {
        **os.environ,
        "YOLO_CONFIG_DIR": str(root / "ultralytics"),
        "PYTHONUNBUFFERED": "1",
    }
    return root, env


@pytest.fixture(scope="module")
def snapshot(s3, work):
    """The dataset snapshot URI and a local copy (for calibration and evaluation)."""
    from driftloop.retrain.snapshot import snapshot_dataset
    from driftloop.retrain.snapshot_io import download_dataset
    from driftloop_dev.synth.sinks import S3Sink
    from driftloop_dev.synth.world import generate_world

    root, _ = work
    began = time.perf_counter()
    generate_world(
        S3Sink(s3, BUCKET),
        "stable",
        days=DAYS,
        end_date=END,
        rows_per_day=1,
        labeled_per_day=LABELED_PER_DAY,
        files_per_day=1,
    )
    result = snapshot_dataset(
        s3,
        BUCKET,
        days=[END - timedelta(days=i) for i in range(DAYS)],
        val_share=0.1,
        eval_share=0.2,
    )
    local = download_dataset(s3, result.uri, root / "dataset")
    TIMINGS["dataset"] = time.perf_counter() - began
    print(f"dataset {result.uri} {result.counts} in {TIMINGS['dataset']:.1f} s")
    return result.uri, local, result.sha256


@pytest.fixture(scope="module")
def trained(work, snapshot):
    root, env = work
    uri, _, _ = snapshot
    xcom = root / "xcom" / "return.json"
    rc, text, seconds = _run(
        [
            "-m",
            "driftloop.training.train",
            "--data",
            uri,
            "--base",
            "yolo11n.yaml",
            "--epochs",
            str(EPOCHS),
            "--imgsz",
            "160",
            "--batch",
            "8",
            "--device",
            "cpu",
            "--experiment",
            "retrain-detector",
            "--run-name",
            "it-train-3ep",
            "--tags",
            "airflow.run_id=it-local",
            "trigger=test",
            "--hyp",
            *HYP,
            "--out",
            str(root / "train"),
            "--xcom-path",
            str(xcom),
        ],
        env,
        root / "train.log",
    )
    TIMINGS["train"] = seconds
    assert rc == 0, f"training exited {rc}:\n{text[-6000:]}"
    print(f"training entrypoint: {seconds:.1f} s")
    return json.loads(xcom.read_text()), root / "train"


@pytest.fixture(scope="module")
def exported(work, snapshot, trained):
    root, env = work
    _, local, _ = snapshot
    _, out = trained
    rc, text, seconds = _run(
        [
            "-m",
            "driftloop.training.export",
            "--weights",
            str(out / "train" / "weights" / "best.pt"),
            "--imgsz",
            "160",
            "--calibration-dir",
            str(local / "images" / "train"),
            "--out-dir",
            str(root / "onnx"),
            "--json",
        ],
        env,
        root / "export.log",
    )
    TIMINGS["export"] = seconds
    assert rc == 0, f"export exited {rc}:\n{text[-6000:]}"
    result = json.loads(text.strip().splitlines()[-1])
    print(f"export: {seconds:.1f} s {result['quantization']}")
    return result


def test_training_run_is_logged_to_mlflow(trained, snapshot):
    from mlflow import MlflowClient

    payload, out = trained
    _, _, sha = snapshot
    log_text = (out.parent / "train.log").read_text(errors="replace")
    client = MlflowClient()
    run = client.get_run(payload["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "it-train-3ep"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "retrain-detector"
    assert run.data.tags["airflow.run_id"] == "it-local"
    assert run.data.tags["trigger"] == "test"

    params = run.data.params
    assert params["dataset_sha256"] == sha
    assert params["base"] == "yolo11n.yaml"
    assert params["epochs"] == str(EPOCHS)
    assert params["imgsz"] == "160"
    assert params["batch"] == "8"
    assert params["seed"] == "0"
    assert params["optimizer"] == "AdamW"
    assert params["lr0"] == "0.005"
    assert {"momentum", "weight_decay", "mosaic", "ultralytics_version"} <= set(params)

    for name in ("train/box_loss", "train/cls_loss", "metrics/mAP50", "metrics/mAP50-95"):
        history = client.get_metric_history(run.info.run_id, name)
        assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1)), name
    assert run.data.metrics["best/mAP50"] == pytest.approx(payload["metrics"]["mAP50"])

    def listing(path=None):
        for item in client.list_artifacts(run.info.run_id, path):
            yield from listing(item.path) if item.is_dir else [item.path]

    artifacts = set(listing())
    assert {"weights/best.pt", "weights/last.pt", "results.csv", "args.yaml"} <= artifacts
    assert {"onnx_export.json", "training_result.json", "plots/results.png"} <= artifacts
    assert "xcom.json" not in artifacts
    assert not any(a.endswith(".onnx") for a in artifacts)
    # the code version and the dataset snapshot as the run's input
    assert len(run.data.tags["mlflow.source.git.commit"]) == 40
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == sha[:36]
    assert sha in dataset_input.dataset.source
    # one progress line per epoch in the output (the task log of the local backend)
    progress = [line for line in log_text.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in progress] == [
        f"epoch {i}/{EPOCHS}" for i in range(1, EPOCHS + 1)
    ]
    assert all("box_loss" in line and "mAP50" in line for line in progress)

    # the xcom payload: the KubernetesPodOperator contract
    assert payload["mlflow_run_id"] == payload["run_id"] == run.info.run_id
    assert payload["weights_uri"] == f"{run.info.artifact_uri}/weights/best.pt"
    assert payload["dataset_sha256"] == sha
    assert payload["epochs"] == EPOCHS
    assert {"mAP50", "mAP50-95", "precision", "recall"} <= set(payload["metrics"])
    import mlflow.artifacts

    fetched = Path(mlflow.artifacts.download_artifacts(artifact_uri=payload["weights_uri"]))
    assert fetched.read_bytes() == (out / "train" / "weights" / "best.pt").read_bytes()
    # the run's ONNX models, logged as MLflow models (what the retrain DAG registers)
    onnx = payload["onnx"]
    assert onnx["quantization"]["quantized_in_head"] == []
    for kind in ("fp32", "int8"):
        model = client.get_logged_model(onnx[f"{kind}_model_id"])
        assert onnx[f"{kind}_model_uri"] == f"models:/{model.model_id}"
        assert model.source_run_id == run.info.run_id
        assert model.tags["precision"] == kind
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=onnx[f"{kind}_model_uri"]))
        data = (folder / "model.onnx").read_bytes()
        assert hashlib.sha256(data).hexdigest() == onnx[f"{kind}_sha256"]
        mlmodel = (folder / "MLmodel").read_text()
        assert "onnx:" in mlmodel
        assert "signature:" in mlmodel
        assert (folder / "input_example.json").is_file()
    fp32_metrics = {m.key for m in client.get_logged_model(onnx["fp32_model_id"]).metrics}
    assert "best/mAP50" in fp32_metrics


def test_fp32_and_int8_onnx_evaluation(exported, snapshot):
    from driftloop.evaluation import bootstrap
    from driftloop.evaluation.detector import evaluate_model, image_label_pairs
    from driftloop.evaluation.latency_table import measure_latency_interleaved

    _, local, _ = snapshot
    quant = exported["quantization"]
    assert quant["head_prefix"] == "/model.23/"  # yolo11n's Detect module
    assert quant["quantized_in_head"] == []
    assert quant["quantized_nodes"] > 30

    began = time.perf_counter()
    fp32 = evaluate_model(exported["fp32"]["path"], local)
    int8 = evaluate_model(exported["int8"]["path"], local)
    TIMINGS["evaluate"] = time.perf_counter() - began
    print(
        f"eval split {fp32.n_images} images: FP32 mAP50 {fp32.map50:.4f} mAP50-95 "
        f"{fp32.map50_95:.4f} | INT8 mAP50 {int8.map50:.4f} mAP50-95 {int8.map50_95:.4f} | "
        f"INT8 loss {100 * (fp32.map50 - int8.map50):.2f} pp mAP50"
    )
    assert fp32.n_images == int8.n_images == len(image_label_pairs(local)) >= 100
    assert fp32.map50 > MAP50_FLOOR
    assert int8.map50 >= fp32.map50 - INT8_MAX_LOSS
    assert int8.map50_95 >= fp32.map50_95 - INT8_MAX_LOSS
    # records feed the gate's paired bootstrap as they are
    delta = bootstrap.paired_bootstrap_delta(
        int8.records, fp32.records, metric="map50", n_resamples=200
    )
    assert delta.point == pytest.approx(int8.map50 - fp32.map50)

    images = [p for p, _ in image_label_pairs(local)][:60]
    began = time.perf_counter()
    latency = measure_latency_interleaved(
        {"fp32": exported["fp32"]["path"], "int8": exported["int8"]["path"]},
        images,
        warmup=10,
        runs=60,
    )
    TIMINGS["latency"] = time.perf_counter() - began
    print(f"latency (1 thread, interleaved): {json.dumps(latency)}")
    for name in ("fp32", "int8"):
        assert latency[name]["n"] == 60
        assert 0 < latency[name]["p50_ms"] <= latency[name]["p95_ms"]
    print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in TIMINGS.items()))


def test_epochs_zero_fine_tunes_nothing(work, snapshot, trained):
    """``--epochs 0`` from the champion's MLflow weights URI: the candidate is the champion."""
    root, env = work
    uri, _, _ = snapshot
    payload, out = trained
    xcom = root / "xcom0.json"
    rc, text, seconds = _run(
        [
            "-m",
            "driftloop.training.train",
            "--data",
            uri,
            "--base",
            payload["weights_uri"],
            "--base-sha256",
            payload["weights_sha256"],  # weights load only with their recorded hash
            "--epochs",
            "0",
            "--run-name",
            "it-train-0ep",
            "--out",
            str(root / "train0"),
            "--xcom-path",
            str(xcom),
        ],
        env,
        root / "train0.log",
    )
    TIMINGS["train_epochs0"] = seconds
    assert rc == 0, f"training exited {rc}:\n{text[-6000:]}"
    result = json.loads(xcom.read_text())
    assert result["epochs"] == 0
    assert result["run_id"] != payload["run_id"]
    candidate = root / "train0" / "train" / "weights" / "best.pt"
    assert candidate.read_bytes() == (out / "train" / "weights" / "best.pt").read_bytes()
    assert result["onnx"]["int8_model_uri"].startswith("models:/m-")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{empty}"], "no data.yaml"),
        (["--data", "{dataset}", "--base", "yolo99z.yaml"], "unknown model yaml"),
        (["--data", "{dataset}", "--base", "champion.onnx"], "unknown base model"),
        (["--data", "{dataset}", "--base", "/nonexistent/best.pt"], "--base-sha256"),
        (
            ["--data", "{dataset}", "--base", "/nonexistent/best.pt", "--base-sha256", "0" * 64],
            "weights file not found",
        ),
        (["--data", "{dataset}", "--hyp", "epochs=900"], "--hyp key 'epochs' may not be set"),
    ],
)
def test_bad_input_exits_2_with_a_message(work, snapshot, args, message):
    root, env = work
    _, local, _ = snapshot
    empty = root / "empty"
    empty.mkdir(exist_ok=True)
    args = [a.format(empty=empty, dataset=local) for a in args]
    rc, text, _ = _run(
        ["-m", "driftloop.training.train", *args, "--out", str(root / "bad")],
        env,
        root / "bad.log",
        timeout=120,
    )
    assert rc == 2, text[-3000:]
    assert message in text
    assert "Traceback" not in text
