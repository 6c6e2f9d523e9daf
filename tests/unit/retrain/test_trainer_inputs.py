"""What the Airflow side hands the trainer (issue 9, item 4): an allow-listed environment, a
base that is the champion (pinned to its recorded hash) or an allowed yaml, and
hyper-parameters that cannot override the bounded Params or the data."""

from __future__ import annotations

import pytest

from driftloop.config.settings import Settings
from driftloop.retrain.local_training import trainer_environment
from driftloop.retrain.plan import plan_retrain, resolve_trigger
from driftloop.retrain.training_arguments import (
    ResolvedBase,
    resolve_base,
    training_arguments,
)
from driftloop.training.allowlists import DisallowedInput

AIRFLOW_SECRETS = {
    "AIRFLOW__CORE__FERNET_KEY": "fernet-key",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow:pw@db/airflow",
    "AIRFLOW__API_AUTH__JWT_SECRET": "jwt",
    "AIRFLOW__API__SECRET_KEY": "api",
    "AIRFLOW_CONN_AWS_DEFAULT": "aws://key:secret@",
    "DRIFTLOOP_DATABASE_URL": "postgresql://driftloop:pw@db/driftloop",
    "DRIFTLOOP_LEDGER_HMAC_KEY": "ledger-key",
    "PGPASSWORD": "pw",
    "MLFLOW_BACKEND_STORE_URI": "postgresql://mlflow:pw@db/mlflow",
}
NEEDED = {
    "PATH": "/usr/bin",
    "HOME": "/home/airflow",
    "AWS_ACCESS_KEY_ID": "trainer",
    "AWS_SECRET_ACCESS_KEY": "trainer-secret",
    "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000",
    "MLFLOW_TRACKING_TOKEN": "token",
    "YOLO_CONFIG_DIR": "/tmp/yolo",
    "DRIFTLOOP_GIT_SHA": "a" * 40,
}


def test_the_trainer_gets_what_it_needs_and_nothing_of_airflows():
    settings = Settings(mlflow_tracking_uri="http://127.0.0.1:5000")
    env = trainer_environment(
        settings, {**AIRFLOW_SECRETS, **NEEDED, "ULTRALYTICS_SAFE_LOAD": "0", "YOLO_OFFLINE": "0"}
    )
    assert not set(AIRFLOW_SECRETS) & set(env)
    assert not [name for name in env if name.startswith("AIRFLOW")]
    assert not [value for value in env.values() if "pw@" in value or "fernet" in value]
    assert {name: env[name] for name in NEEDED} == NEEDED
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    # no inherited value switches these off
    assert env["ULTRALYTICS_SAFE_LOAD"] == "1"
    assert env["YOLO_OFFLINE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"


def _plan(**params):
    return plan_retrain(
        {"end_date": "2031-01-10", **params},
        resolve_trigger({}, [], "manual"),
        today=None,
        auto_retrain=True,
    )


SNAPSHOT = {"uri": "s3://driftloop/datasets/" + "d" * 64 + "/"}


@pytest.mark.parametrize("key", ["epochs", "imgsz", "batch", "data", "model", "project", "device"])
def test_hyperparameters_cannot_override_the_params_or_the_data(key):
    plan = _plan(epochs=3, hyperparameters={"lr0": 0.01, key: 900})
    with pytest.raises(DisallowedInput, match=f"key '{key}' may not be set"):
        training_arguments(plan, SNAPSHOT, ResolvedBase("yolo11n.yaml"), "run-1", "/tmp/x.json")


def test_the_champions_weights_go_with_their_hash():
    plan = _plan(epochs=3, hyperparameters={"mosaic": 0})
    args = training_arguments(
        plan, SNAPSHOT, ResolvedBase("runs:/abc/weights/best.pt", "e" * 64), "run-1", "/x.json"
    )
    assert args[args.index("--base") + 1] == "runs:/abc/weights/best.pt"
    assert args[args.index("--base-sha256") + 1] == "e" * 64
    assert args[args.index("--epochs") + 1] == "3"
    hyp = args[args.index("--hyp") + 1 :]
    assert "mosaic=0" in hyp
    assert not [h for h in hyp if h.split("=")[0] in ("epochs", "imgsz", "batch", "data")]
    yaml_args = training_arguments(plan, SNAPSHOT, "yolo11n.yaml", "run-1", "/x.json")
    assert "--base-sha256" not in yaml_args


@pytest.mark.parametrize(
    "base", ["runs:/abc/weights/best.pt", "s3://b/k/best.pt", "/srv/best.pt", "evil.yaml"]
)
def test_a_base_param_that_is_no_champion_nor_an_allowed_yaml_is_refused(base):
    with pytest.raises(DisallowedInput, match="Param base:"):
        resolve_base(Settings(), _plan(base=base))
    with pytest.raises(DisallowedInput, match="base model"):
        training_arguments(_plan(), SNAPSHOT, base, "run-1", "/x.json")


def test_an_allowed_yaml_needs_no_registry():
    assert resolve_base(Settings(), _plan(base="yolov8n.yaml")) == ResolvedBase("yolov8n.yaml")
