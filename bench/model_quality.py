"""Quality and serving latency of a freshly trained detector: PyTorch vs ONNX FP32 vs ONNX INT8.

What ``retrain_detector`` does, with numbers printed instead of a gate:

1. an embedded stack (moto S3 + mlflow server) in a temp folder;
2. a ``stable`` synthetic world, ``--days`` days with ``--labeled-per-day`` labeled frames,
   snapshotted into a YOLO dataset exactly as the DAG does;
3. the training entrypoint in ``.venv-train`` for ``--epochs`` epochs (with ONNX FP32 and
   INT8 export), its per-epoch validation mAP read back from MLflow (the learning curve the
   promotion floors in ``promotion_policy.yaml`` were set from);
4. ``best.pt`` (PyTorch), ``model_fp32.onnx`` and ``model_int8.onnx`` scored on the
   evaluation split at the served image size with the same preprocessing, decoding and COCO
   mAP as the gate, and timed interleaved on one thread each (this script again, inside
   ``.venv-train``: the only environment with torch).

Run: ``.venv/bin/python bench/model_quality.py [--epochs 10]`` (needs ``make train-env``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAINING_PYTHON = REPO / ".venv-train" / "bin" / "python"
END_DATE = "2031-01-31"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--imgsz", type=int, default=160, help="training and served image size")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--labeled-per-day", type=int, default=40)
    parser.add_argument("--runs", type=int, default=300, help="timed inferences per model")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument(
        "--score",
        nargs=4,
        metavar=("WEIGHTS", "FP32", "INT8", "DATA"),
        help=argparse.SUPPRESS,  # internal: the scoring half, run inside .venv-train
    )
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- .venv side


def train_and_fetch(args, work: Path) -> tuple[dict, Path, dict]:
    """Stack, world, snapshot, training; returns (timings, folder of fetched files, curve)."""
    from driftloop.config.settings import Settings
    from driftloop.contracts.storage import s3_client
    from driftloop.retrain.local_training import train_local
    from driftloop.retrain.plan import plan_retrain
    from driftloop.retrain.snapshot import snapshot_dataset
    from driftloop.retrain.snapshot_io import download_dataset
    from driftloop_dev.stack import EmbeddedStack
    from driftloop_dev.synth import S3Sink, generate_world

    timings = {}
    with EmbeddedStack(work / "stack", REPO) as stack:
        os.environ.update(stack.env)
        settings = Settings.from_env()
        s3 = s3_client()
        began = time.perf_counter()
        generate_world(
            S3Sink(s3, settings.bucket), "stable", days=args.days, end_date=END_DATE,
            rows_per_day=50, labeled_per_day=args.labeled_per_day,
        )  # fmt: skip
        timings["world_s"] = time.perf_counter() - began
        plan = plan_retrain(
            {
                "last_n_days": args.days,
                "end_date": END_DATE,
                "epochs": args.epochs,
                "imgsz": args.imgsz,
                "batch": args.batch,
                "hyperparameters": {"optimizer": "AdamW", "lr0": 0.005, "warmup_epochs": 0},
                "base": "yolo11n.yaml",
            },
            {"kind": "manual", "reason": "bench", "drift_event_id": None, "window_end": None},
            today=None,
            auto_retrain=True,
        )
        began = time.perf_counter()
        snap = snapshot_dataset(s3, settings.bucket, days=plan["days"], source_run="bench")
        timings["snapshot_s"] = time.perf_counter() - began
        began = time.perf_counter()
        training = train_local(settings, plan, snap.to_dict(), "bench")
        timings["train_and_export_s"] = time.perf_counter() - began

        from mlflow import MlflowClient

        from driftloop.retrain.model_files import download_onnx

        client = MlflowClient(settings.mlflow_tracking_uri)
        fetched = work / "fetched"
        (fetched / "weights").mkdir(parents=True)
        client.download_artifacts(training["run_id"], "weights/best.pt", str(fetched / "weights"))
        # the exports are logged MLflow models (models:/m-…), each checked against its hash
        onnx = training["onnx"]
        for kind in ("fp32", "int8"):
            local = download_onnx(
                onnx[f"{kind}_model_uri"], fetched / kind, expected_sha256=onnx[f"{kind}_sha256"]
            )
            local.rename(fetched / f"model_{kind}.onnx")
        download_dataset(s3, snap.uri, fetched / "data")
        curve = {
            name: [m.value for m in sorted(client.get_metric_history(training["run_id"], name), key=lambda m: m.step)]
            for name in ("metrics/mAP50", "metrics/mAP50-95")
        }  # fmt: skip
        timings["counts"] = snap.to_dict().get("counts", {})
    return timings, fetched, curve


def print_report(args, timings: dict, curve: dict, scores: dict) -> None:
    print()
    print(
        f"dataset: {args.days} days x {args.labeled_per_day} labeled frames; splits {timings['counts']}"
    )
    print(f"world {timings['world_s']:.1f} s, snapshot {timings['snapshot_s']:.1f} s, "
          f"training {args.epochs} epochs + ONNX export {timings['train_and_export_s']:.1f} s")  # fmt: skip
    print()
    print("learning curve (Ultralytics validation on the val split, per epoch):")
    print("epoch  mAP50  mAP50-95")
    for epoch, (m50, m5095) in enumerate(
        zip(curve["metrics/mAP50"], curve["metrics/mAP50-95"], strict=False), 1
    ):
        print(f"{epoch:>5}  {m50:.3f}  {m5095:.3f}")
    print()
    print(f"evaluation split, {scores['n_images']} images at {args.imgsz} px, "
          f"latency on 1 thread, {scores['runs']} interleaved runs each:")  # fmt: skip
    header = (
        f"{'model':<14} {'mAP50':>7} {'mAP50-95':>9} {'p50 ms':>8} {'p95 ms':>8} {'size MB':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, row in scores["models"].items():
        print(
            f"{name:<14} {row['map50']:7.3f} {row['map50_95']:9.3f} "
            f"{row['p50_ms']:8.2f} {row['p95_ms']:8.2f} {row['size_mb']:8.2f}"
        )
    fp32, int8 = scores["models"]["onnx-fp32"], scores["models"]["onnx-int8"]
    print()
    print(f"INT8 vs FP32: mAP50 {100 * (int8['map50'] - fp32['map50']):+.2f} pp, "
          f"p50 x{int8['p50_ms'] / fp32['p50_ms']:.2f}, p95 x{int8['p95_ms'] / fp32['p95_ms']:.2f}")  # fmt: skip
    summary = {f"{name.replace('-', '_')}_{key}": round(row[key], 4 if "map" in key else 2)
               for name, row in scores["models"].items() for key in ("map50", "map50_95", "p95_ms")}  # fmt: skip
    summary["train_and_export_s"] = round(timings["train_and_export_s"], 1)
    print("summary: " + " ".join(f"{k}={v}" for k, v in summary.items()))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.score:
        return score(args)
    if not TRAINING_PYTHON.exists():
        raise SystemExit(f"{TRAINING_PYTHON} not found: run `make train-env` first")
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-") as tmp:
        work = Path(tmp)
        timings, fetched, curve = train_and_fetch(args, work)
        out = work / "scores.json"
        subprocess.run(
            [
                str(TRAINING_PYTHON), __file__, "--imgsz", str(args.imgsz), "--runs", str(args.runs),
                "--json", str(out), "--score", str(fetched / "weights/best.pt"),
                str(fetched / "model_fp32.onnx"), str(fetched / "model_int8.onnx"),
                str(fetched / "data"),
            ],
            check=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        scores = json.loads(out.read_text())
    print_report(args, timings, curve, scores)
    if args.json:
        args.json.write_text(
            json.dumps({"timings": timings, "curve": curve, "scores": scores}, indent=2)
        )
    return 0


# --------------------------------------------------------------------------- .venv-train side


def torch_runner(weights: Path):
    """best.pt as Ultralytics serves it (fused, FP32, eval mode) on one CPU thread; returns
    the raw head output ``[1, 4 + nc, N]`` the ONNX export also returns."""
    import numpy as np
    import torch
    from ultralytics.nn.tasks import load_checkpoint

    torch.set_num_threads(1)
    model, _ = load_checkpoint(str(weights), device="cpu", fuse=True)
    model = model.float().eval()

    def run(tensor: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.from_numpy(tensor))
        return (out[0] if isinstance(out, list | tuple) else out).numpy()

    return run


def score(args) -> int:
    from driftloop.training import yolo_env

    yolo_env.configure(runs_dir=tempfile.mkdtemp(), datasets_dir=tempfile.mkdtemp())
    from driftloop.evaluation.detector import (
        image_label_pairs,
        input_size,
        onnx_runner,
        score_runner,
        session,
    )
    from driftloop.evaluation.latency_table import time_runners_interleaved

    weights, fp32, int8, data = (Path(p) for p in args.score)
    runners = {"pytorch": (torch_runner(weights), (args.imgsz, args.imgsz))}
    for name, path in (("onnx-fp32", fp32), ("onnx-int8", int8)):
        sess = session(path, threads=1)
        runners[name] = (onnx_runner(sess), input_size(sess))
    sizes = {"pytorch": weights, "onnx-fp32": fp32, "onnx-int8": int8}
    models = {}
    for name, (run, size) in runners.items():
        result = score_runner(run, size, data)
        models[name] = {
            "map50": result.map50,
            "map50_95": result.map50_95,
            "size_mb": sizes[name].stat().st_size / 1e6,
        }
        n_images = result.n_images
    images = [image for image, _ in image_label_pairs(data)]
    latency = time_runners_interleaved(runners, images, warmup=20, runs=args.runs)
    for name, row in latency.items():
        models[name].update(p50_ms=row["p50_ms"], p95_ms=row["p95_ms"])
    args.json.write_text(json.dumps({"models": models, "n_images": n_images, "runs": args.runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
