"""Ultralytics, offline and quiet: call :func:`configure` before ``import ultralytics``.

The training pod and the local backend have no internet. Ultralytics, left alone, would
try to download a font (``Arial.ttf``, for plot labels), model weights (any ``*.pt`` name,
and ``yolo26n.pt`` for the AMP check on GPU), pip-install missing packages, send usage
events, and start its own MLflow run. :func:`configure`:

- sets ``YOLO_OFFLINE=1`` (no connectivity checks or downloads), ``YOLO_AUTOINSTALL=0``
  (never pip-install at run time) and ``ULTRALYTICS_SAFE_LOAD=1``: every checkpoint is read
  with ``torch.load(weights_only=True)`` against Ultralytics' allow-list of model classes, so
  a ``.pt`` file cannot run code when it is unpickled (weights are also hash-checked before
  they get here, :func:`driftloop.training.inputs.resolve_base`);
- points ``YOLO_CONFIG_DIR`` at a private, writable folder (never the user's
  ``~/.config/Ultralytics``) holding ``Arial.ttf`` / ``Arial.Unicode.ttf`` — copies of
  matplotlib's bundled DejaVuSans — so the font check finds them locally;
- writes Ultralytics' settings there: ``sync=False`` (no events) and every experiment-tracker
  integration off, **including MLflow**.

Why Ultralytics' MLflow callback is off (we log to MLflow ourselves, in
:mod:`driftloop.training.train`): it turns itself on whenever ``mlflow`` imports, and then

- names the experiment after ``trainer.args.project`` (our output *path*) unless
  ``MLFLOW_EXPERIMENT_NAME`` is set, and the run after ``trainer.args.name``;
- calls ``mlflow.autolog()``, switching on autologging of every installed framework
  process-wide;
- swallows every MLflow error ("Not tracking this run"), so a run can end up silently
  incomplete, and skips logging altogether when ``PYTEST_CURRENT_TEST`` is in the
  environment (our integration test runs the entrypoint as a subprocess of pytest);
- logs at ``step=epoch`` counted from 0, with metric names that depend on its version,
  and ends the run in ``on_train_end`` — before we can log the dataset hash, the xcom
  payload or anything else.

Our own logging names the run and experiment as the DAG asks, logs every hyper-parameter, the
dataset SHA-256 and the base model, per-epoch metrics with ``step = epoch`` (1-based, as in
``results.csv``), the weights and ``results.csv``/``args.yaml``, and fails the task loudly when
MLflow does.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from driftloop.training.allowlists import SAFE_LOAD_ENV

#: environment every Ultralytics process of ours runs with
OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "0",
    **SAFE_LOAD_ENV,
}
#: Ultralytics settings keys of integrations, all switched off
INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")
FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")

log = logging.getLogger(__name__)


def default_config_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"driftloop-ultralytics-{os.getuid()}"


def bundled_font() -> Path | None:
    """matplotlib's DejaVuSans.ttf (shipped with the wheel), or None when absent."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    font = root / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    return font if font.exists() else None


def configure(
    config_dir: str | Path | None = None,
    *,
    runs_dir: str | Path | None = None,
    datasets_dir: str | Path | None = None,
) -> Path:
    """Make Ultralytics offline-safe; returns its config folder.

    ``config_dir``: default ``$YOLO_CONFIG_DIR`` when set, else a per-user folder in the temp
    directory. Must run before ``ultralytics`` is imported (it reads the environment at
    import); calling it again afterwards only re-applies the settings.
    """
    if config_dir is None:
        config_dir = os.environ.get("YOLO_CONFIG_DIR") or default_config_dir()
    config = Path(config_dir).resolve()
    config.mkdir(parents=True, exist_ok=True)
    already = "ultralytics" in sys.modules
    if already and os.environ.get("YOLO_CONFIG_DIR") not in (None, str(config)):
        raise RuntimeError(
            "ultralytics was imported before driftloop.training.yolo_env.configure(); "
            "its config folder can no longer change"
        )
    if already and not _safe_load_active():
        raise RuntimeError(
            "ultralytics was imported before driftloop.training.yolo_env.configure() without "
            "ULTRALYTICS_SAFE_LOAD=1: its checkpoints would be unpickled unrestricted"
        )
    os.environ.update(OFFLINE_ENV)
    os.environ["YOLO_CONFIG_DIR"] = str(config)
    # Ultralytics reads its fonts from $YOLO_CONFIG_DIR/Ultralytics (it appends the folder
    # itself); a font missing there is downloaded, which offline means a failed plot.
    font = bundled_font()
    fonts_dir = config / "Ultralytics"
    for name in FONT_NAMES:
        target = fonts_dir / name
        if font is None or target.exists():
            continue
        try:
            fonts_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(font, target)
        except OSError as err:  # a read-only image that did not bake the font in
            log.warning("cannot place %s for Ultralytics: %s", target, err)

    from ultralytics import settings

    updates: dict[str, object] = {"sync": False, **dict.fromkeys(INTEGRATIONS, False)}
    if runs_dir is not None:
        updates["runs_dir"] = str(Path(runs_dir).resolve())
    if datasets_dir is not None:
        updates["datasets_dir"] = str(Path(datasets_dir).resolve())
    updates["weights_dir"] = str(config / "weights")
    settings.update(updates)
    return config


def _safe_load_active() -> bool:
    """Whether the imported Ultralytics reads checkpoints with ``weights_only=True``."""
    tasks = sys.modules.get("ultralytics.nn.tasks")
    utils = sys.modules.get("ultralytics.utils")
    flags = [getattr(module, "SAFE_LOAD", None) for module in (tasks, utils) if module is not None]
    return bool(flags) and all(flag is True for flag in flags)


def check_offline_base(name: str) -> None:
    """Refuse model names Ultralytics would download (a bare ``*.pt`` that is not a file)."""
    path = Path(name)
    if path.suffix == ".pt" and not path.exists():
        raise FileNotFoundError(
            f"weights {name!r} not found locally; Ultralytics would try to download them, "
            "and this environment is offline (give a model .yaml or a path/URI of weights)"
        )
