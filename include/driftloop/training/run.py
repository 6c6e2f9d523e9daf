"""One training run, after argument parsing: dataset → Ultralytics → ONNX export → MLflow.

:func:`run` is what ``python -m driftloop.training.train`` does (see that module for the
command line and the result JSON): it resolves the inputs (:mod:`driftloop.training.inputs`),
trains with Ultralytics (:func:`fit`; ``--epochs 0`` saves the base model as it is), logs the
run to MLflow (:mod:`driftloop.training.tracking`), exports best.pt to ONNX FP32 + INT8 and logs
both as MLflow models (:func:`export_models`), then writes the result JSON (:func:`write_xcom`).

Only the training image's libraries: torch, ultralytics, onnx, mlflow-skinny; never Airflow.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from driftloop.training.inputs import (
    Dataset,
    InputError,
    prepare_dataset,
    resolve_base,
    sha256_file,
)
from driftloop.training.tracking import clean_metrics, epoch_callback, log_params

log = logging.getLogger(__name__)

#: run tag holding the SHA-256 of the run's ``weights/best.pt``, recorded when it is logged
WEIGHTS_SHA256_TAG = "driftloop.weights_sha256"

#: summary metrics of the final validation (best.pt) in the xcom payload
_SUMMARY = {
    "metrics/precision(B)": "precision",
    "metrics/recall(B)": "recall",
    "metrics/mAP50(B)": "mAP50",
    "metrics/mAP50-95(B)": "mAP50-95",
    "fitness": "fitness",
}


def hyp_value(text: str) -> Any:
    """``--hyp`` values as YAML scalars: ``0.01`` → float, ``false`` → bool, ``AdamW`` → str."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def checked_hyperparameters(pairs) -> dict[str, Any]:
    """``--hyp`` as typed values, every key and value within
    :data:`driftloop.training.allowlists.TUNABLE_HYPERPARAMETERS` (InputError naming the key):
    ``data``, ``epochs``, ``imgsz``, ``batch``, paths and the device are the run's own."""
    from driftloop.training.allowlists import DisallowedInput, check_hyperparameters

    try:
        return check_hyperparameters(
            {key: hyp_value(value) for key, value in pairs}, source="--hyp"
        )
    except DisallowedInput as err:
        raise InputError(str(err)) from err


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


def fit(
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
            **{key: hyp_value(value) for key, value in args.hyp},
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
                plots=True,  # its confusion matrix and curves go with the run's plots
                verbose=args.verbose,
                project=str(out),
                name="train",
                exist_ok=True,
            )
            summary = clean_metrics(metrics.results_dict, _SUMMARY)
        except Exception as err:  # an untrained model may fail validation; that is fine
            log.warning("validation of the untrained model failed: %s", err)
        return weights_dir, summary, time.perf_counter() - began, run_dir

    model = YOLO(str(base))
    for event, fn in epoch_callback(logged_params).items():
        model.add_callback(event, fn)
    train_args = {
        **checked_hyperparameters(args.hyp),  # first: the run's own arguments below win
        "data": str(dataset.data_yaml),
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "device": args.device,
        "workers": workers,
        "seed": args.seed,
        "deterministic": True,
        "patience": args.patience,
        "plots": True,  # logged to the run under plots/
        "project": str(out),
        "name": "train",
        "exist_ok": True,
        "verbose": args.verbose,
    }
    results = model.train(**train_args)
    trainer = model.trainer
    if results is not None and hasattr(results, "results_dict"):
        summary = clean_metrics(results.results_dict, _SUMMARY)
    weights_dir = Path(trainer.best).parent
    if not (weights_dir / "best.pt").is_file() and (weights_dir / "last.pt").is_file():
        shutil.copyfile(weights_dir / "last.pt", weights_dir / "best.pt")
    return weights_dir, summary, time.perf_counter() - began, Path(trainer.save_dir)


def export_models(weights: Path, dataset: Dataset, imgsz: int, out: Path) -> dict[str, Any]:
    """best.pt → ``model_fp32.onnx`` + ``model_int8.onnx`` (calibrated on training images) in
    ``out``, each logged as an MLflow model (:func:`driftloop.training.tracking.log_onnx_model`)
    of the active run; returns their model URIs and ids, SHA-256 and what was quantized (see
    :mod:`driftloop.training.export`)."""
    from driftloop.training import export, tracking

    began = time.perf_counter()
    fp32 = export.export_onnx(weights, imgsz, out_path=out / export.FP32_NAME)
    images = export.calibration_images(dataset.train_dirs)
    int8 = export.quantize_int8(fp32, images, imgsz, out / export.INT8_NAME)
    quantization = export.quantization_report(fp32, int8)
    exported = round(time.perf_counter() - began, 2)
    example = tracking.input_example(images[0], imgsz)
    common = {
        "imgsz": imgsz,
        "names": {str(k): v for k, v in sorted(dataset.names.items())},
        "dataset_sha256": dataset.sha256,
        "output": "raw YOLO head [1, 4 + nc, N]: cx, cy, w, h in input pixels, then class "
        "scores; no NMS (driftloop.evaluation.detector.decode)",
        "preprocessing": "RGB letterbox to imgsz x imgsz (grey 114 padding), /255, NCHW "
        "(driftloop.evaluation.detector.load_input)",
    }
    result: dict[str, Any] = {}
    for kind, path, name in (
        ("fp32", fp32, tracking.FP32_MODEL_NAME),
        ("int8", int8, tracking.INT8_MODEL_NAME),
    ):
        sha = tracking.normalize_onnx(path)
        metadata = {**common, "precision": kind, "sha256": sha}
        if kind == "int8":
            metadata["quantization"] = {
                "format": "QDQ static, MinMax",
                "calibration_images": len(images),
                "head_prefix_fp32": quantization["head_prefix"],
            }
        logged = tracking.log_onnx_model(
            path, name=name, example=example, metadata=metadata, tags={"precision": kind}
        )
        result.update(
            {
                f"{kind}_model_uri": logged["model_uri"],
                f"{kind}_model_id": logged["model_id"],
                f"{kind}_sha256": sha,
            }
        )
    return {
        **result,
        "opset": export.OPSET,
        "imgsz": imgsz,
        "calibration_images": len(images),
        "quantization": quantization,
        "export_seconds": exported,
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
    checked_hyperparameters(args.hyp)  # a refused --hyp fails before any download
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
    base, kind = resolve_base(args.base, work, args.base_sha256)
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

    from driftloop.training import tracking

    experiment = mlflow.set_experiment(args.experiment)
    tags = {
        "driftloop.component": "training",
        "driftloop.dataset_sha256": dataset.sha256,
        "driftloop.base": args.base,
        **({"driftloop.base_sha256": args.base_sha256} if kind == "weights" else {}),
        **dict(args.tags),
    }
    with mlflow.start_run(run_name=args.run_name, tags=tags) as active:
        run_id = active.info.run_id
        try:
            git_commit = tracking.log_code_version()
        except ValueError as err:  # a malformed $DRIFTLOOP_GIT_SHA
            raise InputError(str(err)) from err
        dataset_input = tracking.log_dataset_input(args.data, dataset.sha256)
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
        weights_dir, summary, seconds, run_dir = fit(args, out, dataset, base, kind, logged_params)
        # what a later fine-tune from this model checks the weights against
        weights_sha256 = sha256_file(weights_dir / "best.pt")
        mlflow.set_tag(WEIGHTS_SHA256_TAG, weights_sha256)
        mlflow.log_artifacts(str(weights_dir), artifact_path="weights")
        for name in ("results.csv", "args.yaml"):
            if (run_dir / name).is_file():
                mlflow.log_artifact(str(run_dir / name))
        plots = tracking.log_plots(run_dir)
        log.info("logged %d plots under %s/", len(plots), tracking.PLOTS_DIR)
        mlflow.log_artifact(str(dataset.data_yaml), artifact_path="dataset")
        if (dataset.root / "manifest.json").is_file():
            mlflow.log_artifact(str(dataset.root / "manifest.json"), artifact_path="dataset")
        artifact_uri = active.info.artifact_uri.rstrip("/")
        final = {f"best/{k}": v for k, v in summary.items()}
        onnx = None
        if args.export:
            onnx_dir = out / "onnx"
            onnx_dir.mkdir(parents=True, exist_ok=True)
            print("exporting best.pt to ONNX FP32 + INT8", flush=True)
            onnx = export_models(weights_dir / "best.pt", dataset, args.imgsz, onnx_dir)
            mlflow.log_dict(onnx, "onnx_export.json")
            # best.pt's validation is the FP32 export's (the same network, unquantized)
            mlflow.log_metrics(final, model_id=onnx["fp32_model_id"])
        else:
            mlflow.log_metrics(final)
        mlflow.log_metric("train_seconds", seconds)
        payload = {
            "run_id": run_id,
            "mlflow_run_id": run_id,
            "experiment_id": experiment.experiment_id,
            "weights_uri": f"{artifact_uri}/weights/best.pt",
            "last_weights_uri": f"{artifact_uri}/weights/last.pt",
            "model_uri": f"runs:/{run_id}/weights/best.pt",
            "dataset_uri": args.data,
            "dataset_sha256": dataset.sha256,
            "dataset_input": dataset_input,
            "git_commit": git_commit,
            "base": args.base,
            "base_sha256": args.base_sha256 if kind == "weights" else None,
            "weights_sha256": weights_sha256,
            "epochs": args.epochs,
            "metrics": summary,
            "train_seconds": round(seconds, 2),
            "plots": plots,
            "onnx": onnx,
        }
        # what the task returns to Airflow, also kept with the run under a name that says so
        mlflow.log_dict(payload, "training_result.json")
        if args.xcom_path:
            write_xcom(args.xcom_path, payload)
    return payload
