"""The training entrypoint: one run of ``python -m driftloop.training.train``.

The same command runs in the GPU pod (KubernetesPodOperator, the training image's
ENTRYPOINT) and in the local backend (this repository's ``.venv-train``)::

    python -m driftloop.training.train \\
        --data s3://driftloop/datasets/<sha256>/ | /path/to/dataset \\
        --base yolo11n.yaml | champion.pt | s3://…/best.pt | mlflow-artifacts:/…/best.pt | runs:/<id>/weights/best.pt \\
        --epochs 50 --imgsz 160 --batch 16 --device cpu|0 \\
        --experiment retrain-detector --run-name retrain-2026-01-31 --tags airflow.run_id=… \\
        --out /workspace/train --xcom-path /airflow/xcom/return.json

Steps: resolve the dataset (S3 → :func:`driftloop.retrain.snapshot.download_dataset`; a local
folder as is; it must hold ``data.yaml`` with ``train``/``val``/``names``), resolve the base
model (a model ``.yaml`` trains from scratch; weights fine-tune the champion), train with
Ultralytics (seeded and deterministic, ``workers=0`` on CPU), log to MLflow (tracking URI from
``MLFLOW_TRACKING_URI``): parameters, per-epoch metrics (``step`` = epoch, 1-based), the
weights ``best.pt``/``last.pt``, ``results.csv`` and ``args.yaml``; then write the result as
JSON to ``--xcom-path`` (the pod's ``/airflow/xcom/return.json`` contract)::

    {"run_id": …, "mlflow_run_id": …, "experiment_id": …, "weights_uri": "<artifact URI of best.pt>",
     "model_uri": "runs:/<run id>/weights/best.pt", "last_weights_uri": …, "dataset_uri": …,
     "dataset_sha256": …, "base": …, "epochs": N, "metrics": {"mAP50": …, "mAP50-95": …, …},
     "train_seconds": …, "onnx": {"fp32_uri": …, "int8_uri": …, "fp32_sha256": …, …} | null}

Unless ``--no-export``, best.pt is also exported to ONNX FP32 and static INT8
(:mod:`driftloop.training.export`, calibrated on training-split images) and logged to the same
run as ``onnx/model_fp32.onnx``, ``onnx/model_int8.onnx`` and ``onnx/export.json``: the
Airflow side evaluates those (it has no torch to export with).

``--epochs 0`` trains nothing: the base model itself (random initial weights for a ``.yaml``,
the given weights for a ``.pt``) is saved as ``best.pt``/``last.pt``, validated and logged like
a trained one — a candidate that cannot beat its champion, for tests of the promotion gate.

Ultralytics runs offline (:mod:`driftloop.training.yolo_env`) with its own MLflow callback off:
this module does the logging, so runs are complete and named as the DAG asks.

Exit status: 0 trained and logged; 2 bad input (missing ``data.yaml``, unknown base model,
malformed flags, no tracking URI); 1 anything that failed on the way (the MLflow run, if one
was started, ends as FAILED).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("driftloop.training.train")

DEFAULT_BASE = "yolo11n.yaml"
DEFAULT_EXPERIMENT = "retrain-detector"
MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")
_SHA_IN_URI = re.compile(r"/datasets/([0-9a-f]{64})(?:/|$)")
#: Ultralytics' per-epoch metric names → ours (MLflow forbids parentheses)
_METRIC_NAMES = {
    "metrics/precision(B)": "metrics/precision",
    "metrics/recall(B)": "metrics/recall",
    "metrics/mAP50(B)": "metrics/mAP50",
    "metrics/mAP50-95(B)": "metrics/mAP50-95",
}
#: summary metrics of the final validation (best.pt) in the xcom payload
_SUMMARY = {
    "metrics/precision(B)": "precision",
    "metrics/recall(B)": "recall",
    "metrics/mAP50(B)": "mAP50",
    "metrics/mAP50-95(B)": "mAP50-95",
    "fitness": "fitness",
}


class InputError(ValueError):
    """Bad input: exit status 2 with the message, no traceback."""


# --------------------------------------------------------------------------- arguments


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), value


def _yaml_value(text: str) -> Any:
    """``--hyp`` values as YAML scalars: ``0.01`` → float, ``false`` → bool, ``AdamW`` → str."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m driftloop.training.train",
        description="Train (fine-tune) the YOLO detector, log it to MLflow, write the XCom JSON.",
    )
    parser.add_argument("--data", required=True, help="dataset folder or s3://…/datasets/{sha}/")
    parser.add_argument(
        "--base",
        default=DEFAULT_BASE,
        help="model .yaml (train from scratch) or weights .pt: local path, s3://, runs:/, "
        f"models:/ or mlflow-artifacts:/ URI (fine-tune). Default {DEFAULT_BASE}",
    )
    parser.add_argument("--epochs", type=int, default=50, help="0: no training (see module doc)")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu, or a CUDA device: 0, 0,1 …")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="default: 0 on CPU, else 4")
    parser.add_argument("--patience", type=int, default=100, help="early-stopping epochs")
    parser.add_argument(
        "--hyp",
        type=_key_value,
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="further Ultralytics train arguments, e.g. lr0=0.005 optimizer=AdamW",
    )
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT)
    parser.add_argument("--run-name", default=None)
    parser.add_argument(
        "--tags", type=_key_value, nargs="+", action="extend", default=[], metavar="KEY=VALUE"
    )
    parser.add_argument("--out", default=None, help="working folder (default: a temp folder)")
    parser.add_argument("--xcom-path", default=None, help="where to write the result JSON")
    parser.add_argument(
        "--no-export",
        dest="export",
        action="store_false",
        help="skip the ONNX FP32 + INT8 export of best.pt (logged as onnx/model_{fp32,int8}.onnx)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Ultralytics' own output")
    return parser


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class Dataset:
    root: Path
    data_yaml: Path  # resolved copy with an absolute ``path``
    uri: str
    sha256: str
    nc: int
    names: dict[int, str]
    train_dirs: tuple[Path, ...] = ()


def _download_prefix(uri: str, dest: Path) -> Path:
    """Fallback S3 download of every object under ``uri`` into ``dest``."""
    from driftloop.contracts import storage

    s3 = storage.s3_client()
    bucket, prefix = storage.split_s3_uri(uri)
    prefix = prefix if prefix.endswith("/") or not prefix else prefix + "/"
    objects = storage.list_keys(s3, bucket, prefix)
    if not objects:
        raise InputError(f"--data {uri}: no objects under that prefix")
    for obj in objects:
        key = obj["Key"]
        target = dest / key[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
    return dest


def fetch_dataset(uri: str, work: Path) -> Path:
    """A local folder holding the dataset named by ``uri`` (downloaded when it is on S3)."""
    if uri.startswith("s3://"):
        dest = work / "dataset"
        dest.mkdir(parents=True, exist_ok=True)
        try:
            from driftloop.retrain import snapshot as dataset_module
        except ImportError:
            dataset_module = None
        download = getattr(dataset_module, "download_dataset", None)
        if download is None:
            return _download_prefix(uri, dest)
        from driftloop.contracts import storage

        try:
            result = download(storage.s3_client(), uri, dest)
        except ValueError as err:  # not a snapshot URI, incomplete or corrupt snapshot
            raise InputError(f"--data {uri}: {err}") from err
        return Path(result) if isinstance(result, str | os.PathLike) else dest
    if "://" in uri:
        raise InputError(f"--data {uri}: only local folders and s3:// URIs are supported")
    root = Path(uri)
    if not root.is_dir():
        raise InputError(f"--data {uri}: no such folder")
    return root


def dataset_sha256(root: Path, uri: str) -> str:
    """The snapshot's SHA-256: from its ``datasets/{sha}/`` URI, else its manifest, else the
    snapshot hash rule of :mod:`driftloop.retrain.snapshot` applied to the folder: sha256 of
    the sorted ``"<sha256 of file>  <relative path>\\n"`` lines of every file except
    ``manifest.json``, ``requests/`` and Ultralytics' ``*.cache`` files."""
    if match := _SHA_IN_URI.search(uri.rstrip("/") + "/"):
        return match.group(1)
    manifest = root / "manifest.json"
    if manifest.is_file():
        try:
            raw = json.loads(manifest.read_text())
        except ValueError:
            raw = {}
        for key in ("sha256", "dataset_sha256", "content_sha256"):
            value = raw.get(key) if isinstance(raw, dict) else None
            if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):
                return value
    files = {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file() and path.suffix != ".cache"
    }
    digest = hashlib.sha256()
    for rel in sorted(files):
        if rel != "manifest.json" and not rel.startswith("requests/"):
            digest.update(f"{files[rel]}  {rel}\n".encode())
    return digest.hexdigest()


def prepare_dataset(uri: str, work: Path) -> Dataset:
    """Fetch the dataset, check its ``data.yaml`` and write a copy with an absolute ``path``
    (Ultralytics resolves a relative one against its own datasets folder)."""
    import yaml

    root = fetch_dataset(uri, work).resolve()
    source = root / "data.yaml"
    if not source.is_file():
        raise InputError(f"--data {uri}: no data.yaml in {root}")
    try:
        config = yaml.safe_load(source.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(f"--data {uri}: data.yaml is not valid YAML: {err}") from err
    if not isinstance(config, dict):
        raise InputError(f"--data {uri}: data.yaml must be a mapping")
    missing = [key for key in ("train", "val", "names") if not config.get(key)]
    if missing:
        raise InputError(f"--data {uri}: data.yaml lacks {', '.join(missing)}")
    base = Path(config.get("path") or ".")
    base = base if base.is_absolute() else (root / base).resolve()
    for key in ("train", "val"):
        for entry in config[key] if isinstance(config[key], list) else [config[key]]:
            if not (base / entry).exists():
                raise InputError(f"--data {uri}: data.yaml {key}: {base / entry} does not exist")
    train = config["train"] if isinstance(config["train"], list) else [config["train"]]
    names = config["names"]
    names = dict(enumerate(names)) if isinstance(names, list) else dict(names)
    names = {int(k): str(v) for k, v in names.items()}
    config["path"] = str(base)
    config["names"] = names
    config["nc"] = len(names)
    resolved = work / "data.yaml"
    resolved.write_text(yaml.safe_dump(config, sort_keys=False))
    return Dataset(
        root,
        resolved,
        uri,
        dataset_sha256(root, uri),
        len(names),
        names,
        tuple(base / entry for entry in train),
    )


# --------------------------------------------------------------------------- base model


def resolve_base(base: str, work: Path) -> tuple[Path | str, str]:
    """``(what Ultralytics loads, kind)``; kind is ``"yaml"`` (from scratch) or ``"weights"``."""
    lowered = base.lower()
    if lowered.endswith((".yaml", ".yml")):
        if "://" in base:
            raise InputError(f"--base {base}: give a model .yaml by name or local path")
        from ultralytics.nn.tasks import yaml_model_load

        try:  # resolves Ultralytics' scaled names too: yolo11n.yaml -> yolo11.yaml, scale n
            config = yaml_model_load(base)
        except Exception as err:  # FileNotFoundError, or whatever the check raises offline
            raise InputError(
                f"--base {base}: unknown model yaml (not a file, not an Ultralytics model "
                f"config such as yolo11n.yaml / yolov8n.yaml): {err}"
            ) from err
        if not config.get("head"):
            raise InputError(f"--base {base}: not a model config (no 'head' section)")
        return base, "yaml"
    if not lowered.endswith(".pt"):
        raise InputError(
            f"--base {base}: unknown base model; expected a model .yaml or weights .pt "
            "(path, s3://, runs:/, models:/ or mlflow-artifacts:/ URI)"
        )
    dest = work / "base"
    dest.mkdir(parents=True, exist_ok=True)
    if base.startswith("s3://"):
        from botocore.exceptions import ClientError

        from driftloop.contracts import storage

        bucket, key = storage.split_s3_uri(base)
        target = dest / Path(key).name
        try:
            storage.s3_client().download_file(bucket, key, str(target))
        except ClientError as err:
            raise InputError(f"--base {base}: cannot download: {err}") from err
        return target, "weights"
    if base.startswith(MLFLOW_SCHEMES):
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=base, dst_path=str(dest)))
        except (MlflowException, OSError) as err:
            raise InputError(f"--base {base}: cannot download from MLflow: {err}") from err
        if local.is_dir():
            found = sorted(local.rglob("best.pt")) or sorted(local.rglob("*.pt"))
            if not found:
                raise InputError(f"--base {base}: no .pt weights in the downloaded artifacts")
            local = found[0]
        return local, "weights"
    if "://" in base:
        raise InputError(f"--base {base}: unsupported URI scheme (offline: no http downloads)")
    path = Path(base)
    if not path.is_file():
        raise InputError(f"--base {base}: weights file not found (nothing is downloaded)")
    return path.resolve(), "weights"


# --------------------------------------------------------------------------- MLflow


def _clean_metrics(raw: Mapping[str, Any], names: Mapping[str, str] | None = None) -> dict:
    out = {}
    for key, value in raw.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if number != number or number in (float("inf"), float("-inf")):
            continue
        name = (names or {}).get(key, key)
        out[re.sub(r"[^0-9A-Za-z_\-. /]", "", name)] = number
    return out


def _param_value(value: Any) -> str:
    text = str(value) if not isinstance(value, str) else value
    return text if len(text) <= 500 else text[:497] + "..."


def log_params(params: Mapping[str, Any], already: set[str]) -> None:
    """Log params not logged yet (MLflow params are write-once), in batches of 100."""
    import mlflow

    fresh = {k: _param_value(v) for k, v in params.items() if k not in already}
    items = list(fresh.items())
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start : start + 100]))
    already.update(fresh)


def epoch_callback(logged_params: set[str]):
    """Ultralytics ``on_fit_epoch_end``: the epoch's losses, validation metrics and learning
    rates to the active MLflow run, ``step`` = epoch number (1-based, as in results.csv).

    Ultralytics fires ``on_fit_epoch_end`` once more after the last epoch, for the final
    validation of best.pt (at ``epoch + 1``); that call is skipped here — those numbers are
    logged as ``best/*`` from the training result instead, so the per-epoch series has
    exactly one point per epoch trained."""
    import mlflow

    state = {"stopped": False}

    def on_fit_epoch_end(trainer) -> None:
        if state["stopped"]:  # the final validation, not an epoch
            return
        state["stopped"] = bool(trainer.stop)
        metrics = {
            **_clean_metrics(trainer.label_loss_items(trainer.tloss, prefix="train")),
            **_clean_metrics(trainer.metrics, _METRIC_NAMES),
            **_clean_metrics(trainer.lr),
        }
        mlflow.log_metrics(metrics, step=int(trainer.epoch) + 1)

    def on_train_start(trainer) -> None:
        # every resolved Ultralytics argument, except run-local paths
        skip = {"save_dir", "project", "name", "data", "model", "exist_ok", "mode"}
        log_params({k: v for k, v in vars(trainer.args).items() if k not in skip}, logged_params)

    return {"on_fit_epoch_end": on_fit_epoch_end, "on_train_start": on_train_start}


# --------------------------------------------------------------------------- training


def _initial_weights(source: Path | str, kind: str, dataset: Dataset, target: Path, seed: int):
    """``--epochs 0``: the base model as it is, saved in Ultralytics' checkpoint format."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if kind == "weights":
        shutil.copyfile(source, target)
        return
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import init_seeds

    init_seeds(seed, deterministic=True)
    model = YOLO(str(source))
    net = DetectionModel(dict(model.model.yaml), nc=dataset.nc, verbose=False)
    net.names = dict(dataset.names)
    model.model = net
    model.save(str(target))


def train(
    args: argparse.Namespace,
    out: Path,
    dataset: Dataset,
    base: Path | str,
    kind: str,
    logged_params: set[str],
):
    """Run the training (or the no-op of ``--epochs 0``); returns (weights dir, summary metrics,
    seconds, run dir)."""
    from ultralytics import YOLO

    run_dir = out / "train"
    weights_dir = run_dir / "weights"
    workers = args.workers if args.workers is not None else (0 if args.device == "cpu" else 4)
    began = time.perf_counter()
    summary: dict[str, float] = {}
    if args.epochs == 0:
        best = weights_dir / "best.pt"
        _initial_weights(base, kind, dataset, best, args.seed)
        shutil.copyfile(best, weights_dir / "last.pt")
        import yaml

        recorded = {
            **{k: v for k, v in vars(args).items() if k not in ("hyp", "tags")},
            **{key: _yaml_value(value) for key, value in args.hyp},
            "tags": dict(args.tags),
            "data": str(dataset.data_yaml),
        }
        (run_dir / "args.yaml").write_text(yaml.safe_dump(recorded, sort_keys=False))
        try:  # metrics of the untrained model, for the record
            metrics = YOLO(str(best)).val(
                data=str(dataset.data_yaml),
                imgsz=args.imgsz,
                batch=args.batch,
                device=args.device,
                workers=workers,
                plots=False,
                verbose=args.verbose,
                project=str(out),
                name="val",
                exist_ok=True,
            )
            summary = _clean_metrics(metrics.results_dict, _SUMMARY)
        except Exception as err:  # an untrained model may fail validation; that is fine
            log.warning("validation of the untrained model failed: %s", err)
        return weights_dir, summary, time.perf_counter() - began, run_dir

    model = YOLO(str(base))
    for event, fn in epoch_callback(logged_params).items():
        model.add_callback(event, fn)
    hyp = {key: _yaml_value(value) for key, value in args.hyp}
    train_args = {
        "data": str(dataset.data_yaml),
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "device": args.device,
        "workers": workers,
        "seed": args.seed,
        "deterministic": True,
        "patience": args.patience,
        "plots": False,
        "project": str(out),
        "name": "train",
        "exist_ok": True,
        "verbose": args.verbose,
        **hyp,
    }
    results = model.train(**train_args)
    trainer = model.trainer
    if results is not None and hasattr(results, "results_dict"):
        summary = _clean_metrics(results.results_dict, _SUMMARY)
    weights_dir = Path(trainer.best).parent
    if not (weights_dir / "best.pt").is_file() and (weights_dir / "last.pt").is_file():
        shutil.copyfile(weights_dir / "last.pt", weights_dir / "best.pt")
    return weights_dir, summary, time.perf_counter() - began, Path(trainer.save_dir)


def export_models(weights: Path, dataset: Dataset, imgsz: int, out: Path) -> dict[str, Any]:
    """best.pt → ``model_fp32.onnx`` + ``model_int8.onnx`` (calibrated on training images) in
    ``out``; returns their sha256 and what was quantized (see :mod:`driftloop.training.export`)."""
    from driftloop.training import export

    began = time.perf_counter()
    fp32 = export.export_onnx(weights, imgsz, out_path=out / export.FP32_NAME)
    images = export.calibration_images(dataset.train_dirs)
    int8 = export.quantize_int8(fp32, images, imgsz, out / export.INT8_NAME)
    return {
        "fp32_sha256": export.sha256_file(fp32),
        "int8_sha256": export.sha256_file(int8),
        "opset": export.OPSET,
        "imgsz": imgsz,
        "calibration_images": len(images),
        "quantization": export.quantization_report(fp32, int8),
        "seconds": round(time.perf_counter() - began, 2),
    }


def write_xcom(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Write the result JSON atomically (the pod's xcom sidecar may read it at any time)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, sort_keys=True))
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole entrypoint (after argument parsing); returns the xcom payload."""
    if args.epochs < 0:
        raise InputError(f"--epochs must be >= 0, got {args.epochs}")
    if args.imgsz < 32 or args.imgsz % 32:
        raise InputError(f"--imgsz must be a positive multiple of 32, got {args.imgsz}")
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        raise InputError("MLFLOW_TRACKING_URI is not set: the run must be logged to MLflow")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="driftloop-train-"))
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = out / "inputs"
    work.mkdir(exist_ok=True)

    began = time.perf_counter()
    dataset = prepare_dataset(args.data, work)  # before Ultralytics loads: bad data fails fast

    from driftloop.training import yolo_env

    yolo_env.configure(runs_dir=out, datasets_dir=work)
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    base, kind = resolve_base(args.base, work)
    log.info(
        "dataset %s (sha256 %s, %d classes); base %s (%s); resolved in %.1f s",
        dataset.root,
        dataset.sha256[:12],
        dataset.nc,
        args.base,
        kind,
        time.perf_counter() - began,
    )

    import torch
    import ultralytics

    experiment = mlflow.set_experiment(args.experiment)
    tags = {
        "driftloop.component": "training",
        "driftloop.dataset_sha256": dataset.sha256,
        "driftloop.base": args.base,
        **dict(args.tags),
    }
    with mlflow.start_run(run_name=args.run_name, tags=tags) as active:
        run_id = active.info.run_id
        logged_params: set[str] = set()
        log_params(
            {
                "data": args.data,
                "dataset_sha256": dataset.sha256,
                "dataset_nc": dataset.nc,
                "dataset_names": ",".join(dataset.names[i] for i in sorted(dataset.names)),
                "base": args.base,
                "base_kind": kind,
                "epochs": args.epochs,
                "imgsz": args.imgsz,
                "batch": args.batch,
                "device": args.device,
                "seed": args.seed,
                "patience": args.patience,
                **{key: value for key, value in args.hyp},
                "ultralytics_version": ultralytics.__version__,
                "torch_version": torch.__version__,
            },
            logged_params,
        )
        weights_dir, summary, seconds, run_dir = train(
            args, out, dataset, base, kind, logged_params
        )
        final = {f"best/{k}": v for k, v in summary.items()}
        mlflow.log_metrics({**final, "train_seconds": seconds})
        mlflow.log_artifacts(str(weights_dir), artifact_path="weights")
        for name in ("results.csv", "args.yaml"):
            if (run_dir / name).is_file():
                mlflow.log_artifact(str(run_dir / name))
        mlflow.log_artifact(str(dataset.data_yaml), artifact_path="dataset")
        if (dataset.root / "manifest.json").is_file():
            mlflow.log_artifact(str(dataset.root / "manifest.json"), artifact_path="dataset")
        artifact_uri = active.info.artifact_uri.rstrip("/")
        onnx = None
        if args.export:
            from driftloop.training.export import FP32_NAME, INT8_NAME

            onnx_dir = out / "onnx"
            onnx_dir.mkdir(parents=True, exist_ok=True)
            onnx = export_models(weights_dir / "best.pt", dataset, args.imgsz, onnx_dir)
            (onnx_dir / "export.json").write_text(json.dumps(onnx, indent=2, sort_keys=True))
            mlflow.log_artifacts(str(onnx_dir), artifact_path="onnx")
            onnx = {
                "fp32_uri": f"{artifact_uri}/onnx/{FP32_NAME}",
                "int8_uri": f"{artifact_uri}/onnx/{INT8_NAME}",
                **onnx,
            }
        payload = {
            "run_id": run_id,
            "mlflow_run_id": run_id,
            "experiment_id": experiment.experiment_id,
            "weights_uri": f"{artifact_uri}/weights/best.pt",
            "last_weights_uri": f"{artifact_uri}/weights/last.pt",
            "model_uri": f"runs:/{run_id}/weights/best.pt",
            "dataset_uri": args.data,
            "dataset_sha256": dataset.sha256,
            "base": args.base,
            "epochs": args.epochs,
            "metrics": summary,
            "train_seconds": round(seconds, 2),
            "onnx": onnx,
        }
        if args.xcom_path:
            write_xcom(args.xcom_path, payload)
            mlflow.log_dict(payload, "xcom.json")
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        payload = run(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception:
        log.exception("training failed")
        return 1
    print(json.dumps(payload, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
