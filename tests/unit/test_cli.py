"""The installed ``driftloop`` command, run as a user would: in a subprocess."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from driftloop import __version__
from driftloop.audit.ledger import Ledger

DRIFTLOOP = Path(sys.executable).parent / "driftloop"
pytestmark = pytest.mark.skipif(
    not DRIFTLOOP.exists(), reason=f"{DRIFTLOOP} is not installed: `make venv`"
)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(DRIFTLOOP), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def ledger_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'driftloop.db'}"
    ledger = Ledger(url)
    for number in range(3):
        ledger.append(
            kind="gate_decision",
            actor="test",
            subject=f"model:driftloop-detector/{number}",
            payload={"promote": number % 2 == 0},
            idempotency_key=f"test-{number}",
        )
    return url


def test_version_and_help():
    done = run("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"driftloop {__version__}"
    done = run("--help")
    assert done.returncode == 0
    # runtime subcommands, and the dev package's (installed in this venv through the
    # driftloop.commands entry points)
    for command in (
        "settings",
        "ledger",
        "drift",
        "serve-batch",
        "stack",
        "demo",
        "synth",
        "ui-check",
    ):
        assert command in done.stdout, command
    assert "skipping subcommand" not in done.stderr


def test_ledger_verify_json_on_a_real_ledger(ledger_url):
    done = run("ledger", "verify", "--json", "--database-url", ledger_url)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True
    assert result["rows"] == 3
    head = Ledger(ledger_url, create=False).head()
    assert result["head"] == head.row_hash
    # --json before the subcommand, and the URL from the settings' variable
    done = run("--json", "ledger", "verify", env={"DRIFTLOOP_DATABASE_URL": ledger_url})
    assert json.loads(done.stdout) == result


def test_ledger_verify_names_the_tampered_row(ledger_url):
    path = ledger_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:  # a writer of the file drops the append-only trigger
        conn.execute("DROP TRIGGER audit_ledger_no_update")
        conn.execute("UPDATE audit_ledger SET payload = '{\"promote\":true}' WHERE id = 2")
    done = run("ledger", "verify", "--json", "--database-url", ledger_url)
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["ok"] is False
    assert result["first_bad_id"] == 2
    text = run("ledger", "verify", "--database-url", ledger_url)
    assert text.returncode == 1
    assert "TAMPERED: row 2" in text.stdout


def test_ledger_show_json(ledger_url):
    done = run("ledger", "show", "--json", "--database-url", ledger_url, "--kind", "gate_decision")
    assert done.returncode == 0, done.stderr
    entries = json.loads(done.stdout)["entries"]
    assert [e["id"] for e in entries] == [1, 2, 3]
    assert entries[0]["subject"] == "model:driftloop-detector/0"
    text = run("ledger", "show", "--database-url", ledger_url, "--limit", "1")
    assert text.stdout.splitlines()[0].split()[:3] == ["id", "recorded_at", "kind"]
    assert len(text.stdout.splitlines()) == 2  # header + the newest row


def test_a_missing_ledger_is_an_error_and_no_file_is_created(tmp_path):
    missing = tmp_path / "nowhere.db"
    done = run("ledger", "verify", "--json", "--database-url", f"sqlite:///{missing}")
    assert done.returncode == 1
    assert json.loads(done.stdout)["ok"] is False
    assert "no audit ledger" in done.stderr
    assert not missing.exists()


def test_python_m_driftloop_ledger_still_works(ledger_url):
    done = subprocess.run(
        [sys.executable, "-m", "driftloop.ledger", "verify", "--database-url", ledger_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ledger OK: 3 rows")


def test_bad_subcommands_fail_clearly():
    done = run("ledgr")
    assert done.returncode == 2
    assert "invalid choice: 'ledgr'" in done.stderr
    done = run("ledger", "audit")
    assert done.returncode == 2
    assert "invalid choice: 'audit'" in done.stderr
    done = run()
    assert done.returncode == 2
    assert "required" in done.stderr


def test_settings_json_redacts_and_bad_values_fail():
    url = "postgresql+psycopg2://driftloop:s3cret@db/driftloop"
    done = run("settings", "--json", env={"DRIFTLOOP_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["DRIFTLOOP_DATABASE_URL"] == "postgresql+psycopg2://driftloop:***@db/driftloop"
    assert "s3cret" not in done.stdout
    assert shown["DRIFTLOOP_TRAINING_BACKEND"] in ("local", "kubernetes")
    done = run("settings", env={"DRIFTLOOP_SENSOR_POKE_S": "soon"})
    assert done.returncode == 2
    assert "DRIFTLOOP_SENSOR_POKE_S='soon'" in done.stderr


def test_the_runtime_package_alone_has_no_dev_commands():
    """What the production image's ``driftloop`` offers: built without the entry points."""
    from driftloop.cli import build_parser

    parser = build_parser(plugins=False)
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert set(commands) == {"settings", "ledger", "drift", "serve-batch", "labels"}
    with pytest.raises(SystemExit) as err:
        parser.parse_args(["stack", "up"])
    assert err.value.code == 2


def test_serve_batch_usage_errors():
    done = run("serve-batch", "--day", "yesterday")
    assert done.returncode == 2
    assert "not a YYYY-MM-DD date: 'yesterday'" in done.stderr
    done = run("serve-batch", "--day", "2031-01-01", "--threads", "0")
    assert done.returncode == 2
    assert "threads must be an integer >= 1" in done.stderr
    # no MLflow server configured: refused before any store is touched
    env = {"DRIFTLOOP_MLFLOW_TRACKING_URI": "", "MLFLOW_TRACKING_URI": ""}
    done = run("serve-batch", "--day", "2031-01-01", env=env)
    assert done.returncode == 2
    assert "no MLflow server" in done.stderr
