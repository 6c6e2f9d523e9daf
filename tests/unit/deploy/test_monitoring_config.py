"""include/monitoring: Prometheus, alert rules, Alertmanager and Grafana provisioning.

Parsed with yaml/json everywhere; checked with ``promtool`` (Debian package ``prometheus``) and
``amtool`` (``prometheus-alertmanager``) where installed, skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
MONITORING = REPO / "include" / "monitoring"
PROMETHEUS_YML = MONITORING / "prometheus.yml"
ALERTS_YML = MONITORING / "alerts.yml"
ALERTS_TEST_YML = MONITORING / "tests" / "alerts_test.yml"
ALERTMANAGER_YML = MONITORING / "alertmanager.yml"
ALERTMANAGER_ENTRYPOINT = MONITORING / "alertmanager-entrypoint.sh"
GRAFANA = MONITORING / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "driftloop-drift.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "driftloop.yml"
COMPOSE = REPO / "docker-compose.yaml"

# The metrics contract with driftloop's telemetry (all pushed with job="drift_monitor").
METRICS = {
    "driftloop_drift_score": "gauge",
    "driftloop_drift_check_duration_seconds": "gauge",
    "driftloop_drift_detected_total": "counter",
    "driftloop_drift_severity": "gauge",
    "driftloop_drift_check_timestamp_seconds": "gauge",
}
SERIES = set(METRICS) | {
    f"{name}{suffix}"
    for name, kind in METRICS.items()
    if kind == "histogram"
    for suffix in ("_bucket", "_sum", "_count")
}
SEVERITIES = {"page", "ticket"}

PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)"
)
needs_amtool = pytest.mark.skipif(
    AMTOOL is None, reason="amtool not installed (apt-get install prometheus-alertmanager)"
)


def load_yaml(path: Path):
    with path.open() as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def rules() -> list[dict]:
    groups = load_yaml(ALERTS_YML)["groups"]
    return [rule for group in groups for rule in group["rules"]]


@pytest.fixture(scope="module")
def alerts(rules) -> dict[str, dict]:
    return {rule["alert"]: rule for rule in rules if "alert" in rule}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def compose_services() -> dict:
    return load_yaml(COMPOSE)["services"]


def dashboard_exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def driftloop_series(text: str) -> set[str]:
    return set(re.findall(r"\bdriftloop_[a-z_]+\b", text))


def run(*args: str, cwd: Path | None = None, env: dict | None = None):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "path",
    [
        PROMETHEUS_YML,
        ALERTS_YML,
        ALERTS_TEST_YML,
        ALERTMANAGER_YML,
        DATASOURCES,
        DASHBOARD_PROVIDERS,
    ],
    ids=lambda p: str(p.relative_to(MONITORING)),
)
def test_yaml_parses(path):
    assert isinstance(load_yaml(path), dict)


def test_dashboard_json_parses(dashboard):
    assert dashboard["title"] == "driftloop drift"
    assert dashboard["uid"] == "driftloop-drift"


# -------------------------------------------------------------------------- prometheus
def test_prometheus_scrapes_the_pushgateway_with_honor_labels(compose_services):
    config = load_yaml(PROMETHEUS_YML)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    pushgateway = jobs["pushgateway"]
    assert pushgateway["honor_labels"] is True
    targets = [t for sc in pushgateway["static_configs"] for t in sc["targets"]]
    assert targets == ["pushgateway:9091"]
    assert "pushgateway" in compose_services


def test_prometheus_alerts_to_alertmanager_and_loads_the_rules(compose_services):
    config = load_yaml(PROMETHEUS_YML)
    targets = [
        t
        for am in config["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    assert targets == ["alertmanager:9093"]
    assert "alertmanager" in compose_services
    assert config["rule_files"] == ["alerts.yml"]
    assert (PROMETHEUS_YML.parent / "alerts.yml").is_file()
    # in the container both files sit in /etc/prometheus, so the relative path resolves
    mounts = dict(v.split(":")[:2] for v in compose_services["prometheus"]["volumes"])
    assert mounts["./include/monitoring/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["./include/monitoring/alerts.yml"] == "/etc/prometheus/alerts.yml"


@needs_promtool
def test_promtool_check_config():
    result = run(PROMTOOL, "check", "config", str(PROMETHEUS_YML))
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------------------------- rules
@needs_promtool
def test_promtool_check_rules():
    result = run(PROMTOOL, "check", "rules", str(ALERTS_YML))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_rule_unit_tests():
    """Each alert fires on the series it is about and not on the others (alerts_test.yml)."""
    result = run(PROMTOOL, "test", "rules", ALERTS_TEST_YML.name, cwd=ALERTS_TEST_YML.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_routable_severity_and_text(alerts):
    assert alerts
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name


def test_required_alerts(alerts):
    critical = alerts["DriftCritical"]
    assert re.fullmatch(r'driftloop_drift_severity\{job="drift_monitor"\} == 2', critical["expr"])
    assert critical["for"] == "0m"
    assert critical["labels"]["severity"] == "page"

    warning = alerts["DriftWarning"]
    assert re.fullmatch(r'driftloop_drift_severity\{job="drift_monitor"\} == 1', warning["expr"])
    assert warning["for"] == "1h"
    assert warning["labels"]["severity"] == "ticket"

    stale = alerts["DriftCheckStale"]
    assert "time() - driftloop_drift_check_timestamp_seconds" in stale["expr"]
    assert stale["expr"].endswith("> 36 * 3600")

    psi = alerts["DriftFeaturePSIHigh"]
    assert 'method="psi"' in psi["expr"]
    assert psi["expr"].endswith("> 0.25")
    assert psi["expr"].startswith("driftloop_drift_score{")


def test_rules_use_the_metric_contract(rules):
    for rule in rules:
        names = driftloop_series(rule["expr"])
        assert names <= SERIES, f"{rule.get('alert')}: unknown metrics {names - SERIES}"
        for name in names:
            # every driftloop selector is pinned to the pushing job
            for selector in re.findall(rf"{name}(\{{[^}}]*\}})?", rule["expr"]):
                assert 'job="drift_monitor"' in selector, f"{rule['alert']}: {name} without job"


def test_rule_unit_tests_cover_every_alert(alerts):
    tests = load_yaml(ALERTS_TEST_YML)
    assert tests["rule_files"] == ["../alerts.yml"]
    tested = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert set(alerts) <= tested, f"alerts never shown to fire: {set(alerts) - tested}"


# ------------------------------------------------------------------------- alertmanager
def test_alertmanager_routes_every_severity(alerts):
    config = load_yaml(ALERTMANAGER_YML)
    receivers = {r["name"]: r for r in config["receivers"]}
    route = config["route"]
    assert route["receiver"] in receivers
    routed = {}
    for child in route["routes"]:
        assert child["receiver"] in receivers
        for matcher in child["matchers"]:
            match = re.fullmatch(r'severity\s*=\s*"?(\w+)"?', matcher)
            if match:
                routed[match.group(1)] = child["receiver"]
    used = {rule["labels"]["severity"] for rule in alerts.values()}
    assert used <= set(routed), f"severities without a route: {used - set(routed)}"
    assert routed["page"] != routed["ticket"]
    # the fallback drops what no route matched
    assert not {k for k in receivers[route["receiver"]] if k.endswith("_configs")}


def slack_urls(config: dict) -> dict[str, list[str]]:
    """{receiver: [api_url of each of its slack_configs]}."""
    return {
        r["name"]: [hook["api_url"] for hook in r.get("slack_configs", [])]
        for r in config["receivers"]
    }


def test_alertmanager_webhook_is_a_clear_placeholder():
    config = load_yaml(ALERTMANAGER_YML)
    urls = [url for hooks in slack_urls(config).values() for url in hooks]
    assert urls
    placeholder = re.search(r'^PLACEHOLDER="([^"]+)"', ALERTMANAGER_ENTRYPOINT.read_text(), re.M)
    assert placeholder
    assert set(urls) == {placeholder.group(1)}
    assert ".invalid" in placeholder.group(1)  # RFC 2606: can never resolve
    assert "PLACEHOLDER" in ALERTMANAGER_YML.read_text()


def test_page_and_ticket_go_to_one_slack_compatible_webhook():
    """Both receivers post Slack's message format to the same URL (the one the Airflow
    notifications use); no plain webhook_configs (Alertmanager's own JSON) are left."""
    config = load_yaml(ALERTMANAGER_YML)
    receivers = {r["name"]: r for r in config["receivers"]}
    for name in ("page", "ticket"):
        receiver = receivers[name]
        assert set(receiver) == {"name", "slack_configs"}, name
        (slack,) = receiver["slack_configs"]
        assert slack["send_resolved"] is True
        assert "{{ .CommonLabels.alertname }}" in slack["title"]
        assert ".Annotations.summary" in slack["text"]
        assert ".Annotations.description" in slack["text"]
    assert slack_urls(config)["page"] == slack_urls(config)["ticket"]


def test_alertmanager_and_airflow_share_the_webhook_variable(compose_services):
    """One .env variable, ALERTS_WEBHOOK_URL, feeds Alertmanager and the Airflow connection
    ``driftloop_alerts`` (driftloop.airflow.notifiers)."""
    from driftloop.config.settings import Settings

    raw = COMPOSE.read_text()
    assert "ALERTMANAGER_WEBHOOK_URL: ${ALERTS_WEBHOOK_URL:-}" in raw
    conn_var = "AIRFLOW_CONN_" + Settings().alerts_conn_id.upper()
    line = next(line for line in raw.splitlines() if line.strip().startswith(conn_var + ":"))
    assert '"password": "${ALERTS_WEBHOOK_URL:-}"' in line
    assert '"conn_type": "slackwebhook"' in line


def test_alertmanager_service_renders_the_config(compose_services):
    service = compose_services["alertmanager"]
    assert service["entrypoint"][-1] == "/etc/alertmanager/alertmanager-entrypoint.sh"
    mounts = dict(v.split(":")[:2] for v in service["volumes"])
    assert mounts["./include/monitoring/alertmanager.yml"] == "/etc/alertmanager/alertmanager.yml"
    assert "ALERTMANAGER_WEBHOOK_URL" in service["environment"]


# the prom/alertmanager image has busybox only: run the entrypoint under it too when present
SHELLS = [("sh",)] + ([("busybox", "sh")] if shutil.which("busybox") else [])


def _render_alertmanager(tmp_path: Path, url: str | None, shell: tuple[str, ...] = ("sh",)):
    rendered = tmp_path / "alertmanager.rendered.yml"
    env = {
        "PATH": os.environ["PATH"],
        "ALERTMANAGER_TEMPLATE": str(ALERTMANAGER_YML),
        "ALERTMANAGER_RENDERED": str(rendered),
        "ALERTMANAGER_BIN": "echo",
    }
    if url is not None:
        env["ALERTMANAGER_WEBHOOK_URL"] = url
    result = run(*shell, str(ALERTMANAGER_ENTRYPOINT), "--storage.path=/alertmanager", env=env)
    return result, rendered


@pytest.mark.parametrize("shell", SHELLS, ids=" ".join)
def test_alertmanager_entrypoint_substitutes_the_webhook(tmp_path, shell):
    url = "https://hooks.example.com/services/T0/B0?token=a&b=c|d"
    result, rendered = _render_alertmanager(tmp_path, url, shell)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"--config.file={rendered}", "--storage.path=/alertmanager"]
    config = load_yaml(rendered)
    urls = {u for hooks in slack_urls(config).values() for u in hooks}
    assert urls == {url}


def test_alertmanager_entrypoint_keeps_the_placeholder_when_unset(tmp_path):
    result, rendered = _render_alertmanager(tmp_path, "")
    assert result.returncode == 0, result.stderr
    assert load_yaml(rendered) == load_yaml(ALERTMANAGER_YML)


@pytest.mark.parametrize("shell", SHELLS, ids=" ".join)
@pytest.mark.parametrize(
    "url", ["ftp://x/y", 'https://x/"y', "https://x/a\\b", "https://x/a b", "not a url"]
)
def test_alertmanager_entrypoint_rejects_bad_urls(tmp_path, url, shell):
    result, _ = _render_alertmanager(tmp_path, url, shell)
    assert result.returncode == 2


@needs_amtool
def test_amtool_check_config(tmp_path):
    result = run(AMTOOL, "check-config", str(ALERTMANAGER_YML))
    assert result.returncode == 0, result.stdout + result.stderr
    _, rendered = _render_alertmanager(tmp_path, "https://hooks.example.com/a?b=1&c=2")
    result = run(AMTOOL, "check-config", str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------ grafana
def test_grafana_datasource_points_at_prometheus(dashboard, compose_services):
    datasources = load_yaml(DATASOURCES)["datasources"]
    assert len(datasources) == 1
    source = datasources[0]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose_services
    uids = set()
    for panel in dashboard["panels"]:
        uids.add(panel["datasource"]["uid"])
        uids.update(t["datasource"]["uid"] for t in panel.get("targets", []))
    for variable in dashboard["templating"]["list"]:
        uids.add(variable["datasource"]["uid"])
    assert uids == {source["uid"]}


def test_grafana_dashboard_provider_matches_the_compose_mount(compose_services):
    provider = load_yaml(DASHBOARD_PROVIDERS)["providers"][0]
    mounts = dict(v.split(":")[:2] for v in compose_services["grafana"]["volumes"])
    assert mounts["./include/monitoring/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./include/monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_dashboard_panels(dashboard):
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    by_metric = {
        name: [p["title"] for p in panels if any(name in t["expr"] for t in p["targets"])]
        for name in SERIES
    }
    # drift score by feature/method over time
    score = [
        p
        for p in panels
        if p["type"] == "timeseries"
        and any(
            "driftloop_drift_score" in t["expr"]
            and "{{feature}}" in t["legendFormat"]
            and "{{method}}" in t["legendFormat"]
            for t in p["targets"]
        )
    ]
    assert score, "no time series of the drift score by feature and method"
    assert by_metric["driftloop_drift_severity"]
    assert by_metric["driftloop_drift_detected_total"]
    quantiles = {
        float(q)
        for expr in dashboard_exprs(dashboard)
        for q in re.findall(
            r"quantile_over_time\(([0-9.]+), driftloop_drift_check_duration_seconds\{", expr
        )
    }
    assert {0.5, 0.9, 0.99} <= quantiles


def test_dashboard_uses_the_metric_contract(dashboard):
    for expr in dashboard_exprs(dashboard):
        names = driftloop_series(expr)
        assert names, expr
        assert names <= SERIES, f"unknown metrics {names - SERIES} in {expr}"
        for selector in re.findall(r"driftloop_[a-z_]+(\{[^}]*\})?", expr):
            assert 'job="drift_monitor"' in selector, expr
    used = set().union(*(driftloop_series(e) for e in dashboard_exprs(dashboard)))
    assert {name for name in METRICS if not any(s.startswith(name) for s in used)} == set()


def test_dashboard_variables_are_defined(dashboard):
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    used = set()
    for expr in dashboard_exprs(dashboard):
        used.update(v for v in re.findall(r"\$(\w+)", expr) if not v.startswith("__"))
    assert used <= defined, f"undefined dashboard variables: {used - defined}"


@needs_promtool
def test_dashboard_queries_are_valid_promql(dashboard, tmp_path):
    """promtool parses each panel query as a recording rule (Grafana variables filled in)."""
    substitutions = {r"\$__rate_interval": "5m", r"\$__interval": "1m", r"\$__range": "1d"}
    rules = []
    for i, expr in enumerate(dashboard_exprs(dashboard)):
        for pattern, value in substitutions.items():
            expr = re.sub(pattern, value, expr)
        expr = re.sub(r"\$\w+", ".*", expr)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(PROMTOOL, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------- contract with telemetry
def test_telemetry_emits_the_metrics_the_rules_and_dashboard_use():
    """driftloop.drift.metrics's exposition has exactly the series and labels used here."""
    telemetry = pytest.importorskip("driftloop.drift.metrics")
    from prometheus_client import generate_latest

    registry = telemetry.build_registry(
        statistics=[{"feature": "brightness", "method": "psi", "value": 0.31}],
        severity="critical",
        duration_s=12.5,
        detected_totals={"warn": 2, "critical": 1},
        timestamp_s=1_780_000_000.0,
    )
    text = generate_latest(registry).decode()
    samples: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = re.match(r"^(\w+)(?:\{(.*)\})? ", line)
        assert match, line
        labels = {kv.split("=", 1)[0] for kv in (match.group(2) or "").split(",") if kv}
        samples.setdefault(match.group(1), set()).update(labels)
    histograms = {name for name, kind in METRICS.items() if kind == "histogram"}
    assert set(samples) == SERIES - histograms
    assert samples["driftloop_drift_score"] == {"feature", "method"}
    assert samples["driftloop_drift_detected_total"] == {"severity"}
    assert samples["driftloop_drift_check_duration_seconds"] == set()
    assert samples["driftloop_drift_severity"] == set()
    assert samples["driftloop_drift_check_timestamp_seconds"] == set()
    severity_value = re.search(r"^driftloop_drift_severity (\S+)$", text, re.M)
    assert float(severity_value.group(1)) == 2.0  # DriftCritical's "== 2"
