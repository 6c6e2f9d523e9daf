"""The local training backend: the entrypoint as a subprocess of the training virtualenv.

``DRIFTLOOP_TRAINING_BACKEND=local`` (the embedded stack, tests): the ``train`` task runs
``<DRIFTLOOP_TRAINING_PYTHON> -m driftloop.training.train`` on the CPU and streams every line
it prints into the task log as it comes (one progress line per epoch), then returns the result
JSON the entrypoint wrote, exactly what the training pod returns through its XCom sidecar.
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
        # unbuffered: each epoch's line reaches the task log when the epoch ends
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri or "",
            "PYTHONUNBUFFERED": "1",
        }
        returncode, tail = stream_subprocess(argv, env, TRAINING_LOG)
        if returncode != 0:
            raise RuntimeError(
                f"training entrypoint exited {returncode}; its last lines:\n" + "\n".join(tail)
            )
        return json.loads(xcom.read_text())
