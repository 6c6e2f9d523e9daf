"""The demo's terminal shows its story; library logs, warnings and child output go to its log."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_only_the_story_reaches_the_terminal(tmp_path):
    log_path = tmp_path / "logs" / "demo.log"
    code = textwrap.dedent(
        f"""
        import logging, subprocess, sys, warnings
        from pathlib import Path
        # a handler bound to stderr before the demo starts, as Airflow's and mlflow's are
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        from driftloop_dev.demo.terminal import emit_json, only_the_story, say

        with only_the_story(Path({str(log_path)!r})):
            say("story: writing the world")
            logging.getLogger("botocore.credentials").info("Found credentials in env")
            logging.getLogger("alembic.runtime.migration").info("Running upgrade")
            warnings.warn("a library warning")
            print("a stray print")
            subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('child\\\\n')"])
            say("story: done")
        say("after")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["story: writing the world", "story: done", "after"]
    assert done.stderr == ""
    logged = log_path.read_text()
    for line in (
        "Found credentials in env",
        "Running upgrade",
        "a library warning",
        "a stray print",
        "child",
    ):
        assert line in logged, line
    assert "story:" not in logged


def test_json_mode_keeps_stdout_for_the_document(tmp_path):
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from driftloop_dev.demo.terminal import emit_json, only_the_story, say

        with only_the_story(Path({str(tmp_path / "demo.log")!r}), story_on_stderr=True):
            say("story line")
            print("library noise")
            emit_json({{"ok": True}})
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == '{\n  "ok": true\n}'
    assert done.stderr.strip() == "story line"
