"""Throughput of the reference batch scorer: frames per second of a day, one ONNX thread.

What ``driftloop serve-batch`` does for a day, timed:

1. two YOLO11n detectors (random initialisation, 2 classes, class biases set so that each
   finds things: detection decoding and NMS do real work) exported to FP32 ONNX and static INT8
   by the project's own export code in ``.venv-train`` — or ``--int8 CHAMPION CHALLENGER``;
2. an embedded stack (moto S3 + mlflow server) in a temp folder; both models logged and
   registered as the training run does, aliases ``champion`` and ``challenger``;
3. ``--frames-per-day`` synthetic frames (``--image-size`` px, the ``abrupt`` world after its
   drift day: five cameras) for two days;
4. :func:`driftloop.serving.batch.serve_day` on day 1 without a routing document (stage
   serving: the champion alone) and on day 2 with stage shadow (every frame scored by both).

``frames_per_s`` counts reading the frame from S3, decoding it, its features and every model
run on it (loading the models and writing the results are excluded). Prints one table, then
``summary: serving_fps=… shadow_fps=… …``.

Run: ``.venv/bin/python bench/serve_batch.py [--frames-per-day 500]`` (needs ``make train-env``
unless ``--int8`` is given).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAINING_PYTHON = REPO / ".venv-train" / "bin" / "python"
END_DATE = "2031-07-02"
DAYS = ("2031-07-01", "2031-07-02")
#: role -> (seed, ball bias, player bias) of the class logits
DETECTORS = {"champion": (0, 0.4, -2.0), "challenger": (1, -2.0, 0.4)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames-per-day", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=160, help="frame size in pixels")
    parser.add_argument("--imgsz", type=int, default=160, help="model input size")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per model")
    parser.add_argument("--int8", nargs=2, type=Path, metavar=("CHAMPION", "CHALLENGER"))
    parser.add_argument("--build", nargs=6, help=argparse.SUPPRESS)  # the .venv-train half
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- .venv-train side


def build(seed: str, ball: str, player: str, imgsz: str, calibration: str, out: str) -> int:
    """A random-init YOLO11n with biased class logits, exported FP32 + INT8."""
    from driftloop.training import yolo_env

    yolo_env.configure(runs_dir=tempfile.mkdtemp(), datasets_dir=tempfile.mkdtemp())
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    from driftloop.training.export import (
        FP32_NAME,
        INT8_NAME,
        calibration_images,
        export_onnx,
        quantize_int8,
    )

    torch.manual_seed(int(seed))
    yolo = YOLO("yolo11n.yaml")
    yolo.model = DetectionModel("yolo11n.yaml", nc=2, verbose=False)
    yolo.model.names = {0: "ball", 1: "player"}
    for branch in yolo.model.model[-1].cv3:
        branch[-1].bias.data[:] = torch.tensor([float(ball), float(player)])
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / "weights.pt"
    yolo.save(str(weights))
    fp32 = export_onnx(weights, int(imgsz), out_path=out_dir / FP32_NAME)
    quantize_int8(fp32, calibration_images([calibration]), int(imgsz), out_dir / INT8_NAME)
    return 0


# --------------------------------------------------------------------------- .venv side


def build_detectors(args, root: Path) -> dict[str, dict[str, Path]]:
    if args.int8:
        return {role: {"int8": p, "fp32": p} for role, p in zip(DETECTORS, args.int8, strict=True)}
    if not TRAINING_PYTHON.is_file():
        raise SystemExit(f"{TRAINING_PYTHON} not found: run `make train-env` or pass --int8")
    from driftloop_dev.synth import MemorySink, generate_world

    calibration = root / "calibration"
    calibration.mkdir()
    sink = MemorySink()
    generate_world(sink, "stable", days=2, end_date=END_DATE, rows_per_day=1,
                   labeled_per_day=16, files_per_day=1)  # fmt: skip
    for key in sink.keys("labeled/"):
        if key.endswith(".png"):
            (calibration / Path(key).name).write_bytes(sink[key])
    found = {}
    for role, (seed, ball, player) in DETECTORS.items():
        out = root / role
        env = {**os.environ, "YOLO_CONFIG_DIR": str(root / "ultralytics"), "YOLO_OFFLINE": "1"}
        subprocess.run(
            [str(TRAINING_PYTHON), __file__, "--build", str(seed), str(ball), str(player),
             str(args.imgsz), str(calibration), str(out)],
            env=env, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        found[role] = {"int8": out / "model_int8.onnx", "fp32": out / "model_fp32.onnx"}
    return found


def register(detectors, tracking_uri: str, imgsz: int) -> str:
    import mlflow
    import numpy as np

    from driftloop.promotion import registry
    from driftloop.training import tracking

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    name = "bench-serve-detector"
    mlflow.set_experiment("bench-serve-batch")
    example = np.full((1, 3, imgsz, imgsz), 0.5, dtype=np.float32)
    for role, paths in detectors.items():
        with mlflow.start_run(run_name=role) as run:
            logged = {
                kind: tracking.log_onnx_model(
                    path, name=f"detector-{kind}", example=example, metadata={}, tags={}
                )
                for kind, path in paths.items()
            }
        version, _ = registry.register_candidate(
            client, name, model_uri=logged["int8"]["model_uri"], run_id=run.info.run_id,
            airflow_run_id=f"bench-{role}",
            tags={registry.FP32_MODEL_TAG: logged["fp32"]["model_uri"]}, description=role,
        )  # fmt: skip
        client.set_registered_model_alias(name, role, version.version)
    return name


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.build:
        return build(*args.build)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # leave through the stack's context
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-serve-") as tmp:
        root = Path(tmp)
        began = time.perf_counter()
        detectors = build_detectors(args, root)
        build_s = time.perf_counter() - began
        from mlflow import MlflowClient

        from driftloop.contracts import storage
        from driftloop.promotion.routing import Stamp, next_shadow_doc, write_routing
        from driftloop.serving.batch import serve_day
        from driftloop.serving.models import ModelStore
        from driftloop_dev.stack import EmbeddedStack
        from driftloop_dev.synth import S3Sink, world_spec
        from driftloop_dev.synth.traffic import write_traffic

        with EmbeddedStack(root / "stack", REPO) as stack:
            os.environ.update(stack.env)
            tracking_uri = stack.env["MLFLOW_TRACKING_URI"]
            name = register(detectors, tracking_uri, args.imgsz)
            s3, bucket = storage.s3_client(), "bench-serve"
            s3.create_bucket(Bucket=bucket)
            spec = world_spec("abrupt", days=3, drift_day=0, end_date=END_DATE,
                              rows_per_day=1, labeled_per_day=8, files_per_day=1)  # fmt: skip
            began = time.perf_counter()
            write_traffic(S3Sink(s3, bucket), spec, DAYS, args.frames_per_day,
                          image_size=args.image_size)  # fmt: skip
            frames_s = time.perf_counter() - began
            client = MlflowClient(tracking_uri)
            results = {}
            with ModelStore(client, name, tracking_uri=tracking_uri, threads=args.threads) as store:
                results["serving"] = serve_day(s3, bucket, DAYS[0], store)
                aliases = store.aliases()
                doc = next_shadow_doc(
                    None, Stamp(by="bench", reason="bench"), model=name,
                    champion=aliases["champion"], challenger=aliases["challenger"],
                )  # fmt: skip
                write_routing(s3, bucket, doc)
                results["shadow"] = serve_day(s3, bucket, DAYS[1], store)
    print()
    print(f"detectors built in {build_s:.1f} s; {2 * args.frames_per_day} frames written "
          f"in {frames_s:.1f} s; frames {args.image_size} px, model input {args.imgsz} px, "
          f"{args.threads} ONNX thread(s) per model, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} (other processes share the CPUs: compare on a quiet "
          "machine)")  # fmt: skip
    print(f"{'stage':<8} {'frames':>6} {'frames/s':>9} {'model':>6} {'role':<9} "
          f"{'p50 ms':>7} {'p95 ms':>7}")  # fmt: skip
    for stage, summary in results.items():
        for version, m in summary["models"].items():
            print(f"{stage:<8} {summary['frames']:>6} {summary['frames_per_s']:>9.1f} "
                  f"{'v' + version:>6} {m['role']:<9} {m['latency_p50_ms']:>7.2f} "
                  f"{m['latency_p95_ms']:>7.2f}")  # fmt: skip
    serving, shadow = results["serving"], results["shadow"]
    summary = {
        "serving_fps": serving["frames_per_s"],
        "shadow_fps": shadow["frames_per_s"],
        "serving_p95_ms": serving["latency_p95_ms"],
        "shadow_champion_p95_ms": shadow["models"][next(iter(shadow["models"]))]["latency_p95_ms"],
        "frames": serving["frames"],
        "image_size": args.image_size,
        "threads": args.threads,
    }
    print("summary: " + " ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
