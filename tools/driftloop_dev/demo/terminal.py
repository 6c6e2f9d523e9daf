"""What reaches the terminal during the demo: its own story, nothing else.

Library log lines (botocore, mlflow, alembic, Airflow …), warnings and the output of child
processes are written to file descriptors 1 and 2 by code the demo does not control, often
through handlers that were bound to ``sys.stderr`` long before the demo started. So
:func:`only_the_story` points descriptors 1 and 2 at the demo's log file for the whole run and
keeps a private duplicate of the terminal, which only :func:`say` writes to.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

_terminal: TextIO | None = None
_stdout: TextIO | None = None


def say(*parts: object, sep: str = " ", end: str = "\n") -> None:
    """One line of the demo's story, on the terminal (on stdout outside :func:`only_the_story`)."""
    stream = _terminal if _terminal is not None else sys.stdout
    print(*parts, sep=sep, end=end, file=stream, flush=True)


@contextlib.contextmanager
def _descriptors_to(path: Path) -> Iterator[None]:
    """File descriptors 1 and 2 (and so ``sys.stdout``/``sys.stderr``) appended to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(path, "ab") as log_file:
            os.dup2(log_file.fileno(), 1)
            os.dup2(log_file.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def emit_json(document: object) -> None:
    """The demo's result as one JSON document on the real stdout (``--json``)."""
    import json

    stream = _stdout if _stdout is not None else sys.stdout
    print(json.dumps(document, indent=2, sort_keys=True, default=str), file=stream, flush=True)


@contextlib.contextmanager
def only_the_story(log_path: Path, *, story_on_stderr: bool = False) -> Iterator[Path]:
    """Everything written to descriptors 1 and 2 goes to ``log_path``; :func:`say` to the
    terminal (its stderr with ``story_on_stderr``, so that stdout carries only
    :func:`emit_json`'s document). Yields ``log_path``."""
    global _terminal, _stdout
    opened = [
        os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")
        for fd in (2 if story_on_stderr else 1, 1)
    ]
    previous = _terminal, _stdout
    _terminal, _stdout = opened
    try:
        with _descriptors_to(log_path):
            yield log_path
    finally:
        _terminal, _stdout = previous
        for stream in opened:
            stream.close()


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send this process's output to ``path`` while ``dag.test()`` runs (Airflow's task loggers
    write to the descriptors), so the task logs of the in-process runs have a file of their own."""
    with _descriptors_to(path):
        yield
