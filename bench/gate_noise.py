"""Does the promotion gate's latency check flip on noise? False and true rejections under load.

Three INT8 ONNX detectors are built offline from the model yaml (``yolo11n.yaml``, 2 classes,
random initialisation; exported and quantized exactly as training does, in ``.venv-train``;
cached under ``--cache``):

- ``champion``: seed 0 at ``--imgsz`` (160, the demo's size);
- ``same``: seed 1 at the same size: another initialisation of the same architecture, whose
  latency is the champion's — any difference the gate sees is noise;
- ``slower``: seed 2 at ``--slow-imgsz`` (224: 1.96x the pixels), truly slower.

Then, with a CPU hog busy-looping on every core (one process per core, started and stopped
here), ``--evaluations`` gate evaluations of ``same`` against ``champion`` (a rejection on
latency is a false rejection) and as many of ``slower`` against ``champion`` (a rejection is a
true one). Each evaluation is what the ``evaluate`` and ``gate`` tasks do: fresh sessions,
:func:`driftloop.evaluation.latency.compare_onnx_latency` (paired ABBA rounds, the CI of the
p95 ratio, both graph signatures) under the shipped promotion policy, then
:func:`driftloop.promotion.gate.decide_promotion` with a candidate that is clearly better on
every other check — so only the latency check can reject it.

Besides the gate's verdict, each evaluation is also judged by two other rules on the same
timings: ``timing_only`` (the CI rule without the graph signature) and ``point`` (the old rule:
candidate p95 > champion p95 x (1 + tolerance), no interval).

Run: ``.venv/bin/python bench/gate_noise.py`` (needs ``make train-env``); ends with one line
``summary: false_reject=N/20 true_reject=M/20 …``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAINING_PYTHON = REPO / ".venv-train" / "bin" / "python"
MODEL_YAML = "yolo11n.yaml"
N_CLASSES = 2
CALIBRATION_IMAGES = 16
#: name -> (seed, which image size)
MODELS = {"champion": (0, "imgsz"), "same": (1, "imgsz"), "slower": (2, "slow_imgsz")}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evaluations", type=int, default=20, help="per scenario")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--slow-imgsz", type=int, default=224)
    parser.add_argument(
        "--rounds", type=int, default=None, help="ABBA rounds (default: the policy's)"
    )
    parser.add_argument("--images", type=int, default=24, help="distinct input images")
    parser.add_argument("--hog", type=int, default=None, help="hog processes (default: cores)")
    parser.add_argument("--no-hog", action="store_true", help="measure on a quiet machine")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / f"driftloop-gate-noise-{os.getuid()}",
        help="where the built models are kept between runs",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument(
        "--build",
        nargs=4,
        metavar=("SEED", "IMGSZ", "CALIBRATION_DIR", "OUT_DIR"),
        help=argparse.SUPPRESS,  # internal: the model-building half, run inside .venv-train
    )
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- .venv-train side


def build_model(seed: int, imgsz: int, calibration_dir: Path, out_dir: Path) -> int:
    """A randomly initialised detector from the model yaml, saved as an Ultralytics
    checkpoint (as ``--epochs 0`` training does), exported to FP32 ONNX and quantized to INT8
    by the project's own export code."""
    import tempfile

    from driftloop.training import yolo_env

    yolo_env.configure(runs_dir=tempfile.mkdtemp(), datasets_dir=tempfile.mkdtemp())
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import init_seeds

    from driftloop.training.export import (
        FP32_NAME,
        INT8_NAME,
        calibration_images,
        export_onnx,
        quantize_int8,
    )

    init_seeds(seed, deterministic=True)
    model = YOLO(MODEL_YAML)
    net = DetectionModel(dict(model.model.yaml), nc=N_CLASSES, verbose=False)
    net.names = {0: "ball", 1: "player"}
    model.model = net
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / "weights.pt"
    model.save(str(weights))
    fp32 = export_onnx(weights, imgsz, out_path=out_dir / FP32_NAME)
    quantize_int8(fp32, calibration_images([calibration_dir]), imgsz, out_dir / INT8_NAME)
    return 0


# --------------------------------------------------------------------------- .venv side


def write_images(folder: Path, n: int, size: int = 160) -> list[Path]:
    """Deterministic synthetic frames: a green pitch with a few bright blobs and noise (their
    content does not change a convolution's work, only realistic inputs keep INT8
    calibration ranges sane)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    paths = []
    for i in range(n):
        frame = np.empty((size, size, 3), dtype=np.float64)
        frame[:] = (60, 130, 60)
        for _ in range(4):
            x, y = rng.integers(10, size - 30, 2)
            w, h = rng.integers(6, 30, 2)
            frame[y : y + h, x : x + w] = rng.integers(120, 255, 3)
        frame += rng.normal(0, 12, frame.shape)
        path = folder / f"frame_{i:03d}.png"
        Image.fromarray(frame.clip(0, 255).astype(np.uint8), "RGB").save(path)
        paths.append(path)
    return paths


def ensure_models(args) -> dict[str, Path]:
    """The INT8 model of each of :data:`MODELS`, built once into ``--cache``."""
    from driftloop.training.export import INT8_NAME

    calibration = args.cache / "calibration"
    if not calibration.is_dir():
        write_images(calibration, CALIBRATION_IMAGES)
    paths = {}
    for name, (seed, size_arg) in MODELS.items():
        imgsz = getattr(args, size_arg)
        out = args.cache / f"{MODEL_YAML.removesuffix('.yaml')}-seed{seed}-{imgsz}px"
        if not (out / INT8_NAME).is_file():
            if not TRAINING_PYTHON.is_file():
                raise SystemExit(f"{TRAINING_PYTHON} not found: run `make train-env` first")
            print(f"building {name}: {MODEL_YAML}, seed {seed}, {imgsz} px ...", flush=True)
            began = time.perf_counter()
            subprocess.run(
                [str(TRAINING_PYTHON), __file__, "--build", str(seed), str(imgsz),
                 str(calibration), str(out)],
                check=True,
                cwd=tempfile.gettempdir(),
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            print(f"  built in {time.perf_counter() - began:.0f} s", flush=True)
        paths[name] = out / INT8_NAME
    return paths


class CpuHog:
    """``n`` processes busy-looping (one per core by default), started on entry and stopped
    on exit — also when the bench fails or is interrupted."""

    def __init__(self, n: int):
        self.n = n
        self.procs: list[subprocess.Popen] = []

    def __enter__(self):
        for _ in range(self.n):
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL
                )
            )
        time.sleep(1.0)  # let the scheduler see them before the first timing
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def clearly_better(comparison):
    """Candidate and champion summaries where every check but latency passes by far (the
    latency numbers are the comparison's own), and the delta CI of a clear improvement."""
    from driftloop.evaluation.bootstrap import DeltaCI
    from driftloop.promotion.gate import EvalSummary

    def summary(side, map50_95):
        stats = getattr(comparison, side)
        return EvalSummary(0.95, map50_95, 0.95, stats["p95_ms"], stats["p50_ms"], 100)

    delta = DeltaCI(0.09, 0.073, 0.111, 100, 1000, "map50_95", 0.95)
    return summary("candidate", 0.70), summary("champion", 0.61), delta


def evaluate_once(candidate: Path, champion: Path, images, policy, rounds: int) -> dict:
    """One gate evaluation of ``candidate`` against ``champion``: the ``evaluate`` task's
    latency comparison, then the gate."""
    from driftloop.evaluation.latency import compare_onnx_latency
    from driftloop.promotion.gate import decide_promotion
    from driftloop.retrain.evaluate import LATENCY_WARMUP_ROUNDS

    began = time.perf_counter()
    comparison = compare_onnx_latency(
        candidate,
        champion,
        images,
        rounds=rounds,
        warmup=LATENCY_WARMUP_ROUNDS,
        confidence=policy.latency_confidence,
    )
    cand, champ, delta = clearly_better(comparison)
    decision = decide_promotion(cand, champ, delta, policy, comparison)
    checks = {c.name: c for c in decision.checks}
    bar = 1.0 + policy.latency_tolerance
    return {
        "ratio": comparison.ratio,
        "low": comparison.low,
        "high": comparison.high,
        "candidate_p95_ms": comparison.candidate["p95_ms"],
        "champion_p95_ms": comparison.champion["p95_ms"],
        "same_graph": comparison.same_graph,
        "flops_ratio": comparison.flops_ratio,
        # the gate's latency check (interval + graph signature)
        "gate_rejects": not checks["p95_latency"].passed,
        # the interval alone, as if the signatures were unknown
        "timing_only_rejects": comparison.low > bar,
        # the old rule: two point p95s, no interval
        "point_rejects": comparison.ratio > bar,
        "floor_breached": not checks["floor_p95_latency_ms"].passed,
        "detail": checks["p95_latency"].detail,
        "seconds": time.perf_counter() - began,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.build:
        seed, imgsz, calibration, out = args.build
        return build_model(int(seed), int(imgsz), Path(calibration), Path(out))
    import statistics

    from driftloop.config.promotion_policy import load_promotion_policy

    policy = load_promotion_policy()
    rounds = args.rounds or policy.latency_rounds
    if rounds != policy.latency_rounds:  # the gate refuses fewer rounds than its policy's
        policy = policy.model_copy(
            update={"latency": policy.latency.model_copy(update={"rounds": rounds})}
        )
    paths = ensure_models(args)
    images = write_images(args.cache / f"frames-{args.imgsz}", args.images, args.imgsz)
    n_hog = 0 if args.no_hog else (args.hog or os.cpu_count() or 1)
    print(
        f"policy {policy.version}: latency_tolerance {policy.latency_tolerance}, "
        f"{rounds} paired rounds, {policy.latency_confidence:.0%} CI, "
        f"same_graph_tolerance {policy.latency_same_graph_tolerance}"
    )
    print(f"champion {paths['champion']}")
    print(f"same     {paths['same']} (another initialisation, {args.imgsz} px)")
    print(f"slower   {paths['slower']} ({args.slow_imgsz} px)")
    print(f"CPU hog: {n_hog} busy-looping processes on {os.cpu_count()} cores\n")
    header = f"{'scenario':8} {'#':>3} {'ratio':>6} {'CI':>16} {'cand p95':>9} {'champ p95':>9}  gate    s"
    print(header)
    print("-" * len(header))
    results: dict[str, list[dict]] = {"same": [], "slower": []}
    began = time.perf_counter()
    with CpuHog(n_hog):
        # the two scenarios alternate, so a change in the machine's load hits both alike
        for i in range(args.evaluations):
            for scenario in ("same", "slower"):
                row = evaluate_once(paths[scenario], paths["champion"], images, policy, rounds)
                results[scenario].append(row)
                print(
                    f"{scenario:8} {i + 1:>3} {row['ratio']:6.3f} "
                    f"[{row['low']:6.3f}, {row['high']:6.3f}] {row['candidate_p95_ms']:8.2f} "
                    f"{row['champion_p95_ms']:9.2f}  "
                    f"{'REJECT' if row['gate_rejects'] else 'pass  '} {row['seconds']:4.1f}",
                    flush=True,
                )
    total_s = time.perf_counter() - began
    same, slower = results["same"], results["slower"]
    n = args.evaluations

    def count(rows, key):
        return sum(1 for r in rows if r[key])

    print()
    print(f"same graph: {same[0]['same_graph']} (same), {slower[0]['same_graph']} (slower); "
          f"FLOPs ratio of the slower candidate {slower[0]['flops_ratio']:.2f}")  # fmt: skip
    print(f"example decisions:\n  same:   {same[0]['detail']}\n  slower: {slower[0]['detail']}")
    print()
    print(f"{'rule':34} {'false rejects':>14} {'true rejects':>13}")
    for label, key in (
        ("gate (interval + graph signature)", "gate_rejects"),
        ("interval only", "timing_only_rejects"),
        ("old: point p95s", "point_rejects"),
    ):
        print(f"{label:34} {count(same, key):>11}/{n} {count(slower, key):>10}/{n}")
    summary = {
        "false_reject": f"{count(same, 'gate_rejects')}/{n}",
        "true_reject": f"{count(slower, 'gate_rejects')}/{n}",
        "false_reject_interval_only": f"{count(same, 'timing_only_rejects')}/{n}",
        "true_reject_interval_only": f"{count(slower, 'timing_only_rejects')}/{n}",
        "false_reject_point": f"{count(same, 'point_rejects')}/{n}",
        "max_low_same": f"{max(r['low'] for r in same):.3f}",
        "min_low_slower": f"{min(r['low'] for r in slower):.3f}",
        "median_ratio_same": f"{statistics.median(r['ratio'] for r in same):.3f}",
        "median_ratio_slower": f"{statistics.median(r['ratio'] for r in slower):.3f}",
        "floor_breached": f"{count(same + slower, 'floor_breached')}/{2 * n}",
        "hog": n_hog,
        "rounds": rounds,
        "eval_s": f"{total_s / (2 * n):.1f}",
        "total_s": f"{total_s:.0f}",
    }
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "results": results}, indent=2))
    print("summary: " + " ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
