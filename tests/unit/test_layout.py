"""The package layout's rules: what may import what, and modules a reader can take in at once."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "include" / "driftloop"
#: "no module over about 400 lines" (docs/architecture.md); the guard leaves some slack
MAX_MODULE_LINES = 450


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


RUNTIME_MODULES = sorted(RUNTIME.rglob("*.py"))


@pytest.mark.parametrize("path", RUNTIME_MODULES, ids=lambda p: str(p.relative_to(RUNTIME)))
def test_the_runtime_package_never_imports_the_dev_tooling(path):
    """Production images install ``include/driftloop`` only; ``tools/driftloop_dev`` is not there."""
    dev = sorted(m for m in _imported_modules(path) if m.split(".")[0] == "driftloop_dev")
    assert not dev, f"{path.relative_to(REPO)} imports {dev}"


@pytest.mark.parametrize(
    "path",
    [*RUNTIME_MODULES, *sorted((REPO / "dags").glob("*.py"))],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, (
        f"{path.relative_to(REPO)} has {lines} lines: split it by what its parts do"
    )


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "include/training/Dockerfile"])
def test_images_do_not_copy_the_dev_tooling(dockerfile):
    copies = [
        line
        for line in (REPO / dockerfile).read_text().splitlines()
        if line.strip().upper().startswith(("COPY", "ADD"))
    ]
    assert copies, f"{dockerfile} copies nothing?"
    assert not [line for line in copies if "tools" in line.split()[1:-1]], copies


def test_the_training_code_imports_no_airflow():
    """The training image has no Airflow: its entrypoint and what it imports must not need it."""
    probe = (
        "import sys\n"
        "import driftloop.training.train, driftloop.training.run, driftloop.training.inputs\n"
        "import driftloop.training.export, driftloop.training.tracking\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'airflow', 'driftloop_dev'})\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
