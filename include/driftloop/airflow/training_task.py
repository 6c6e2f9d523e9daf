"""The KubernetesPodOperator that trains the detector on the GPU pool.

``training_pod_operator(...)`` is a pure function: it returns a configured
``KubernetesPodOperator`` and talks to no cluster. The pod runs the training image
(include/training/Dockerfile), whose ENTRYPOINT is ``python -m driftloop.training.train``;
this module only supplies the arguments, so the image stays the single source of truth for
what runs.

Contract with the entrypoint (``driftloop.training.train``)
------------------------------------------------------------
* The pod always passes ``--xcom-path /airflow/xcom/return.json`` (:data:`XCOM_RETURN_PATH`),
  appended to the caller's arguments unless they already carry ``--xcom-path``.
* On success the entrypoint writes there one JSON object, at least
  ``{"mlflow_run_id": "<run id>"}`` (more keys are welcome: ``model_uri``, ``dataset_uri``,
  metrics …; URIs only, never weights or data). ``do_xcom_push=True`` makes Airflow read it
  through the KPO's xcom sidecar and push it as the task's ``return_value`` XCom.
* Exit code 0 = trained and logged; any other exit code fails the task (Airflow retries).
* Working files go to ``/workspace`` (scratch emptyDir); the root filesystem is read-only.
  Writable: ``/workspace``, ``/tmp``, ``/dev/shm`` (RAM) and ``/airflow/xcom``.

Credentials come ONLY from Kubernetes Secrets, as ``valueFrom.secretKeyRef`` env vars:
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` from the Secret ``driftloop-s3`` (keys of
the same names) and, optionally, the MLflow login from ``driftloop-mlflow``: keys
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (MLflow's basic-auth app, the
``trainer`` user) or ``MLFLOW_TRACKING_TOKEN`` (the pod starts without a key that is missing;
an MLflow that needs a login then refuses the run). They
never appear in arguments or literal env values; :func:`training_pod_operator` refuses
secret-looking literal env names, secret-looking flags and URLs with embedded credentials.

Cluster prerequisites: the Secrets above in ``namespace``; the ``gpu`` Airflow pool; GPU nodes
labelled ``driftloop.io/pool=gpu`` and tainted ``nvidia.com/gpu:NoSchedule`` running the
NVIDIA device plugin (driver new enough for the CUDA 13 wheels of torch 2.14); the identity of
the ``kubernetes_default`` connection may create/get/list/delete pods, read pods/log and
events, and create pods/exec (the XCom read). Air-gapped clusters set the connection extra
``xcom_sidecar_container_image`` to a mirrored ``alpine``.

Parse-time cost
---------------
Importing this module is cheap: it imports neither Airflow's provider nor ``kubernetes``.
Calling :func:`training_pod_operator` imports
``airflow.providers.cncf.kubernetes.operators.pod``, which loads the ``kubernetes`` and
``kubernetes_asyncio`` clients and ``aiohttp`` (about 1,700 ``kubernetes*`` modules, +3–5 s on
a 2-core machine). A DAG file must therefore call it only when the training backend is
``kubernetes`` (:func:`training_backend`); with the default ``local`` backend the DAG
integrity test (tests/dags/test_dag_integrity.py) forbids ``kubernetes`` at parse time::

    from driftloop.airflow.training_task import training_backend, training_pod_operator

    if training_backend() == "kubernetes":
        train = training_pod_operator(
            task_id="train", image=TRAINING_IMAGE, namespace="driftloop",
            arguments=["--dataset-uri", "{{ ti.xcom_pull(task_ids='snapshot') }}"],
        )
    else:
        train = train_locally(...)  # the same entrypoint in .venv-train
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from driftloop.config.settings import TRAINING_BACKENDS, Settings  # noqa: F401 (re-exported)
from driftloop.training.allowlists import SAFE_LOAD_ENV

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.cncf.kubernetes.secret import Secret
    from kubernetes.client import models as k8s

#: the module the training image runs (its ENTRYPOINT)
TRAIN_MODULE = "driftloop.training.train"
#: where the entrypoint writes its result; the KPO's xcom sidecar reads it back
XCOM_RETURN_PATH = "/airflow/xcom/return.json"
XCOM_PATH_FLAG = "--xcom-path"

#: uid/gid of the ``trainer`` user of the training image
TRAINER_UID = 10001
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_NODE_SELECTOR: Mapping[str, str] = {"driftloop.io/pool": "gpu"}
WORKSPACE_PATH = "/workspace"
SHM_PATH = "/dev/shm"
TMP_PATH = "/tmp"

#: Kubernetes Secrets the pod reads credentials from (names and keys)
S3_SECRET = "driftloop-s3"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
MLFLOW_SECRET = "driftloop-mlflow"
MLFLOW_TOKEN_KEY = "MLFLOW_TRACKING_TOKEN"
#: MLflow basic-auth login of the trainer (compose's MLflow: EDIT on the training experiment only)
MLFLOW_LOGIN_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")

TRAINING_BACKEND_ENV = "DRIFTLOOP_TRAINING_BACKEND"

_SECRET_NAME = re.compile(
    r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|ACCESS_KEY|API_KEY|SESSION_KEY|AUTH",
    re.IGNORECASE,
)
_URL_WITH_CREDENTIALS = re.compile(r"://[^/@\s:]+:[^/@\s]+@")


def training_backend(environ: Mapping[str, str] | None = None) -> str:
    """The configured training backend: ``local`` (default) or ``kubernetes``.

    :attr:`Settings.training_backend <driftloop.config.settings.Settings.training_backend>`,
    read from ``DRIFTLOOP_TRAINING_BACKEND`` (an environment variable, so reading it at parse
    time touches neither the metadata DB nor the network); a bad value raises
    :class:`~driftloop.config.settings.SettingsError` naming the variable.
    """
    return Settings.from_env(environ).training_backend


def training_pod_operator(
    *,
    task_id: str,
    image: str,
    arguments: Sequence[str],
    namespace: str,
    gpu_count: int = 1,
    cpu_request: str = "8",
    cpu_limit: str | None = "8",
    memory_request: str = "48Gi",
    memory_limit: str = "48Gi",
    shm_size: str = "8Gi",
    workspace_size: str = "100Gi",
    tmp_size: str = "4Gi",
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[k8s.V1Toleration] | None = None,
    startup_timeout_seconds: int = 1800,
    active_deadline_seconds: int | None = None,
    pool: str = "gpu",
    pool_slots: int = 1,
    service_account_name: str | None = None,
    mlflow_tracking_uri: str | None = None,
    s3_endpoint_url: str | None = None,
    aws_region: str | None = None,
    bucket: str | None = None,
    env: Mapping[str, str] | None = None,
    s3_secret: str | None = S3_SECRET,
    mlflow_secret: str | None = MLFLOW_SECRET,
    extra_secrets: Sequence[Secret] = (),
    image_pull_policy: str = "IfNotPresent",
    image_pull_secrets: Sequence[str] = (),
    priority_class_name: str | None = None,
    kubernetes_conn_id: str = "kubernetes_default",
    deferrable: bool = False,
    read_only_root_filesystem: bool = True,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> KubernetesPodOperator:
    """A KubernetesPodOperator running the training entrypoint on the GPU pool.

    :param arguments: arguments of ``python -m driftloop.training.train`` (Jinja-templated;
        no secrets), see :func:`pod_arguments`; or an XComArg of a task that returns them
        (it must build them with :func:`pod_arguments`).
    :param namespace: namespace of the pod (and of the credential Secrets).
    :param gpu_count: ``nvidia.com/gpu`` in both requests and limits (extended resources
        cannot be overcommitted).
    :param memory_limit: container memory limit; the RAM-backed ``/dev/shm`` (``shm_size``)
        is charged to it, so it must exceed ``shm_size``.
    :param shm_size: size of the in-memory emptyDir at ``/dev/shm`` (PyTorch DataLoader
        workers pass batches through shared memory; the container default is 64 MiB).
    :param workspace_size: sizeLimit of the scratch emptyDir at ``/workspace``.
    :param node_selector: defaults to ``{"driftloop.io/pool": "gpu"}``; ``{}`` for none.
    :param tolerations: default: tolerate the ``nvidia.com/gpu`` NoSchedule taint.
    :param startup_timeout_seconds: how long the pod may stay unscheduled/pulling (a GPU node
        scale-up plus a ~10 GB image pull); also the scheduling timeout.
    :param pool: Airflow pool bounding concurrent GPU trainings. With ``deferrable=True`` the
        pool must count deferred tasks (``include_deferred``) or it bounds nothing.
    :param service_account_name: Kubernetes service account (e.g. one bound to a cloud IAM
        role instead of the ``driftloop-s3`` Secret); its API token is not mounted.
    :param mlflow_tracking_uri, s3_endpoint_url, aws_region, bucket: non-secret config,
        passed as ``MLFLOW_TRACKING_URI``, ``AWS_ENDPOINT_URL_S3`` (and
        ``MLFLOW_S3_ENDPOINT_URL``), ``AWS_DEFAULT_REGION``, ``DRIFTLOOP_BUCKET`` (omitted when
        empty). ``s3_endpoint_url`` and ``aws_region`` default (None) to the settings
        ``DRIFTLOOP_TRAINING_S3_ENDPOINT_URL`` / ``DRIFTLOOP_S3_REGION``: the pod runs outside
        the Airflow network and needs the endpoint as the cluster reaches it.
    :param env: further non-secret env vars (templated values); secret-looking names are
        refused: put those in a Kubernetes Secret and pass ``extra_secrets``.
    :param s3_secret: Secret holding ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``; None when
        the service account provides S3 access.
    :param mlflow_secret: Secret holding ``MLFLOW_TRACKING_TOKEN`` or the basic-auth login
        ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (optional references);
        None to not reference it.
    :param extra_secrets: more ``airflow.providers.cncf.kubernetes.secret.Secret`` objects.
    :param read_only_root_filesystem: the trainer's root filesystem is read-only (only the
        emptyDirs are writable); an escape hatch for images that write elsewhere.
    :param kwargs: passed to ``KubernetesPodOperator`` / ``BaseOperator`` (``retries``,
        ``execution_timeout``, ``owner``, ``doc_md`` …); may override any setting made here.
    """
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.cncf.kubernetes.secret import Secret
    from kubernetes.client import models as k8s
    from kubernetes.utils.quantity import parse_quantity

    if gpu_count < 1:
        raise ValueError(f"gpu_count must be >= 1, got {gpu_count}")
    if parse_quantity(shm_size) >= parse_quantity(memory_limit):
        raise ValueError(
            f"shm_size {shm_size} must be below memory_limit {memory_limit}: "
            "the RAM-backed /dev/shm is charged to the container's memory limit"
        )
    if parse_quantity(memory_request) > parse_quantity(memory_limit):
        raise ValueError(f"memory_request {memory_request} exceeds memory_limit {memory_limit}")

    if isinstance(arguments, str) or not isinstance(arguments, Sequence):
        # an XComArg (or a template) resolved at run time: whatever computes it must call
        # pod_arguments() itself, which the DAG's training_arguments task does
        args: Any = arguments
    else:
        args = pod_arguments(arguments)

    plain_env: dict[str, str] = {
        "PYTHONUNBUFFERED": "1",
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "0",
        # checkpoints are read with torch.load(weights_only=True) (driftloop.training.yolo_env)
        **SAFE_LOAD_ENV,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    if s3_endpoint_url is None or aws_region is None:
        settings_now = Settings.from_env()
        if s3_endpoint_url is None:
            s3_endpoint_url = settings_now.training_s3_endpoint_url
        if aws_region is None:
            aws_region = settings_now.s3_region
    optional = {
        "MLFLOW_TRACKING_URI": mlflow_tracking_uri,
        "AWS_ENDPOINT_URL_S3": s3_endpoint_url,
        # MLflow's own S3 client, for s3:// artifact URIs (unproxied artifact stores)
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint_url,
        "AWS_DEFAULT_REGION": aws_region,
        "DRIFTLOOP_BUCKET": bucket,
    }
    plain_env.update({name: value for name, value in optional.items() if value})
    plain_env.update(env or {})
    plain_env.update(SAFE_LOAD_ENV)  # not something a caller's env may switch off
    _refuse_secrets_in_env(plain_env)

    env_vars = [k8s.V1EnvVar(name=name, value=str(value)) for name, value in plain_env.items()]
    if mlflow_secret:
        # optional references: the pod starts even where MLflow needs no token or login (an
        # MLflow that does need one then refuses the run: nothing proceeds unauthenticated)
        for key in (MLFLOW_TOKEN_KEY, *MLFLOW_LOGIN_KEYS):
            env_vars.append(
                k8s.V1EnvVar(
                    name=key,
                    value_from=k8s.V1EnvVarSource(
                        secret_key_ref=k8s.V1SecretKeySelector(
                            name=mlflow_secret, key=key, optional=True
                        )
                    ),
                )
            )
    secrets = [Secret("env", key, s3_secret, key) for key in S3_SECRET_KEYS] if s3_secret else []
    secrets += list(extra_secrets)

    requests = {"cpu": cpu_request, "memory": memory_request, GPU_RESOURCE: str(gpu_count)}
    limits = {"memory": memory_limit, GPU_RESOURCE: str(gpu_count)}
    if cpu_limit:
        limits["cpu"] = cpu_limit

    volumes = [
        k8s.V1Volume(
            name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=shm_size)
        ),
        k8s.V1Volume(
            name="workspace", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=workspace_size)
        ),
        k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=tmp_size)),
    ]
    volume_mounts = [
        k8s.V1VolumeMount(name="dshm", mount_path=SHM_PATH),
        k8s.V1VolumeMount(name="workspace", mount_path=WORKSPACE_PATH),
        k8s.V1VolumeMount(name="tmp", mount_path=TMP_PATH),
    ]

    seccomp = k8s.V1SeccompProfile(type="RuntimeDefault")
    pod_security_context = k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=TRAINER_UID,
        run_as_group=TRAINER_UID,
        fs_group=TRAINER_UID,
        fs_group_change_policy="OnRootMismatch",
        seccomp_profile=seccomp,
    )

    def restricted(*, read_only_root: bool) -> k8s.V1SecurityContext:
        # Pod Security Standard "restricted", for the trainer and the xcom sidecar alike
        return k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=read_only_root,
            run_as_non_root=True,
            run_as_user=TRAINER_UID,
            run_as_group=TRAINER_UID,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
            seccomp_profile=seccomp,
        )

    pod_labels = {
        "app.kubernetes.io/name": "driftloop-trainer",
        "app.kubernetes.io/part-of": "driftloop",
        "app.kubernetes.io/component": "training",
        **(labels or {}),
    }
    pod_annotations = {
        # a training run cannot resume from an evicted pod: keep autoscalers from draining it
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
        "karpenter.sh/do-not-disrupt": "true",
        **(annotations or {}),
    }

    settings: dict[str, Any] = {
        "task_id": task_id,
        "kubernetes_conn_id": kubernetes_conn_id,
        "namespace": namespace,
        "name": "driftloop-train",
        "random_name_suffix": True,
        "image": image,
        "image_pull_policy": image_pull_policy,
        "image_pull_secrets": [k8s.V1LocalObjectReference(name=s) for s in image_pull_secrets]
        or None,
        # no cmds: the image's ENTRYPOINT (python -m driftloop.training.train) runs
        "arguments": args,
        "env_vars": env_vars,
        "secrets": secrets,
        "container_resources": k8s.V1ResourceRequirements(requests=requests, limits=limits),
        "volumes": volumes,
        "volume_mounts": volume_mounts,
        "node_selector": dict(DEFAULT_NODE_SELECTOR if node_selector is None else node_selector),
        "tolerations": list(tolerations)
        if tolerations is not None
        else [k8s.V1Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")],
        "security_context": pod_security_context,
        "container_security_context": restricted(read_only_root=read_only_root_filesystem),
        # the sidecar only runs `sleep`
        "xcom_sidecar_container_security_context": restricted(read_only_root=True),
        "service_account_name": service_account_name,
        # the trainer never calls the Kubernetes API
        "automount_service_account_token": False,
        "priority_class_name": priority_class_name,
        "labels": pod_labels,
        "annotations": pod_annotations,
        "startup_timeout_seconds": startup_timeout_seconds,
        "schedule_timeout_seconds": startup_timeout_seconds,
        "active_deadline_seconds": active_deadline_seconds,
        # Streamed logs are the record (the pod is deleted): get them, and the events on failure.
        "get_logs": True,
        "log_events_on_failure": True,
        "do_xcom_push": True,
        # Delete the pod whatever its outcome, so no GPU stays held by an orphan: its logs and,
        # on failure, its events and spec are already in the Airflow task log.
        "on_finish_action": "delete_pod",
        "on_kill_action": "delete_pod",
        # A restarted worker reattaches to the running pod instead of starting a second
        # training. With provider 10.25 on Airflow 3.3 `durable` supersedes
        # `reattach_on_restart` (deprecated: passing it warns), which mirrors it.
        "durable": True,
        "deferrable": deferrable,
        "pool": pool,
        "pool_slots": pool_slots,
    }
    settings.update(kwargs)
    return KubernetesPodOperator(**settings)


def _refuse_secrets_in_env(env: Mapping[str, str]) -> None:
    for name, value in env.items():
        if _SECRET_NAME.search(name):
            raise ValueError(
                f"env var {name!r} looks like a credential: literal env values are visible in the "
                "pod spec; put it in a Kubernetes Secret and pass it as extra_secrets"
            )
        if _URL_WITH_CREDENTIALS.search(str(value)):
            raise ValueError(f"env var {name!r} holds a URL with embedded credentials")


def pod_arguments(arguments: Sequence[Any]) -> list[str]:
    """The trainer's container arguments: strings, ``--xcom-path`` where the KPO sidecar reads
    it, and no credentials (arguments are visible in the pod spec)."""
    args = [str(a) for a in arguments]
    if not any(a == XCOM_PATH_FLAG or a.startswith(f"{XCOM_PATH_FLAG}=") for a in args):
        args += [XCOM_PATH_FLAG, XCOM_RETURN_PATH]
    _refuse_secrets_in_arguments(args)
    return args


def _refuse_secrets_in_arguments(args: Sequence[str]) -> None:
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag.startswith("-") and _SECRET_NAME.search(flag.replace("-", "_")):
            raise ValueError(
                f"argument {flag!r} looks like a credential: arguments are visible in the pod "
                "spec; use a Kubernetes Secret (extra_secrets) instead"
            )
        if _URL_WITH_CREDENTIALS.search(arg):
            raise ValueError("an argument holds a URL with embedded credentials")
