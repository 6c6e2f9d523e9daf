"""plugins/driftloop_links.py and driftloop.airflow.links.

In-process tests cover the URL helpers and ``get_link`` with the XCom read monkeypatched. The
subprocess tests run Airflow itself in a throw-away AIRFLOW_HOME (SQLite): the plugins manager
loads the plugin from plugins/, a DAG run pushes the XCom keys, and the API server's
``/links`` endpoint returns the URLs, exactly the path the UI takes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from driftloop.airflow import links
from driftloop.airflow.links import (
    DRIFT_REPORT_URL_KEY,
    MLFLOW_RUN_URL_KEY,
    REGISTERED_MODEL_URL_KEY,
    is_safe_link,
    mlflow_artifact_url,
    mlflow_run_url,
)

REPO = Path(__file__).resolve().parents[3]
PLUGINS = REPO / "plugins"
PLUGIN_FILE = PLUGINS / "driftloop_links.py"
LINK_NAMES = {"MLflow run", "Drift report", "Registered model"}
REPORT_URL = "http://mlflow:5000/#/experiments/3/runs/abc/artifactPath/evidently/evidently.html"


# ------------------------------------------------------------------------ driftloop.airflow.links
def test_xcom_keys():
    assert MLFLOW_RUN_URL_KEY == "mlflow_run_url"
    assert DRIFT_REPORT_URL_KEY == "drift_report_url"


@pytest.mark.parametrize(
    ("tracking_uri", "experiment", "run", "expected"),
    [
        ("http://mlflow:5000", "3", "abc123", "http://mlflow:5000/#/experiments/3/runs/abc123"),
        ("http://mlflow:5000/", 3, "abc123", "http://mlflow:5000/#/experiments/3/runs/abc123"),
        (
            "https://ml.example.com/mlflow/",
            "12",
            "f00d",
            "https://ml.example.com/mlflow/#/experiments/12/runs/f00d",
        ),
        ("  http://127.0.0.1:5000  ", "0", "r", "http://127.0.0.1:5000/#/experiments/0/runs/r"),
    ],
)
def test_mlflow_run_url(tracking_uri, experiment, run, expected):
    assert mlflow_run_url(tracking_uri, experiment, run) == expected


@pytest.mark.parametrize(
    "tracking_uri", ["sqlite:///mlflow.db", "file:///tmp/mlruns", "databricks", "", "http://"]
)
def test_mlflow_run_url_needs_a_web_server(tracking_uri):
    with pytest.raises(ValueError, match="MLflow tracking URI has no web UI"):
        mlflow_run_url(tracking_uri, "1", "abc")


def test_mlflow_run_url_needs_ids():
    with pytest.raises(ValueError, match="experiment_id and run_id must be non-empty"):
        mlflow_run_url("http://mlflow:5000", "", "abc")
    with pytest.raises(ValueError, match="experiment_id and run_id must be non-empty"):
        mlflow_run_url("http://mlflow:5000", "1", " ")


def test_mlflow_run_url_escapes_ids():
    url = mlflow_run_url("http://mlflow:5000", "1", "a/b?c#d")
    assert url == "http://mlflow:5000/#/experiments/1/runs/a%2Fb%3Fc%23d"


def test_mlflow_artifact_url_opens_the_artifact_in_the_run_page():
    url = mlflow_artifact_url("http://mlflow:5000/", "3", "abc", "evidently/evidently.html")
    assert (
        url == "http://mlflow:5000/#/experiments/3/runs/abc/artifactPath/evidently/evidently.html"
    )
    # each path segment escaped, the separators kept
    assert mlflow_artifact_url("http://m", 1, "r", "/a b/c#d.html").endswith(
        "/artifactPath/a%20b/c%23d.html"
    )
    with pytest.raises(ValueError, match="artifact_path must be non-empty"):
        mlflow_artifact_url("http://m", 1, "r", "/")
    with pytest.raises(ValueError, match="MLflow tracking URI has no web UI"):
        mlflow_artifact_url("s3://bucket", 1, "r", "report.html")


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(1)",
        "file:///etc/passwd",
        "reports/drift/x.html",
        # the UI shows only links a browser opens: an s3:// URI would be a dead button
        "s3://driftloop/reports/drift/r1/report.html",
        "https://",
        "",
    ],
)
def test_only_browser_links_are_safe(uri):
    assert not is_safe_link(uri)


def test_links_module_is_dependency_free():
    source = Path(links.__file__).read_text()
    imports = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imports <= {"__future__", "urllib"}


# ----------------------------------------------------------------- plugin, in-process
@pytest.fixture(scope="module")
def plugin():
    spec = importlib.util.spec_from_file_location("driftloop_links_under_test", PLUGIN_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ti_key(task_id="train", map_index=-1):
    return SimpleNamespace(
        dag_id="retrain_detector",
        task_id=task_id,
        run_id="manual__1",
        try_number=1,
        map_index=map_index,
    )


def test_plugin_declares_global_links(plugin):
    links_ = plugin.DriftloopLinksPlugin.global_operator_extra_links
    assert {link.name for link in links_} == LINK_NAMES
    assert {link.url_key for link in links_} == {
        MLFLOW_RUN_URL_KEY,
        DRIFT_REPORT_URL_KEY,
        REGISTERED_MODEL_URL_KEY,
    }
    from airflow.sdk import BaseOperatorLink

    assert all(isinstance(link, BaseOperatorLink) for link in links_)


@pytest.mark.parametrize(
    ("link_class", "key", "url"),
    [
        ("MlflowRunLink", MLFLOW_RUN_URL_KEY, "http://mlflow:5000/#/experiments/1/runs/abc"),
        ("DriftReportLink", DRIFT_REPORT_URL_KEY, REPORT_URL),
        (
            "RegisteredModelLink",
            REGISTERED_MODEL_URL_KEY,
            "http://mlflow:5000/#/models/driftloop-detector/versions/3",
        ),
    ],
)
def test_get_link_returns_the_xcom_url(plugin, monkeypatch, link_class, key, url):
    reads = []

    def fake_read(ti_key_, key_):
        reads.append((ti_key_, key_))
        return url

    monkeypatch.setattr(plugin, "read_xcom", fake_read)
    key_ = ti_key()
    assert getattr(plugin, link_class)().get_link(None, ti_key=key_) == url
    assert reads == [(key_, key)]


@pytest.mark.parametrize(
    "value", [None, "", 42, {"url": "http://x"}, "javascript:alert(1)", "file:///etc/passwd"]
)
def test_get_link_is_empty_without_a_safe_url(plugin, monkeypatch, value):
    monkeypatch.setattr(plugin, "read_xcom", lambda *_: value)
    assert plugin.MlflowRunLink().get_link(None, ti_key=ti_key()) == ""


def test_get_link_survives_a_failing_read(plugin, monkeypatch):
    def boom(*_):
        raise RuntimeError("metadata database unavailable")

    monkeypatch.setattr(plugin, "read_xcom", boom)
    assert plugin.DriftReportLink().get_link(None, ti_key=ti_key()) == ""


def test_read_xcom_uses_the_metadata_db_outside_a_task(plugin, monkeypatch):
    """The API server has no Task SDK supervisor: the value comes from the metadata DB."""
    calls = []
    monkeypatch.setattr(plugin, "_in_task_runner", lambda: False)
    monkeypatch.setattr(
        plugin, "_read_xcom_from_metadata_db", lambda k, key: calls.append(key) or "http://x"
    )
    assert plugin.read_xcom(ti_key(), MLFLOW_RUN_URL_KEY) == "http://x"
    assert calls == [MLFLOW_RUN_URL_KEY]


def test_read_xcom_uses_the_task_sdk_inside_a_task(plugin, monkeypatch):
    from airflow.sdk.execution_time.xcom import XCom

    seen = {}

    def get_value(*, ti_key, key):
        seen.update(ti_key=ti_key, key=key)
        return REPORT_URL

    monkeypatch.setattr(plugin, "_in_task_runner", lambda: True)
    monkeypatch.setattr(XCom, "get_value", staticmethod(get_value))
    key_ = ti_key()
    assert plugin.read_xcom(key_, DRIFT_REPORT_URL_KEY) == REPORT_URL
    assert seen == {"ti_key": key_, "key": DRIFT_REPORT_URL_KEY}


@pytest.mark.parametrize(
    ("stored", "decoded"),
    [
        ('"s3://driftloop/r.html"', "s3://driftloop/r.html"),  # JSON document, as the SDK stores it
        ("s3://driftloop/r.html", "s3://driftloop/r.html"),  # raw string
        ({"a": 1}, {"a": 1}),  # already decoded by the JSON column
        ('{"__classname__": "x.Y", "__data__": {}}', {"__classname__": "x.Y", "__data__": {}}),
    ],
)
def test_decode_is_plain_json(plugin, stored, decoded):
    assert plugin._decode(stored) == decoded


# ------------------------------------------------------------ plugin, through Airflow
def airflow_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(PLUGINS),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        PYTHONWARNINGS="ignore",
    )
    return env


def run_python(code: str, env: dict[str, str], cwd: Path, timeout: int = 300) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    marker = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert marker, result.stdout[-4000:] + result.stderr[-4000:]
    return json.loads(marker[-1].removeprefix("RESULT "))


def test_plugins_manager_loads_the_plugin(tmp_path):
    out = run_python(
        """
        import json, sys
        from airflow import plugins_manager

        plugins, errors = plugins_manager._get_plugins()
        info = {p["name"]: p for p in plugins_manager.get_plugin_info()}
        print("RESULT " + json.dumps({
            "plugins": [p.name for p in plugins],
            "errors": errors,
            "global_links": sorted(l.name for l in plugins_manager.get_global_operator_extra_links()),
            "source": str(info.get("driftloop_links", {}).get("source")),
            "heavy": sorted(m for m in ("mlflow", "pandas", "numpy", "evidently", "torch")
                            if m in sys.modules),
        }))
        """,
        airflow_env(tmp_path),
        cwd=tmp_path,
    )
    assert "driftloop_links" in out["plugins"]
    assert out["errors"] == {}
    assert set(out["global_links"]) >= LINK_NAMES
    assert out["source"].endswith("driftloop_links.py")
    assert out["heavy"] == [], "the plugin must stay import-light"


PROBE_DAG = """
import pendulum
from airflow.sdk import dag, task

from driftloop.airflow.links import DRIFT_REPORT_URL_KEY, MLFLOW_RUN_URL_KEY, mlflow_run_url
from driftloop.airflow.links import REGISTERED_MODEL_URL_KEY, mlflow_model_version_url


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def links_probe():
    @task
    def train(ti=None):
        ti.xcom_push(key=MLFLOW_RUN_URL_KEY, value=mlflow_run_url("http://mlflow:5000", "3", "abc"))
        ti.xcom_push(
            key=REGISTERED_MODEL_URL_KEY,
            value=mlflow_model_version_url("http://mlflow:5000", "driftloop-detector", 3),
        )

    @task
    def report(ti=None):
        ti.xcom_push(
            key=DRIFT_REPORT_URL_KEY,
            value="http://mlflow:5000/#/experiments/3/runs/abc/artifactPath/evidently/evidently.html",
        )
        ti.xcom_push(key=MLFLOW_RUN_URL_KEY, value="javascript:alert(1)")

    @task
    def stale(ti=None):
        ti.xcom_push(key=DRIFT_REPORT_URL_KEY, value="s3://driftloop/reports/drift/r1/report.html")

    @task
    def plain():
        return "nothing to link"

    train() >> report() >> stale() >> plain()


links_probe()
"""


@pytest.mark.timeout(600)
def test_links_resolve_through_the_api_server(tmp_path):
    """A real DAG run pushes the keys; GET .../links on the API server returns the URLs."""
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "links_probe.py").write_text(PROBE_DAG)
    out = run_python(
        """
        import json, runpy
        from airflow.utils.db import initdb

        initdb()
        dag = runpy.run_path("dags/links_probe.py")["links_probe"]()
        dag_run = dag.test()

        from fastapi.testclient import TestClient
        from airflow.api_fastapi.app import create_app

        client = TestClient(create_app("core"))
        links = {}
        for task_id in ("train", "report", "stale", "plain"):
            response = client.get(
                f"/api/v2/dags/links_probe/dagRuns/{dag_run.run_id}/taskInstances/{task_id}/links"
            )
            links[task_id] = [response.status_code, response.json()]
        print("RESULT " + json.dumps({"state": str(dag_run.state), "links": links}))
        """,
        airflow_env(tmp_path),
        cwd=tmp_path,
        timeout=540,
    )
    assert out["state"] == "success"
    expected = {
        "train": {
            "MLflow run": "http://mlflow:5000/#/experiments/3/runs/abc",
            "Drift report": None,
            "Registered model": "http://mlflow:5000/#/models/driftloop-detector/versions/3",
        },
        "report": {
            "MLflow run": None,
            "Drift report": REPORT_URL,
            "Registered model": None,
        },
        "stale": {"MLflow run": None, "Drift report": None, "Registered model": None},
        "plain": {"MLflow run": None, "Drift report": None, "Registered model": None},
    }
    for task_id, (status, body) in out["links"].items():
        assert status == 200, body
        got = {name: url for name, url in body["extra_links"].items() if name in LINK_NAMES}
        assert got == expected[task_id], task_id
