"""``python -m driftloop_dev.demo`` / ``driftloop demo``: the story in order (see the package doc)."""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import date, timedelta
from pathlib import Path

from driftloop_dev.demo.report import _mlflow_model_url, _print_checks, _print_retrain
from driftloop_dev.demo.runners import SchedulerRunner, _retrain_result, _run_check, _runner
from driftloop_dev.demo.terminal import emit_json, only_the_story, say
from driftloop_dev.stack import DEFAULT_REPO, EmbeddedStack, migrate_airflow_db


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The demo's options, shared by ``python -m driftloop_dev.demo`` and ``driftloop demo``."""
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_REPO / ".stack", help="stack folder (default: .stack)"
    )
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument(
        "--labeled-per-day", type=int, default=40, help="labeled frames per day (training data)"
    )
    # the first champion must clear promotion_policy.yaml's floors: its learning curve
    # plateaus from epoch 8 on (bench/model_quality.py); a fine-tune needs fewer
    parser.add_argument("--epochs", type=int, default=12, help="epochs of the first champion")
    parser.add_argument(
        "--fine-tune-epochs", type=int, default=6, help="epochs of the retraining after the drift"
    )
    parser.add_argument(
        "--end-date", default=None, help="last day of the world (default: yesterday UTC)"
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    parser.set_defaults(handler=run)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m driftloop_dev.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="the summary as one JSON document")
    return add_arguments(parser).parse_args(argv)


def register(subparsers, parents: list[argparse.ArgumentParser]) -> None:
    """``driftloop demo`` (entry point of the ``driftloop.commands`` group)."""
    add_arguments(
        subparsers.add_parser(
            "demo",
            parents=parents,
            help="the whole loop on the embedded stack: champion, drift, retrain, gate (~9 min)",
            description="The whole loop end to end on the embedded stack (make demo).",
        )
    )


def _check_days(drift_start: date) -> list[tuple[str, str]]:
    """Days to check, with what an operator should expect from each."""
    return [
        ((drift_start - timedelta(days=1)).isoformat(), "before the drift"),
        (
            (drift_start + timedelta(days=4)).isoformat(),
            "5 drifted days in the window: a break, critical at once",
        ),
    ]


def main(argv=None) -> int:
    return run(parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """The demo with only its story on the terminal; the rest in ``<root>/logs/demo.log``."""
    log_path = args.root / "logs" / "demo.log"
    as_json = getattr(args, "json", False)
    with only_the_story(log_path, story_on_stderr=as_json):
        say(f"driftloop demo: library output and logs go to {log_path}")
        return _story(args, as_json=as_json)


def _story(args: argparse.Namespace, *, as_json: bool = False) -> int:
    began = time.monotonic()
    phases: dict[str, float] = {}
    stack = EmbeddedStack(args.root, DEFAULT_REPO).start()
    already_running = stack.reused
    os.environ.update(stack.env)
    migrate_airflow_db(stack.env)
    phases["stack"] = time.monotonic() - began
    log_path = args.root / "logs" / "demo-dag-test.log"
    try:
        from driftloop.config.settings import Settings
        from driftloop.contracts.storage import s3_client
        from driftloop.drift import tracking
        from driftloop.promotion import registry
        from driftloop.retrain.records import ledger
        from driftloop_dev.synth import S3Sink, generate_world

        settings = Settings.from_env()
        end = args.end_date or (date.today() - timedelta(days=1)).isoformat()
        mark = time.monotonic()
        say("writing the synthetic world (abrupt drift) ...")
        truth = generate_world(
            S3Sink(s3_client(), settings.bucket),
            "abrupt",
            days=42,
            drift_day=28,
            end_date=end,
            rows_per_day=args.rows_per_day,
            labeled_per_day=args.labeled_per_day,
        )
        phases["world"] = time.monotonic() - mark
        runner = _runner(stack, log_path)
        say(f"running the DAGs with {runner.mode}")
        drift_start = date.fromisoformat(truth.drift_start_date)
        before_drift = (drift_start - timedelta(days=1)).isoformat()
        training = {"imgsz": 160, "batch": 16}

        mark = time.monotonic()
        say(
            f"retrain_detector: the first champion, {args.epochs} epochs on the 14 days up to {before_drift} ...",
        )
        first = _retrain_result(
            runner,
            runner.run(
                "retrain_detector",
                {
                    **training,
                    "epochs": args.epochs,
                    "reason": "first champion: the 14 days before the drift",
                    "end_date": before_drift,
                    "base": "yolo11n.yaml",
                },
            ),
        )
        phases["first_champion"] = time.monotonic() - mark

        mark = time.monotonic()
        rows = []
        for day, expected in _check_days(drift_start):
            say(f"drift_monitor: checking the window ending {day} ({expected}) ...")
            rows.append({"expected": expected, **_run_check(runner, day)})
        phases["drift_checks"] = time.monotonic() - mark
        last = rows[-1]
        confirmed = last["decision"]["severity"] == "critical" and last["event_id"] is not None

        retrain = None
        if confirmed:
            mark = time.monotonic()
            say(
                f"retrain_detector: drift event {last['event_id']} confirmed, fine-tuning the "
                f"champion on the 14 days up to {last['decision']['window']['end']} "
                f"({'started by the drift-confirmed Asset event' if isinstance(runner, SchedulerRunner) else 'as the drift-confirmed Asset would'}) ...",
            )
            retrain = _retrain_result(
                runner,
                runner.retrain_after_confirmed_drift(
                    last,
                    {
                        **training,
                        "epochs": args.fine_tune_epochs,
                        "reason": "drift confirmed in "
                        + ", ".join(last["decision"]["drifted_features"]),
                        "end_date": last["decision"]["window"]["end"],
                        "base": "champion",
                    },
                ),
            )
            phases["retrain"] = time.monotonic() - mark
        phases["total"] = time.monotonic() - began

        _print_retrain("1. the first champion (no champion yet: the floors decide)", first)
        say()
        say("2. drift_monitor, day after day, against the champion's training window")
        _print_checks(rows, truth)
        if retrain is not None:
            _print_retrain(
                f"3. retraining for drift event {last['event_id']} (fine-tuned from the champion)",
                retrain,
            )
        client = tracking.client(settings.mlflow_tracking_uri)
        aliases = registry.aliases(client, settings.registered_model)
        verified = ledger(settings).verify()
        say()
        say(
            f"registry {settings.registered_model}: "
            + ", ".join(f"{a} -> v{v}" for a, v in sorted(aliases.items()))
        )
        latest = retrain or first
        say(
            f"MLflow model version: {_mlflow_model_url(settings.mlflow_tracking_uri, settings.registered_model, latest['candidate']['version'])}"
        )
        say(f"MLflow UI:            {settings.mlflow_tracking_uri}")
        say(
            f"audit ledger: {verified.rows if hasattr(verified, 'rows') else ''} rows, chain {'verified' if verified.ok else 'BROKEN'} (driftloop ledger verify)"
        )
        say("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()))
        if isinstance(runner, SchedulerRunner):
            say(f"Airflow UI:   {runner.api.base_url}/dags  (task logs of every run)")
        else:
            say(f"task logs: {log_path}")
            say()
            say(
                "Airflow and MLflow UIs: `make up`, then `make demo` runs the DAGs under the "
                "scheduler; `make down` to stop."
            )
        summary = {
            "ground_truth": truth.to_dict(),
            "phases_s": phases,
            "checks": [
                {k: r[k] for k in ("run_id", "seconds", "mlflow_url", "event_id")}
                | {
                    "severity": r["decision"]["severity"],
                    "drifted_features": r["decision"]["drifted_features"],
                }
                for r in rows
            ],
            "retrains": [
                {
                    "run_id": r["run_id"],
                    "seconds": r["seconds"],
                    "version": r["candidate"]["version"],
                    "evaluation": r["evaluation"],
                    "promote": r["decision"]["promote"],
                    "reasons": r["decision"]["reasons"],
                }
                for r in (first, retrain)
                if r is not None
            ],
            "aliases": aliases,
            "ledger_ok": verified.ok,
        }
        (args.root / "demo-summary.json").write_text(json.dumps(summary, indent=2, default=str))
        ok = (
            first["decision"]["promote"]
            and rows[0]["decision"]["severity"] == "none"
            and confirmed
            and verified.ok
        )
        if as_json:
            emit_json({"ok": bool(ok), **summary})
        if not ok:
            say("unexpected outcome: see the tables above")
        return 0 if ok else 1
    finally:
        if not (already_running or args.keep):
            stack.stop()
