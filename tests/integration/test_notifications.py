"""Notifications against a real webhook server on 127.0.0.1: the Slack provider's hook with
driftloop's retry policy, the record of a message that never arrived, a failed task of a real
DAG run posting through its on_failure_callback, and Alertmanager posting to the same kind of
receiver.

The server answers 500 to its first N requests, then 200, and records each request's body
and arrival (monotonic clock). Only the order of the waits between requests is asserted,
never their length.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

# Airflow configures logging (replacing the root logger's handlers) when the Slack provider
# first loads: load it now, before caplog adds its handler in a test
import driftloop.airflow.slack_notifier  # noqa: F401
from driftloop.airflow.notifiers import send
from driftloop.audit.ledger import Ledger
from driftloop.notify.retry import TRIES
from tests.conftest import REPO, load_dag

pytestmark = pytest.mark.integration

CONN_ENV = "AIRFLOW_CONN_DRIFTLOOP_ALERTS"
WINDOW = {"start": "2026-11-01", "end": "2026-11-14"}
MONITORING = REPO / "include" / "monitoring"


@dataclass
class Webhook:
    """What the loopback server was asked: ``fail_first`` requests get ``fail_status``."""

    url: str
    fail_first: int = 0
    fail_status: int = 500
    calls: list[tuple[float, str, dict]] = field(default_factory=list)  # (arrival, path, body)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 60.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.calls) >= count:
                    return [body for _, _, body in self.calls]
            time.sleep(0.1)
        pytest.fail(f"the webhook got {len(self.calls)} requests, not {count}, in {timeout} s")

    def intervals(self) -> list[float]:
        arrivals = [arrival for arrival, _, _ in self.calls]
        return [later - earlier for earlier, later in itertools.pairwise(arrivals)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def webhook():
    """A webhook server on a free loopback port, stopped by its own handle."""
    state = Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            with state.lock:
                state.calls.append((time.monotonic(), self.path, body))
                failing = len(state.calls) <= state.fail_first
            status = state.fail_status if failing else 200
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status == 200 else b"server_error")

        def log_message(self, *args):  # quiet: the test reads state.calls
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/test"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def alerts_env(webhook, monkeypatch, tmp_path):
    """The connection to the loopback webhook and a ledger of this test's own."""
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "slackwebhook", "password": webhook.url}))
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    database = f"sqlite:///{tmp_path / 'driftloop.db'}"
    monkeypatch.setenv("DRIFTLOOP_DATABASE_URL", database)
    for name in ("DRIFTLOOP_LEDGER_HMAC_KEY", "DRIFTLOOP_LEDGER_ANCHOR_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    return database


def _critical(event_id: int) -> dict:
    return {
        "drift_event_id": event_id,
        "window": WINDOW,
        "drifted_features": ["brightness", "camera_id"],
        "approval": "required",
        "report_url": "http://mlflow.example/#/experiments/1/runs/abc/artifactPath/report.html",
    }


def test_delivered_on_the_third_try_with_growing_waits(webhook, alerts_env):
    webhook.fail_first = 2
    assert send("drift_critical", _critical(7), {}) is True
    bodies = webhook.wait_for(TRIES)
    assert len(webhook.calls) == TRIES == 3
    assert bodies[0] == bodies[-1]  # the same message each time
    assert "drift event 7" in bodies[-1]["text"]
    assert bodies[-1]["blocks"][0]["type"] == "header"
    first_wait, second_wait = webhook.intervals()
    assert second_wait > first_wait  # exponential backoff: only the order, never the length
    assert Ledger(alerts_env).entries(kind="notification_failed") == []


def test_undelivered_after_three_tries_is_logged_and_recorded_on_the_event(
    webhook, alerts_env, caplog
):
    webhook.fail_first = 3
    with caplog.at_level(logging.INFO):
        assert send("drift_critical", _critical(11), {}) is False
    assert len(webhook.calls) == 3
    time.sleep(0.5)
    assert len(webhook.calls) == 3  # no fourth try came later
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("drift_critical notification not delivered" in m and "500" in m for m in errors)
    (row,) = Ledger(alerts_env).entries(subject="drift_event:11")
    assert row.kind == "notification_failed"
    assert row.payload["notification"] == "drift_critical"
    assert row.payload["tries"] == 3
    assert "500" in row.payload["error"]


def test_a_client_error_is_not_retried(webhook, alerts_env, caplog):
    webhook.fail_first, webhook.fail_status = 5, 404  # a revoked webhook
    with caplog.at_level(logging.ERROR):
        assert send("rollback", {"withdrawn": "4", "restored": "3"}, {}) is False
    time.sleep(0.5)
    assert len(webhook.calls) == 1
    (row,) = Ledger(alerts_env).entries(kind="notification_failed")
    assert row.subject == "model:driftloop-detector/v4"


def test_connection_refused_is_retried_and_recorded(alerts_env, monkeypatch):
    url = f"http://127.0.0.1:{_free_port()}/nobody-listens"
    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "slackwebhook", "password": url}))
    assert send("drift_critical", _critical(12), {}, backoff_s=0.05) is False
    (row,) = Ledger(alerts_env).entries(subject="drift_event:12")
    assert "URLError" in row.payload["error"] or "Connection" in row.payload["error"]


def test_a_failed_task_of_a_dag_run_posts_through_its_failure_callback(stack, webhook, monkeypatch):
    """drift_accept_new_normal asked to accept a drift event that does not exist: the task
    fails at once (no retry can help) and default_args' on_failure_callback posts it."""
    from airflow.utils.state import DagRunState

    monkeypatch.setenv(CONN_ENV, json.dumps({"conn_type": "slackwebhook", "password": webhook.url}))
    dag = load_dag("drift_accept_new_normal")
    dag_run = dag.test(run_conf={"event_id": 987654, "note": "notification test"})
    assert dag_run.state == DagRunState.FAILED
    (body,) = webhook.wait_for(1)
    text = body["text"]
    assert "Task failed: drift_accept_new_normal.accept_new_normal" in text
    assert dag_run.run_id in text
    assert "987654" in text  # the drift event the run was about (its Param)
    assert "AirflowFailException" in text


# ------------------------------------------------------------------------ Alertmanager
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@pytest.fixture
def alertmanager(webhook, tmp_path):
    """Alertmanager with include/monitoring/alertmanager.yml rendered by its entrypoint for
    the loopback webhook; group_wait shortened (timing only: routes and receivers as is)."""
    if ALERTMANAGER is None:
        pytest.skip("Alertmanager not installed (apt-get install prometheus-alertmanager)")
    config = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())
    for route in [config["route"], *config["route"]["routes"]]:
        route["group_wait"] = "1s"
    template = tmp_path / "alertmanager.yml"
    template.write_text(yaml.safe_dump(config))
    port = _free_port()
    env = {
        "PATH": os.environ["PATH"],
        "ALERTMANAGER_WEBHOOK_URL": webhook.url,
        "ALERTMANAGER_TEMPLATE": str(template),
        "ALERTMANAGER_RENDERED": str(tmp_path / "alertmanager.rendered.yml"),
        "ALERTMANAGER_BIN": ALERTMANAGER,
    }
    log_path = tmp_path / "alertmanager.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [
                "sh",
                str(MONITORING / "alertmanager-entrypoint.sh"),
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # one instance, no gossip port
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"alertmanager exited with {proc.returncode}: {log_path.read_text()}")
            try:
                with opener.open(f"{base}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"alertmanager not ready after 30 s: {log_path.read_text()}")
            time.sleep(0.2)
        yield base, opener
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _post_alert(base: str, opener, alertname: str, severity: str) -> None:
    alert = {
        "labels": {"alertname": alertname, "severity": severity, "job": "drift_monitor"},
        "annotations": {
            "summary": f"{alertname} summary",
            "description": f"{alertname} description",
        },
    }
    request = urllib.request.Request(
        f"{base}/api/v2/alerts",
        data=json.dumps([alert]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with opener.open(request, timeout=10) as resp:
        assert resp.status == 200


def test_alertmanager_posts_page_and_ticket_alerts_to_the_slack_webhook(webhook, alertmanager):
    base, opener = alertmanager
    _post_alert(base, opener, "DriftCritical", "page")
    # (not DriftWarning: the firing DriftCritical inhibits it, as alertmanager.yml says)
    _post_alert(base, opener, "DriftCheckStale", "ticket")
    bodies = webhook.wait_for(2)
    titles = {}
    for body in bodies:
        (attachment,) = body["attachments"]  # Slack's incoming-webhook message format
        titles[attachment["title"]] = attachment["text"]
    assert set(titles) == {"[FIRING] page: DriftCritical", "[FIRING] ticket: DriftCheckStale"}
    assert "*DriftCritical summary*" in titles["[FIRING] page: DriftCritical"]
    assert "DriftCheckStale description" in titles["[FIRING] ticket: DriftCheckStale"]
    # both receivers post to the one URL the entrypoint substituted
    assert {path for _, path, _ in webhook.calls} == {urllib.parse.urlsplit(webhook.url).path}
