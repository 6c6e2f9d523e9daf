"""End-to-end time of the whole loop (``make demo``), phase by phase.

Runs ``python -m driftloop_dev.demo`` in a fresh stack folder (a fresh embedded stack, nothing
reused) and prints how long each phase took — stack start, synthetic world, the first
champion's training run, the three drift checks, the retraining for the drift event — with
the gate's verdicts and the largest process's peak memory.

Run: ``.venv/bin/python bench/demo_time.py`` (needs ``make train-env``; about 7 minutes on
2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep-output", action="store_true", help="show the demo's own output")
    parser.add_argument("demo_args", nargs="*", help="passed to driftloop_dev.demo (after --)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="driftloop-demo-bench-") as tmp:
        root = Path(tmp) / "stack"
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "driftloop_dev.demo", "--root", str(root), *args.demo_args],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=not args.keep_output,
            text=True,
            check=False,
        )
        wall = time.monotonic() - began
        if done.returncode != 0:
            print((done.stdout or "")[-4000:], (done.stderr or "")[-4000:], file=sys.stderr)
            print(f"demo failed with exit code {done.returncode}", file=sys.stderr)
            return done.returncode
        summary = json.loads((root / "demo-summary.json").read_text())
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{'phase':<16} {'seconds':>8}")
    print("-" * 25)
    for phase, seconds in summary["phases_s"].items():
        print(f"{phase:<16} {seconds:8.1f}")
    print(f"{'wall (process)':<16} {wall:8.1f}")
    print()
    for number, check in enumerate(summary["checks"], 1):
        print(f"drift check {number}: {check['severity']:<8} {check['seconds']:5.1f} s")
    for run in summary["retrains"]:
        cand = run["evaluation"]["candidate"]
        verdict = "promoted" if run["promote"] else "rejected: " + "; ".join(run["reasons"])
        print(
            f"model v{run['version']}: mAP50 {cand['map50']:.3f} mAP50-95 {cand['map50_95']:.3f} "
            f"INT8 p95 {cand['p95_latency_ms']:.1f} ms, {run['seconds']:.0f} s, {verdict}"
        )
    print(f"aliases: {summary['aliases']}; ledger verified: {summary['ledger_ok']}")
    print(f"peak RSS of the largest process: {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
