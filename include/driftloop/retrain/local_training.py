"""The local training backend: the entrypoint as a subprocess of the training virtualenv.

``DRIFTLOOP_TRAINING_BACKEND=local`` (the embedded stack, tests): the ``train`` task runs
``<DRIFTLOOP_TRAINING_PYTHON> -m driftloop.training.train`` on the CPU and streams every line
it prints into the task log as it comes (one progress line per epoch), then returns the result
JSON the entrypoint wrote, exactly what the training pod returns through its XCom sidecar.

The subprocess does not inherit the Airflow worker's environment (Fernet key, metadata DB URL,
JWT and API secrets, the ledger's key): :func:`trainer_environment` passes only what training
needs, by name — the system basics, Ultralytics' ``YOLO_*`` switches, the MLflow client's and
S3's (boto3) settings and credentials, and the code version — and sets Ultralytics' safe
checkpoint loading on.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from driftloop.config.settings import Settings
from driftloop.retrain.training_arguments import resolve_base, training_arguments

log = logging.getLogger(__name__)

#: the logger the training entrypoint's output lines go to (the task log)
TRAINING_LOG = logging.getLogger("driftloop.training")


def stream_subprocess(
    argv: list[str], env: Mapping[str, str], logger: logging.Logger, tail_lines: int = 30
) -> tuple[int, list[str]]:
    """Run ``argv``; each line of its output (stdout and stderr) goes to ``logger`` as it
    comes, not at the end. Returns the exit status and the last ``tail_lines`` lines."""
    from collections import deque

    tail: deque[str] = deque(maxlen=tail_lines)
    with subprocess.Popen(
        argv,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    ) as process:
        for raw in process.stdout:
            line = raw.rstrip()
            if line:
                logger.info("%s", line)
                tail.append(line)
        returncode = process.wait()
    return returncode, list(tail)


#: variables the trainer inherits when set, by exact name
TRAINER_ENV_NAMES = frozenset(
    {
        # system basics
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ",
        "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "NO_PROXY", "no_proxy",
        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "MPLCONFIGDIR",
        # the MLflow client: where to log, and its own credentials
        "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_INSECURE_TLS",
        "MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_CLIENT_CERT_PATH",
        "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_S3_IGNORE_TLS", "MLFLOW_HTTP_REQUEST_TIMEOUT",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        # S3 through boto3: the dataset snapshot
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
        "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE",
        # driftloop settings the trainer reads (the code version of an image without .git)
        "DRIFTLOOP_GIT_SHA", "DRIFTLOOP_BUCKET",
    }
)  # fmt: skip
#: variables the trainer inherits by prefix: Ultralytics' own switches (YOLO_OFFLINE …)
TRAINER_ENV_PREFIXES = ("YOLO_",)


def trainer_environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """The training subprocess's environment: the allow-listed names of ``environ`` (nothing
    of Airflow's, no database URL, no ledger key), the tracking URI of ``settings``, unbuffered
    output and Ultralytics' offline and safe-loading switches (which no inherited value can
    turn off)."""
    from driftloop.training.allowlists import SAFE_LOAD_ENV
    from driftloop.training.yolo_env import OFFLINE_ENV

    env = {
        name: value
        for name, value in environ.items()
        if name in TRAINER_ENV_NAMES or name.startswith(TRAINER_ENV_PREFIXES)
    }
    if settings.mlflow_tracking_uri:
        env["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    env["PYTHONUNBUFFERED"] = "1"  # each epoch's line reaches the task log when the epoch ends
    env.update(OFFLINE_ENV)
    env.update(SAFE_LOAD_ENV)
    return env


def train_local(
    settings: Settings, plan: Mapping[str, Any], snapshot_doc: Mapping[str, Any], run_id: str
) -> dict[str, Any]:
    """The local backend: the training entrypoint in the training virtualenv, on the CPU."""
    python = Path(settings.training_python)
    if not python.exists():
        raise FileNotFoundError(
            f"training interpreter {python} (DRIFTLOOP_TRAINING_PYTHON) not found: "
            "run `make train-env`"
        )
    base = resolve_base(settings, plan)
    with tempfile.TemporaryDirectory(prefix="driftloop-train-") as work:
        xcom = Path(work) / "return.json"
        argv = [
            str(python),
            "-m",
            "driftloop.training.train",
            *training_arguments(plan, snapshot_doc, base, run_id, str(xcom)),
            "--device",
            "cpu",
            "--out",
            work,
        ]
        log.info("training: %s", " ".join(argv))
        env = trainer_environment(settings, os.environ)
        returncode, tail = stream_subprocess(argv, env, TRAINING_LOG)
        if returncode != 0:
            raise RuntimeError(
                f"training entrypoint exited {returncode}; its last lines:\n" + "\n".join(tail)
            )
        return json.loads(xcom.read_text())
