"""The training pod (driftloop.airflow.training_task) rendered without a cluster, and the training
image's Dockerfile read as text (no Docker engine here)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from driftloop.airflow import training_task as training_pod
from tests.conftest import REPO

IMAGE = "registry.example.com/driftloop-train@sha256:" + "0" * 64
ARGS = [
    "--dataset-uri",
    "s3://driftloop/datasets/{{ params.dataset_sha }}/",
    "--epochs",
    "{{ params.epochs }}",
]
# Credentials present in the Airflow process: none of them may leak into the pod spec.
FAKE_ENV_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKE1234",
    "AWS_SECRET_ACCESS_KEY": "fake/Secret+Key0123456789abcdefghijklmnop",
    "MLFLOW_TRACKING_TOKEN": "fake-mlflow-token-0123456789",
}
KEY_LIKE = [
    re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"),  # AWS access key id
    re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"),  # AWS secret key shape
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"://[^/@\s:]+:[^/@\s]+@"),  # URL with user:password
]


@pytest.fixture
def build(monkeypatch):
    """Build the operator (Airflow process env holding fake credentials) and its pod."""
    for name, value in FAKE_ENV_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps({"conn_type": "kubernetes"}))

    def _build(context=None, **overrides):
        kwargs = {
            "task_id": "train",
            "image": IMAGE,
            "arguments": ARGS,
            "namespace": "driftloop",
            "mlflow_tracking_uri": "http://mlflow:5000",
            "s3_endpoint_url": "http://minio:9000",
            "bucket": "driftloop",
            **overrides,
        }
        op = training_pod.training_pod_operator(**kwargs)
        if context is not None:
            op.render_template_fields(context)
        return op, op.build_pod_request_obj(context, dry_run=True)

    return _build


def _serialized(pod) -> dict:
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(pod)


def _base(pod):
    return next(c for c in pod.spec.containers if c.name == "base")


def _minimal_context():
    ti = SimpleNamespace(dag_id="retrain_detector", task_id="train", map_index=-1, try_number=1)
    return {
        "ti": ti,
        "dag": SimpleNamespace(),
        "run_id": "manual__2026-01-01T00:00:00",
        "params": {"dataset_sha": "ab" * 32, "epochs": 30},
    }


# ------------------------------------------------------------------------ import cost


def test_importing_the_module_loads_neither_airflow_nor_kubernetes():
    probe = (
        "import json, sys\n"
        "import driftloop.airflow.training_task\n"
        "mods = ('kubernetes', 'kubernetes_asyncio', 'airflow')\n"
        "print(json.dumps([m for m in mods if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_training_backend_defaults_to_local():
    assert training_pod.training_backend({}) == "local"
    assert training_pod.training_backend({"DRIFTLOOP_TRAINING_BACKEND": "Kubernetes"}) == (
        "kubernetes"
    )
    with pytest.raises(ValueError, match="DRIFTLOOP_TRAINING_BACKEND"):
        training_pod.training_backend({"DRIFTLOOP_TRAINING_BACKEND": "slurm"})


# ---------------------------------------------------------------------- the operator


def test_operator_settings(build):
    op, _ = build()
    assert op.task_id == "train"
    assert op.pool == "gpu"
    assert op.pool_slots == 1
    assert op.on_finish_action.value == "delete_pod"
    assert op.on_kill_action.value == "delete_pod"
    assert op.startup_timeout_seconds == 1800
    assert op.schedule_timeout_seconds == 1800
    assert op.durable is True
    assert op.reattach_on_restart is True
    assert op.get_logs is True
    assert op.log_events_on_failure is True
    assert op.do_xcom_push is True
    assert op.deferrable is False
    assert op.kubernetes_conn_id == "kubernetes_default"


def test_building_emits_no_deprecation_warning(build):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build()
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert not deprecations, [str(w.message) for w in deprecations]


def test_kwargs_reach_the_operator_and_override(build):
    op, pod = build(
        retries=2,
        startup_timeout_seconds=600,
        on_finish_action="delete_succeeded_pod",
        service_account_name="driftloop-trainer",
    )
    assert op.retries == 2
    assert op.startup_timeout_seconds == 600
    assert op.on_finish_action.value == "delete_succeeded_pod"
    assert pod.spec.service_account_name == "driftloop-trainer"


# --------------------------------------------------------------------------- the pod


def test_image_and_arguments(build):
    _, pod = build()
    base = _base(pod)
    assert base.image == IMAGE
    assert base.image_pull_policy == "IfNotPresent"
    assert not base.command, "the image's ENTRYPOINT (the training module) must run"
    assert base.args == [*ARGS, "--xcom-path", "/airflow/xcom/return.json"]
    assert pod.spec.restart_policy == "Never"
    assert pod.metadata.namespace == "driftloop"
    assert pod.metadata.name.startswith("driftloop-train-")


def test_explicit_xcom_path_is_not_duplicated(build):
    _, pod = build(arguments=["--xcom-path=/airflow/xcom/return.json"])
    assert _base(pod).args == ["--xcom-path=/airflow/xcom/return.json"]


def test_templated_arguments_render_with_a_minimal_context(build):
    context = _minimal_context()
    _, pod = build(context=context)
    args = _base(pod).args
    assert args[1] == f"s3://driftloop/datasets/{'ab' * 32}/"
    assert args[3] == "30"
    labels = pod.metadata.labels
    assert labels["dag_id"] == "retrain_detector"
    assert labels["task_id"] == "train"
    assert labels["app.kubernetes.io/component"] == "training"


@pytest.mark.parametrize("gpu_count", [1, 4])
def test_gpu_requests_equal_limits(build, gpu_count):
    _, pod = build(gpu_count=gpu_count)
    resources = _base(pod).resources
    assert resources.requests["nvidia.com/gpu"] == str(gpu_count)
    assert resources.limits["nvidia.com/gpu"] == str(gpu_count)
    for name in ("cpu", "memory"):
        assert name in resources.requests
        assert name in resources.limits


def test_cpu_limit_can_be_left_out(build):
    _, pod = build(cpu_limit=None)
    resources = _base(pod).resources
    assert "cpu" not in resources.limits
    assert resources.requests["cpu"] == "8"


def test_gpu_pool_scheduling(build):
    _, pod = build()
    assert pod.spec.node_selector == {"driftloop.io/pool": "gpu"}
    tolerations = [t.to_dict() for t in pod.spec.tolerations]
    assert {
        "key": "nvidia.com/gpu",
        "operator": "Exists",
        "effect": "NoSchedule",
        "value": None,
        "toleration_seconds": None,
    } in tolerations
    assert pod.metadata.annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"


def test_volumes_shm_workspace_tmp_and_xcom(build):
    _, pod = build(shm_size="16Gi", memory_limit="64Gi", memory_request="64Gi")
    volumes = {v.name: v for v in pod.spec.volumes}
    mounts = {m.mount_path: m.name for m in _base(pod).volume_mounts}

    shm = volumes[mounts["/dev/shm"]]
    assert shm.empty_dir.medium == "Memory"
    assert shm.empty_dir.size_limit == "16Gi"
    workspace = volumes[mounts["/workspace"]]
    assert workspace.empty_dir is not None
    assert workspace.empty_dir.medium in (None, "")
    assert volumes[mounts["/tmp"]].empty_dir is not None
    assert volumes[mounts["/airflow/xcom"]].empty_dir is not None

    sidecar = next(c for c in pod.spec.containers if c.name == "airflow-xcom-sidecar")
    assert [m.mount_path for m in sidecar.volume_mounts] == ["/airflow/xcom"]


def test_security_context_is_restricted(build):
    _, pod = build()
    psc = pod.spec.security_context
    assert psc.run_as_non_root is True
    assert psc.run_as_user == 10001
    assert psc.run_as_group == 10001
    assert psc.fs_group == 10001
    assert psc.seccomp_profile.type == "RuntimeDefault"
    assert pod.spec.automount_service_account_token is False
    assert pod.spec.host_network is False
    for container in pod.spec.containers:  # the trainer and the xcom sidecar
        sc = container.security_context
        assert sc.allow_privilege_escalation is False, container.name
        assert sc.read_only_root_filesystem is True, container.name
        assert sc.run_as_non_root is True, container.name
        assert sc.capabilities.drop == ["ALL"], container.name
        assert not sc.capabilities.add, container.name
        assert sc.seccomp_profile.type == "RuntimeDefault", container.name
        assert not sc.privileged, container.name


# ------------------------------------------------------------------------ credentials


def test_credentials_come_only_from_secret_key_refs(build):
    _, pod = build()
    env = {e.name: e for e in _base(pod).env}

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name].value is None
        ref = env[name].value_from.secret_key_ref
        assert (ref.name, ref.key) == ("driftloop-s3", name)
        assert not ref.optional
    token = env["MLFLOW_TRACKING_TOKEN"]
    assert token.value is None
    ref = token.value_from.secret_key_ref
    assert (ref.name, ref.key, ref.optional) == ("driftloop-mlflow", "MLFLOW_TRACKING_TOKEN", True)

    # non-secret configuration as plain values
    assert env["MLFLOW_TRACKING_URI"].value == "http://mlflow:5000"
    assert env["AWS_ENDPOINT_URL_S3"].value == "http://minio:9000"
    assert env["DRIFTLOOP_BUCKET"].value == "driftloop"
    assert env["YOLO_OFFLINE"].value == "1"
    assert env["YOLO_AUTOINSTALL"].value == "0"
    assert not _base(pod).env_from


def test_no_secret_value_anywhere_in_the_pod(build):
    _, pod = build(context=_minimal_context())
    base = _base(pod)
    literals = [e.value for c in pod.spec.containers for e in (c.env or []) if e.value]
    literals += list(base.args)
    for value in literals:
        for pattern in KEY_LIKE:
            assert not pattern.search(value), f"{value!r} looks like a credential"
    for e in base.env:
        if training_pod._SECRET_NAME.search(e.name):
            assert e.value is None, e.name
            assert e.value_from.secret_key_ref, e.name

    document = json.dumps(_serialized(pod))
    for secret_value in FAKE_ENV_CREDENTIALS.values():
        assert secret_value not in document


def test_s3_secret_can_be_replaced_by_a_service_account(build):
    _, pod = build(s3_secret=None, mlflow_secret=None, service_account_name="driftloop-irsa")
    names = {e.name for e in _base(pod).env}
    assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_TOKEN"}
    assert pod.spec.service_account_name == "driftloop-irsa"


def test_extra_secrets_are_attached_as_secret_key_refs(build):
    from airflow.providers.cncf.kubernetes.secret import Secret

    _, pod = build(extra_secrets=[Secret("env", "HF_TOKEN", "driftloop-hf", "token")])
    env = {e.name: e for e in _base(pod).env}
    ref = env["HF_TOKEN"].value_from.secret_key_ref
    assert (ref.name, ref.key) == ("driftloop-hf", "token")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"env": {"AWS_SECRET_ACCESS_KEY": "x"}}, "credential"),
        ({"env": {"MLFLOW_TRACKING_PASSWORD": "x"}}, "credential"),
        ({"env": {"DB": "postgresql://user:pw@db/x"}}, "embedded credentials"),
        ({"mlflow_tracking_uri": "https://user:pw@mlflow.example.com"}, "embedded credentials"),
        ({"arguments": ["--mlflow-token", "abc"]}, "credential"),
        ({"arguments": ["--aws-secret-access-key=abc"]}, "credential"),
        ({"arguments": ["--data", "s3://k:s@host/b"]}, "embedded credentials"),
        ({"gpu_count": 0}, "gpu_count"),
        ({"shm_size": "48Gi", "memory_limit": "48Gi"}, "shm_size"),
        ({"memory_request": "64Gi", "memory_limit": "48Gi"}, "memory_request"),
    ],
)
def test_refuses_unsafe_settings(build, overrides, match):
    with pytest.raises(ValueError, match=match):
        build(**overrides)


# ----------------------------------------------------------------------- serialization


def test_serialized_pod_round_trips_as_yaml_and_json(build):
    _, pod = build(context=_minimal_context())
    document = _serialized(pod)
    assert json.loads(json.dumps(document)) == document
    assert yaml.safe_load(yaml.safe_dump(document)) == document

    assert document["apiVersion"] == "v1"
    assert document["kind"] == "Pod"
    spec = document["spec"]
    assert [c["name"] for c in spec["containers"]] == ["base", "airflow-xcom-sidecar"]
    base = spec["containers"][0]
    assert base["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert base["securityContext"]["readOnlyRootFilesystem"] is True
    assert base["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["nodeSelector"] == {"driftloop.io/pool": "gpu"}
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    token = next(e for e in base["env"] if e["name"] == "MLFLOW_TRACKING_TOKEN")
    assert token == {
        "name": "MLFLOW_TRACKING_TOKEN",
        "valueFrom": {
            "secretKeyRef": {
                "name": "driftloop-mlflow",
                "key": "MLFLOW_TRACKING_TOKEN",
                "optional": True,
            }
        },
    }


# -------------------------------------------------------------------------- Dockerfile

DOCKERFILE = REPO / "include" / "training" / "Dockerfile"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, joined as Docker joins continuation lines: the
    backslash-newline is removed, the next line's indentation kept, comment lines dropped."""
    out: list[tuple[str, str]] = []
    pending: str | None = None
    for raw in path.read_text().splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        line = raw.strip() if pending is None else raw.rstrip()
        if line.endswith("\\"):
            pending = (pending or "") + line[:-1]
            continue
        whole, pending = (pending or "") + line, None
        keyword, _, rest = whole.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert pending is None, "Dockerfile ends inside a continuation"
    return out


def _env(instructions) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in instructions:
        if keyword == "ENV":
            for token in shlex.split(rest):
                name, _, value = token.partition("=")
                env[name] = value
    return env


@pytest.fixture(scope="module")
def dockerfile():
    return _instructions(DOCKERFILE)


def test_dockerfile_runs_the_training_module_as_non_root(dockerfile):
    keywords = [k for k, _ in dockerfile]
    assert keywords[0] in ("ARG", "FROM")
    assert "FROM" in keywords

    users = [rest for k, rest in dockerfile if k == "USER"]
    assert users, "no USER instruction"
    final_user = users[-1].split(":")[0]
    assert final_user not in ("root", "0")
    assert final_user in ("10001", "trainer")
    assert any("useradd" in rest and "--uid 10001" in rest for k, rest in dockerfile if k == "RUN")

    entrypoints = [rest for k, rest in dockerfile if k == "ENTRYPOINT"]
    assert len(entrypoints) == 1
    entrypoint = json.loads(entrypoints[0])  # exec form
    assert entrypoint[-3:] == ["python", "-m", training_pod.TRAIN_MODULE]
    assert training_pod.TRAIN_MODULE == "driftloop.training.train"
    assert not [rest for k, rest in dockerfile if k == "CMD"]

    workdirs = [rest for k, rest in dockerfile if k == "WORKDIR"]
    assert workdirs[-1] == training_pod.WORKSPACE_PATH


def test_dockerfile_environment_is_offline(dockerfile):
    env = _env(dockerfile)
    assert env["YOLO_OFFLINE"] == "1"
    assert env["YOLO_AUTOINSTALL"] in ("0", "false", "False")
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["YOLO_CONFIG_DIR"].startswith("/home/trainer/")
    assert "compute" in env["NVIDIA_DRIVER_CAPABILITIES"]


def test_dockerfile_installs_the_locked_requirements_then_the_package(dockerfile):
    runs = [rest for k, rest in dockerfile if k == "RUN"]
    copies = [rest for k, rest in dockerfile if k == "COPY"]
    assert any(c.split()[0] == "include/training/requirements.txt" for c in copies)
    install_reqs = [
        i for i, r in enumerate(runs) if re.search(r"pip install .*-r \S*requirements", r)
    ]
    install_pkg = [i for i, r in enumerate(runs) if re.search(r"pip install .*--no-deps", r)]
    assert install_reqs
    assert install_pkg
    assert install_reqs[0] < install_pkg[0]
    assert all("--no-cache-dir" in runs[i] for i in install_reqs + install_pkg)
    sources = {c.split()[0] for c in copies}
    assert {"pyproject.toml", "include/driftloop/"} <= sources
    assert (REPO / "include" / "training" / "requirements.txt").is_file()


def test_dockerfile_ships_the_arial_font_from_a_font_package(dockerfile):
    runs = " ".join(rest for k, rest in dockerfile if k == "RUN")
    assert re.search(r"apt-get install .*fonts-dejavu-core", runs)
    env = _env(dockerfile)
    config_dir = env["YOLO_CONFIG_DIR"].rstrip("/") + "/Ultralytics"
    # Ultralytics looks for $YOLO_CONFIG_DIR/Ultralytics/Arial.ttf before downloading it
    assert re.search(rf"DejaVuSans\.ttf\s+{re.escape(config_dir)}/Arial\.ttf", runs)
    assert "libgl1" in runs
    assert "libglib2.0-0" in runs


def test_dockerfile_shell_and_inline_python_parse(dockerfile):
    runs = [rest for k, rest in dockerfile if k == "RUN"]
    for run in runs:
        done = subprocess.run(["bash", "-n", "-c", run], capture_output=True, text=True)
        assert done.returncode == 0, (run, done.stderr)
    snippets = []
    for run in runs:
        tokens = shlex.split(run)
        snippets += [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t == "-c"]
    assert snippets, "the build-time smoke test is gone"
    for code in snippets:
        compile(code, "<Dockerfile RUN python -c>", "exec")
    assert any("check_font" in code and "driftloop.training.train" in code for code in snippets)


def test_dockerignore_sends_what_the_dockerfile_copies(dockerfile):
    patterns = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    included = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for keyword, rest in dockerfile:
        if keyword == "COPY" and not rest.startswith("--from"):
            source = rest.split()[0].rstrip("/")
            assert source in included, f"COPY {source} is excluded from the build context"


def test_the_pod_loads_checkpoints_safely_whatever_the_caller_passes(build):
    """issue 9: Ultralytics' weights_only checkpoint loading on the GPU pool too."""
    _, pod = build(env={"ULTRALYTICS_SAFE_LOAD": "0"})
    env = {e.name: e.value for e in _base(pod).env}
    assert env["ULTRALYTICS_SAFE_LOAD"] == "1"


# ----------------------------------------------- issue 9: the pod's S3 endpoint, region, login
def test_pod_gets_s3_endpoint_and_region_from_the_settings(build, monkeypatch):
    """The DAG passes no endpoint: the pod still gets the one the cluster reaches, and the
    region (compose sets DRIFTLOOP_TRAINING_S3_ENDPOINT_URL / DRIFTLOOP_S3_REGION)."""
    monkeypatch.setenv("DRIFTLOOP_TRAINING_S3_ENDPOINT_URL", "http://minio.lan:9000")
    monkeypatch.setenv("DRIFTLOOP_S3_REGION", "eu-central-1")
    _, pod = build(s3_endpoint_url=None)
    env = {e.name: e.value for e in _base(pod).env}
    assert env["AWS_ENDPOINT_URL_S3"] == "http://minio.lan:9000"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio.lan:9000"
    assert env["AWS_DEFAULT_REGION"] == "eu-central-1"
    # an explicit argument wins over the settings
    _, pod = build(s3_endpoint_url="http://other:9000", aws_region="us-west-2")
    env = {e.name: e.value for e in _base(pod).env}
    assert (env["AWS_ENDPOINT_URL_S3"], env["AWS_DEFAULT_REGION"]) == (
        "http://other:9000",
        "us-west-2",
    )


def test_pod_without_endpoint_settings_uses_aws_defaults(build, monkeypatch):
    monkeypatch.delenv("DRIFTLOOP_TRAINING_S3_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("DRIFTLOOP_S3_REGION", raising=False)
    _, pod = build(s3_endpoint_url=None)
    names = {e.name for e in _base(pod).env}
    assert not names & {"AWS_ENDPOINT_URL_S3", "MLFLOW_S3_ENDPOINT_URL", "AWS_DEFAULT_REGION"}


def test_pod_reads_the_trainers_mlflow_login_from_the_secret(build, monkeypatch):
    """Compose's MLflow has basic auth: the pod logs in as `trainer`, read from the Secret,
    never the Airflow process's own login (which may move aliases)."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "airflow")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "airflow-login-password-0123456789")
    _, pod = build(context=_minimal_context())
    env = {e.name: e for e in _base(pod).env}
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        assert env[key].value is None, key
        ref = env[key].value_from.secret_key_ref
        assert (ref.name, ref.key, ref.optional) == ("driftloop-mlflow", key, True)
    assert "airflow-login-password-0123456789" not in json.dumps(_serialized(pod))
