"""Settings: every DRIFTLOOP_* variable the runtime reads, typed, with errors that name it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from driftloop.config.settings import (
    DEFAULT_PROMOTION_POLICY_PATH,
    Settings,
    SettingsError,
    env_var,
    redact,
)

REPO = Path(__file__).resolve().parents[3]


def test_defaults_and_overrides():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.training_backend == "local"
    assert settings.sensor_poke_s == 300
    assert settings.sensor_timeout_s == 6 * 3600
    assert Path(settings.promotion_policy_path) == DEFAULT_PROMOTION_POLICY_PATH
    assert DEFAULT_PROMOTION_POLICY_PATH.is_file()
    env = {
        "DRIFTLOOP_BUCKET": "data",
        "DRIFTLOOP_SENSOR_POKE_S": "30",
        "DRIFTLOOP_TRAINING_BACKEND": " Kubernetes ",
        "DRIFTLOOP_RETRAIN_CRON": "@monthly",
        "DRIFTLOOP_ROLLOUT_CRON": "*/30 * * * *",
        "DRIFTLOOP_LABELS_CRON": "@daily",
        "DRIFTLOOP_PUSHGATEWAY_URL": "",  # empty means unset
    }
    settings = Settings.from_env(env)
    assert (settings.bucket, settings.sensor_poke_s) == ("data", 30)
    assert settings.training_backend == "kubernetes"
    assert settings.retrain_cron == "@monthly"
    assert settings.rollout_cron == "*/30 * * * *"
    assert settings.labels_cron == "@daily"
    assert Settings().labels_cron == "0 * * * *"  # labels_landed looks every hour
    assert settings.pushgateway_url is None


def test_mlflow_uri_falls_back_to_mlflow_tracking_uri():
    assert Settings.from_env({"MLFLOW_TRACKING_URI": "http://m"}).mlflow_tracking_uri == "http://m"
    both = {"MLFLOW_TRACKING_URI": "http://m", "DRIFTLOOP_MLFLOW_TRACKING_URI": "http://d"}
    assert Settings.from_env(both).mlflow_tracking_uri == "http://d"


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("DRIFTLOOP_SENSOR_POKE_S", "five", "valid integer"),
        ("DRIFTLOOP_SENSOR_TIMEOUT_S", "0", "greater than 0"),
        ("DRIFTLOOP_RETRY_DELAY_S", "-1", "greater than or equal to 0"),
        ("DRIFTLOOP_TRAINING_BACKEND", "slurm", "'local' or 'kubernetes'"),
        ("DRIFTLOOP_DRIFT_CRON", "daily", "cron expression"),
        ("DRIFTLOOP_LABELS_CRON", "hourly", "cron expression"),
    ],
)
def test_a_bad_value_names_the_variable(variable, value, why):
    with pytest.raises(SettingsError, match=re.escape(f"{variable}='{value}'")) as err:
        Settings.from_env({variable: value})
    assert why in str(err.value)


def test_errors_and_output_never_show_a_password():
    url = "postgresql+psycopg2://driftloop:s3cret@db:5432/driftloop"
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"DRIFTLOOP_DATABASE_URL": url, "DRIFTLOOP_SENSOR_POKE_S": "x"})
    assert "s3cret" not in str(err.value)
    settings = Settings.from_env({"DRIFTLOOP_DATABASE_URL": url})
    assert settings.database_url == url  # the value itself is intact
    assert (
        settings.redacted()["database_url"]
        == "postgresql+psycopg2://driftloop:***@db:5432/driftloop"
    )
    assert redact("http://host:5000") == "http://host:5000"
    rows = {row["variable"]: row for row in settings.describe({"DRIFTLOOP_DATABASE_URL": url})}
    assert rows["DRIFTLOOP_DATABASE_URL"]["from_environment"] is True
    assert "s3cret" not in str(rows)
    assert rows["DRIFTLOOP_BUCKET"]["from_environment"] is False


def test_settings_are_immutable_and_reject_unknown_keywords():
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.bucket = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="bukket"):
        Settings(bukket="x")


def test_settings_know_every_driftloop_variable_the_runtime_reads():
    """Each ``DRIFTLOOP_*`` name in the runtime package, the plugins and the DAG files is a
    setting (the dev tooling's own, DRIFTLOOP_HOSTNAME / _PG_BINDIR, are not runtime)."""
    sources = [
        *(REPO / "include" / "driftloop").rglob("*.py"),
        *(REPO / "dags").glob("*.py"),
        *(REPO / "plugins").glob("*.py"),
    ]
    read = set()
    for path in sources:
        read |= set(re.findall(r"DRIFTLOOP_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    known = {env_var(name) for name in Settings.model_fields}
    assert read, "no DRIFTLOOP_ variables found: the scan is broken"
    assert read <= known, f"read but not in Settings: {sorted(read - known)}"


def test_import_stays_cheap_in_a_dag_file():
    """DAG files import the settings at parse time: no heavy library, no pydantic-settings
    (pydantic itself is already loaded by Airflow there). Prints the cost, asserts no time."""
    heavy = ["boto3", "mlflow", "pandas", "sqlalchemy", "pydantic_settings", "yaml"]
    code = (
        "import sys, time, airflow.sdk\n"
        f"before = {{m for m in {heavy!r} if m in sys.modules}}\n"
        "t = time.perf_counter()\n"
        "from driftloop.config.settings import Settings\n"
        "Settings.from_env()\n"
        "print(time.perf_counter() - t)\n"
        f"print(sorted({{m for m in {heavy!r} if m in sys.modules}} - before))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    seconds, loaded = done.stdout.strip().splitlines()[-2:]
    print(f"settings import + from_env after airflow.sdk: {float(seconds) * 1000:.1f} ms")
    assert loaded == "[]", f"importing the settings loaded {loaded}"
