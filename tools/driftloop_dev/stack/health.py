"""Health checks, one per kind of component: what "up" means for moto, MLflow, the Pushgateway,
PostgreSQL, Redis, the Airflow api-server, its jobs and the Celery workers."""

from __future__ import annotations

import json
import socket
from datetime import datetime
from typing import Any

from driftloop_dev.stack.airflow_db import _pg_column
from driftloop_dev.stack.constants import AIRFLOW_JOBS, CELERY_WORKERS, HOST
from driftloop_dev.stack.net import _http, port_open
from driftloop_dev.stack.processes import Component


def component_healthy(comp: Component) -> bool:
    name, url = comp.name, comp.url
    if name == "s3":
        return _http(f"{url}/moto-api/")[0] == 200
    if name == "mlflow":
        return _http(f"{url}/health")[0] == 200
    if name == "pushgateway":
        return _http(f"{url}/-/ready")[0] == 200
    if name == "postgres":
        return _pg_column(comp.health_url, "SELECT 1") == {1}
    if name == "redis":
        return _redis_ping(comp.port)
    if name == "airflow":
        health = _airflow_health(url)
        return (health.get("metadatabase") or {}).get("status") == "healthy"
    if name in AIRFLOW_JOBS:
        # This component's own job: healthy, and heartbeating since it was spawned (a job row
        # of a stack stopped a moment ago still looks healthy for a while).
        part = _airflow_health(comp.health_url).get(AIRFLOW_JOBS[name]) or {}
        beat = next((v for k, v in part.items() if k.endswith("heartbeat") and v), None)
        if part.get("status") != "healthy" or beat is None:
            return False
        return datetime.fromisoformat(beat).timestamp() >= (comp.started_at or 0.0) - 1.0
    if name in CELERY_WORKERS:
        # its log server is up and the Celery node answers a ping through the broker
        return port_open(comp.port) and _celery_ping(comp.health_url, comp.title)
    raise ValueError(f"unknown component {name!r}")


def _airflow_health(base_url: str) -> dict[str, Any]:
    status, body = _http(f"{base_url}/api/v2/monitor/health")
    if status != 200:
        return {}
    try:
        return json.loads(body)
    except ValueError:
        return {}


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _celery_ping(broker_url: str, node_prefix: str, timeout: float = 1.0) -> bool:
    """A Celery node whose name starts with ``node_prefix`` answers a broadcast ping."""
    try:
        from celery import Celery
    except ImportError:
        return False
    app = Celery("driftloop-stack-ping", broker=broker_url, set_as_current=False)
    try:
        replies = app.control.ping(timeout=timeout) or []
    except Exception:  # broker not reachable (yet)
        return False
    finally:
        app.close()
    return any(node.startswith(node_prefix) for reply in replies for node in reply)
