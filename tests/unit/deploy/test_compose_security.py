"""Issue 9, item 5: the compose stack is secure by default (checked without a Docker engine).

Each test names what it defends against; the helpers (interpolation, fixtures) are those of
test_compose.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import test_compose as base
from .test_compose import (
    COMPOSE_DIR,
    ENV_EXAMPLE,
    KUBE_MOUNT,
    _run_create_buckets,
    as_dict,
    mount_targets,
    read_env_file,
    render,
)

# the fixtures of test_compose.py (the rendered file, .env.example as an operator fills it in)
raw_text, raw, env_example = base.raw_text, base.raw, base.env_example
compose, services, airflow_env = base.compose, base.services, base.airflow_env

CHECK = COMPOSE_DIR / "check-secrets.sh"
USERS = COMPOSE_DIR / "airflow_users.py"
MLFLOW_INIT = COMPOSE_DIR / "mlflow" / "mlflow_init.py"
AUTH_INI = COMPOSE_DIR / "mlflow" / "basic_auth.ini"
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|JWT|HMAC", re.I)


def check_secrets(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(CHECK), *args],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
    )


# ------------------------------------------------------------------ ports and monitoring
def test_every_published_port_is_bound_to_loopback_unless_opted_out(raw, env_example):
    """Attack: MLflow, Prometheus, Pushgateway, Alertmanager published on all interfaces."""
    published = 0
    for bind, expected in ((None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0")):
        env = {k: v for k, v in env_example.items() if k != "BIND_HOST"}  # the default
        if bind is not None:
            env["BIND_HOST"] = bind  # the operator opts out
        for name, service in render(raw, env)["services"].items():
            for mapping in service.get("ports", []):
                parts = str(mapping).split(":")
                assert len(parts) == 3, f"{name}: {mapping!r} binds no host address"
                assert parts[0] == expected, f"{name}: {mapping!r}"
                published += 1
    assert published >= 16
    assert read_env_file(ENV_EXAMPLE)["BIND_HOST"] == "127.0.0.1"


def test_prometheus_lifecycle_and_admin_apis_are_off(services):
    """Attack: anyone reaching :9090 could POST /-/quit or delete series."""
    command = " ".join(services["prometheus"]["command"])
    assert "--web.enable-lifecycle" not in command
    assert "--web.enable-admin-api" not in command


# ------------------------------------------------------------------- placeholder secrets
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("change-me-jwt-secret", "AIRFLOW_JWT still holds the .env.example placeholder"),
        ("CHANGEME-0123456789abc", "AIRFLOW_JWT still holds the .env.example placeholder"),
        ("minioadmin", "AIRFLOW_JWT is a well-known default value"),
        ("short-but-ok", "AIRFLOW_JWT is shorter than 16 characters"),
        ("", "AIRFLOW_JWT is empty"),
    ],
)
def test_check_secrets_refuses_placeholders_naming_the_variable(value, message):
    env = {"GOOD": "a-real-value-0123456789", "AIRFLOW_JWT": value}
    result = check_secrets(env, "GOOD", "AIRFLOW_JWT")
    assert result.returncode == 1
    assert message in result.stderr
    assert "GOOD" not in result.stderr
    if value:
        assert value not in result.stderr + result.stdout, "the secret was printed"


def test_check_secrets_refuses_an_unset_variable_and_accepts_real_values():
    result = check_secrets({}, "NOT_SET_AT_ALL")
    assert result.returncode == 1
    assert "NOT_SET_AT_ALL is not set" in result.stderr
    ok = check_secrets({"A": "x" * 15 + "yz"}, "A", "--", "sh", "-c", "echo ran-the-command")
    assert ok.returncode == 0, ok.stderr
    assert "ran-the-command" in ok.stdout
    refused = check_secrets({"A": "change-me"}, "A", "--", "sh", "-c", "echo ran-the-command")
    assert refused.returncode == 1
    assert "ran-the-command" not in refused.stdout, "the service started with a placeholder"


def test_the_example_env_file_as_is_is_refused(raw):
    """`cp .env.example .env && docker compose up` must not start a stack on change-me values."""
    example = read_env_file(ENV_EXAMPLE)
    secrets = sorted(k for k, v in example.items() if _SECRET_NAME.search(k) and v)
    result = check_secrets(example, *secrets)
    assert result.returncode == 1
    for name in secrets:
        assert name in result.stderr, f"{name}: its placeholder was accepted"


def _checked_variables(raw: dict) -> set[str]:
    """.env variables that some service runs through check-secrets.sh before it starts."""
    scripts = {
        "postgres": COMPOSE_DIR / "postgres-init.sh",
        "create-buckets": COMPOSE_DIR / "create-buckets.sh",
        "airflow-init": COMPOSE_DIR / "airflow-init.sh",
    }
    covered: set[str] = set()
    for name, service in raw["services"].items():
        checked: list[str] = []
        entrypoint = service.get("entrypoint") or []
        if isinstance(entrypoint, list) and any("check-secrets.sh" in str(a) for a in entrypoint):
            start = next(i for i, a in enumerate(entrypoint) if "check-secrets" in a) + 1
            after = entrypoint[start:]
            checked += after[: after.index("--")] if "--" in after else after
        if name in scripts:
            text = scripts[name].read_text()
            call = re.search(r"check-secrets\.sh[^\n]*\"?\s*\\\n((?:.*\\\n)*.*)", text)
            assert call, f"{scripts[name].name} does not run check-secrets.sh"
            checked += re.findall(r"\b[A-Z][A-Z0-9_]+\b", call.group(1))
        env = service.get("environment") or {}
        if "<<" in env or not env:
            env = {**as_dict(raw.get("x-airflow-common", {}).get("environment")), **as_dict(env)}
        for variable in checked:
            value = as_dict(env).get(variable, "")
            covered |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", value))
    return covered


def test_every_secret_is_checked_before_its_service_starts(raw):
    example = read_env_file(ENV_EXAMPLE)
    secrets = {k for k in example if _SECRET_NAME.search(k)}
    # the ledger key is refused by driftloop's Settings itself (placeholder, < 32 characters);
    # flower is an optional profile behind airflow-init
    exempt = {"DRIFTLOOP_LEDGER_HMAC_KEY", "FLOWER_PASSWORD", "AIRFLOW_USER_PASSWORDS"}
    missing = sorted(secrets - exempt - _checked_variables(raw))
    assert not missing, f"secrets no service checks for placeholders: {missing}"


# ----------------------------------------------------------------------- Airflow users
def run_users(tmp_path: Path, users: str, passwords: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ["PATH"],
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users,
        "AIRFLOW_USER_PASSWORDS": passwords,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "auth" / "p.json"),
    }
    return subprocess.run([sys.executable, str(USERS)], env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("users", "passwords", "message"),
    [
        ("admin:admin", "admin:a-real-password-0123", "'admin' is a shared account name"),
        (
            "alice:admin,bob:superuser",
            "alice:a-real-password-0123,bob:b-real-password-0123",
            "role 'superuser'",
        ),
        ("alice:admin,bob:op", "alice:a-real-password-0123", "no password for bob"),
        ("alice:admin", "alice:change-me-alice-0123", "password of 'alice' is a placeholder"),
        ("alice:admin", "alice:short", "password of 'alice' is shorter than 16"),
        ("bob:op", "bob:b-real-password-0123", "at least one user needs the admin role"),
        ("alice:admin", "alice:a-real-password-0123,eve:e-real-password-0123", "'eve' is not in"),
    ],
)
def test_airflow_users_refuses_shared_or_weak_accounts(tmp_path, users, passwords, message):
    """Attack: one shared `admin` login, so the approver in the ledger is nobody in particular."""
    result = run_users(tmp_path, users, passwords)
    assert result.returncode == 1
    assert message in result.stderr
    assert not (tmp_path / "auth" / "p.json").exists()
    assert "real-password" not in result.stderr


def test_airflow_users_writes_one_account_per_person_and_drops_removed_ones(tmp_path):
    first = run_users(
        tmp_path, "alice:admin,bob:op", "alice:a-real-password-0123,bob:b-real-password-0123"
    )
    assert first.returncode == 0, first.stderr
    path = tmp_path / "auth" / "p.json"
    assert json.loads(path.read_text()) == {
        "alice": "a-real-password-0123",
        "bob": "b-real-password-0123",
    }
    assert "real-password" not in first.stdout
    second = run_users(tmp_path, "alice:admin", "alice:a-real-password-0123")
    assert second.returncode == 0, second.stderr
    assert json.loads(path.read_text()) == {"alice": "a-real-password-0123"}


def test_compose_users_are_people_with_roles(airflow_env, env_example):
    users = dict(
        u.split(":") for u in airflow_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
    )
    assert len(users) >= 2
    assert set(users.values()) <= {"viewer", "user", "op", "admin"}
    assert not set(users) & {"admin", "airflow", "root"}


# --------------------------------------------------------- credentials where tasks run
def test_no_superuser_database_url_in_any_airflow_container(services, env_example):
    from sqlalchemy.engine import make_url

    superuser = as_dict(services["postgres"]["environment"])["POSTGRES_USER"]
    for name, service in services.items():
        for key, value in as_dict(service.get("environment")).items():
            if "postgresql" not in value or name == "postgres":
                continue
            url = make_url(value.removeprefix("db+"))
            assert url.username != superuser, f"{name}: {key} uses the superuser"
            assert url.password != env_example["POSTGRES_PASSWORD"], f"{name}: {key}"
    owners = {"DRIFTLOOP_OWNER_DATABASE_URL"}
    for name, service in services.items():
        if name != "airflow-init":
            assert not owners & set(as_dict(service.get("environment"))), name


def test_kubeconfig_is_a_dedicated_file_on_the_workers_only(raw, services):
    """Attack: ~/.kube (every cluster the operator can reach) in every Airflow container."""
    mounts = {n: s.get("volumes", []) for n, s in raw["services"].items()}
    kube = [v for v in mounts["airflow-worker"] if KUBE_MOUNT in str(v)]
    assert kube == [
        "${DRIFTLOOP_KUBECONFIG:?set DRIFTLOOP_KUBECONFIG in .env}:" + KUBE_MOUNT + ":ro"
    ]
    assert "~/.kube" not in json.dumps(raw)
    for name, service in services.items():
        if name != "airflow-worker":
            assert not any(".kube" in t for t in mount_targets(service)), name


def test_mlflow_logins_split_between_airflow_and_the_trainer(raw, services, env_example):
    mlflow = services["mlflow"]
    assert "--app-name=basic-auth" in mlflow["command"]
    env = as_dict(mlflow["environment"])
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow/basic_auth.ini"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == env_example["MLFLOW_ADMIN_PASSWORD"]
    assert env["AWS_ACCESS_KEY_ID"] == env_example["MLFLOW_S3_ACCESS_KEY"], "its own S3 user"
    ini = AUTH_INI.read_text()
    assert re.search(r"^default_permission = NO_PERMISSIONS$", ini, re.M)
    assert not re.search(r"^admin_password", ini, re.M), "a password in a file"
    worker = as_dict(services["airflow-worker"]["environment"])
    assert worker["MLFLOW_TRACKING_USERNAME"] == "airflow"
    assert worker["MLFLOW_TRACKING_PASSWORD"] == env_example["MLFLOW_AIRFLOW_PASSWORD"]
    for name, service in services.items():
        if name not in ("airflow-worker", "mlflow-init"):
            assert "MLFLOW_TRACKING_PASSWORD" not in as_dict(service.get("environment")), name
    assert env_example["MLFLOW_TRAINER_PASSWORD"] not in json.dumps(services["airflow-worker"])


def test_compose_selects_kubernetes_training_with_the_pods_s3_settings(raw, env_example):
    from driftloop.config.settings import Settings

    env = {**env_example, "DRIFTLOOP_TRAINING_S3_ENDPOINT_URL": "http://minio.lan:9000"}
    for name in ("airflow-worker", "airflow-dag-processor"):
        settings = Settings.from_env(as_dict(render(raw, env)["services"][name]["environment"]))
        assert settings.training_backend == "kubernetes", name
        assert settings.training_s3_endpoint_url == "http://minio.lan:9000", name
        assert settings.s3_region == env_example["DRIFTLOOP_S3_REGION"], name


# ----------------------------------------------------------------------- S3 users
def test_s3_users_are_least_privilege(tmp_path):
    """Attack: one S3 user that may delete both buckets' contents."""
    _, policies = _run_create_buckets(tmp_path, user_info="Status: enabled")
    forbidden = re.compile(
        r"DeleteBucket|DeleteObjectVersion|Put\w*Policy|PutBucketVersioning|"
        r"PutBucketObjectLock|BypassGovernance|PutObjectRetention|s3:\*"
    )
    for name, policy in policies.items():
        for statement in policy["Statement"]:
            if statement["Effect"] == "Allow":
                actions = " ".join(statement["Action"])
                assert not forbidden.search(actions), f"{name}: {actions}"

    def allowed(policy: dict) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for statement in policy["Statement"]:
            if statement["Effect"] == "Allow":
                for resource in statement["Resource"]:
                    out.setdefault(resource, set()).update(statement["Action"])
        return out

    airflow = allowed(policies["driftloop-airflow"])
    assert all(r.startswith("arn:aws:s3:::driftloop") and "mlflow" not in r for r in airflow)
    assert "s3:DeleteObject" not in set().union(*airflow.values())
    denies = [s for s in policies["driftloop-airflow"]["Statement"] if s["Effect"] == "Deny"]
    assert {"arn:aws:s3:::driftloop/inference/*", "arn:aws:s3:::driftloop/labeled/*"} <= set(
        denies[0]["Resource"]
    )
    mlflow = allowed(policies["driftloop-mlflow"])
    assert set(mlflow) == {"arn:aws:s3:::driftloop-mlflow", "arn:aws:s3:::driftloop-mlflow/*"}
    trainer = allowed(policies["driftloop-trainer"])
    assert trainer["arn:aws:s3:::driftloop/datasets/*"] == {"s3:GetObject"}
    assert not any("Put" in a for actions in trainer.values() for a in actions)


# ------------------------------------------------------------- MLflow users, for real
@pytest.fixture
def mlflow_basic_auth(tmp_path):
    """A real `mlflow server --app-name basic-auth` with compose's basic_auth.ini."""
    from driftloop_dev.stack.net import free_port

    ini = tmp_path / "basic_auth.ini"
    ini.write_text(
        AUTH_INI.read_text().replace("sqlite:////mlflow-auth/", f"sqlite:///{tmp_path}/")
    )
    port = free_port()
    admin = {"user": "mlflow-admin", "password": "admin-pw-0123456789"}
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_USERNAME": admin["user"],
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin["password"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "csrf-key-0123456789",
    }
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--app-name",
            "basic-auth",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/mlflow.db",
            "--serve-artifacts",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    import urllib.request

    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail((tmp_path / "server.log").read_text()[-3000:])
                time.sleep(0.5)
        else:
            pytest.fail("mlflow basic-auth server did not start")
        yield url, admin
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_only_the_airflow_user_may_move_aliases(mlflow_basic_auth, monkeypatch):
    """Attack: whoever reaches MLflow sets `champion` and decides what serves."""
    import urllib.error
    import urllib.request

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    url, admin = mlflow_basic_auth
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{url}/api/2.0/mlflow/registered-models/search", timeout=10)
    assert anonymous.value.code == 401

    env = {
        "PATH": os.environ["PATH"],
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_TRACKING_USERNAME": admin["user"],
        "MLFLOW_TRACKING_PASSWORD": admin["password"],
        "MLFLOW_AIRFLOW_PASSWORD": "airflow-pw-0123456789",
        "MLFLOW_TRAINER_PASSWORD": "trainer-pw-0123456789",
    }
    for _ in range(2):  # idempotent
        done = subprocess.run(
            [sys.executable, str(MLFLOW_INIT)], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]

    def login(user: str, password: str) -> MlflowClient:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        return MlflowClient(url)

    airflow = login("airflow", "airflow-pw-0123456789")
    experiment = airflow.get_experiment_by_name("retrain-detector").experiment_id
    trainer = login("trainer", "trainer-pw-0123456789")
    run = trainer.create_run(experiment)  # the trainer logs runs
    trainer.log_metric(run.info.run_id, "map50", 0.5)
    airflow = login("airflow", "airflow-pw-0123456789")
    version = airflow.create_model_version(
        "driftloop-detector", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
    ).version
    trainer = login("trainer", "trainer-pw-0123456789")
    with pytest.raises(MlflowException) as refused:
        trainer.set_registered_model_alias("driftloop-detector", "champion", version)
    assert refused.value.error_code == "PERMISSION_DENIED"
    airflow = login("airflow", "airflow-pw-0123456789")
    airflow.set_registered_model_alias("driftloop-detector", "champion", version)
    assert airflow.get_model_version_by_alias("driftloop-detector", "champion").version == version
    wrong = login("airflow", "not-the-password-0123")
    with pytest.raises(MlflowException):
        wrong.get_registered_model("driftloop-detector")
