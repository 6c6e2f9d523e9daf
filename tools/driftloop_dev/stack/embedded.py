"""The embedded stack: :class:`EmbeddedStack` starts, finds again and stops the services under
one root folder."""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from driftloop_dev.airflow_api import AirflowAPI
from driftloop_dev.stack.airflow import AirflowMixin
from driftloop_dev.stack.constants import (
    ADMIN_USER,
    AIRFLOW_COMPONENTS,
    AWS_ACCESS_KEY_ID,
    AWS_REGION,
    AWS_SECRET_ACCESS_KEY,
    BIN_DIR,
    CORE,
    DATA_BUCKET,
    EXECUTORS,
    HOST,
    MLFLOW_ARTIFACTS,
    MLFLOW_BUCKET,
    PASSWORDS_FILE,
    STATE_FILE,
    StackError,
)
from driftloop_dev.stack.environment import EnvironmentMixin
from driftloop_dev.stack.net import free_port
from driftloop_dev.stack.postgres import PostgresMixin
from driftloop_dev.stack.prerequisites import pushgateway_binary
from driftloop_dev.stack.processes import Component
from driftloop_dev.stack.supervisor import ProcessSupervisor

log = logging.getLogger(__name__)


class EmbeddedStack(AirflowMixin, PostgresMixin, EnvironmentMixin, ProcessSupervisor):
    """Starts, finds again and stops the embedded services under ``root``.

    ``with_airflow_ui=True`` adds Airflow as separate processes on PostgreSQL (LocalExecutor);
    ``executor="celery"`` (which implies it) the Celery shape: Redis and two workers.
    ``dags_folder`` defaults to ``<repo>/dags``; ``extra_env`` is added to the environment of
    the Airflow processes (not to :attr:`env`, which is what clients of the stack use).
    """

    def __init__(
        self,
        root: Path | str,
        repo: Path | str,
        *,
        with_airflow_ui: bool = False,
        executor: str = "local",
        dags_folder: Path | str | None = None,
        extra_env: Mapping[str, str] | None = None,
    ):
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {sorted(EXECUTORS)}, not {executor!r}")
        self.root = Path(root).resolve()
        self.repo = Path(repo).resolve()
        self.executor = executor
        self.with_airflow_ui = with_airflow_ui or executor == "celery"
        self.dags_folder = Path(dags_folder).resolve() if dags_folder else self.repo / "dags"
        #: on top of :attr:`env` for the Airflow processes (and ``airflow db migrate``) only
        self.extra_env: dict[str, str] = dict(extra_env or {})
        self.components: dict[str, Component] = {}
        self.skipped: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.reused = False
        self.airflow_executor: str | None = None  # the shape of the running Airflow, if any
        self._procs: dict[str, subprocess.Popen] = {}
        self._spawned: dict[str, float] = {}
        self._atexit = False
        self._clients: dict[str, AirflowAPI] = {}

    # -- public -----------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def urls(self) -> dict[str, str]:
        return {name: comp.url for name, comp in self.components.items()}

    @property
    def pids(self) -> dict[str, int]:
        return {name: comp.pid for name, comp in self.components.items() if comp.pid}

    @property
    def passwords_file(self) -> Path:
        return self.root / PASSWORDS_FILE

    @property
    def admin_password(self) -> str:
        return json.loads(self.passwords_file.read_text())[ADMIN_USER]

    @property
    def runs_airflow(self) -> bool:
        """The stack runs the Airflow processes (``up --ui``)."""
        return "airflow" in self.components

    def password(self, username: str = ADMIN_USER) -> str:
        """The simple auth manager's password of ``username`` (the api-server generates those
        of the users in ``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS`` into the passwords file)."""
        return json.loads(self.passwords_file.read_text())[username]

    def airflow_client(self, username: str = ADMIN_USER) -> AirflowAPI:
        """A REST client for this stack's Airflow, logged in as ``username``."""
        if not self.runs_airflow:
            raise StackError(f"no Airflow in the stack under {self.root}: start it with --ui")
        url = self.components["airflow"].url
        client = self._clients.get(username)
        if client is None or client.base_url != url:
            client = self._clients[username] = AirflowAPI(url, username, self.password(username))
        return client

    def start(self) -> EmbeddedStack:
        """Start what is not running yet; reuse a healthy stack recorded under ``root``."""
        for folder in (self.root, self.log_dir, self.root / "airflow", self.root / "mlflow"):
            folder.mkdir(parents=True, exist_ok=True)
        if self.load():
            core = [name for name in CORE if name not in self.skipped]
            if all(n in self.components and self._alive_and_healthy(n) for n in core):
                self.reused = True
                if self.with_airflow_ui and not self._airflow_ready():
                    self._stop([n for n in AIRFLOW_COMPONENTS if n in self.components])
                    try:
                        self._start_airflow()
                    except BaseException:
                        # leave the reused services as they were, without a half-started Airflow
                        self._stop([n for n in AIRFLOW_COMPONENTS if n in self.components])
                        for name in AIRFLOW_COMPONENTS:
                            self.components.pop(name, None)
                        self.airflow_executor = None
                        self.env = self._build_env()
                        self.save()
                        raise
                self.save()
                return self
            log.info(
                "stale stack state in %s: stopping what is left and starting afresh", self.root
            )
            self.stop()
        try:
            self._start_fresh()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every component by its own PID (see ``_stop``) and delete ``stack.json``."""
        self._stop(list(self.components))
        self.components.clear()
        self.airflow_executor = None
        self.state_path.unlink(missing_ok=True)

    def restart_component(self, name: str) -> None:
        """Stop one component by its PID and start it again with the same command, port and
        environment; returns once it is healthy (a scheduler: once its new job heartbeats)."""
        if name not in self.components:
            raise StackError(f"no component {name!r} in the stack under {self.root}")
        self._stop([name])
        self._spawn(name)
        self.save()
        self._wait_healthy(name)
        self.save()

    def load(self) -> bool:
        """Read ``<root>/stack.json``; False when there is none."""
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return False
        self.components = {name: Component(**c) for name, c in state["components"].items()}
        self.skipped = state.get("skipped", {})
        self.env = state.get("env", {})
        self.airflow_executor = state.get("airflow_executor")
        if not self.extra_env:
            self.extra_env = state.get("extra_env", {})
        return True

    def save(self) -> None:
        state = {
            "root": str(self.root),
            "repo": str(self.repo),
            "airflow_executor": self.airflow_executor,
            "components": {name: asdict(comp) for name, comp in self.components.items()},
            "skipped": self.skipped,
            "urls": self.urls,
            "pids": self.pids,
            "ports": {name: comp.port for name, comp in self.components.items() if comp.port},
            "login": {"user": ADMIN_USER, "passwords_file": str(self.passwords_file)},
            "env": self.env,
            "extra_env": self.extra_env,
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.chmod(0o600)
        os.replace(tmp, self.state_path)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per component: pid, url, running, healthy, rss_mb, pss_mb, startup_s."""
        report = {}
        for name, comp in self.components.items():
            running = comp.owns_pid()
            report[name] = {
                "pid": comp.pid,
                "url": comp.url,
                "running": running,
                "healthy": running and comp.healthy(),
                "rss_mb": round(comp.rss_bytes() / 2**20, 1),
                "pss_mb": round(comp.pss_bytes() / 2**20, 1),
                "startup_s": comp.startup_s,
            }
        for name, reason in self.skipped.items():
            report[name] = {"skipped": reason}
        return report

    def __enter__(self) -> EmbeddedStack:
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
        if self._atexit:
            atexit.unregister(self.stop)
            self._atexit = False

    # -- starting ---------------------------------------------------------------------------

    def _start_fresh(self) -> None:
        self.components.clear()
        self.skipped.clear()
        self.env = {}
        self.reused = False
        self.airflow_executor = None
        self._reset_stores_pointing_into_s3()
        py = sys.executable
        s3_port, mlflow_port = free_port(), free_port()
        self._define("s3", s3_port, [py, "-m", "moto.server", "-H", HOST, "-p", str(s3_port)])
        self._define(
            "mlflow",
            mlflow_port,
            [
                str(BIN_DIR / "mlflow"),
                "server",
                "--host",
                HOST,
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{self.root / 'mlflow' / 'mlflow.db'}",
                "--serve-artifacts",
                "--artifacts-destination",
                MLFLOW_ARTIFACTS,
            ],
        )
        binary = pushgateway_binary()
        if binary:
            port = free_port()
            self._define(
                "pushgateway",
                port,
                [
                    binary,
                    f"--web.listen-address={HOST}:{port}",
                    "--persistence.file=",
                    "--log.level=warn",
                ],
            )
        else:
            self.skipped["pushgateway"] = "prometheus-pushgateway not found on PATH or in /usr/bin"
        self.components["mlflow"].env = {
            "MLFLOW_S3_ENDPOINT_URL": self.components["s3"].url,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        self.env = self._build_env()
        # Nothing needs another component to be up before it starts: spawn all, then wait.
        for name in list(self.components):
            self._spawn(name)
        self.save()
        self._wait_healthy(*self.components, then=self._on_healthy)
        if self.with_airflow_ui:
            self._start_airflow()
        self.save()

    def _reset_stores_pointing_into_s3(self) -> None:
        """moto keeps its buckets in memory: a fresh stack starts with empty S3. The MLflow
        store (runs, registered models, artifact URIs) and driftloop's history and ledger
        point into those buckets, so they start afresh with it: a registry whose champion's
        weights are gone would be worse than none. Airflow's run history is kept."""
        stale = [self.root / "mlflow" / "mlflow.db", self.root / "driftloop.db"]
        for path in stale:
            if path.exists():
                log.info("fresh S3, so a fresh %s (was %d bytes)", path.name, path.stat().st_size)
                path.unlink()

    def _create_buckets(self) -> None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.components["s3"].url,
            aws_access_key_id=AWS_ACCESS_KEY_ID,
            aws_secret_access_key=AWS_SECRET_ACCESS_KEY,
            region_name=AWS_REGION,
        )
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for bucket in (DATA_BUCKET, MLFLOW_BUCKET):
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)
