"""driftloop.drift.metrics against a real Prometheus Pushgateway on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from driftloop.drift.metrics import push_drift_metrics

pytestmark = pytest.mark.integration

PUSHGATEWAY_BIN = os.environ.get("DRIFTLOOP_PUSHGATEWAY_BIN", "/usr/bin/prometheus-pushgateway")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    # no proxy: the gateway is on loopback
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


@pytest.fixture
def pushgateway(tmp_path):
    binary = PUSHGATEWAY_BIN if os.path.isabs(PUSHGATEWAY_BIN) else shutil.which(PUSHGATEWAY_BIN)
    if not binary or not os.access(binary, os.X_OK):
        pytest.skip(
            f"Prometheus Pushgateway binary not found at {PUSHGATEWAY_BIN} "
            "(apt-get install prometheus-pushgateway)"
        )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "pushgateway.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [
                binary,
                f"--web.listen-address=127.0.0.1:{port}",
                # the Debian default persists under /var/lib; keep this one's state in tmp
                f"--persistence.file={tmp_path / 'pushgateway.data'}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail(f"pushgateway exited with {proc.returncode}: {log_path.read_text()}")
            try:
                if _get(f"{url}/-/ready", timeout=0.5)[0] == 200:
                    break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"pushgateway not ready after 20 s: {log_path.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    _, text = _get(f"{url}/metrics")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("driftloop_")
    }


def _labels(**extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"job": "drift_monitor", "instance": "", **extra}.items()))


def test_push_then_scrape(pushgateway):
    ok = push_drift_metrics(
        pushgateway,
        statistics=[
            {"feature": "brightness", "method": "psi", "value": 0.42},
            {"feature": "top_class", "method": "js", "value": 0.05},
            {"feature": "sharpness", "method": "ks", "value": float("nan")},
        ],
        severity="critical",
        duration_s=75.0,
        detected_totals={"warn": 4, "critical": 1},
        timestamp_s=1_750_000_000.0,
    )
    assert ok is True
    got = _scrape(pushgateway)
    score = "driftloop_drift_score"
    assert got[(score, _labels(feature="brightness", method="psi"))] == 0.42
    assert got[(score, _labels(feature="top_class", method="js"))] == 0.05
    assert not any(k[0] == score and ("feature", "sharpness") in k[1] for k in got)
    assert got[("driftloop_drift_severity", _labels())] == 2
    assert got[("driftloop_drift_check_timestamp_seconds", _labels())] == 1_750_000_000.0
    assert got[("driftloop_drift_detected_total", _labels(severity="warn"))] == 4
    assert got[("driftloop_drift_detected_total", _labels(severity="critical"))] == 1
    assert got[("driftloop_drift_check_duration_seconds", _labels())] == 75.0
    assert not any(k[0].startswith("driftloop_drift_check_duration_seconds_") for k in got)


def test_second_push_replaces_the_group(pushgateway):
    common = {"duration_s": 2.0, "grouping_key": {"env": "test"}}
    assert push_drift_metrics(
        pushgateway,
        statistics=[{"feature": "brightness", "method": "psi", "value": 0.4}],
        severity="warn",
        detected_totals={"warn": 1},
        **common,
    )
    assert push_drift_metrics(
        pushgateway,
        statistics=[{"feature": "contrast", "method": "psi", "value": 0.01}],
        severity="none",
        detected_totals={"warn": 1},
        **common,
    )
    got = _scrape(pushgateway)
    assert got[("driftloop_drift_severity", _labels(env="test"))] == 0
    assert got[("driftloop_drift_score", _labels(env="test", feature="contrast", method="psi"))]
    # the first push's series is gone: the group was replaced, not merged
    assert not any(("feature", "brightness") in k[1] for k in got)
    assert got[("driftloop_drift_detected_total", _labels(env="test", severity="warn"))] == 1


def test_http_error_returns_false(pushgateway, caplog):
    # a path prefix the gateway does not serve: 404
    url = f"{pushgateway}/no-such-prefix"
    ok = push_drift_metrics(url, statistics=[], severity="none", duration_s=1.0, detected_totals={})
    assert ok is False
    assert any(url in r.getMessage() and "404" in r.getMessage() for r in caplog.records)
