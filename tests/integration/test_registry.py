"""Registry operations against a real ``mlflow server``: idempotent registration, alias
promotion with one-step rollback, retention that never touches protected aliases."""

from __future__ import annotations

import uuid

import pytest

from driftloop.promotion import registry
from driftloop.promotion.retention import plan_retention

pytestmark = pytest.mark.integration


@pytest.fixture
def client(stack):
    from mlflow import MlflowClient

    return MlflowClient(stack.env["MLFLOW_TRACKING_URI"])


@pytest.fixture
def model(client):
    return f"test-detector-{uuid.uuid4().hex[:8]}"


def _run(client) -> tuple[str, str]:
    """A run with a logged model of its own (what the training run logs with mlflow.onnx)."""
    experiment = client.get_experiment_by_name("registry-tests")
    exp_id = experiment.experiment_id if experiment else client.create_experiment("registry-tests")
    run_id = client.create_run(exp_id).info.run_id
    logged = client.create_logged_model(exp_id, name="detector-int8", source_run_id=run_id)
    return run_id, f"models:/{logged.model_id}"


def _register(client, model, airflow_run):
    run_id, model_uri = _run(client)
    return registry.register_candidate(
        client,
        model,
        model_uri=model_uri,
        run_id=run_id,
        airflow_run_id=airflow_run,
        tags={"dataset_sha256": "abc", registry.FP32_MODEL_TAG: "models:/m-0123"},
        description="t",
    )


def test_registration_is_idempotent_per_dag_run(client, model):
    first, created = _register(client, model, "run-1")
    again, created_again = _register(client, model, "run-1")
    assert created
    assert not created_again
    assert again.version == first.version
    assert len(client.search_model_versions(f"name='{model}'")) == 1
    version = client.get_model_version(model, first.version)
    assert version.tags["dataset_sha256"] == "abc"
    # the version is the logged model, not the run folder
    assert version.source.startswith("models:/m-")
    assert version.run_id
    assert registry.onnx_model_uris(version) == {"int8": version.source, "fp32": "models:/m-0123"}


def test_a_run_folder_is_not_registered(client, model):
    run_id, _ = _run(client)
    with pytest.raises(ValueError, match=r"model_uri 'runs:/.*expected a logged MLflow model"):
        registry.register_candidate(
            client,
            model,
            model_uri=f"runs:/{run_id}",
            run_id=run_id,
            airflow_run_id="x",
            tags={},
            description="t",
        )


def test_retention_archives_old_versions_but_never_protected_ones(client, model):
    versions = [_register(client, model, f"r{i}")[0] for i in range(5)]
    client.set_registered_model_alias(model, "champion", versions[0].version)  # oldest
    client.set_registered_model_alias(model, "challenger", versions[1].version)
    plan = plan_retention(registry.version_infos(client, model), keep_last=2)
    archived = registry.apply_retention(client, model, plan, mode="tag")
    assert sorted(archived) == [int(versions[2].version)]
    tags = {
        v.version: (v.tags or {}).get("archived")
        for v in client.search_model_versions(f"name='{model}'")
    }
    assert tags[versions[0].version] is None
    assert tags[versions[1].version] is None
    again = plan_retention(registry.version_infos(client, model), keep_last=2)
    assert registry.apply_retention(client, model, again) == []
