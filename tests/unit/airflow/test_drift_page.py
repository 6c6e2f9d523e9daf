"""The drift page (driftloop.airflow.drift_page + _html) and its plugin.

In process, with FastAPI's test client: no session → 401 (an HTML "sign in" page for the page,
JSON for the data); a user Airflow's auth manager (SimpleAuthManager) refuses → 403; a
signed-in user sees the events, their kinds and statuses, Retrain / Ignore on open events
only, and both charts (the drift scores of the top features, "no scores recorded" checks from
before scores were kept; "no labeled days yet" without performance rows). Airflow's own
dependencies decide (``requires_access_dag``); only the user lookup is overridden here and the
DAG's team lookup stubbed (no Airflow metadata database): the JWT path itself is exercised on
a real api-server in tests/integration/test_drift_page.py. The plugin is loaded by Airflow's
plugins manager in a subprocess, as the API server does.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from driftloop.airflow import drift_charts as charts
from driftloop.airflow import drift_page_html as html
from driftloop.airflow.drift_page import airflow_base, create_app
from driftloop.drift import history
from driftloop.performance.tables import performance_days
from tests.unit.airflow.test_plugin_links import PLUGINS, airflow_env, run_python


def _entry(effect, method, warn, critical, window="full", alert=True):
    return {"effect": effect, "method": method, "score": effect / warn, "window": window,
            "warn": warn, "critical": critical, "alert": alert}  # fmt: skip


@pytest.fixture
def engine(tmp_path):
    engine = history.engine_for(f"sqlite:///{tmp_path / 'driftloop.db'}")
    for day, severity in ((10, "critical"), (11, "warn"), (12, "critical")):
        scores = None
        if day == 12:  # the 10th and 11th were checked before scores were kept
            scores = {
                "brightness": _entry(0.3, "psi", 0.02, 0.25),
                "<script>x</script>": _entry(0.05, "psi", 0.02, 0.25),
            }
        history.record_check(
            engine,
            history.CheckRecord(
                run_id=f"scheduled__2026-11-{day}",
                window_start=date(2026, 11, day - 6),
                window_end=date(2026, 11, day),
                reference_kind="sliding",
                reference_id=f"ref-{day}",
                severity=severity,
                policy_version="2026.11.3",
                feature_levels={"brightness": severity, "contrast": "warn"},
                drifted_features=["brightness", "contrast"],
                mlflow_run_id=f"mlf{day}",
                feature_scores=scores,
            ),
        )
    ignored = history.open_event(engine, "scheduled__2026-11-10", "critical", ["brightness"])
    history.close_event(engine, ignored, "IGNORED", actor="alice", note="<b>lens</b> cleaned")
    opened = history.open_event(
        engine, "scheduled__2026-11-12", "critical", ["brightness", "contrast"]
    )
    with engine.begin() as conn:
        conn.execute(
            sa.update(history.drift_events)
            .where(history.drift_events.c.id == opened)
            .values(kind="performance")
        )
    return engine


@pytest.fixture
def client(engine, monkeypatch):
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.models.dag import DagModel
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
    create_auth_manager().init()
    # the DAG's team (multi-team deployments) comes from the metadata database: none here
    monkeypatch.setattr(DagModel, "get_team_name", staticmethod(lambda dag_id, session=None: None))
    return TestClient(create_app(lambda: engine))


def signed_in(client, role: str | None):
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user

    client.app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(
        username="alice", role=role
    )
    return client


def test_no_session_is_401(client):
    page = client.get("/drift")
    assert page.status_code == 401
    assert "sign in" in page.text
    assert 'href="/auth/login/"' in page.text
    data = client.get("/drift/data")
    assert data.status_code == 401
    assert data.json() == {"detail": "Not authenticated"}
    assert client.get("/drift/data", headers={"Authorization": "Bearer x.y.z"}).status_code in (
        401,
        403,
    )


def test_a_user_without_access_is_403(client):
    signed_in(client, None)
    assert client.get("/drift").status_code == 403
    assert client.get("/drift/data").status_code == 403


def test_page_lists_events_with_kinds_statuses_and_actions(client):
    signed_in(client, "viewer")
    page = client.get("/drift")
    assert page.status_code == 200, page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    text = page.text
    rows = re.findall(r'<tr data-event-id="(\d+)" data-status="(\w+)">', text)
    assert rows == [("2", "NEEDS_REVIEW"), ("1", "IGNORED")]
    assert "<td>performance</td>" in text
    assert "<td>input</td>" in text
    assert "2026-11-06 … 2026-11-12" in text
    # actions only on the open event
    assert text.count('data-action="retrain"') == 1
    assert 'data-event="2"' in text
    assert 'data-event="1"' not in text
    # database text is escaped
    assert "&lt;b&gt;lens&lt;/b&gt; cleaned" in text
    assert "<b>lens</b>" not in text
    # links into the Airflow UI: the check's run and the task with the Drift report button
    assert 'href="/dags/drift_monitor/runs/scheduled__2026-11-12"' in text
    assert "/tasks/log_to_mlflow" in text
    # the charts: drift scores per check, and no performance rows yet
    assert f'aria-label="{charts.SCORE_TITLE}"' in text
    assert 'data-series="brightness"' in text
    assert 'data-series="&lt;script&gt;x&lt;/script&gt;"' in text
    assert "<script>x</script>" not in text
    assert text.count(f'data-series="{charts.NO_SCORES}"') == 2  # the 10th and the 11th
    assert charts.NO_LABELED_DAYS in text
    # self-contained: nothing fetched from elsewhere
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "/api/v2/dags/" in text
    assert "credentials: 'same-origin'" in text


def test_filters_and_paging(client):
    signed_in(client, "viewer")
    text = client.get("/drift", params={"status": "IGNORED"}).text
    assert re.findall(r'data-status="(\w+)"', text) == ["IGNORED"]
    assert '<option value="IGNORED" selected>' in text
    text = client.get("/drift", params={"limit": 1}).text
    assert 'href="?offset=1&amp;limit=1">older</a>' in text
    bad = client.get("/drift/data", params={"kind": "concept"})
    assert bad.status_code == 400
    assert "kind" in bad.json()["detail"]


def test_data_json_shape(client, engine):
    with engine.begin() as conn:
        conn.execute(
            sa.insert(performance_days).values(
                day=date(2026, 11, 12),
                model_version="2",
                camera="*",
                source="measured",
                n_frames=30,
                map50=0.7,
                map50_95=0.45,
                map50_95_low=0.4,
                map50_95_high=0.5,
                baseline_map50_95=0.52,
                run_id="scheduled__2026-11-12",
                recorded_at=datetime(2026, 11, 12, tzinfo=UTC),
            )
        )
    signed_in(client, "viewer")
    body = client.get("/drift/data", params={"kind": "performance"}).json()
    assert set(body) == {"events", "scores", "performance"}
    assert body["events"]["total"] == 1
    event = body["events"]["events"][0]
    assert {"id", "status", "kind", "window", "top_features", "open", "mlflow_run_id"} <= set(event)
    assert [s["window"]["end"] for s in body["scores"]] == [
        "2026-11-10",
        "2026-11-11",
        "2026-11-12",
    ]
    assert [s["scores"] is None for s in body["scores"]] == [True, True, False]
    assert body["scores"][-1]["scores"]["brightness"]["score"] == pytest.approx(15.0)
    assert body["performance"]["measured"][0]["map50_95"] == 0.45
    assert body["performance"]["estimated"] == []
    page = client.get("/drift").text
    assert charts.NO_LABELED_DAYS not in page
    assert 'data-series="measured"' in page
    assert 'data-series="champion baseline"' in page


def test_airflow_base_under_a_path_prefix():
    assert airflow_base("/driftloop") == ""
    assert airflow_base("/airflow/driftloop") == "/airflow"
    assert html.airflow_url("/airflow", "dags", "drift_monitor", "runs", "manual__a+b") == (
        "/airflow/dags/drift_monitor/runs/manual__a%2Bb"
    )


def test_chart_of_a_single_day_and_of_nothing():
    one = charts.line_chart(
        "t", [{"name": "s", "color": "#000", "points": [("2026-11-01", 0.5, "tip")]}],
        y_label="y", empty="none yet",
    )  # fmt: skip
    assert "<circle" in one
    assert "none yet" not in one
    assert "none yet" in charts.line_chart("t", [], y_label="y", empty="none yet")


def _point(day, scores, n_critical=0, n_warn=0):
    return {"window": {"start": "2026-11-01", "end": day}, "scores": scores,
            "n_critical": n_critical, "n_warn": n_warn, "n_features": 7,
            "severity": "critical" if n_critical else "warn", "override": False}  # fmt: skip


def _titles(svg, series):
    pattern = rf'<circle data-series="{re.escape(series)}"[^>]*><title>([^<]*)</title>'
    return re.findall(pattern, svg)


def test_score_chart_top_features_references_and_unscored_checks():
    day2 = {f"f{i}": _entry(0.02 * i, "psi", 0.02, 0.25) for i in range(1, 8)}
    day3 = {**day2, "f1": _entry(0.5, "psi", 0.02, 0.25, window="last_1d")}
    points = [_point("2026-11-20", None, 1, 1), _point("2026-11-21", day2, 0, 3),
              _point("2026-11-22", day3, 2, 3)]  # fmt: skip
    # the highest scores of the period: f1 (25 on the 22nd), then f7 … f4
    assert charts.chart_features(points) == ["f1", "f7", "f6", "f5", "f4"]
    svg = charts.score_chart(points)
    assert re.findall(r'<polyline class="series" data-series="([^"]+)"', svg) == [
        "f1", "f7", "f6", "f5", "f4", charts.OTHERS
    ]  # fmt: skip
    f1 = _titles(svg, "f1")
    assert len(f1) == 2
    assert f1[1].startswith("2026-11-22 f1: score 25.00 (psi 0.5 on last_1d; warn 0.02")
    assert "check: 2 critical, 3 warn of 7 features (critical)" in f1[1]
    # the other features, highest first, in the tooltip of their grey line
    assert _titles(svg, charts.OTHERS)[0].startswith("2026-11-21 other features: f3 3.00, f2 2.00")
    # the check from before scores were kept: a marker, with its counts
    (unscored,) = _titles(svg, charts.NO_SCORES)
    assert unscored.startswith(f"2026-11-20: {charts.NO_SCORES}")
    assert "1 critical, 1 warn of 7 features" in unscored
    # reference lines: warn (1) and the critical/warn ratio all shown features share (12.5)
    assert re.findall(r'class="reference" data-value="([^"]+)"', svg) == ["1", "12.5"]
    # a log(1 + score) axis: warn (1) at a fifth of the height below a top of 25 × 1.1, not
    # squashed onto the axis (a linear one would put it at 1/27.5 of it)
    (warn_y,) = re.findall(r'data-value="1" x1="\S+" y1="([\d.]+)"', svg)
    height = charts._H - 2 * charts._PAD
    assert float(warn_y) == pytest.approx(
        charts._H - charts._PAD - math.log(2) / math.log(1 + 27.5) * height, abs=0.1
    )
    # a shown feature with another ratio: warn only
    day3["f4"] = _entry(0.1, "mmd", 0.01, 0.03)
    assert re.findall(r'class="reference" data-value="([^"]+)"', charts.score_chart(points)) == [
        "1"
    ]
    assert charts.NO_CHECKS in charts.score_chart([])


def _performance_row(day, source, value, baseline, version="1"):
    return {"day": day, "source": source, "model_version": version, "map50_95": value,
            "map50": None, "map50_95_low": None, "map50_95_high": None,
            "baseline_map50_95": baseline, "n_frames": 50}  # fmt: skip


def test_performance_chart_draws_the_baseline_on_days_with_only_an_estimate():
    series = {
        "measured": [_performance_row("2026-11-22", "measured", 0.41, 0.55)],
        "estimated": [_performance_row("2026-11-20", "estimated", 0.57, 0.56),
                      _performance_row("2026-11-22", "estimated", 0.5, 0.56)],
    }  # fmt: skip
    svg = charts.performance_chart(series)
    assert _titles(svg, "measured") == ["2026-11-22 v1 measured map50_95=0.410 (n=50)"]
    assert len(_titles(svg, "estimated")) == 2
    # the 20th has no labels but the champion's baseline is still drawn; on the 22nd the
    # measured row's baseline (the one the verdict compared against) wins
    assert _titles(svg, "champion baseline") == [
        "2026-11-20 v1 champion baseline=0.560",
        "2026-11-22 v1 champion baseline=0.550",
    ]
    assert 'data-series="estimated" points=' in svg
    assert re.search(r'data-series="champion baseline"[^>]*stroke-dasharray="2,3"', svg)


def test_plugins_manager_loads_the_drift_page_plugin(tmp_path):
    out = run_python(
        """
        import json, sys
        from airflow import plugins_manager

        plugins, errors = plugins_manager._get_plugins()
        apps, _ = plugins_manager.get_fastapi_plugins()
        views, _ = plugins_manager._get_ui_plugins()
        print("RESULT " + json.dumps({
            "plugins": [p.name for p in plugins],
            "errors": errors,
            "apps": [{k: v for k, v in a.items() if k != "app"} for a in apps],
            "views": views,
            "heavy": sorted(m for m in ("fastapi", "mlflow", "pandas", "numpy",
                                        "driftloop.airflow.drift_page") if m in sys.modules),
        }))
        """,
        airflow_env(tmp_path),
        cwd=tmp_path,
    )
    assert "driftloop_drift_page" in out["plugins"]
    assert out["errors"] == {}
    assert {"url_prefix": "/driftloop", "name": "driftloop drift page"} in out["apps"]
    view = next(v for v in out["views"] if v["name"] == "Drift")
    assert view["href"] == "driftloop/drift"
    assert view["destination"] == "nav"
    assert out["heavy"] == [], "loading the plugin must not build the app"
    assert (PLUGINS / "driftloop_drift_page.py").exists()
