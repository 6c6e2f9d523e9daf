"""docker-compose.yaml, its Dockerfiles and helper scripts, checked without a Docker engine.

The compose file is parsed with ``yaml.safe_load`` and interpolated the way ``docker compose``
does (``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``$$``) with the values of
``.env.example``; the helper scripts run under ``sh``/``bash`` with stand-ins for ``mc``,
``psql`` and ``airflow`` on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import postgres_init_env

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
COMPOSE_DIR = REPO / "include" / "compose"

AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
# services built from the Airflow image (x-airflow-common)
AIRFLOW_IMAGE_SERVICES = AIRFLOW_SERVICES | {"flower"}
ONE_SHOT_SERVICES = {"airflow-init", "create-buckets", "mlflow-init"}
EXPECTED_SERVICES = AIRFLOW_IMAGE_SERVICES | {
    "postgres",
    "redis",
    "minio",
    "create-buckets",
    "mlflow",
    "mlflow-init",
    "pushgateway",
    "prometheus",
    "alertmanager",
    "grafana",
}
# service -> container ports of its UI/API that must be published on the host
UI_PORTS = {
    "airflow-apiserver": {8080},
    "mlflow": {5000},
    "minio": {9000, 9001},
    "prometheus": {9090},
    "pushgateway": {9091},
    "alertmanager": {9093},
    "grafana": {3000},
    "flower": {5555},
}
CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"
# only the tasks (workers) use these; the triggerer gets the S3 connection for the sensor
TASK_ONLY_ENV = {"AIRFLOW_CONN_KUBERNETES_DEFAULT", "DRIFTLOOP_DATABASE_URL"}
S3_ENV = "AIRFLOW_CONN_AWS_DEFAULT"
# a dedicated kubeconfig file, mounted on the workers only
KUBE_MOUNT = "/opt/airflow/.kube/config"


# --------------------------------------------------------------------------- interpolation
class MissingVariable(ValueError):
    pass


_TOKEN = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.S)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose-style interpolation of one string."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("named"):
            return env.get(match.group("named"), "")
        braced = _BRACED.match(match.group("braced"))
        if braced is None:
            raise ValueError(f"invalid interpolation: {match.group(0)!r}")
        name, op, arg = braced.group("name", "op", "arg")
        is_set = name in env
        non_empty = bool(env.get(name))
        if op is None:
            return env.get(name, "")
        if op == ":-":
            return env[name] if non_empty else arg
        if op == "-":
            return env[name] if is_set else arg
        if op == ":?":
            if not non_empty:
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        if op == "?":
            if not is_set:
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        if op == ":+":
            return arg if non_empty else ""
        return arg if is_set else ""  # "+"

    return _TOKEN.sub(replace, value)


def render(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [render(item, env) for item in node]
    if isinstance(node, dict):
        return {key: render(value, env) for key, value in node.items()}
    return node


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def _strings(node: Any, path: str = ""):
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _strings(item, f"{path}[{i}]")
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")


def variables_in(node: Any) -> dict[str, set[str]]:
    """{variable name: set of operators used with it} over every string of the parsed file."""
    found: dict[str, set[str]] = {}
    text = "\n".join(value for _, value in _strings(node))
    for match in _TOKEN.finditer(text):
        if match.group("escaped"):
            continue
        if match.group("named"):
            found.setdefault(match.group("named"), set()).add("")
            continue
        braced = _BRACED.match(match.group("braced"))
        assert braced, match.group(0)
        found.setdefault(braced.group("name"), set()).add(braced.group("op") or "")
    return found


def as_dict(environment: Any) -> dict[str, str]:
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in (environment or {}).items()}


def depends_on(service: dict) -> dict[str, dict]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return deps


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def raw_text() -> str:
    return COMPOSE.read_text()


@pytest.fixture(scope="module")
def raw(raw_text: str) -> dict:
    return yaml.safe_load(raw_text)


#: what an operator puts where .env.example says change-me (the stack refuses the placeholders)
OPERATOR_VALUE = "Qz7w-k3Jd9-operator"


def operator_env(example: dict[str, str]) -> dict[str, str]:
    """.env.example as an operator fills it in: every change-me replaced by a real value."""
    return {key: value.replace("change-me", OPERATOR_VALUE) for key, value in example.items()}


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return operator_env(read_env_file(ENV_EXAMPLE))


@pytest.fixture(scope="module")
def compose(raw: dict, env_example: dict[str, str]) -> dict:
    return render(raw, env_example)


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def airflow_env(compose: dict) -> dict[str, str]:
    return as_dict(compose["x-airflow-common"]["environment"])


@pytest.fixture(scope="module")
def worker_env(services: dict[str, dict]) -> dict[str, str]:
    return as_dict(services["airflow-worker"]["environment"])


def mount_targets(service: dict) -> set[str]:
    return {str(v).split(":")[1] for v in service.get("volumes", [])}


def fake_bin(tmp_path: Path, name: str, body: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


# ------------------------------------------------------------------ env file and secrets
def test_every_required_variable_is_in_env_example(raw, env_example):
    used = variables_in(raw)
    required = {name for name, ops in used.items() if ops & {":?", "?"}}
    assert required, "expected the secrets to be ${VAR:?} variables"
    missing = sorted(name for name in required if not env_example.get(name))
    assert not missing, f"required variables without a value in .env.example: {missing}"
    # everything else has a default or is documented in .env.example
    undocumented = sorted(
        name
        for name, ops in used.items()
        if name not in env_example and not ops & {":-", "-", ":+", "+"}
    )
    assert not undocumented, (
        f"variables with neither a default nor a .env.example entry: {undocumented}"
    )


def test_compose_refuses_to_render_without_the_secrets(raw):
    with pytest.raises(MissingVariable):
        render(raw, {})


@pytest.mark.parametrize(
    "secret",
    [
        "POSTGRES_PASSWORD",
        "DRIFTLOOP_DB_PASSWORD",
        "MLFLOW_DB_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "DRIFTLOOP_S3_SECRET_KEY",
        "AIRFLOW_FERNET_KEY",
        "AIRFLOW_API_SECRET_KEY",
        "AIRFLOW_JWT_SECRET",
        "AIRFLOW_USER_PASSWORDS",
        "AIRFLOW_DB_PASSWORD",
        "DRIFTLOOP_APP_DB_PASSWORD",
        "MLFLOW_S3_SECRET_KEY",
        "TRAINER_S3_SECRET_KEY",
        "MLFLOW_ADMIN_PASSWORD",
        "MLFLOW_AIRFLOW_PASSWORD",
        "MLFLOW_TRAINER_PASSWORD",
        "MLFLOW_FLASK_SECRET_KEY",
        "DRIFTLOOP_LEDGER_HMAC_KEY",
        "GRAFANA_ADMIN_PASSWORD",
        "REDIS_PASSWORD",
        "FLOWER_PASSWORD",
    ],
)
def test_each_secret_is_a_required_variable(raw, env_example, secret):
    assert ":?" in variables_in(raw).get(secret, set()), f"{secret} must be ${{{secret}:?...}}"
    env = dict(env_example)
    del env[secret]
    with pytest.raises(MissingVariable, match=secret):
        render(raw, env)


_SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|JWT|PRIVATE", re.I)
_NOT_SECRET = {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"}
_URL_CREDENTIALS = re.compile(r"://[^:/@\s\"']+:(?P<password>[^@\s\"']+)@")
_JSON_PASSWORD = re.compile(r"\"(?:password|secret|token)\"\s*:\s*\"(?P<password>[^\"]*)\"", re.I)


def test_no_literal_secrets(raw):
    """Passwords, keys and credentials in URLs/JSON come from variables, never literals."""
    problems = []
    sections = {name: node for name, node in raw.items() if name.startswith("x-")}
    sections.update(raw["services"])
    for name, service in sections.items():
        environment = service.get("environment", service) if isinstance(service, dict) else {}
        for key, value in as_dict(environment).items():
            if not isinstance(value, str):
                continue
            if _SECRET_KEY.search(key) and key not in _NOT_SECRET and "${" not in value:
                problems.append(f"{name}: {key} is a literal")
    for path, value in _strings(raw):
        for pattern in (_URL_CREDENTIALS, _JSON_PASSWORD):
            for match in pattern.finditer(value):
                if not match.group("password").lstrip("$").startswith("{"):
                    problems.append(f"{path}: literal credential in {value!r}")
    assert not problems, "\n".join(problems)


def test_example_secret_values_are_not_hard_coded(raw_text, env_example):
    secrets = {k: v for k, v in env_example.items() if _SECRET_KEY.search(k) and len(v) >= 6}
    assert secrets
    leaked = sorted(key for key, value in secrets.items() if value in raw_text)
    assert not leaked, f".env.example values copied into docker-compose.yaml: {leaked}"


def test_env_file_is_kept_out_of_the_image_build():
    patterns = (REPO / ".dockerignore").read_text().split()
    assert ".env" in patterns
    assert ".venv" in patterns
    assert ".git" in patterns


# ------------------------------------------------------------------------------ services
def test_expected_services(services):
    assert set(services) == EXPECTED_SERVICES


def test_every_service_has_an_image_or_build(services):
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name}: no image and no build"
        image = service.get("image", "")
        tag = image.rsplit("/", 1)[-1]
        assert ":" in tag, f"{name}: image {image!r} is not pinned"
        assert not tag.endswith(":latest"), f"{name}: image {image!r} is not pinned"


def test_long_running_services_have_healthchecks_and_restart(services):
    one_shot = {name for name, s in services.items() if str(s.get("restart", "")) == "no"}
    assert one_shot == ONE_SHOT_SERVICES
    for name, service in services.items():
        if name in one_shot:
            continue
        assert service.get("restart") in ("always", "unless-stopped"), f"{name}: restart policy"
        check = service.get("healthcheck")
        assert check, f"{name}: long-running service without a healthcheck"
        test = check["test"]
        assert isinstance(test, list), name
        assert test[0] in ("CMD", "CMD-SHELL"), name
        assert len(test) > 1, name
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name}: healthcheck.{key}"


def test_depends_on_targets_exist_with_conditions(services):
    for name, service in services.items():
        for target, spec in depends_on(service).items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec.get("condition")
            assert condition in ("service_healthy", "service_completed_successfully"), (
                f"{name} -> {target}: condition {condition!r}"
            )
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target}'s health"
            else:
                assert target in ONE_SHOT_SERVICES, f"{name} waits for {target} to exit"


def test_dependency_graph_has_no_cycle(services):
    order: list[str] = []
    pending = {name: set(depends_on(s)) for name, s in services.items()}
    while pending:
        ready = sorted(name for name, deps in pending.items() if deps <= set(order))
        assert ready, f"dependency cycle among {sorted(pending)}"
        order.extend(ready)
        for name in ready:
            del pending[name]
    assert order.index("postgres") < order.index("airflow-init") < order.index("airflow-scheduler")


def test_ui_ports_are_published(services):
    host_ports: list[int] = []
    for name, container_ports in UI_PORTS.items():
        published = {}
        for mapping in services[name].get("ports", []):
            *_, host, container = str(mapping).split(":")
            published[int(container)] = int(host)
        assert container_ports <= set(published), f"{name}: publish {sorted(container_ports)}"
        host_ports.extend(published.values())
    assert len(host_ports) == len(set(host_ports)), "two services on the same host port"


def test_file_bind_mounts_exist(services):
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if not source.startswith("./"):
                continue
            path = REPO / source
            if path.suffix:  # a file mount: a missing source would become an empty directory
                assert path.is_file(), f"{name}: {source} does not exist"


# ------------------------------------------------------------------------------- Airflow
def test_airflow_services_share_image_env_and_volumes(services, airflow_env):
    assert {n for n in services if n.startswith("airflow-")} == AIRFLOW_SERVICES
    first = services["airflow-scheduler"]
    for name in AIRFLOW_IMAGE_SERVICES:
        service = services[name]
        for key in ("image", "build", "user"):
            assert service.get(key) == first.get(key), f"{name}: {key} differs"
        # the common mounts everywhere; only the worker adds one (the kubeconfig)
        assert set(first["volumes"]) <= set(service["volumes"]), f"{name}: common mounts"
        extra = set(service["volumes"]) - set(first["volumes"])
        if name == "airflow-worker":
            assert {str(v).split(":")[1] for v in extra} == {KUBE_MOUNT}
        else:
            assert not extra, f"{name}: mounts beyond the common ones: {sorted(extra)}"
        env = as_dict(service["environment"])
        for key, value in airflow_env.items():
            assert env.get(key) == value, f"{name}: {key} differs from x-airflow-common"
    assert first["build"]["dockerfile"] == "Dockerfile"
    mounts = mount_targets(first)
    assert {"/opt/airflow/dags", "/opt/airflow/include", "/opt/airflow/plugins"} <= mounts
    assert KUBE_MOUNT not in mounts
    commands = {n: services[n].get("command") for n in AIRFLOW_IMAGE_SERVICES - {"airflow-init"}}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
        "airflow-worker": "celery worker",
        "flower": "celery flower",
    }


def test_airflow_core_settings(airflow_env):
    assert airflow_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert airflow_env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false"
    assert int(airflow_env["AIRFLOW__CORE__PARALLELISM"]) >= 1
    assert airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert "@postgres:5432/" in airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert airflow_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://airflow-apiserver:8080/execution/"
    )
    assert airflow_env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    users = dict(
        u.split(":") for u in airflow_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
    )
    assert "admin" in users.values()
    assert "admin" not in users, "a shared admin account"
    assert airflow_env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"


def test_airflow_connections_are_valid_json(worker_env, env_example):
    aws = json.loads(worker_env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert aws["conn_type"] == "aws"
    assert aws["extra"]["endpoint_url"] == "http://minio:9000"
    assert aws["login"] == env_example["DRIFTLOOP_S3_ACCESS_KEY"]
    assert aws["password"] == env_example["DRIFTLOOP_S3_SECRET_KEY"]
    k8s = json.loads(worker_env["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
    assert k8s["conn_type"] == "kubernetes"
    assert k8s["extra"]["kube_config_path"] == KUBE_MOUNT


def test_airflow_reads_the_connections(worker_env):
    """The JSON form is what Airflow parses from AIRFLOW_CONN_* variables."""
    from airflow.models.connection import Connection

    aws = Connection.from_json(worker_env["AIRFLOW_CONN_AWS_DEFAULT"], conn_id="aws_default")
    assert aws.conn_type == "aws"
    assert aws.extra_dejson["endpoint_url"] == "http://minio:9000"
    k8s = Connection.from_json(
        worker_env["AIRFLOW_CONN_KUBERNETES_DEFAULT"], conn_id="kubernetes_default"
    )
    assert k8s.extra_dejson["namespace"]


def test_alerts_webhook_connection(raw, services, env_example):
    """The workers (task notifications) and the dag-processor (failure callbacks of tasks
    that died outside their process) get the ``driftloop_alerts`` connection: a Slack
    incoming webhook whose URL is ALERTS_WEBHOOK_URL, unset = no URL (notifications off)."""
    from airflow.models.connection import Connection

    from driftloop.config.settings import Settings

    name = "AIRFLOW_CONN_" + Settings().alerts_conn_id.upper()
    url = "https://hooks.example.com/services/T0/B0/x"
    for service in ("airflow-worker", "airflow-dag-processor"):
        env = as_dict(services[service]["environment"])
        unset = Connection.from_json(env[name], conn_id="driftloop_alerts")
        assert unset.conn_type == "slackwebhook"
        assert not unset.password, service
        rendered = render(raw, {**env_example, "ALERTS_WEBHOOK_URL": url})["services"]
        given = as_dict(rendered[service]["environment"])[name]
        assert Connection.from_json(given, conn_id="driftloop_alerts").password == url
    alertmanager = render(raw, {**env_example, "ALERTS_WEBHOOK_URL": url})["services"]
    assert alertmanager["alertmanager"]["environment"]["ALERTMANAGER_WEBHOOK_URL"] == url


def test_driftloop_settings_from_the_compose_env(raw, env_example):
    from driftloop.airflow.training_task import TRAINING_BACKEND_ENV
    from driftloop.config.settings import Settings

    worker_env = as_dict(render(raw, env_example)["services"]["airflow-worker"]["environment"])
    dag_sources = "\n".join(p.read_text() for p in (REPO / "dags").glob("*.py"))
    unknown = sorted(
        key
        for key in worker_env
        if key.startswith("DRIFTLOOP_")
        and key.removeprefix("DRIFTLOOP_").lower() not in Settings.model_fields
        # the DAG files' own parse-time settings (DRIFTLOOP_TRAINING_*)
        and key != TRAINING_BACKEND_ENV
        and not re.search(rf"[\"']{key}[\"']", dag_sources)
    )
    assert not unknown, f"DRIFTLOOP_* variables that neither Settings nor a DAG reads: {unknown}"
    settings = Settings.from_env(worker_env)
    assert settings.bucket == env_example["DRIFTLOOP_BUCKET"]
    assert settings.aws_conn_id == "aws_default"
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    assert settings.pushgateway_url == "http://pushgateway:9091"
    # the row-only application role, not the owner (issue 9)
    assert settings.database_url == (
        f"postgresql+psycopg2://driftloop_app:{env_example['DRIFTLOOP_APP_DB_PASSWORD']}"
        "@postgres:5432/driftloop"
    )
    assert settings.ledger_hmac_key.get_secret_value() == env_example["DRIFTLOOP_LEDGER_HMAC_KEY"]
    assert settings.ledger_anchor_bucket == settings.bucket


# -------------------------------------------------------------------------------- Celery
def test_every_airflow_container_runs_the_celery_executor(services):
    for name in AIRFLOW_IMAGE_SERVICES:
        env = as_dict(services[name]["environment"])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name


def test_broker_and_result_backend_point_at_redis_and_postgres(services, airflow_env, env_example):
    from sqlalchemy.engine import make_url

    broker = make_url(airflow_env["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.drivername == "redis"
    assert broker.host == "redis"
    assert broker.port == 6379
    assert broker.database == "0"
    assert broker.password == env_example["REDIS_PASSWORD"]
    assert "6379" in [str(p) for p in services["redis"]["expose"]]

    backend = airflow_env["AIRFLOW__CELERY__RESULT_BACKEND"]
    assert backend.startswith("db+postgresql://")
    url = make_url(backend.removeprefix("db+"))
    metadata = make_url(airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert (url.host, url.port, url.database) == ("postgres", 5432, metadata.database)
    assert (url.username, url.password) == (metadata.username, metadata.password)
    assert int(airflow_env["AIRFLOW__CELERY__WORKER_CONCURRENCY"]) >= 1


def test_the_celery_app_reads_the_compose_settings(worker_env, tmp_path):
    """The worker's Celery app (the healthcheck's --app) imports and takes the compose env."""
    env = {
        **os.environ,
        **worker_env,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    }
    module, _, attribute = CELERY_APP.rpartition(".")
    code = (
        f"import json; from {module} import {attribute} as app; "
        "print(json.dumps([app.conf.broker_url, app.conf.result_backend]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180
    )
    if "cannot import name 'retry' from 'celery.backends.database'" in result.stderr:
        pytest.xfail(
            "requirements.txt: celery 5.7 dropped celery.backends.database.retry, which "
            "apache-airflow-providers-celery 3.26.0 imports; pin celery<5.7"
        )
    assert result.returncode == 0, result.stderr[-3000:]
    broker, backend = json.loads(result.stdout.strip().splitlines()[-1])
    assert broker == worker_env["AIRFLOW__CELERY__BROKER_URL"]
    assert backend == worker_env["AIRFLOW__CELERY__RESULT_BACKEND"]


def test_worker_scales(raw, services):
    worker = services["airflow-worker"]
    for key in ("container_name", "ports", "hostname"):
        assert key not in worker, f"airflow-worker: {key} keeps it from scaling"
    assert worker["restart"] == "always"
    # the ping names this container's own worker (celery@<hostname>); $$ = a literal $
    test = raw["services"]["airflow-worker"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    assert test[1] == f'celery --app {CELERY_APP} inspect ping -d "celery@$${{HOSTNAME}}"'
    # warm shutdown: dumb-init signals celery's main process only, and it gets time to finish
    env = as_dict(worker["environment"])
    assert env["DUMB_INIT_SETSID"] == "0"
    grace = re.fullmatch(r"(\d+)(s|m|h)", str(worker["stop_grace_period"]))
    assert grace
    assert int(grace.group(1)) * {"s": 1, "m": 60, "h": 3600}[grace.group(2)] >= 60


def test_worker_has_what_tasks_need(services, worker_env, env_example):
    from driftloop.airflow.training_task import training_backend

    assert TASK_ONLY_ENV | {S3_ENV} <= set(worker_env)
    assert KUBE_MOUNT in mount_targets(services["airflow-worker"])
    kube_mount = next(v for v in services["airflow-worker"]["volumes"] if KUBE_MOUNT in str(v))
    assert str(kube_mount).endswith(":ro")
    assert training_backend(worker_env) == "kubernetes"
    k8s = json.loads(worker_env["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
    assert worker_env["DRIFTLOOP_TRAINING_NAMESPACE"] == k8s["extra"]["namespace"]
    assert worker_env["DRIFTLOOP_TRAINING_IMAGE"] == env_example["DRIFTLOOP_TRAINING_IMAGE"]
    # what the tasks talk to is up before a worker takes tasks
    deps = depends_on(services["airflow-worker"])
    for target in ("postgres", "redis", "mlflow", "pushgateway", "airflow-apiserver"):
        assert deps[target]["condition"] == "service_healthy", target
    for target in ("airflow-init", "create-buckets"):
        assert deps[target]["condition"] == "service_completed_successfully", target
    # the DAG files are parsed in the dag-processor and again on the worker: same backend
    processor_env = as_dict(services["airflow-dag-processor"]["environment"])
    assert training_backend(processor_env) == training_backend(worker_env)


def test_task_credentials_stay_on_the_workers(services):
    for name in AIRFLOW_IMAGE_SERVICES - {"airflow-worker"}:
        env = set(as_dict(services[name]["environment"]))
        # the api-server reads the drift history for the Drift page (and nothing else)
        allowed = {"DRIFTLOOP_DATABASE_URL"} if name == "airflow-apiserver" else set()
        assert not env & (TASK_ONLY_ENV - allowed), f"{name} holds task-only credentials"
        assert KUBE_MOUNT not in mount_targets(services[name]), f"{name} mounts the kubeconfig"
        if name != "airflow-triggerer":
            assert S3_ENV not in env, f"{name} holds the S3 connection"
    triggerer_env = as_dict(services["airflow-triggerer"]["environment"])
    assert triggerer_env[S3_ENV] == as_dict(services["airflow-worker"]["environment"])[S3_ENV]


def test_api_server_reads_the_drift_history_as_the_application_role(services, worker_env):
    # the Drift page plugin: the same database and role as the tasks, and no other task
    # credential (S3, the cluster, the ledger's HMAC key)
    env = as_dict(services["airflow-apiserver"]["environment"])
    assert env["DRIFTLOOP_DATABASE_URL"] == worker_env["DRIFTLOOP_DATABASE_URL"]
    assert "driftloop_app:" in env["DRIFTLOOP_DATABASE_URL"]
    for name in (S3_ENV, "AIRFLOW_CONN_KUBERNETES_DEFAULT", "DRIFTLOOP_LEDGER_HMAC_KEY"):
        assert name not in env, name


def test_scheduler_depends_on_redis_and_runs_no_tasks(services):
    deps = depends_on(services["airflow-scheduler"])
    assert deps["redis"]["condition"] == "service_healthy"
    assert deps["postgres"]["condition"] == "service_healthy"
    # nothing the tasks talk to: the scheduler does not run them any more
    assert not {"mlflow", "pushgateway", "create-buckets"} & set(deps)


def test_redis_is_internal_authenticated_and_healthy(raw, services, env_example):
    redis = services["redis"]
    assert "ports" not in redis, "Redis must not be published on the host"
    assert redis["restart"] == "always"
    assert redis.get("user") not in (None, "root", "0", "0:0"), "redis-server as root"
    check = redis["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert "redis-cli" in " ".join(check["test"])
    env = as_dict(redis["environment"])
    assert env["REDISCLI_AUTH"] == env["REDIS_PASSWORD"] == env_example["REDIS_PASSWORD"]
    script = raw["services"]["redis"]["command"][0]
    assert re.search(r"^requirepass \$\$\{REDIS_PASSWORD\}$", script, re.M)
    assert "--requirepass" not in script, "the password would be in the process arguments"
    assert script.startswith("exec redis-server - "), "redis-server must be PID 1"
    for name in AIRFLOW_IMAGE_SERVICES:
        assert depends_on(services[name])["redis"]["condition"] == "service_healthy", name


def test_redis_starts_with_the_password_from_stdin(raw, tmp_path):
    """The compose command, run against a local redis-server when one is installed."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    redis = raw["services"]["redis"]
    script = redis["command"][0].replace("$$", "$").replace("dir /data", f"dir {tmp_path}")
    script = script.replace("\nEOF", f"\nport {port}\nbind 127.0.0.1\nEOF")
    env = {**os.environ, "REDIS_PASSWORD": "pw-Test.1", "REDISCLI_AUTH": "pw-Test.1"}
    proc = subprocess.Popen(
        [*redis["entrypoint"], script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        check = redis["healthcheck"]["test"][1].replace("redis-cli", f"redis-cli -p {port}")
        for _ in range(50):
            if subprocess.run(["sh", "-c", check], env=env).returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"healthcheck never passed: {proc.stderr.read1().decode()}")
        no_auth = {k: v for k, v in env.items() if k != "REDISCLI_AUTH"}
        assert subprocess.run(["sh", "-c", check], env=no_auth).returncode != 0
        assert "pw-Test" not in Path(f"/proc/{proc.pid}/cmdline").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_flower_is_optional_and_authenticated(services):
    flower = services["flower"]
    assert flower["profiles"] == ["flower"]
    env = as_dict(flower["environment"])
    user, _, password = env["AIRFLOW__CELERY__FLOWER_BASIC_AUTH"].partition(":")
    assert user
    assert password


def _docker_compose() -> list[str] | None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        version = subprocess.run([*command, "version"], capture_output=True, text=True)
        if version.returncode == 0 and re.search(r"v?2\.\d+", version.stdout):
            return command
    return None


def test_docker_compose_config_accepts_the_file(tmp_path):
    """`docker compose config` (no engine needed), where a Compose v2 CLI is installed."""
    command = _docker_compose()
    if command is None:
        pytest.skip("no Docker Compose v2 CLI")
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text())
    base = [*command, "--project-directory", str(REPO), "-f", str(COMPOSE)]
    result = subprocess.run(
        [*base, "--env-file", str(env_file), "--profile", "flower", "config", "--format", "json"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    rendered = json.loads(result.stdout)["services"]
    assert set(rendered) == EXPECTED_SERVICES
    assert "ports" not in rendered["redis"]
    assert rendered["airflow-worker"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # and it refuses to start without a secret
    env_file.write_text(
        "\n".join(
            line
            for line in ENV_EXAMPLE.read_text().splitlines()
            if not line.startswith("REDIS_PASSWORD=")
        )
    )
    result = subprocess.run(
        [*base, "--env-file", str(env_file), "config", "-q"], capture_output=True, text=True
    )
    # (some wrappers of the binary lose its exit status: the message is what counts)
    assert "required variable REDIS_PASSWORD is missing" in result.stderr


# -------------------------------------------------------------------- PostgreSQL init SQL
def _sql_objects() -> tuple[dict[str, str], dict[str, str]]:
    sql = (COMPOSE_DIR / "init-databases.sql").read_text()
    roles = dict(
        re.findall(r"CREATE ROLE (\w+) WITH LOGIN [^;]*PASSWORD :'(\w+)'\s*;", sql, flags=re.I)
    )
    databases = dict(re.findall(r"CREATE DATABASE (\w+) WITH OWNER (\w+)", sql, flags=re.I))
    return roles, databases


def test_init_sql_creates_the_databases_the_env_references(
    services, airflow_env, worker_env, env_example
):
    from sqlalchemy.engine import make_url

    roles, databases = _sql_objects()
    assert set(databases) == {"airflow", "driftloop", "mlflow"}

    # the tasks: the application role, which owns nothing
    driftloop = make_url(worker_env["DRIFTLOOP_DATABASE_URL"])
    assert driftloop.host == "postgres"
    assert driftloop.username == "driftloop_app" in roles
    assert driftloop.username not in databases.values()
    assert driftloop.password == env_example["DRIFTLOOP_APP_DB_PASSWORD"]
    # migrations: the owner, in airflow-init only
    owner = make_url(
        as_dict(services["airflow-init"]["environment"])["DRIFTLOOP_OWNER_DATABASE_URL"]
    )
    assert databases[owner.database] == owner.username == "driftloop"
    assert owner.password == env_example["DRIFTLOOP_DB_PASSWORD"]

    backend_uri = as_dict(services["mlflow"]["environment"])["MLFLOW_BACKEND_STORE_URI"]
    mlflow_url = make_url(backend_uri)
    assert mlflow_url.host == "postgres"
    assert databases[mlflow_url.database] == mlflow_url.username
    assert mlflow_url.password == env_example["MLFLOW_DB_PASSWORD"]

    # the Airflow metadata database: its own owner role, not the superuser (issue 9)
    metadata = make_url(airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    postgres_env = as_dict(services["postgres"]["environment"])
    assert databases[metadata.database] == metadata.username == "airflow"
    assert metadata.username != postgres_env["POSTGRES_USER"]
    assert (
        metadata.password == env_example["AIRFLOW_DB_PASSWORD"] != postgres_env["POSTGRES_PASSWORD"]
    )


def test_postgres_runs_the_init_script(services):
    postgres = services["postgres"]
    mounts = dict(str(v).split(":")[:2] for v in postgres["volumes"])
    init_targets = [t for s, t in mounts.items() if s.endswith("postgres-init.sh")]
    assert init_targets
    assert init_targets[0].startswith("/docker-entrypoint-initdb.d/")
    sql_target = next(t for s, t in mounts.items() if s.endswith("init-databases.sql"))
    assert not sql_target.startswith("/docker-entrypoint-initdb.d/"), (
        "the SQL needs psql variables: it must run through postgres-init.sh, not directly"
    )
    script = (COMPOSE_DIR / "postgres-init.sh").read_text()
    assert sql_target in script
    env = as_dict(postgres["environment"])
    roles, _ = _sql_objects()
    for variable in set(roles.values()):
        assert f"--set {variable}=" in script, f"postgres-init.sh does not pass :'{variable}'"
    for name in re.findall(r"\$\{?(\w+_PASSWORD)", script):
        assert env.get(name), f"postgres service lacks {name}"


def test_postgres_init_script_passes_passwords_as_psql_variables(tmp_path):
    log = tmp_path / "psql.args"
    bin_dir = fake_bin(tmp_path, "psql", f'for a in "$@"; do printf "%s\\n" "$a"; done > "{log}"\n')
    env = postgres_init_env(PATH=f"{bin_dir}:{os.environ['PATH']}")
    subprocess.run(["sh", str(COMPOSE_DIR / "postgres-init.sh")], env=env, check=True)
    args = log.read_text().splitlines()
    assert "driftloop_password=pw-d'rift-0123456789" in args
    assert "mlflow_password=pw-ml flow-0123456789" in args
    assert "driftloop_app_password=pw-app-0123456789" in args
    assert args[args.index("--file") + 1] == env["DRIFTLOOP_INIT_SQL"]

    env.pop("MLFLOW_DB_PASSWORD")
    result = subprocess.run(
        ["sh", str(COMPOSE_DIR / "postgres-init.sh")], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "MLFLOW_DB_PASSWORD" in result.stderr


# --------------------------------------------------------------------- MinIO and MLflow
def test_buckets_agree_across_services(services, airflow_env):
    buckets = as_dict(services["create-buckets"]["environment"])
    assert buckets["DATA_BUCKET"] == airflow_env["DRIFTLOOP_BUCKET"] == "driftloop"
    assert buckets["MLFLOW_BUCKET"] == "driftloop-mlflow"
    mlflow_env = as_dict(services["mlflow"]["environment"])
    command = services["mlflow"]["command"]
    assert "--serve-artifacts" in command
    destination = [a.split("=", 1)[1] for a in command if a.startswith("--artifacts-destination=")]
    assert destination == [f"s3://{buckets['MLFLOW_BUCKET']}/artifacts"]
    assert mlflow_env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "mlflow" in mlflow_env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")


BUCKET_USERS = {
    "airflow-app": "driftloop-airflow",
    "mlflow-app": "driftloop-mlflow",
    "trainer-app": "driftloop-trainer",
}


def _run_create_buckets(tmp_path: Path, user_info: str) -> tuple[list[list[str]], dict[str, dict]]:
    log = tmp_path / "mc.log"
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir(exist_ok=True)
    bin_dir = fake_bin(
        tmp_path,
        "mc",
        f"""echo "$*" >> "{log}"
case "$*" in
  "admin policy create"*) cp "$6" "{policy_dir}/$5.json" ;;
  "admin user info"*) echo "{user_info}" ;;
esac
""",
    )
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "DRIFTLOOP_CHECK_SECRETS": str(COMPOSE_DIR / "check-secrets.sh"),
        "MINIO_ROOT_USER": "root",
        "MINIO_ROOT_PASSWORD": "rootpass-0123456789",
        "DRIFTLOOP_S3_ACCESS_KEY": "airflow-app",
        "DRIFTLOOP_S3_SECRET_KEY": "airflowpass-0123456789",
        "MLFLOW_S3_ACCESS_KEY": "mlflow-app",
        "MLFLOW_S3_SECRET_KEY": "mlflowpass-0123456789",
        "TRAINER_S3_ACCESS_KEY": "trainer-app",
        "TRAINER_S3_SECRET_KEY": "trainerpass-0123456789",
        "DATA_BUCKET": "driftloop",
        "MLFLOW_BUCKET": "driftloop-mlflow",
    }
    subprocess.run(["sh", str(COMPOSE_DIR / "create-buckets.sh")], env=env, check=True)
    policies = {f.stem: json.loads(f.read_text()) for f in policy_dir.glob("*.json")}
    return [line.split() for line in log.read_text().splitlines()], policies


def test_create_buckets_script(tmp_path):
    calls, policies = _run_create_buckets(tmp_path, user_info="AccessKey: x\nStatus: enabled")
    # object lock on the data bucket (write-once evidence, audit anchors), versioning on both
    assert ["mb", "--ignore-existing", "--with-lock", "local/driftloop"] in calls
    assert ["mb", "--ignore-existing", "local/driftloop-mlflow"] in calls
    assert ["version", "enable", "local/driftloop"] in calls
    assert ["version", "enable", "local/driftloop-mlflow"] in calls
    assert set(policies) == set(BUCKET_USERS.values())
    for user, policy in BUCKET_USERS.items():
        assert ["admin", "policy", "attach", "local", policy, "--user", user] in calls
    assert not any("root" in call and "attach" in call for call in calls)


def test_create_buckets_script_is_idempotent(tmp_path):
    info = "PolicyName: driftloop-airflow driftloop-mlflow driftloop-trainer"
    calls, _ = _run_create_buckets(tmp_path, user_info=info)
    assert not any(call[:3] == ["admin", "policy", "attach"] for call in calls)


def test_mlflow_command_line_parses(services):
    """The installed MLflow (the image's version) accepts the service's command and env."""
    from mlflow.cli import server

    command = services["mlflow"]["command"]
    assert command[:2] == ["mlflow", "server"]
    env = as_dict(services["mlflow"]["environment"])
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        ctx = server.make_context("server", list(command[2:]))
    params = ctx.params
    assert params["backend_store_uri"] == env["MLFLOW_BACKEND_STORE_URI"]
    assert params["serve_artifacts"] is True
    assert params["artifacts_destination"] == "s3://driftloop-mlflow/artifacts"
    assert params["host"] == "0.0.0.0"
    assert int(params["port"]) == 5000
    assert params["app_name"] == "basic-auth"


def test_mlflow_image_matches_the_client_version():
    pins = dict(
        re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", (REPO / "requirements.txt").read_text(), re.M)
    )
    dockerfile = (COMPOSE_DIR / "mlflow.Dockerfile").read_text()
    assert re.search(rf"MLFLOW_VERSION={re.escape(pins['mlflow'])}\b", dockerfile)
    assert "psycopg2-binary==" in dockerfile
    assert "boto3==" in dockerfile


# ------------------------------------------------------------------------- airflow-init
def test_airflow_init_migrates_creates_the_gpu_pool_and_writes_the_password_file(
    tmp_path, services
):
    import sqlalchemy as sa

    log = tmp_path / "airflow.log"
    bin_dir = fake_bin(tmp_path, "airflow", f'echo "$*" >> "{log}"\n')
    # the interpreter of this virtualenv (a symlink would lose the venv's site-packages)
    fake_bin(tmp_path, "python", f'exec "{sys.executable}" "$@"\n')
    password_file = tmp_path / "auth" / "passwords.json"
    owner_db = tmp_path / "driftloop.db"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "AIRFLOW__CORE__FERNET_KEY": "fernet-key-0123456789-abcdefghij",
        "AIRFLOW__API__SECRET_KEY": "api-secret-0123456789",
        "AIRFLOW__API_AUTH__JWT_SECRET": "jwt-secret-0123456789",
        "AIRFLOW_DB_PASSWORD": "airflow-db-0123456789",
        "REDIS_PASSWORD": "redis-pass-0123456789",
        "DRIFTLOOP_DB_PASSWORD": "owner-pass-0123456789",
        "DRIFTLOOP_OWNER_DATABASE_URL": f"sqlite:///{owner_db}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "alice:admin,bob:op",
        "AIRFLOW_USER_PASSWORDS": "alice:s3cr3t-Pw-alice-0123,bob:s3cr3t-Pw-bob-01234",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
    }
    script = COMPOSE_DIR / "airflow-init.sh"
    subprocess.run(["bash", str(script)], env=env, check=True, capture_output=True)
    assert log.read_text().splitlines() == [
        "version",
        "db migrate",
        "pools set gpu 1 GPU trainings of retrain_detector (one per GPU)",
    ]
    # the driftloop schema was created with the owner URL
    tables = set(sa.inspect(sa.create_engine(f"sqlite:///{owner_db}")).get_table_names())
    assert {"audit_ledger", "drift_checks", "drift_events"} <= tables
    assert json.loads(password_file.read_text()) == {
        "alice": "s3cr3t-Pw-alice-0123",
        "bob": "s3cr3t-Pw-bob-01234",
    }
    assert stat.S_IMODE(password_file.stat().st_mode) & 0o007 == 0, "world-readable passwords"
    subprocess.run(["bash", str(script)], env=env, check=True, capture_output=True)  # again

    init = services["airflow-init"]
    assert init["command"] == ["bash", "/opt/airflow/include/compose/airflow-init.sh"]
    init_env = as_dict(init["environment"])
    users = init_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
    names = [u.split(":")[0] for u in users.split(",")]
    assert names == [p.split(":")[0] for p in init_env["AIRFLOW_USER_PASSWORDS"].split(",")]


# ---------------------------------------------------------------------------- Dockerfile
def test_dockerfile_pins_airflow_3_3_2():
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms == ["apache/airflow:3.3.2-python3.11"]
    pins = dict(
        re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", (REPO / "requirements.txt").read_text(), re.M)
    )
    image_version = froms[0].split(":")[1].split("-")[0]
    assert pins["apache-airflow"] == image_version
    assert "-r /opt/airflow/requirements.txt" in text
    assert re.search(r"pip install .*-e /opt/airflow\b", text)
    for source in ("requirements.txt", "pyproject.toml", "include/", "dags/", "plugins/"):
        assert re.search(rf"^COPY .*\s{re.escape(source)}\s", text, re.M), f"COPY {source}"
    ignored = (REPO / ".dockerignore").read_text().split()
    for source in ("include", "dags", "plugins", "requirements.txt", "pyproject.toml"):
        assert source not in ignored


def test_dockerfile_python_matches_the_project():
    import tomllib

    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    version = re.search(r"-python(\d+\.\d+)", DOCKERFILE.read_text()).group(1)
    assert requires.startswith(">=")
    assert tuple(map(int, version.split("."))) >= tuple(map(int, requires[2:].split(".")))


@pytest.mark.parametrize(
    "script",
    ["airflow-init.sh", "postgres-init.sh", "create-buckets.sh", "check-secrets.sh"],
)
def test_helper_scripts_parse(script):
    shell = "bash" if script == "airflow-init.sh" else "sh"
    subprocess.run([shell, "-n", str(COMPOSE_DIR / script)], check=True)
