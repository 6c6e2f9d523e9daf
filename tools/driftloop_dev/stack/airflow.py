"""Airflow as in production on the stack: PostgreSQL (+ Redis), ``airflow db migrate``, then the
api-server, scheduler, dag-processor, triggerer (and Celery workers) as separate processes."""

from __future__ import annotations

import json

from driftloop_dev.stack.airflow_db import migrate_airflow_db
from driftloop_dev.stack.constants import (
    AIRFLOW_COMPONENTS,
    AIRFLOW_JOBS,
    AIRFLOW_PROCESSES,
    BIN_DIR,
    CELERY_CONCURRENCY,
    CELERY_WORKERS,
    HOST,
    StackError,
)
from driftloop_dev.stack.net import free_port
from driftloop_dev.stack.prerequisites import (
    airflow_celery_missing,
    airflow_postgres_missing,
    redis_binary,
)


class AirflowMixin:
    """The Airflow part of :class:`~driftloop_dev.stack.EmbeddedStack`."""

    def _airflow_names(self, executor: str) -> list[str]:
        celery = executor == "celery"
        return [
            "postgres",
            *(["redis"] if celery else []),
            "airflow",
            *AIRFLOW_JOBS,
            *(CELERY_WORKERS if celery else []),
        ]

    def _airflow_ready(self) -> bool:
        """The recorded Airflow has the requested shape and every process of it is healthy."""
        if self.airflow_executor != self.executor:
            return False
        if self.env.get("AIRFLOW__CORE__DAGS_FOLDER") != str(self.dags_folder):
            return False
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        if state.get("extra_env", {}) != self.extra_env:
            return False
        return all(
            name in self.components and self._alive_and_healthy(name)
            for name in self._airflow_names(self.executor)
        )

    def _start_airflow(self) -> None:
        """PostgreSQL (+ Redis), ``airflow db migrate``, then the Airflow processes."""
        celery = self.executor == "celery"
        for name in AIRFLOW_COMPONENTS:
            self.components.pop(name, None)
        missing = airflow_postgres_missing() or (airflow_celery_missing() if celery else None)
        if missing:
            raise StackError(missing)
        redis = redis_binary() if celery else None
        self._prepare_postgres()
        self.airflow_executor = self.executor
        self._clients.clear()
        if redis is not None:
            port = free_port()
            (self.root / "redis").mkdir(exist_ok=True)
            self._define(
                "redis",
                port,
                [
                    redis,
                    "--bind",
                    HOST,
                    "--port",
                    str(port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.root / "redis"),
                    "--loglevel",
                    "warning",
                ],
                url=f"redis://{HOST}:{port}/0",
                title=f"{HOST}:{port}",
            )
            self._spawn("redis")
        self._spawn("postgres")
        self.save()
        databases = [name for name in ("postgres", "redis") if name in self.components]
        self._wait_healthy(*databases, then=self._on_healthy)

        airflow = str(BIN_DIR / "airflow")
        api_port, log_port, trigger_port = free_port(), free_port(), free_port()
        self._define(
            "airflow",
            api_port,
            [airflow, "api-server", "--host", HOST, "--port", str(api_port), "--workers", "1"],
            title=f"api_server -- host:{HOST} port:{api_port}",
        )
        api = self.components["airflow"].url
        # With the LocalExecutor the scheduler serves the task logs; with Celery, the workers.
        self._define(
            "airflow-scheduler", 0 if celery else log_port, [airflow, "scheduler"], health_url=api
        )
        self._define("airflow-dag-processor", 0, [airflow, "dag-processor"], health_url=api)
        self._define("airflow-triggerer", trigger_port, [airflow, "triggerer"], health_url=api)
        if celery:
            broker = self.components["redis"].url
            for number, name in enumerate(CELERY_WORKERS, start=1):
                port = log_port if number == 1 else free_port()
                self._define(
                    name,
                    port,
                    [
                        airflow,
                        "celery",
                        "worker",
                        "--concurrency",
                        str(CELERY_CONCURRENCY),
                        "--celery-hostname",
                        f"worker{number}@%h",
                    ],
                    title=f"worker{number}@",
                    health_url=broker,
                )
                self.components[name].env = {
                    # each worker's log server on its own port, and a hostname of its own
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port),
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "driftloop_dev.airflow_api.hostname",
                    "DRIFTLOOP_HOSTNAME": f"127.0.0.{number + 1}",
                }
        self.env = self._build_env()
        migrate_airflow_db({**self.env, **self.extra_env})
        names = [name for name in AIRFLOW_PROCESSES if name in self.components]
        for name in names:
            self._spawn(name)
        self.save()
        self._wait_healthy(*names)
        self.save()
