"""The embedded stack's S3 and MLflow behind fault proxies, and the client environment that
routes the tasks through them with short timeouts, so that a stalled service costs seconds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from driftloop_dev.faults.proxy import Fault, FaultProxy

#: clients give up on a stalled service after this many seconds (per attempt)
CLIENT_TIMEOUT_S = 8
#: attempts of the S3 and MLflow clients (the first + retries): a transient fault is retried
#: by the client once, a lasting one reaches the task (and Airflow's retry)
CLIENT_ATTEMPTS = 2


class FaultedServices:
    """A :class:`FaultProxy` per service (``s3``, ``mlflow``) of a running stack;
    :attr:`env` points the clients of the tasks at the proxies."""

    def __init__(self, stack):
        self.stack = stack
        self.proxies = {
            name: FaultProxy(stack.components[name].port, name=name) for name in ("s3", "mlflow")
        }

    @property
    def env(self) -> dict[str, str]:
        s3, mlflow = self.proxies["s3"].url, self.proxies["mlflow"].url
        connection = json.loads(self.stack.env["AIRFLOW_CONN_AWS_DEFAULT"])
        connection["extra"] = {
            **connection.get("extra", {}),
            "endpoint_url": s3,
            # botocore takes no timeouts from the environment: the connection carries them
            "config_kwargs": {
                "connect_timeout": 3,
                "read_timeout": CLIENT_TIMEOUT_S,
                "retries": {"max_attempts": CLIENT_ATTEMPTS, "mode": "standard"},
            },
        }
        return {
            "AWS_ENDPOINT_URL_S3": s3,
            "MLFLOW_S3_ENDPOINT_URL": s3,
            "AWS_MAX_ATTEMPTS": str(CLIENT_ATTEMPTS),
            "AWS_RETRY_MODE": "standard",
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
            "MLFLOW_TRACKING_URI": mlflow,
            "DRIFTLOOP_MLFLOW_TRACKING_URI": mlflow,
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(CLIENT_TIMEOUT_S),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(CLIENT_ATTEMPTS - 1),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
        }

    def set(self, service: str, fault: Fault | str) -> None:
        self.proxies[service].set(fault)

    def heal(self) -> None:
        """Every proxy back to ``pass``."""
        for proxy in self.proxies.values():
            proxy.set("pass")

    @contextmanager
    def fault(self, service: str, fault: Fault | str) -> Iterator[FaultProxy]:
        self.set(service, fault)
        try:
            yield self.proxies[service]
        finally:
            self.set(service, "pass")

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.close()
