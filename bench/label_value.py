"""What a labeling budget buys: the labeling queue's picks vs the same number of random frames.

One synthetic ``abrupt`` world with camera looks (from the drift day on: darker, flatter
lighting and a fifth camera ``cam-05`` whose tint the champion never saw), in an embedded
stack (moto S3 + mlflow server) in a temp folder:

1. **champion** — the stable days before the drift (``--base-days`` labeled days, and their
   traffic frames for the drift reference): snapshot, training in ``.venv-train`` from
   ``yolo11n.yaml`` (``--epochs``, ``--imgsz``), its training-window reference, registered and
   given the ``champion`` alias as ``retrain_detector`` would (model record included);
2. **shift** — ``--select-days`` then ``--test-days`` drifted days of ``--frames-per-day``
   traffic frames each, served by the champion (:func:`driftloop.serving.batch.serve_day`:
   the inference logs and serving records the queue reads). The test days also get their
   labeled frames (the first ``--labeled-per-day`` traffic frames): the held-out test set,
   on days neither arm selects from;
3. **two arms, same budget** ``--budget`` frames per selection day: ``queue`` =
   :func:`driftloop.labeling.queue.queue_day` (the ``labeling:`` policy, budget overridden),
   ``random`` = a seeded uniform draw among the day's served frames. The "labelers" return
   each picked frame's true boxes (:mod:`driftloop_dev.synth.truth`); the frames land as
   labeled days (``frames.jsonl`` source ``queue``) in a bucket of the arm's own, next to a
   copy of the base days; each arm is snapshotted (base + its labels) and trained from the
   champion's weights (``base: champion``) with the same plan;
4. **score** — champion and both retrained models (FP32 ONNX) on the held-out test frames,
   as the performance check measures a labeled day (``evaluate_model``, COCO mAP);
5. **label-free estimate** — the champion's ATC calibration (its eval split) and, per test
   day, the estimate from its served ``confidence_max`` vs the day's measured mAP@0.5:0.95:
   MAE, next to the naive "the eval mAP, always".

Ends with ``summary: map_queue=… map_random=… map_champion=… estimate_mae=… budget=…
seconds=…``. Run: ``.venv/bin/python bench/label_value.py [--seed 1]`` (needs ``make
train-env``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAINING_PYTHON = REPO / ".venv-train" / "bin" / "python"
END_DATE = date(2031, 3, 31)
ARMS = ("queue", "random")
NEW_CAMERA = "cam-05"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-days", type=int, default=8)
    parser.add_argument("--select-days", type=int, default=3)
    parser.add_argument("--test-days", type=int, default=3)
    parser.add_argument("--labeled-per-day", type=int, default=40)
    parser.add_argument("--frames-per-day", type=int, default=150)
    parser.add_argument("--budget", type=int, default=30, help="frames labeled per selection day")
    parser.add_argument("--epochs", type=int, default=12, help="champion training epochs")
    parser.add_argument("--retrain-epochs", type=int, default=6, help="each arm's fine-tuning")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="world and random-arm seed")
    return parser.parse_args(argv)


def summary_line(values: dict) -> str:
    """``summary: k=v …`` (floats to 4 decimals, None as ``nan``)."""

    def text(v):
        if v is None:
            return "nan"
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    return "summary: " + " ".join(f"{k}={text(v)}" for k, v in values.items())


def plan_for(days: list[str], epochs: int, args, base: str, reason: str) -> dict:
    from driftloop.retrain.plan import plan_retrain

    return plan_retrain(
        {"last_n_days": len(days), "end_date": days[-1], "epochs": epochs, "imgsz": args.imgsz,
         "batch": args.batch, "base": base,
         "hyperparameters": {"optimizer": "AdamW", "lr0": 0.005, "warmup_epochs": 0}},
        {"kind": "manual", "reason": reason, "drift_event_id": None, "window_end": None},
        today=None, auto_retrain=True,
    )  # fmt: skip


def write_all(s3, bucket: str, files) -> None:
    from driftloop_dev.synth import S3Sink

    sink = S3Sink(s3, bucket)
    for key, data, content_type in files:
        sink.write(key, data, content_type)


def train_champion(ctx, args, spec, base_days: list[str]) -> dict:
    """Snapshot, training, reference, registration, alias ``champion`` (+ its model record)."""
    from driftloop.retrain.local_training import train_local
    from driftloop.retrain.model_card import write_model_record
    from driftloop.retrain.reference_profile import training_window_reference
    from driftloop.retrain.register import register
    from driftloop.retrain.snapshot import snapshot_dataset

    s3, settings, policy = ctx["s3"], ctx["settings"], ctx["policy"]
    plan = plan_for(base_days, args.epochs, args, "yolo11n.yaml", "bench: first champion")
    snap = snapshot_dataset(s3, settings.bucket, days=plan["days"], source_run="bench-champion")
    training = train_local(settings, plan, snap.to_dict(), "bench-champion")
    reference = training_window_reference(
        s3, settings, plan, training, "bench-champion", sample_size=policy.sample_size,
        max_frames_per_day=policy.reference_scoring.max_frames_per_day,
    )  # fmt: skip
    candidate = register(s3, settings, plan, snap.to_dict(), training, reference, "bench-champion")
    decision = {"promote": True, "reasons": ["bench: the first model"], "table": ""}
    write_model_record(settings, snap.to_dict(), None, decision, candidate, plan, reference)
    ctx["client"].set_registered_model_alias(
        settings.registered_model, "champion", candidate["version"]
    )
    return {"snapshot": snap.to_dict(), "training": training, "version": candidate["version"]}


def picks_of_queue(ctx, day: str, budget: int) -> list[tuple[str, str]]:
    from driftloop.contracts import storage
    from driftloop.labeling.queue import MANIFEST, queue_day
    from driftloop.labeling.sources import batch_prefix

    policy = ctx["policy"].labeling.model_copy(update={"budget_per_day": budget})
    queue_day(ctx["settings"], day, "bench-queue", s3=ctx["s3"], policy=policy)
    manifest = storage.get_json(ctx["s3"], ctx["settings"].bucket, batch_prefix(day) + MANIFEST)
    return [(f["frame_id"], f["camera_id"]) for f in manifest["frames"]]


def picks_of_random(ctx, day: str, budget: int, seed: int) -> list[tuple[str, str]]:
    from driftloop.labeling.sources import read_inference
    from driftloop_dev.synth.truth import uniform_pick

    table = read_inference(ctx["s3"], ctx["settings"].bucket, day)
    camera = dict(zip(table["image_id"].to_pylist(), table["camera_id"].to_pylist(), strict=True))
    return [(f, camera[f]) for f in uniform_pick(camera, budget, seed)]


def land_labels(ctx, arm_bucket: str, spec, day_index: int, picks, frames_per_day: int) -> None:
    """The picked frames, with their true labels, as ``labeled/dt=D/`` of ``arm_bucket``."""
    import json

    from driftloop.contracts import storage
    from driftloop.contracts.labeled import LabeledFrameInfo, frames_index_bytes, frames_index_key
    from driftloop.labeling.sources import batch_prefix
    from driftloop.serving import layout
    from driftloop_dev.synth.truth import traffic_labels

    day = spec.date_of(day_index)
    labels = traffic_labels(spec, day_index, frames_per_day)
    prefix = storage.labeled_prefix(day)
    files, infos = [], []
    for frame_id, camera in picks:
        image = storage.get_bytes(
            ctx["s3"], ctx["settings"].bucket, layout.frame_key(day, frame_id)
        )
        files.append((f"{prefix}images/{frame_id}.png", image, "image/png"))
        files.append((f"{prefix}labels/{frame_id}.txt", labels[frame_id].encode(), "text/plain"))
        infos.append(LabeledFrameInfo(frame_id, camera, "queue", frame_id, batch_prefix(day)))
    files.append((frames_index_key(day), frames_index_bytes(infos), "application/x-ndjson"))
    done = {"day": day.isoformat(), "frames": len(picks), "source": "queue", "written_by": "bench"}
    files.append((prefix + storage.SUCCESS_MARKER, json.dumps(done).encode(), "application/json"))
    write_all(ctx["s3"], arm_bucket, files)


def copy_prefix(s3, source: str, target: str, prefix: str) -> None:
    from driftloop.contracts import storage

    for obj in storage.list_keys(s3, source, prefix):
        s3.copy_object(
            Bucket=target, Key=obj["Key"], CopySource={"Bucket": source, "Key": obj["Key"]}
        )


def retrain_arm(ctx, args, arm: str, days: list[str], work: Path) -> Path:
    """The arm's snapshot (base + its labels) and fine-tuning; returns its FP32 ONNX file."""
    from driftloop.retrain.local_training import train_local
    from driftloop.retrain.model_files import download_onnx
    from driftloop.retrain.snapshot import snapshot_dataset

    bucket = ctx["arm_buckets"][arm]
    plan = plan_for(days, args.retrain_epochs, args, "champion", f"bench: {arm} arm")
    snap = snapshot_dataset(ctx["s3"], bucket, days=plan["days"], source_run=f"bench-{arm}")
    ctx["counts"][arm] = snap.to_dict().get("counts", {})
    training = train_local(ctx["settings"], plan, snap.to_dict(), f"bench-{arm}")
    onnx = training["onnx"]
    return download_onnx(onnx["fp32_model_uri"], work / arm, expected_sha256=onnx["fp32_sha256"])


def score(onnx: Path, test: list, label: str) -> dict:
    """mAP over all test frames, on the new camera and on the old ones."""
    from driftloop.evaluation.coco_map import map_scores
    from driftloop.evaluation.detector import evaluate_model

    records, cameras, per_day = [], [], {}
    for labeled in test:
        result = evaluate_model(onnx, labeled.folder, split=None, label=f"{label} {labeled.day}")
        records += result.records
        cameras += labeled.cameras_of(result.records)
        per_day[labeled.day] = result.map50_95
    m50, m5095 = map_scores(records)
    new = [r for r, c in zip(records, cameras, strict=True) if c == NEW_CAMERA]
    old = [r for r, c in zip(records, cameras, strict=True) if c != NEW_CAMERA]
    return {"map50": m50, "map50_95": m5095, "new_cam": map_scores(new)[1] if new else None,
            "old_cams": map_scores(old)[1] if old else None, "per_day": per_day,
            "n_frames": len(records), "n_new": len(new)}  # fmt: skip


def run(args, work: Path) -> dict:
    from mlflow import MlflowClient

    from driftloop.config.drift_policy import load_policy
    from driftloop.config.settings import Settings
    from driftloop.contracts import storage
    from driftloop.performance import atc
    from driftloop.performance.calibration import champion_calibration
    from driftloop.performance.champion import champion_onnx, current_champion
    from driftloop.performance.labeled_days import load_labeled_day
    from driftloop.performance.logs import champion_confidences
    from driftloop.serving.batch import serve_day
    from driftloop.serving.models import ModelStore
    from driftloop_dev.stack import EmbeddedStack
    from driftloop_dev.synth import world_spec
    from driftloop_dev.synth.frames import labeled_files
    from driftloop_dev.synth.traffic import traffic_files
    from driftloop_dev.synth.world import golden_objects

    t0 = time.perf_counter()
    n_days = args.base_days + args.select_days + args.test_days
    spec = world_spec("abrupt", days=n_days, drift_day=args.base_days, end_date=END_DATE,
                      rows_per_day=1, files_per_day=1, labeled_per_day=args.labeled_per_day,
                      seed=args.seed, camera_looks=True)  # fmt: skip
    index = {"base": range(args.base_days),
             "select": range(args.base_days, args.base_days + args.select_days),
             "test": range(args.base_days + args.select_days, n_days)}  # fmt: skip
    iso = {k: [spec.date_of(i).isoformat() for i in v] for k, v in index.items()}
    out: dict = {"timings": {}, "picks": {}, "counts": {}}
    with EmbeddedStack(work / "stack", REPO) as stack:
        os.environ.update(stack.env)
        settings = Settings.from_env()
        s3 = storage.s3_client()
        client = MlflowClient(settings.mlflow_tracking_uri)
        ctx = {"s3": s3, "settings": settings, "client": client,
               "policy": load_policy(settings.policy_path), "counts": out["counts"]}  # fmt: skip
        bucket = settings.bucket
        write_all(s3, bucket, golden_objects())
        for i in [*index["base"], *index["test"]]:
            write_all(s3, bucket, labeled_files(spec, i))
        for i in range(n_days):
            write_all(s3, bucket, traffic_files(spec, i, args.frames_per_day))
        out["timings"]["world_s"] = time.perf_counter() - t0

        began = time.perf_counter()
        champ = train_champion(ctx, args, spec, iso["base"])
        out["timings"]["champion_s"] = time.perf_counter() - began

        began = time.perf_counter()
        name = settings.registered_model
        with ModelStore(
            client, name, tracking_uri=settings.mlflow_tracking_uri, threads=1
        ) as store:
            for day in [*iso["select"], *iso["test"]]:
                serve_day(s3, bucket, day, store)
        out["timings"]["serve_s"] = time.perf_counter() - began

        began = time.perf_counter()
        ctx["arm_buckets"] = {arm: f"{bucket}-{arm}" for arm in ARMS}
        for arm, arm_bucket in ctx["arm_buckets"].items():
            s3.create_bucket(Bucket=arm_bucket)
            write_all(s3, arm_bucket, golden_objects())
            for day in iso["base"]:
                copy_prefix(s3, bucket, arm_bucket, storage.labeled_prefix(day))
            out["picks"][arm] = []
            for i, day in zip(index["select"], iso["select"], strict=True):
                if arm == "queue":
                    picks = picks_of_queue(ctx, day, args.budget)
                else:
                    picks = picks_of_random(ctx, day, args.budget, args.seed * 1000 + i)
                land_labels(ctx, arm_bucket, spec, i, picks, args.frames_per_day)
                out["picks"][arm] += picks
        out["timings"]["select_s"] = time.perf_counter() - began

        models = {}
        for arm in ARMS:
            began = time.perf_counter()
            models[arm] = retrain_arm(ctx, args, arm, [*iso["base"], *iso["select"]], work)
            out["timings"][f"retrain_{arm}_s"] = time.perf_counter() - began

        began = time.perf_counter()
        champion = current_champion(client, name)
        models = {"champion": champion_onnx(champion, "fp32", work / "champion"), **models}
        test = [load_labeled_day(s3, bucket, d, work / "test" / d) for d in iso["test"]]
        out["scores"] = {k: score(path, test, k) for k, path in models.items()}

        calibration = champion_calibration(
            s3, bucket, champion, champ["snapshot"]["sha256"],
            lambda kind: champion_onnx(champion, kind, work / "calib-models"), work / "calib",
        )  # fmt: skip
        rows = []
        for day in iso["test"]:
            scores = champion_confidences(s3, bucket, day, champion.version).scores
            rows.append({"day": day, "estimate": atc.estimate(scores, calibration["threshold"]),
                         "measured": out["scores"]["champion"]["per_day"][day]})  # fmt: skip
        out["atc"] = {"rows": rows, "threshold": calibration["threshold"],
                      "eval_map50_95": calibration["eval_map50_95"]}  # fmt: skip
        out["timings"]["score_s"] = time.perf_counter() - began
    out["timings"]["total_s"] = time.perf_counter() - t0
    return out


def report(args, out: dict) -> None:
    t = out["timings"]
    print()
    print(f"world: abrupt + camera looks, seed {args.seed}; {args.base_days} base days x "
          f"{args.labeled_per_day} labeled; {args.select_days} selection + {args.test_days} test "
          f"days x {args.frames_per_day} served frames; budget {args.budget}/day")  # fmt: skip
    print("times: " + ", ".join(f"{k} {v:.0f}" for k, v in t.items()))
    print(f"snapshots (base + arm labels): {out['counts']}")
    print()
    s = out["scores"]
    n, n_new = s["champion"]["n_frames"], s["champion"]["n_new"]
    print(f"held-out test: {n} labeled frames of the test days ({n_new} from {NEW_CAMERA})")
    header = (f"{'model':<9} {'labeled':>7}  {'picks per camera':<44} {'mAP50-95':>8} "
              f"{'mAP50':>6} {NEW_CAMERA:>7} {'old cams':>8}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for name in ("champion", *ARMS):
        picks = out["picks"].get(name, [])
        share = Counter(c for _, c in picks)
        cams = " ".join(f"{c[-2:]}:{share[c] / len(picks):.2f}" for c in sorted(share)) or "-"
        row = s[name]

        def num(v):
            return f"{v:.3f}" if v is not None else "  -"

        print(f"{name:<9} {len(picks):>7}  {cams:<44} {num(row['map50_95']):>8} "
              f"{num(row['map50']):>6} {num(row['new_cam']):>7} {num(row['old_cams']):>8}")  # fmt: skip
    print()
    a = out["atc"]
    print(f"label-free estimate (ATC, threshold {a['threshold']:.4f}, champion eval mAP50-95 "
          f"{a['eval_map50_95']:.3f}):")  # fmt: skip
    print(f"{'day':<11} {'measured':>8} {'ATC':>6} {'|err|':>6} {'naive |err|':>11}")
    for r in a["rows"]:
        print(f"{r['day']:<11} {r['measured']:8.3f} {r['estimate']:6.3f} "
              f"{abs(r['estimate'] - r['measured']):6.3f} "
              f"{abs(a['eval_map50_95'] - r['measured']):11.3f}")  # fmt: skip
    mae = sum(abs(r["estimate"] - r["measured"]) for r in a["rows"]) / len(a["rows"])
    naive = sum(abs(a["eval_map50_95"] - r["measured"]) for r in a["rows"]) / len(a["rows"])
    print(f"MAE: ATC {mae:.4f}, naive (the eval mAP) {naive:.4f}")
    print(summary_line({
        "map_queue": s["queue"]["map50_95"], "map_random": s["random"]["map50_95"],
        "map_champion": s["champion"]["map50_95"], "estimate_mae": mae, "naive_mae": naive,
        "budget": args.budget, "seed": args.seed, "seconds": round(t["total_s"]),
    }))  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    if not TRAINING_PYTHON.exists():
        raise SystemExit(f"{TRAINING_PYTHON} not found: run `make train-env` first")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # leave through the stack's context
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-label-") as tmp:
        out = run(args, Path(tmp))
    report(args, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
