"""Pushgateway metrics of a drift check (driftloop.drift.metrics), without a gateway."""

from __future__ import annotations

import logging
import math
import socket
import time

import pytest
from prometheus_client import generate_latest

from driftloop.drift import metrics as telemetry
from driftloop.drift.metrics import build_registry, push_drift_metrics

STATS = [
    {"feature": "brightness", "method": "psi", "value": 0.42},
    {"feature": "brightness", "method": "wasserstein", "value": 1.3},
    {"feature": "top_class", "method": "js", "value": 0.05},
    {"feature": "sharpness", "method": "ks", "value": float("nan")},
    {"feature": "contrast", "method": "psi", "value": float("inf")},
]


def samples(registry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }


def test_registry_holds_the_drift_check_metrics():
    reg = build_registry(
        statistics=STATS,
        severity="critical",
        duration_s=42.0,
        detected_totals={"warn": 5, "critical": 2},
        timestamp_s=1_750_000_000.0,
    )
    got = samples(reg)
    score = "driftloop_drift_score"
    assert got[(score, (("feature", "brightness"), ("method", "psi")))] == 0.42
    assert got[(score, (("feature", "brightness"), ("method", "wasserstein")))] == 1.3
    assert got[(score, (("feature", "top_class"), ("method", "js")))] == 0.05
    # non-finite statistics are not pushed
    assert not any(k[0] == score and ("feature", "sharpness") in k[1] for k in got)
    assert not any(k[0] == score and ("feature", "contrast") in k[1] for k in got)

    assert got[("driftloop_drift_detected_total", (("severity", "warn"),))] == 5
    assert got[("driftloop_drift_detected_total", (("severity", "critical"),))] == 2
    assert got[("driftloop_drift_severity", ())] == 2
    assert got[("driftloop_drift_check_timestamp_seconds", ())] == 1_750_000_000.0

    # one value per push: a gauge, no histogram series of a single observation
    assert got[("driftloop_drift_check_duration_seconds", ())] == 42.0
    assert not any(k[0].startswith("driftloop_drift_check_duration_seconds_") for k in got)


def test_exposition_text_has_types_and_no_created_samples():
    text = generate_latest(
        build_registry(statistics=STATS[:1], severity="none", duration_s=0.5, detected_totals={})
    ).decode()
    assert "# TYPE driftloop_drift_score gauge" in text
    assert "# TYPE driftloop_drift_check_duration_seconds gauge" in text
    assert "# TYPE driftloop_drift_detected_total counter" in text
    assert "# TYPE driftloop_drift_severity gauge" in text
    assert "driftloop_drift_severity 0.0" in text
    # a cumulative count from the DB: no per-process creation time to confuse Prometheus
    assert "_created" not in text
    # warn/critical exported as 0 when the caller has no detections yet
    assert 'driftloop_drift_detected_total{severity="warn"} 0.0' in text
    assert 'driftloop_drift_detected_total{severity="critical"} 0.0' in text
    assert "driftloop_drift_check_duration_seconds 0.5" in text


def test_default_timestamp_is_now():
    before = time.time()
    got = samples(build_registry(statistics=[], severity="warn", duration_s=1, detected_totals={}))
    ts = got[("driftloop_drift_check_timestamp_seconds", ())]
    assert before <= ts <= time.time()


def test_repeated_statistic_keeps_last_value():
    stats = [
        {"feature": "brightness", "method": "psi", "value": 0.1},
        {"feature": "brightness", "method": "psi", "value": 0.2},
    ]
    got = samples(
        build_registry(statistics=stats, severity="none", duration_s=1, detected_totals={})
    )
    assert got[("driftloop_drift_score", (("feature", "brightness"), ("method", "psi")))] == 0.2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"severity": "high"}, "severity must be one of"),
        ({"duration_s": -1.0}, "duration_s must be a finite number >= 0"),
        ({"duration_s": math.nan}, "duration_s must be a finite number >= 0"),
        ({"detected_totals": {"warn": -1}}, r"detected_totals\['warn'\] must be >= 0"),
    ],
)
def test_invalid_arguments_raise(kwargs, message):
    args = {"statistics": [], "severity": "none", "duration_s": 1.0, "detected_totals": {}}
    with pytest.raises(ValueError, match=message):
        build_registry(**(args | kwargs))


@pytest.mark.parametrize("url", [None, ""])
def test_no_gateway_configured_returns_false(url, caplog):
    caplog.set_level(logging.INFO, logger=telemetry.__name__)
    ok = push_drift_metrics(
        url, statistics=STATS, severity="none", duration_s=1.0, detected_totals={}
    )
    assert ok is False
    assert any(r.levelno == logging.INFO and "disabled" in r.getMessage() for r in caplog.records)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_gateway_returns_false_and_warns(caplog):
    url = f"http://127.0.0.1:{_free_port()}"
    start = time.monotonic()
    ok = push_drift_metrics(
        url,
        statistics=STATS,
        severity="warn",
        duration_s=3.0,
        detected_totals={"warn": 1},
        timeout_s=1.0,
    )
    assert ok is False
    assert time.monotonic() - start < 3.0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings
    assert url in warnings[0].getMessage()


def test_silent_gateway_times_out():
    """A gateway that accepts the connection but never answers: the timeout is honoured."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)  # the kernel completes the handshake; nobody ever reads
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        start = time.monotonic()
        ok = push_drift_metrics(
            url,
            statistics=STATS,
            severity="none",
            duration_s=1.0,
            detected_totals={},
            timeout_s=0.5,
        )
        elapsed = time.monotonic() - start
    assert ok is False
    assert elapsed < 3.0


def test_password_is_redacted_in_logs(caplog):
    url = f"http://user:s3cret@127.0.0.1:{_free_port()}"
    assert not push_drift_metrics(
        url, statistics=[], severity="none", duration_s=1.0, detected_totals={}, timeout_s=1.0
    )
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "s3cret" not in text
    assert "user:***@127.0.0.1" in text
