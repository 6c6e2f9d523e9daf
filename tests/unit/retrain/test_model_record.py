"""model.json before the alias moves, and every loaded model file against its recorded SHA-256
(issue 9, item 4): the record's hash is the hash of its exact bytes and a version tag; a
tampered or missing record, weights or ONNX file is refused, naming it. A real MLflow (SQLite
backend, local artifacts) in this process."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from driftloop.config.settings import Settings
from driftloop.retrain.model_card import (
    MODEL_RECORD_TAG,
    ModelRecordError,
    check_model_record,
    write_model_record,
)
from driftloop.retrain.model_files import ModelFileMismatch, download_onnx, recorded_onnx_hashes
from driftloop.retrain.plan import plan_retrain, resolve_trigger
from driftloop.retrain.training_arguments import ResolvedBase, resolve_base
from driftloop.training.run import WEIGHTS_SHA256_TAG

mlflow = pytest.importorskip("mlflow")

NAME = "detector-under-test"
FILES = {
    "weights/best.pt": b"the champion's weights",
    "onnx/model_int8.onnx": b"int8 onnx bytes",
    "onnx/model_fp32.onnx": b"fp32 onnx bytes",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        yield uri


@pytest.fixture
def settings(tracking_uri, request):
    return Settings(
        mlflow_tracking_uri=tracking_uri,
        registered_model=f"{NAME}-{request.node.name[:40]}".replace("[", "-").replace("]", ""),
    )


def _trained_version(settings: Settings, tmp_path: Path, *, weights_tag: str | None = None):
    """A training run with weights and ONNX files, registered as version 1 with the hashes
    the registration records."""
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("record-tests") or None
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("record-tests")
    )
    run = client.create_run(experiment_id)
    folder = tmp_path / "artifacts"
    for rel, data in FILES.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    client.log_artifacts(run.info.run_id, str(folder))
    client.set_tag(
        run.info.run_id, WEIGHTS_SHA256_TAG, weights_tag or sha(FILES["weights/best.pt"])
    )
    client.set_terminated(run.info.run_id)
    client.create_registered_model(settings.registered_model)
    version = client.create_model_version(
        settings.registered_model,
        source=f"runs:/{run.info.run_id}/onnx",
        run_id=run.info.run_id,
        tags={
            "int8_sha256": sha(FILES["onnx/model_int8.onnx"]),
            "fp32_sha256": sha(FILES["onnx/model_fp32.onnx"]),
        },
    )
    return client, run.info.run_id, version


def _plan(**params):
    return plan_retrain(
        {"end_date": "2031-01-10", "epochs": 3, **params},
        resolve_trigger({}, [], "manual"),
        today=None,
        auto_retrain=True,
    )


def _record(settings, run_id, version):
    candidate = {
        "run_id": run_id,
        "version": str(version.version),
        "model_uri": version.source,
        "models": {k: f"runs:/{run_id}/onnx/model_{k}.onnx" for k in ("int8", "fp32")},
        "model_ids": {},
        "base": "yolo11n.yaml",
    }
    decision = {"promote": True, "reasons": [], "table": "candidate passes"}
    return write_model_record(
        settings,
        {"sha256": "d" * 64, "counts": {"train": 1}},
        None,
        decision,
        candidate,
        _plan(base="yolo11n.yaml"),
        {"uri": "s3://driftloop/profiles/reference/" + "r" * 64 + "/"},
    )


def _download_record(client, run_id, tmp_path) -> bytes:
    return Path(client.download_artifacts(run_id, "model.json", str(tmp_path / "dl"))).read_bytes()


def test_the_record_hash_is_the_hash_of_the_bytes_written_and_the_versions_tag(settings, tmp_path):
    client, run_id, version = _trained_version(settings, tmp_path)
    result = _record(settings, run_id, version)
    data = _download_record(client, run_id, tmp_path)
    assert result["model_json_sha256"] == sha(data)
    tags = client.get_model_version(settings.registered_model, version.version).tags
    assert tags[MODEL_RECORD_TAG] == sha(data)
    record = json.loads(data)
    assert record["gate"] == {"promote": True, "reasons": []}  # the gate's, before promotion
    assert record["artifacts"]["weights/best.pt"] == sha(FILES["weights/best.pt"])
    assert check_model_record(settings, version.version) == sha(data)


def test_a_tampered_or_unrecorded_model_json_is_refused_naming_the_version(settings, tmp_path):
    client, run_id, version = _trained_version(settings, tmp_path)
    _record(settings, run_id, version)
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / "model.json").write_text(json.dumps({"name": settings.registered_model}))
    client.log_artifacts(run_id, str(forged))
    with pytest.raises(ModelRecordError, match=rf"v{version.version}: model.json has SHA-256"):
        check_model_record(settings, version.version)
    client.delete_model_version_tag(settings.registered_model, version.version, MODEL_RECORD_TAG)
    with pytest.raises(ModelRecordError, match=f"v{version.version} has no {MODEL_RECORD_TAG}"):
        check_model_record(settings, version.version)


def test_weights_that_changed_since_training_are_not_recorded(settings, tmp_path):
    _, run_id, version = _trained_version(settings, tmp_path, weights_tag="f" * 64)
    with pytest.raises(ValueError, match=r"weights/best.pt has SHA-256 .* but " + "f" * 64):
        _record(settings, run_id, version)


def test_the_champion_base_is_pinned_to_the_weights_hash_its_record_holds(settings, tmp_path):
    client, run_id, version = _trained_version(settings, tmp_path)
    _record(settings, run_id, version)
    client.set_registered_model_alias(settings.registered_model, "champion", version.version)
    assert resolve_base(settings, _plan(base="champion")) == ResolvedBase(
        f"runs:/{run_id}/weights/best.pt", sha(FILES["weights/best.pt"])
    )
    client.set_model_version_tag(
        settings.registered_model, version.version, MODEL_RECORD_TAG, "0" * 64
    )
    with pytest.raises(ModelRecordError, match=f"v{version.version}"):
        resolve_base(settings, _plan(base="champion"))


def test_onnx_files_are_checked_against_their_recorded_hashes(settings, tmp_path):
    client, run_id, version = _trained_version(settings, tmp_path)
    _record(settings, run_id, version)
    champion = client.get_model_version(settings.registered_model, version.version)
    hashes = recorded_onnx_hashes(client, settings.registered_model, version.version, champion)
    assert (
        hashes["candidate"]
        == hashes["champion"]
        == {
            "int8": sha(FILES["onnx/model_int8.onnx"]),
            "fp32": sha(FILES["onnx/model_fp32.onnx"]),
        }
    )
    uri = f"runs:/{run_id}/onnx/model_int8.onnx"
    local = download_onnx(uri, tmp_path / "ok", hashes["candidate"]["int8"])
    assert local.read_bytes() == FILES["onnx/model_int8.onnx"]
    wrong = "0" * 64
    with pytest.raises(
        ModelFileMismatch,
        match=rf"downloaded SHA-256 {sha(FILES['onnx/model_int8.onnx'])}, recorded {wrong}",
    ):
        download_onnx(uri, tmp_path / "bad", wrong)
    client.delete_model_version_tag(settings.registered_model, version.version, "fp32_sha256")
    with pytest.raises(ModelFileMismatch, match=r"no recorded SHA-256 of its fp32 ONNX model"):
        recorded_onnx_hashes(client, settings.registered_model, version.version)
