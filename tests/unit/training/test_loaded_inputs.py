"""What the trainer agrees to load (issue 9, item 4): base models, their weights' SHA-256,
hyper-parameters, and Ultralytics' safe checkpoint loading. Training-environment code tested
without torch where it needs none; the safe-loading check runs in the training virtualenv."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from driftloop.training.allowlists import (
    BASE_MODEL_YAMLS,
    SAFE_LOAD_ENV,
    TUNABLE_HYPERPARAMETERS,
    DisallowedInput,
    check_base_name,
    check_hyperparameters,
)
from driftloop.training.inputs import InputError, resolve_base
from driftloop.training.run import checked_hyperparameters
from driftloop.training.yolo_env import OFFLINE_ENV

REPO = Path(__file__).resolve().parents[3]
TRAIN_PYTHON = REPO / ".venv-train" / "bin" / "python"


@pytest.mark.parametrize(
    "base",
    [
        "runs:/0123/weights/best.pt",
        "s3://driftloop/evil/best.pt",
        "mlflow-artifacts:/1/abc/artifacts/weights/best.pt",
        "/tmp/best.pt",
        "best.pt",
        "../yolo11n.yaml",
        "/etc/yolo11n.yaml",
        "my-model.yaml",
    ],
)
def test_a_base_that_is_no_champion_nor_an_allowed_yaml_is_refused(base):
    with pytest.raises(DisallowedInput, match=r"Param base: .* is not allowed"):
        check_base_name(base, source="Param base:")


def test_the_champion_and_the_allowed_yamls_pass():
    assert check_base_name("champion") == "champion"
    for name in BASE_MODEL_YAMLS:
        assert check_base_name(name) == name
    assert "yolo11n.yaml" in BASE_MODEL_YAMLS  # what the DAG tests and the demo train from


@pytest.mark.parametrize(
    "key",
    ["epochs", "imgsz", "batch", "data", "model", "project", "name", "save_dir", "device",
     "exist_ok", "fraction", "time", "resume", "pretrained", "cache", "single_cls", "workers"],
)  # fmt: skip
def test_a_hyperparameter_that_overrides_a_param_or_the_data_is_refused_by_name(key):
    with pytest.raises(DisallowedInput, match=rf"hyperparameters key '{key}' may not be set"):
        check_hyperparameters({"lr0": 0.01, key: 1})


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"lr0": "0.01; rm -rf /"}, "lr0="),
        ({"lr0": float("nan")}, "finite number"),
        ({"optimizer": "Evil"}, "optimizer='Evil'"),
        ({"cos_lr": 1}, "true or false"),
        ({"freeze": [-1]}, "non-negative integer"),
    ],
)
def test_a_tunable_hyperparameter_with_a_bad_value_is_refused(values, fragment):
    with pytest.raises(DisallowedInput, match=fragment):
        check_hyperparameters(values)


def test_tunable_hyperparameters_pass_unchanged():
    values = {"lr0": 0.001, "optimizer": "AdamW", "mosaic": 0, "cos_lr": True, "freeze": [0, 1]}
    assert check_hyperparameters(values) == values
    assert set(values) <= set(TUNABLE_HYPERPARAMETERS)


def test_the_entrypoint_refuses_hyp_that_would_replace_the_data_or_the_epochs():
    with pytest.raises(InputError, match="--hyp key 'data'"):
        checked_hyperparameters([("lr0", "0.01"), ("data", "/tmp/other/data.yaml")])
    with pytest.raises(InputError, match="--hyp key 'epochs'"):
        checked_hyperparameters([("epochs", "900")])
    assert checked_hyperparameters([("lr0", "0.01"), ("cos_lr", "true")]) == {
        "lr0": 0.01,
        "cos_lr": True,
    }


def test_weights_are_loaded_only_with_their_recorded_sha256(tmp_path):
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"not really a checkpoint, only bytes to hash")
    good = hashlib.sha256(weights.read_bytes()).hexdigest()
    with pytest.raises(InputError, match="--base-sha256"):
        resolve_base(str(weights), tmp_path / "work")  # no hash: refused before any read
    with pytest.raises(InputError, match=rf"SHA-256 is {good}, not the recorded {'0' * 64}"):
        resolve_base(str(weights), tmp_path / "work", "0" * 64)
    with pytest.raises(InputError, match="SHA-256"):
        resolve_base(str(weights), tmp_path / "work", "not-a-hash")
    assert resolve_base(str(weights), tmp_path / "work", good) == (weights.resolve(), "weights")


def test_a_yaml_outside_the_allow_list_is_refused_before_ultralytics_reads_it(tmp_path):
    config = tmp_path / "yolo11n.yaml"
    config.write_text("nc: 2\nbackbone: []\nhead: []\n")
    with pytest.raises(InputError, match="unknown model yaml"):
        resolve_base(str(config), tmp_path / "work")
    with pytest.raises(InputError, match="unknown model yaml"):
        resolve_base("yolo99z.yaml", tmp_path / "work")


def test_every_ultralytics_process_of_ours_loads_checkpoints_safely():
    assert SAFE_LOAD_ENV == {"ULTRALYTICS_SAFE_LOAD": "1"}
    assert OFFLINE_ENV["ULTRALYTICS_SAFE_LOAD"] == "1"


@pytest.mark.skipif(not TRAIN_PYTHON.exists(), reason="no training virtualenv (make train-env)")
def test_a_checkpoint_that_runs_code_when_unpickled_is_refused(tmp_path):
    """A ``.pt`` whose pickle calls a function on load: with yolo_env.configure() (safe loading
    on) Ultralytics refuses it and the function never runs."""
    marker = tmp_path / "pwned"
    script = textwrap.dedent(
        f"""
        import pathlib, sys
        from driftloop.training import yolo_env
        yolo_env.configure({str(tmp_path / "cfg")!r})
        import torch
        from ultralytics import YOLO

        class Payload:
            def __reduce__(self):
                return (pathlib.Path.touch, (pathlib.Path({str(marker)!r}),))

        torch.save({{"model": Payload(), "train_args": {{}}}}, {str(tmp_path / "evil.pt")!r})
        try:
            YOLO({str(tmp_path / "evil.pt")!r})
        except Exception as err:
            print("refused:", type(err).__name__, err)
            sys.exit(0)
        sys.exit(3)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRALYTICS_")}
    done = subprocess.run(
        [str(TRAIN_PYTHON), "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "refused" in done.stdout
    assert not marker.exists(), "the checkpoint's code ran while it was loaded"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
