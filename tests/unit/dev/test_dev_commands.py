"""The dev package's subcommands of ``driftloop`` (entry points ``driftloop.commands``)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

DRIFTLOOP = Path(sys.executable).parent / "driftloop"


def test_the_dev_package_registers_its_commands():
    from driftloop.cli import COMMAND_GROUP

    names = {entry.name for entry in entry_points(group=COMMAND_GROUP)}
    assert names == {"stack", "demo", "synth", "ui-check"}
    for entry in entry_points(group=COMMAND_GROUP):
        assert callable(entry.load()), entry.name


def test_parser_tree_has_the_dev_options():
    from driftloop.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["stack", "up", "--ui", "--celery", "--root", "/tmp/s", "--json"])
    assert (args.action, args.ui, args.celery, args.json) == ("up", True, True, True)
    assert args.handler.__module__ == "driftloop_dev.stack.cli"
    args = parser.parse_args(["demo", "--epochs", "3", "--keep"])
    assert (args.epochs, args.keep, args.handler.__module__) == (3, True, "driftloop_dev.demo.cli")
    args = parser.parse_args(["synth", "--scenario", "abrupt", "--days", "3"])
    assert args.handler.__module__ == "driftloop_dev.synth.__main__"
    args = parser.parse_args(["ui-check", "--timeout", "5"])
    assert args.timeout == 5.0


@pytest.mark.skipif(not DRIFTLOOP.exists(), reason="driftloop is not installed: `make venv`")
def test_stack_status_without_a_stack(tmp_path):
    done = subprocess.run(
        [str(DRIFTLOOP), "stack", "status", "--root", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3
    assert f"no stack recorded in {tmp_path}" in done.stderr
    down = subprocess.run(
        [str(DRIFTLOOP), "stack", "down", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert down.returncode == 0


@pytest.mark.skipif(not DRIFTLOOP.exists(), reason="driftloop is not installed: `make venv`")
def test_synth_through_driftloop_writes_a_world(tmp_path):
    done = subprocess.run(
        [
            str(DRIFTLOOP),
            "synth",
            "--scenario",
            "stable",
            "--days",
            "2",
            "--rows-per-day",
            "20",
            "--labeled-per-day",
            "1",
            "--end-date",
            "2024-06-30",
            "--out-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    truth = json.loads(done.stdout)
    assert truth["scenario"] == "stable"
    assert truth["end_date"] == "2024-06-30"
    assert list(tmp_path.rglob("*.parquet"))
