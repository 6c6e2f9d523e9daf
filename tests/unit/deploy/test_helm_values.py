"""deploy/helm/airflow-values.yaml (official Apache Airflow chart), checked without a cluster.

The values are parsed with ``yaml.safe_load``; the training pod they configure is built with
``driftloop.airflow.training_task.training_pod_operator`` itself (dry run, no cluster), so the values and
the pod cannot drift apart silently.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from driftloop.config.settings import Settings

REPO = Path(__file__).resolve().parents[3]
VALUES = REPO / "deploy" / "helm" / "airflow-values.yaml"
README = REPO / "deploy" / "README.md"
COMPOSE = REPO / "docker-compose.yaml"

# chart keys that hold secret values inline (each has a *SecretName counterpart)
INLINE_SECRET_KEYS = {
    ("fernetKey",),
    ("webserverSecretKey",),
    ("apiSecretKey",),
    ("jwtSecret",),
    ("data", "metadataConnection"),
    ("data", "resultBackendConnection"),
    ("data", "brokerUrl"),
    ("redis", "password"),
    ("extraSecrets",),
}
_SECRET_NAME = re.compile(
    r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|ACCESS_KEY|API_KEY|DATABASE_URL|"
    r"SQL_ALCHEMY_CONN|BROKER_URL|RESULT_BACKEND|FERNET|AIRFLOW_CONN_AWS|AIRFLOW_CONN_DRIFTLOOP",
    re.IGNORECASE,
)
_URL_WITH_CREDENTIALS = re.compile(r"://[^/@\s:]*:[^/@\s]+@")
_JSON_SECRET = re.compile(r"\"(?:password|secret|token|aws_secret_access_key)\"\s*:", re.I)
# executors whose workers' service account the chart binds to its pod-launcher Role
WORKER_POD_LAUNCH_EXECUTORS = {"CeleryExecutor", "KubernetesExecutor", "CeleryKubernetesExecutor"}


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


@pytest.fixture(scope="module")
def env(values) -> dict[str, str]:
    """The common (non-secret) env of every Airflow container."""
    entries = values["env"]
    assert isinstance(entries, list)
    result = {}
    for entry in entries:
        assert set(entry) == {"name", "value"}, f"env entries are plain name/value: {entry}"
        assert isinstance(entry["value"], str), entry
        result[entry["name"]] = entry["value"]
    return result


def _get(node: Any, *path: str) -> Any:
    for key in path:
        assert isinstance(node, dict), f"missing key {'.'.join(path)}"
        assert key in node, f"missing key {'.'.join(path)}"
        node = node[key]
    return node


def _walk(node: Any, path: tuple = ()):
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, i))


def _secret_refs(values: dict) -> set[str]:
    """Every Kubernetes Secret the values reference by name."""
    names = set()
    for path, node in _walk(values):
        if not path or not isinstance(node, str):
            continue
        key = path[-1]
        if isinstance(key, str) and (
            key.endswith("SecretName") or key in ("secretName", "credentialsSecret")
        ):
            names.add(node)
        if path[-2:-1] == ("secretKeyRef",) and key == "name":
            names.add(node)
    return names


# ------------------------------------------------------------------------------- shape
@pytest.mark.parametrize(
    ("path", "kind"),
    [
        (("airflowVersion",), str),
        (("executor",), str),
        (("images", "airflow", "repository"), str),
        (("images", "airflow", "tag"), str),
        (("data", "metadataSecretName"), str),
        (("data", "resultBackendSecretName"), str),
        (("fernetKeySecretName",), str),
        (("apiSecretKeySecretName",), str),
        (("jwtSecretName",), str),
        (("workers", "replicas"), int),
        (("workers", "keda", "enabled"), bool),
        (("workers", "serviceAccount", "create"), bool),
        (("workers", "env"), list),
        (("dags", "gitSync", "enabled"), bool),
        (("dags", "gitSync", "repo"), str),
        (("dags", "gitSync", "subPath"), str),
        (("triggerer", "enabled"), bool),
        (("dagProcessor", "enabled"), bool),
        (("pgbouncer", "enabled"), bool),
        (("redis", "enabled"), bool),
        (("redis", "passwordSecretName"), str),
        (("postgresql", "enabled"), bool),
        (("env",), list),
        (("config",), dict),
        (("logs", "persistence", "enabled"), bool),
        (("createUserJob", "enabled"), bool),
        (("migrateDatabaseJob", "enabled"), bool),
        (("rbac", "create"), bool),
        (("allowPodLaunching",), bool),
    ],
)
def test_keys_exist_with_types(values, path, kind):
    value = _get(values, *path)
    # bool is an int in Python: keep replicas from passing as True
    assert isinstance(value, kind), f"{'.'.join(path)}: {value!r} is not {kind.__name__}"
    assert not (kind is int and isinstance(value, bool)), (
        f"{'.'.join(path)}: {value!r} is not {kind.__name__}"
    )


def test_config_sections_are_mappings_of_scalars(values):
    for section, options in values["config"].items():
        assert isinstance(options, dict), section
        for option, value in options.items():
            assert isinstance(value, str | int | bool), f"config.{section}.{option}"


def test_airflow_version_matches_the_image():
    pins = dict(
        re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", (REPO / "requirements.txt").read_text(), re.M)
    )
    values = yaml.safe_load(VALUES.read_text())
    assert values["airflowVersion"] == pins["apache-airflow"]


def test_cluster_deployment_choices(values):
    assert values["postgresql"]["enabled"] is False, "external PostgreSQL, not the bundled one"
    assert values["dags"]["gitSync"]["enabled"] is True
    assert values["dags"]["persistence"]["enabled"] is False
    assert (REPO / values["dags"]["gitSync"]["subPath"]).is_dir(), "gitSync.subPath not in repo"
    assert values["triggerer"]["enabled"] is True, "drift_monitor's sensor is deferrable"
    assert values["dagProcessor"]["enabled"] is True
    assert values["workers"]["replicas"] >= 1
    keda = values["workers"]["keda"]
    assert keda["minReplicaCount"] <= keda["maxReplicaCount"]
    # SimpleAuthManager (no FAB in the image): `airflow users create` would fail
    assert "fab" not in values["config"]["core"]["auth_manager"].lower()
    assert values["createUserJob"]["enabled"] is False
    tag = str(values["images"]["airflow"]["tag"])
    assert tag
    assert tag != "latest"


# ------------------------------------------------------------------------------ secrets
def test_no_inline_secret_values(values):
    for path in INLINE_SECRET_KEYS:
        node = values
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        assert not node, f"{'.'.join(path)} holds a secret inline: use its *SecretName"
    problems = []
    for path, node in _walk(values):
        if isinstance(node, str) and (
            _URL_WITH_CREDENTIALS.search(node) or _JSON_SECRET.search(node)
        ):
            problems.append(f"{path}: credentials in {node!r}")
    assert not problems, "\n".join(problems)


def test_secret_looking_env_comes_from_secret_refs(values):
    env_lists = {"env": values["env"]}
    for component in ("workers", "triggerer", "scheduler", "apiServer", "dagProcessor"):
        if isinstance(values.get(component), dict) and "env" in values[component]:
            env_lists[f"{component}.env"] = values[component]["env"]
    seen = 0
    for where, entries in env_lists.items():
        for entry in entries:
            if _SECRET_NAME.search(entry["name"]):
                seen += 1
                assert "value" not in entry, f"{where}: {entry['name']} is a literal"
                ref = entry["valueFrom"]["secretKeyRef"]
                assert ref["name"], f"{where}: {entry['name']}"
                assert ref["key"], f"{where}: {entry['name']}"
    assert seen, "expected the task credentials as secretKeyRef env"


def test_task_credentials_only_where_tasks_and_triggers_run(values, env):
    worker_env = {e["name"] for e in values["workers"]["env"]}
    assert {"AIRFLOW_CONN_AWS_DEFAULT", "DRIFTLOOP_DATABASE_URL"} <= worker_env
    triggerer_env = {e["name"] for e in values["triggerer"]["env"]}
    assert triggerer_env == {"AIRFLOW_CONN_AWS_DEFAULT"}
    assert not {"AIRFLOW_CONN_AWS_DEFAULT", "DRIFTLOOP_DATABASE_URL"} & set(env)
    assert not values.get("secret"), "top-level `secret` reaches every component"


def test_api_server_reads_the_drift_history_from_the_workers_secret(values):
    # the Drift page plugin reads the drift history; no other task credential goes there
    api_env = {e["name"]: e for e in values["apiServer"]["env"]}
    assert set(api_env) == {"DRIFTLOOP_DATABASE_URL"}
    workers = {e["name"]: e for e in values["workers"]["env"]}
    assert api_env["DRIFTLOOP_DATABASE_URL"] == workers["DRIFTLOOP_DATABASE_URL"]


def test_alerts_webhook_reaches_the_workers_from_an_optional_secret(values):
    # the notifiers run in task processes, on the workers; absent Secret = notifications off
    name = "AIRFLOW_CONN_" + Settings().alerts_conn_id.upper()
    entries = [e for e in values["workers"]["env"] if e["name"] == name]
    assert len(entries) == 1, f"workers.env lacks {name}"
    ref = entries[0]["valueFrom"]["secretKeyRef"]
    assert ref["optional"] is True
    assert ref["key"] == name


def test_every_referenced_secret_is_created_in_the_readme(values):
    refs = _secret_refs(values)
    assert {
        values["data"]["metadataSecretName"],
        values["fernetKeySecretName"],
        values["apiSecretKeySecretName"],
        values["jwtSecretName"],
        values["redis"]["passwordSecretName"],
    } <= refs
    created = set(re.findall(r"create secret generic ([\w.-]+)", README.read_text()))
    missing = sorted(refs - created)
    assert not missing, f"Secrets referenced but not created in deploy/README.md: {missing}"


# ------------------------------------------------------------ executor and training backend
def test_executor_and_training_backend_are_consistent(values, env):
    from driftloop.airflow.training_task import training_backend

    executor = values["executor"]
    assert executor == "CeleryExecutor"
    assert values["redis"]["enabled"] is True, "CeleryExecutor needs a broker"
    assert values["flower"]["enabled"] is False or values["flower"].get("secretName")
    # the KPO runs inside a Celery worker with the worker's service account: the chart must
    # bind its pod-launcher Role to that account
    assert executor in WORKER_POD_LAUNCH_EXECUTORS
    assert values["rbac"]["create"] is True
    assert values["allowPodLaunching"] is True
    assert values.get("multiNamespaceMode", False) is False, "no cluster-wide pod rights"
    assert training_backend(env) == "kubernetes"
    # the compose stack runs the same executor
    compose_env = yaml.safe_load(COMPOSE.read_text())["x-airflow-common"]["environment"]
    assert compose_env["AIRFLOW__CORE__EXECUTOR"] == executor


def test_every_driftloop_variable_of_the_values_is_a_setting(env):
    """The chart's DRIFTLOOP_* variables are what the code reads (``Settings``), values intact."""
    from driftloop.config.settings import Settings

    known = {f"DRIFTLOOP_{name.upper()}" for name in Settings.model_fields}
    unknown = sorted(k for k in env if k.startswith("DRIFTLOOP_") and k not in known)
    assert not unknown, f"the values set variables no setting reads: {unknown}"
    settings = Settings.from_env(env)
    assert settings.training_image == env["DRIFTLOOP_TRAINING_IMAGE"]
    assert settings.training_namespace == env["DRIFTLOOP_TRAINING_NAMESPACE"]


@pytest.fixture
def training_pod(values, env, monkeypatch):
    """The pod training_pod_operator renders from the values (dry run, no cluster)."""
    from driftloop.airflow.training_task import training_pod_operator

    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", env["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
    op = training_pod_operator(
        task_id="train",
        image=env["DRIFTLOOP_TRAINING_IMAGE"],
        arguments=["--dataset-uri", "s3://driftloop/datasets/abc/"],
        namespace=env["DRIFTLOOP_TRAINING_NAMESPACE"],
        mlflow_tracking_uri=env["DRIFTLOOP_MLFLOW_TRACKING_URI"],
        bucket=env["DRIFTLOOP_BUCKET"],
    )
    return op, op.build_pod_request_obj(None, dry_run=True)


def test_training_pod_namespace_matches_the_release_and_the_connection(env, training_pod):
    op, pod = training_pod
    namespace = env["DRIFTLOOP_TRAINING_NAMESPACE"]
    assert op.namespace == pod.metadata.namespace == namespace
    connection = json.loads(env["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
    assert connection["conn_type"] == "kubernetes"
    assert connection["extra"]["in_cluster"] is True
    assert connection["extra"]["namespace"] == namespace
    # the chart's pod-launcher Role is namespaced: Airflow must be installed in that namespace
    installs = re.findall(r"helm upgrade --install .*", README.read_text())
    assert installs
    assert all(f"--namespace {namespace}" in line for line in installs)
    assert f"create namespace {namespace}" in README.read_text()


def test_training_pod_identity_and_worker_service_account(values, training_pod):
    _op, pod = training_pod
    # the trainer needs no API access: default service account, no token
    assert pod.spec.service_account_name in (None, "default")
    assert pod.spec.automount_service_account_token is False
    # the KPO itself authenticates in-cluster as the worker: its token must be mounted
    service_account = values["workers"]["serviceAccount"]
    assert service_account["create"] is True
    assert service_account.get("automountServiceAccountToken", True) is True


def test_training_pod_image_is_pinned(env, training_pod):
    _op, pod = training_pod
    image = env["DRIFTLOOP_TRAINING_IMAGE"]
    assert pod.spec.containers[0].image == image
    assert "@sha256:" in image or (
        ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
    )


def test_gpu_node_pool_is_for_the_trainer_only(values, training_pod):
    _op, pod = training_pod
    gpu_selector = pod.spec.node_selector
    assert gpu_selector, "the trainer selects the GPU node pool"
    gpu_taints = {t.key for t in pod.spec.tolerations}
    for component in ("workers", "scheduler", "triggerer", "apiServer", "dagProcessor"):
        spec = values.get(component) or {}
        selector = spec.get("nodeSelector") or values.get("nodeSelector") or {}
        assert not set(selector.items()) & set(gpu_selector.items()), f"{component} on GPU nodes"
        tolerated = {
            t.get("key") for t in (spec.get("tolerations") or values.get("tolerations") or [])
        }
        assert not tolerated & gpu_taints, f"{component} tolerates the GPU taint"


def test_migration_job_creates_the_training_pool(values, training_pod):
    from driftloop.airflow.training_task import training_pod_operator

    op, _ = training_pod
    default_pool = inspect.signature(training_pod_operator).parameters["pool"].default
    assert op.pool == default_pool
    job = values["migrateDatabaseJob"]
    assert job["enabled"] is True
    script = " ".join(job["args"])
    assert job["args"][:2] == ["bash", "-c"]
    assert "airflow db migrate" in script
    match = re.search(r"airflow pools set (\S+) (\d+) ", script)
    assert match
    assert match.group(1) == op.pool
    assert int(match.group(2)) >= 1
    # `exec` would replace the shell before the pool is created
    assert not re.search(r"\bexec airflow db migrate\b.*&&", script)
