"""The serving side of the demo: ``driftloop serve-batch`` for a list of days.

Each day is served by :func:`driftloop.serving.batch.serve_day` — what ``driftloop serve-batch
--day D`` runs — with the models the routing document and the MLflow aliases name, and leaves
the day's inference log, serving records and ``_SUCCESS``. Days served under one routing
document (the champion alone, before the drift) are independent, so :func:`serve_days` splits
them over ``workers`` processes (``python -m driftloop_dev.demo.serving DAY ...``: one model
store each, the days in order, one JSON summary a line on stdout, the logs to the demo's log
file). A rollout day is served alone, in this process, after the guard run before it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: what the demo keeps of a day's summary (``serve_day``'s return value)
SUMMARY_KEYS = (
    "day",
    "stage",
    "sequence",
    "rollout_id",
    "frames",
    "served",
    "paired",
    "errors",
    "latency_p95_ms",
    "models",
    "note",
    "seconds",
    "frames_per_s",
)


def serve_in_process(days: Sequence[str]) -> list[dict[str, Any]]:
    """Serve ``days`` in order with one model store; their summaries."""
    from mlflow import MlflowClient

    from driftloop.config.settings import Settings
    from driftloop.contracts.storage import s3_client
    from driftloop.serving.batch import serve_day
    from driftloop.serving.models import ModelStore

    settings = Settings.from_env()
    s3 = s3_client()
    client = MlflowClient(settings.mlflow_tracking_uri)
    with ModelStore(
        client, settings.registered_model, tracking_uri=settings.mlflow_tracking_uri
    ) as store:
        return [
            {
                k: v
                for k, v in serve_day(s3, settings.bucket, day, store).items()
                if k in SUMMARY_KEYS
            }
            for day in days
        ]


def split_days(days: Sequence[str], workers: int) -> list[list[str]]:
    """``days`` dealt round-robin to at most ``workers`` non-empty lists (each in order)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return [chunk for chunk in (list(days[i::workers]) for i in range(workers)) if chunk]


def serve_days(days: Sequence[str], *, workers: int, log_path: Path) -> list[dict[str, Any]]:
    """Serve ``days`` (one routing document for all of them) in ``workers`` processes, or in
    this one when there is one worker or one day; the summaries in the order of ``days``."""
    chunks = split_days(days, workers)
    if len(chunks) <= 1:
        return serve_in_process(days)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "driftloop_dev.demo.serving", *chunk],
                stdout=subprocess.PIPE,
                stderr=log_file,
                stdin=subprocess.DEVNULL,
                env=dict(os.environ),
            )
            for chunk in chunks
        ]
        outputs = [proc.communicate()[0] for proc in procs]
    failed = [
        " ".join(chunk) for chunk, proc in zip(chunks, procs, strict=True) if proc.returncode != 0
    ]
    if failed:
        raise SystemExit(f"serve-batch failed for the days {'; '.join(failed)}; see {log_path}")
    by_day = {}
    for out in outputs:
        for line in out.decode().splitlines():
            summary = json.loads(line)
            by_day[summary["day"]] = summary
    missing = [day for day in days if day not in by_day]
    if missing:
        raise SystemExit(f"serve-batch returned no summary for {missing}; see {log_path}")
    return [by_day[day] for day in days]


def main(argv: Sequence[str] | None = None) -> int:
    """A worker: serve the days given as arguments; one JSON summary a line on stdout."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    days = list(sys.argv[1:] if argv is None else argv)
    if not days:
        print("usage: python -m driftloop_dev.demo.serving DAY [DAY ...]", file=sys.stderr)
        return 2
    for summary in serve_in_process(days):
        print(json.dumps(summary, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
