"""Makefile habits: `make help` names every target; `make lock-check` catches a stale lock."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
UV = Path(sys.executable).parent / "uv"


def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):(?!=)", text, re.M))


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_help_lists_every_target():
    targets = make_targets()
    assert {"help", "unit", "lint", "lock-check", "up", "demo"} <= targets
    done = subprocess.run(
        ["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    )
    listed = set(re.findall(r"^make ([a-z][a-z0-9-]*)", done.stdout, re.M))
    assert targets - listed == set(), f"not in `make help`: {sorted(targets - listed)}"


@pytest.mark.skipif(not UV.exists(), reason="uv is not in the venv: `make venv`")
def test_lock_check_passes_on_the_lock_and_fails_on_a_stale_one(tmp_path):
    """The repository's own requirements.in/.txt, copied; then one pin dropped from the lock."""
    shutil.copy(REPO / "requirements.in", tmp_path / "requirements.in")
    lock = (REPO / "requirements.txt").read_text()
    (tmp_path / "requirements.txt").write_text(lock)
    args = ["--python-version", "3.11", "--python-platform", "x86_64-unknown-linux-gnu"]
    check = [str(REPO / "tools" / "check-lock.sh"), str(UV), "requirements.in", "requirements.txt"]
    done = subprocess.run(
        [*check, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "matches" in done.stdout
    # drop the first pin (and its "# via" lines): what a hand edit or a forgotten `make lock` does
    lines = lock.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if re.match(r"[a-z0-9]", line))
    end = next(i for i in range(first + 1, len(lines)) if re.match(r"[a-z0-9]", lines[i]))
    (tmp_path / "requirements.txt").write_text("".join(lines[:first] + lines[end:]))
    done = subprocess.run(
        [*check, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 1
    assert "out of date" in done.stderr
    assert lines[first].strip() in done.stderr  # the diff shows the missing pin
