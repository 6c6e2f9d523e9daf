"""Prometheus metrics of a drift check, pushed to a Pushgateway.

One push per drift check, into a fresh ``CollectorRegistry`` (nothing is kept in process:
Airflow tasks are short-lived). The push is a PUT, so the group ``job`` (+ grouping key) on
the gateway is replaced by exactly this check's metrics:

``driftloop_drift_score{feature, method}``
    gauge, one sample per drift statistic (PSI, JS, Wasserstein, ... per feature);
    NaN/inf values are skipped.
``driftloop_drift_check_duration_seconds``
    gauge, this check's duration. Every push replaces the group, so each push carries
    exactly one value: a gauge, not a histogram of one observation. The distribution over
    checks is ``quantile_over_time(q, ...[7d])`` in Prometheus.
``driftloop_drift_detected_total{severity}``
    counter of drift detections by severity (``warn``, ``critical``). A Pushgateway keeps
    only the last push of a group, so an in-process ``inc()`` would restart from 0 on every
    run; the value pushed is instead the cumulative count the caller reads from the drift
    history DB (the source of truth), which makes ``increase()``/``rate()`` work in
    Prometheus.
``driftloop_drift_severity``
    gauge, 0 none, 1 warn, 2 critical.
``driftloop_drift_check_timestamp_seconds``
    gauge, Unix time of the check (alert on staleness: ``time() - ... > 2d``).

Pushing never fails a task: with no gateway configured it logs at INFO and returns False;
an unreachable gateway or an HTTP error is logged as a WARNING and returns False.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:  # pragma: no cover
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

DRIFT_SCORE = "driftloop_drift_score"
CHECK_DURATION = "driftloop_drift_check_duration_seconds"
DETECTED = "driftloop_drift_detected"  # exposed as driftloop_drift_detected_total
SEVERITY = "driftloop_drift_severity"
CHECK_TIMESTAMP = "driftloop_drift_check_timestamp_seconds"

SEVERITY_LEVELS: dict[str, int] = {"none": 0, "warn": 1, "critical": 2}
#: severities that count as a detection; always exported (0 when the caller has none)
DETECTION_SEVERITIES: tuple[str, ...] = ("warn", "critical")


class _DriftCheckCollector:
    """Yields the metric families of one drift check (no ``_created`` samples)."""

    def __init__(
        self,
        scores: dict[tuple[str, str], float],
        severity: str,
        duration_s: float,
        detected_totals: dict[str, int],
        timestamp_s: float,
    ) -> None:
        self.scores = scores
        self.severity = severity
        self.duration_s = duration_s
        self.detected_totals = detected_totals
        self.timestamp_s = timestamp_s

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        score = GaugeMetricFamily(
            DRIFT_SCORE,
            "Drift statistic of a feature between the reference and the current window.",
            labels=["feature", "method"],
        )
        for (feature, method), value in self.scores.items():
            score.add_metric([feature, method], value)
        yield score

        yield GaugeMetricFamily(
            CHECK_DURATION,
            "Duration of the last drift check in seconds.",
            value=self.duration_s,
        )

        detected = CounterMetricFamily(
            DETECTED,
            "Drift detections by severity, cumulative over all checks (from the drift history DB).",
            labels=["severity"],
        )
        for severity, count in sorted(self.detected_totals.items()):
            detected.add_metric([severity], count)
        yield detected

        yield GaugeMetricFamily(
            SEVERITY,
            "Severity of the last drift check: 0 none, 1 warn, 2 critical.",
            value=SEVERITY_LEVELS[self.severity],
        )
        yield GaugeMetricFamily(
            CHECK_TIMESTAMP,
            "Unix time of the last drift check.",
            value=self.timestamp_s,
        )


def build_registry(
    *,
    statistics: Iterable[Mapping],
    severity: str,
    duration_s: float,
    detected_totals: Mapping[str, int],
    timestamp_s: float | None = None,
) -> CollectorRegistry:
    """A fresh registry holding one drift check's metrics (pure: no network).

    ``statistics``: mappings with ``feature``, ``method`` and ``value``; non-finite values
    are skipped (debug log); a repeated (feature, method) keeps the last value.
    ``severity``: ``none`` | ``warn`` | ``critical``. ``detected_totals``: cumulative
    detections by severity (``warn`` and ``critical`` are exported as 0 when absent).
    Raises ``ValueError`` on an unknown severity, a negative count or a negative duration.
    """
    from prometheus_client import CollectorRegistry

    if severity not in SEVERITY_LEVELS:
        raise ValueError(f"severity must be one of {sorted(SEVERITY_LEVELS)}, got {severity!r}")
    duration = float(duration_s)
    if not math.isfinite(duration) or duration < 0:
        raise ValueError(f"duration_s must be a finite number >= 0, got {duration_s!r}")

    scores: dict[tuple[str, str], float] = {}
    for stat in statistics:
        feature, method = str(stat["feature"]), str(stat["method"])
        try:
            value = float(stat["value"])
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            log.debug(
                "skipping non-finite drift statistic %s/%s = %r", feature, method, stat["value"]
            )
            continue
        scores[(feature, method)] = value

    totals = {s: 0 for s in DETECTION_SEVERITIES}
    for sev, count in detected_totals.items():
        if int(count) < 0:
            raise ValueError(f"detected_totals[{sev!r}] must be >= 0, got {count!r}")
        totals[str(sev)] = int(count)

    registry = CollectorRegistry(auto_describe=True)
    registry.register(
        _DriftCheckCollector(
            scores=scores,
            severity=severity,
            duration_s=duration,
            detected_totals=totals,
            timestamp_s=time.time() if timestamp_s is None else float(timestamp_s),
        )
    )
    return registry


def _redact(url: str) -> str:
    """The URL without a password, for logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else host
    return urlunsplit(parts._replace(netloc=netloc))


def push_drift_metrics(
    gateway_url: str | None,
    *,
    statistics: Iterable[Mapping],
    severity: str,
    duration_s: float,
    detected_totals: Mapping[str, int],
    job: str = "drift_monitor",
    grouping_key: Mapping[str, str] | None = None,
    timeout_s: float = 5.0,
    timestamp_s: float | None = None,
) -> bool:
    """Push one drift check's metrics to the Pushgateway (PUT: replaces the group).

    Returns True when pushed. Returns False, without raising, when ``gateway_url`` is
    None/empty (INFO log: pushing disabled) or the push fails (WARNING log with the URL and
    the error: connection refused, timeout after ``timeout_s``, HTTP error). Invalid
    arguments (see ``build_registry``) raise ``ValueError``: they are bugs, not outages.
    """
    if not gateway_url:
        log.info("Pushgateway URL not configured: drift metrics pushing is disabled")
        return False

    registry = build_registry(
        statistics=statistics,
        severity=severity,
        duration_s=duration_s,
        detected_totals=detected_totals,
        timestamp_s=timestamp_s,
    )
    from prometheus_client import push_to_gateway

    try:
        push_to_gateway(
            gateway_url,
            job=job,
            registry=registry,
            grouping_key=dict(grouping_key) if grouping_key else None,
            timeout=timeout_s,
        )
    except Exception as exc:  # metrics must never fail the drift check
        log.warning(
            "could not push drift metrics to Pushgateway %s (job=%s): %s: %s",
            _redact(gateway_url),
            job,
            type(exc).__name__,
            exc,
        )
        return False
    log.info("pushed drift metrics to %s (job=%s)", _redact(gateway_url), job)
    return True
