"""What a person sees of a training run without opening MLflow: the entrypoint's output lines
streamed into the task log as they come, one progress line per epoch, the code version, and
the "Registered model" link of the version."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import pytest

from driftloop.airflow.links import mlflow_model_version_url
from driftloop.retrain.local_training import stream_subprocess
from driftloop.training import tracking

# prints a line, then sleeps: a streamed line is logged before the process ends
SLOW_CHILD = """
import sys, time
print("epoch 1/2: box_loss 1.000 | mAP50 0.100 | 0.1 s", flush=True)
time.sleep(1.5)
print("epoch 2/2: box_loss 0.500 | mAP50 0.200 | 0.1 s", flush=True)
print("to stderr", file=sys.stderr, flush=True)
sys.exit(int(sys.argv[1]))
"""


class _Timed(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[tuple[float, str]] = []

    def emit(self, record):
        self.records.append((time.monotonic(), record.getMessage()))


@pytest.fixture
def captured():
    logger = logging.getLogger("test.training.stream")
    handler = _Timed()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, handler
    logger.removeHandler(handler)


def test_lines_reach_the_log_as_they_come(captured):
    logger, handler = captured
    began = time.monotonic()
    returncode, tail = stream_subprocess(
        [sys.executable, "-c", SLOW_CHILD, "0"], {"PYTHONUNBUFFERED": "1"}, logger
    )
    ended = time.monotonic()
    assert returncode == 0
    messages = [m for _, m in handler.records]
    assert messages == [
        "epoch 1/2: box_loss 1.000 | mAP50 0.100 | 0.1 s",
        "epoch 2/2: box_loss 0.500 | mAP50 0.200 | 0.1 s",
        "to stderr",
    ]
    first_logged = handler.records[0][0]
    assert first_logged - began < ended - began - 1.0  # logged before the child slept
    assert tail == messages


def test_a_failure_keeps_the_last_lines(captured):
    logger, _ = captured
    returncode, tail = stream_subprocess(
        [sys.executable, "-c", SLOW_CHILD, "3"], {}, logger, tail_lines=2
    )
    assert returncode == 3
    assert tail == ["epoch 2/2: box_loss 0.500 | mAP50 0.200 | 0.1 s", "to stderr"]


def test_the_progress_line_names_losses_and_map():
    line = tracking.progress_line(
        3,
        5,
        {
            "train/box_loss": 1.23456,
            "train/cls_loss": 2.5,
            "metrics/mAP50": 0.4123,
            "metrics/mAP50-95": 0.2,
            "lr/pg0": 0.001,
        },
        12.34,
    )
    assert line == (
        "epoch 3/5: box_loss 1.235 cls_loss 2.500 | mAP50 0.412 mAP50-95 0.200 | 12.3 s"
    )


def test_the_code_version_comes_from_the_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv(tracking.GIT_SHA_ENV, "f" * 40)
    commit, dirty = tracking.git_commit()  # this repository: the checkout wins
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert commit == head
    assert isinstance(dirty, bool)


def test_without_a_checkout_the_image_build_argument_is_the_code_version(tmp_path, monkeypatch):
    monkeypatch.setenv(tracking.GIT_SHA_ENV, "A" * 40)
    assert tracking.git_commit(tmp_path) == ("a" * 40, None)
    monkeypatch.delenv(tracking.GIT_SHA_ENV)
    assert tracking.git_commit(tmp_path) == (None, None)
    monkeypatch.setenv(tracking.GIT_SHA_ENV, "main")
    with pytest.raises(ValueError, match=r"\$DRIFTLOOP_GIT_SHA='main'"):
        tracking.git_commit(tmp_path)


def test_registered_model_link():
    assert (
        mlflow_model_version_url("http://mlflow:5000/", "driftloop-detector", 7)
        == "http://mlflow:5000/#/models/driftloop-detector/versions/7"
    )
    assert (
        mlflow_model_version_url("https://host/mlflow", "a b", "1")
        == "https://host/mlflow/#/models/a%20b/versions/1"
    )
    with pytest.raises(ValueError, match="no web UI"):
        mlflow_model_version_url("sqlite:///mlflow.db", "m", "1")
    with pytest.raises(ValueError, match="non-empty"):
        mlflow_model_version_url("http://mlflow:5000", "m", " ")
