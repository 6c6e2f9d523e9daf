"""The training entrypoint: one run of ``python -m driftloop.training.train``.

The same command runs in the GPU pod (KubernetesPodOperator, the training image's
ENTRYPOINT) and in the local backend (this repository's ``.venv-train``)::

    python -m driftloop.training.train \\
        --data s3://driftloop/datasets/<sha256>/ | /path/to/dataset \\
        --base yolo11n.yaml | runs:/<id>/weights/best.pt --base-sha256 <hex> | s3://…/best.pt … \\
        --epochs 50 --imgsz 160 --batch 16 --device cpu|0 \\
        --experiment retrain-detector --run-name retrain-2026-01-31 --tags airflow.run_id=… \\
        --out /workspace/train --xcom-path /airflow/xcom/return.json

Steps (:func:`driftloop.training.run.run`): resolve the dataset (S3 →
:func:`driftloop.retrain.snapshot_io.download_dataset`; a local
folder as is; it must hold ``data.yaml`` with ``train``/``val``/``names``), resolve the base
model (an allow-listed model ``.yaml`` trains from scratch; weights fine-tune the champion and
are loaded only when their SHA-256 is ``--base-sha256``, with Ultralytics' safe loading on),
train with
Ultralytics (seeded and deterministic, ``workers=0`` on CPU; one progress line per epoch on
stdout), log to MLflow (tracking URI from ``MLFLOW_TRACKING_URI``; see
:mod:`driftloop.training.tracking`): the code version (``mlflow.source.git.commit``), the
dataset snapshot as the run's input, parameters, per-epoch metrics (``step`` = epoch,
1-based), the weights ``best.pt``/``last.pt``, ``results.csv``, ``args.yaml`` and Ultralytics'
plots (``plots/``); then write the result as JSON to ``--xcom-path`` (the pod's
``/airflow/xcom/return.json`` contract) and, as ``training_result.json``, to the run::

    {"run_id": …, "mlflow_run_id": …, "experiment_id": …, "weights_uri": "<artifact URI of best.pt>",
     "model_uri": "runs:/<run id>/weights/best.pt", "last_weights_uri": …, "dataset_uri": …,
     "dataset_sha256": …, "dataset_input": {"name": …, "digest": …}, "git_commit": … | null,
     "base": …, "base_sha256": … | null, "weights_sha256": <SHA-256 of best.pt>, "epochs": N, "metrics": {"mAP50": …, "mAP50-95": …, …}, "train_seconds": …,
     "plots": [...], "onnx": {"fp32_model_uri": "models:/m-…", "int8_model_uri": …,
     "fp32_model_id": …, "int8_model_id": …, "fp32_sha256": …, "int8_sha256": …, …} | null}

Unless ``--no-export``, best.pt is also exported to ONNX FP32 and static INT8
(:mod:`driftloop.training.export`, calibrated on training-split images), each logged as an
MLflow model of the run (ONNX flavor, signature, input example: ``detector-fp32`` and
``detector-int8``); ``best/*`` (the validation of best.pt) is linked to the FP32 model. The
Airflow side registers the INT8 model and evaluates both (it has no torch to export with).

``--epochs 0`` trains nothing: the base model itself (random initial weights for a ``.yaml``,
the given weights for a ``.pt``) is saved as ``best.pt``/``last.pt``, validated and logged like
a trained one — a candidate that cannot beat its champion, for tests of the promotion gate.

Ultralytics runs offline (:mod:`driftloop.training.yolo_env`) with its own MLflow callback off:
this module does the logging, so runs are complete and named as the DAG asks.

Exit status: 0 trained and logged; 2 bad input (missing ``data.yaml``, a base model or
hyper-parameter outside the allow-lists, weights without or not matching ``--base-sha256``,
malformed flags, no tracking URI); 1 anything that failed on the way (the MLflow run, if one
was started, ends as FAILED).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from driftloop.training.inputs import InputError

log = logging.getLogger("driftloop.training.train")

DEFAULT_BASE = "yolo11n.yaml"
DEFAULT_EXPERIMENT = "retrain-detector"


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m driftloop.training.train",
        description="Train (fine-tune) the YOLO detector, log it to MLflow, write the XCom JSON.",
    )
    parser.add_argument("--data", required=True, help="dataset folder or s3://…/datasets/{sha}/")
    parser.add_argument(
        "--base",
        default=DEFAULT_BASE,
        help="an allowed model .yaml (train from scratch) or weights .pt: local path, s3://, "
        f"runs:/, models:/ or mlflow-artifacts:/ URI (fine-tune; needs --base-sha256). "
        f"Default {DEFAULT_BASE}",
    )
    parser.add_argument(
        "--base-sha256",
        default=None,
        help="the recorded SHA-256 of the --base weights: they are refused unless they match",
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
        help="further Ultralytics train arguments, e.g. lr0=0.005 optimizer=AdamW; only the "
        "tunable ones (driftloop.training.allowlists.TUNABLE_HYPERPARAMETERS)",
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
        help="skip the ONNX FP32 + INT8 export of best.pt (logged as MLflow models detector-fp32 "
        "and detector-int8)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Ultralytics' own output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        from driftloop.training.run import run

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
