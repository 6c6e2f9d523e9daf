"""``python -m driftloop_dev.demo`` / ``driftloop demo``: the story in order (see the package doc)."""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import date, timedelta
from pathlib import Path

from driftloop_dev.demo.report import (
    print_checks,
    print_ending,
    print_retrain,
    print_rollout,
    print_serving,
)
from driftloop_dev.demo.runners import SchedulerRunner, _retrain_result, _run_check, _runner
from driftloop_dev.demo.summary import expected_outcomes, summary_document
from driftloop_dev.demo.terminal import emit_json, only_the_story, say
from driftloop_dev.stack import DEFAULT_REPO, EmbeddedStack, migrate_airflow_db

#: the world: 42 days, the abrupt drift from day 28 (lighting drop, a new camera)
WORLD_DAYS = 42
DRIFT_DAY = 28
WINDOW_DAYS = 14  # retrain_detector's default training window (last_n_days)
#: drifted days in the window of the critical check: days for the retraining to learn from
DRIFTED_DAYS_CHECKED = 5
TRAINING = {"imgsz": 160, "batch": 16}


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The demo's options, shared by ``python -m driftloop_dev.demo`` and ``driftloop demo``."""
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_REPO / ".stack", help="stack folder (default: .stack)"
    )
    parser.add_argument(
        "--frames-per-day",
        type=int,
        default=150,
        help="camera frames a day that serve-batch scores (default 150; rollout days get more "
        "when a stage needs them)",
    )
    parser.add_argument(
        "--labeled-per-day",
        type=int,
        default=40,
        help="labeled frames per day (training data; the first frames of the day's traffic)",
    )
    # the first champion must clear promotion_policy.yaml's floors, calibrated on 12 epochs
    # (bench/model_quality.py; 10 epochs leave mAP50 0.86 against the floor's 0.80, 12 give
    # 0.98); a fine-tune needs fewer
    parser.add_argument("--epochs", type=int, default=12, help="epochs of the first champion")
    parser.add_argument(
        "--fine-tune-epochs", type=int, default=5, help="epochs of the retraining after the drift"
    )
    parser.add_argument(
        "--monthly-epochs",
        type=int,
        # fine-tuning (lr0 0.0005) from a champion that learned most of the same window: the
        # gate's non-inferiority needs the candidate about as good, which a few epochs give
        default=3,
        help="epochs of the monthly fine-tune that becomes the next challenger",
    )
    parser.add_argument(
        "--serve-workers",
        type=int,
        default=2,
        help="processes that serve the days before the rollout (default 2)",
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
            help="the whole loop on the embedded stack: champion, serving, drift, retrain, "
            "rollout (~11 min)",
            description="The whole loop end to end on the embedded stack (make demo).",
        )
    )


def story_days(spec) -> dict:
    """The days of the story (ISO dates): the first champion's window end, the days the
    champion serves, the two checks with what each should find, the first rollout day."""
    first_end = DRIFT_DAY - WINDOW_DAYS - 1
    last_check = DRIFT_DAY + DRIFTED_DAYS_CHECKED - 1
    day = lambda i: spec.date_of(i).isoformat()  # noqa: E731
    return {
        "first_window_end": day(first_end),
        "served": [day(i) for i in range(first_end + 1, last_check + 1)],
        "traffic_until": last_check,
        "checks": [
            (day(DRIFT_DAY - 1), "before the drift"),
            (
                day(last_check),
                f"{DRIFTED_DAYS_CHECKED} drifted days in the window: a break, critical at once",
            ),
        ],
        "rollout": [day(i) for i in range(last_check + 1, spec.days)],
    }


def main(argv=None) -> int:
    return run(parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """The demo with only its story on the terminal; the rest in ``<root>/logs/demo.log``."""
    log_path = args.root / "logs" / "demo.log"
    as_json = getattr(args, "json", False)
    with only_the_story(log_path, story_on_stderr=as_json):
        say(f"driftloop demo: library output and logs go to {log_path}")
        return _story(args, as_json=as_json)


def _refuse_a_used_stack(s3, bucket: str) -> None:
    """The story starts from an empty world: a stack that served days before (a running
    ``make up`` keeps S3 in memory) would refuse to serve them again, half way through."""
    from driftloop.contracts import storage
    from driftloop.promotion.routing import read_routing

    served = storage.list_keys(s3, bucket, "inference/")
    if served or read_routing(s3, bucket) is not None:
        raise SystemExit(
            f"s3://{bucket} already holds a demo's days (inference logs, a routing document): "
            "the story needs a fresh stack — `make down`, then `make up` (or no stack) and "
            "`make demo` again"
        )


def _story(args: argparse.Namespace, *, as_json: bool = False) -> int:
    from driftloop_dev.demo.policy import write_demo_policy

    began = time.monotonic()
    phases: dict[str, float] = {}
    stack = EmbeddedStack(args.root, DEFAULT_REPO).start()
    already_running = stack.reused
    os.environ.update(stack.env)
    # the dag.test() runs read this; the scheduler's processes read what `make up` gave them
    os.environ["DRIFTLOOP_PROMOTION_POLICY_PATH"] = str(write_demo_policy(args.root))
    migrate_airflow_db(stack.env)
    phases["stack"] = time.monotonic() - began
    log_path = args.root / "logs" / "demo-dag-test.log"
    runner = None
    try:
        from driftloop.config.settings import Settings
        from driftloop.contracts.storage import s3_client
        from driftloop.drift import tracking
        from driftloop.promotion import registry
        from driftloop.promotion import rollout as routing_state
        from driftloop.retrain.records import ledger
        from driftloop_dev.demo.policy import challenger_params, effective_policy
        from driftloop_dev.demo.rollout import (
            RolloutWorld,
            drive_rollout,
            guard_run,
            routing_timeline,
        )
        from driftloop_dev.demo.serving import serve_days, serve_in_process
        from driftloop_dev.demo.world import demo_spec, write_day_traffic, write_demo_world
        from driftloop_dev.synth import S3Sink

        settings = Settings.from_env()
        s3 = s3_client()
        _refuse_a_used_stack(s3, settings.bucket)
        sink = S3Sink(s3, settings.bucket)
        book = ledger(settings)
        spec = demo_spec(
            days=WORLD_DAYS,
            drift_day=DRIFT_DAY,
            end_date=args.end_date or (date.today() - timedelta(days=1)).isoformat(),
            labeled_per_day=args.labeled_per_day,
        )
        days = story_days(spec)

        runner = _runner(stack, log_path)
        runner.before_world()
        mark = time.monotonic()
        say(
            f"writing the synthetic world: {WORLD_DAYS} days, abrupt drift from "
            f"{spec.date_of(DRIFT_DAY)}; {args.labeled_per_day} labeled frames every day, "
            f"{args.frames_per_day} camera frames a day up to {days['served'][-1]} (no inference "
            "logs: serve-batch writes them from the model's outputs) ..."
        )
        truth, objects = write_demo_world(
            sink,
            spec,
            traffic_days=range(days["traffic_until"] + 1),
            frames_per_day=args.frames_per_day,
        )
        phases["world"] = time.monotonic() - mark
        say(f"  {objects} objects in s3://{settings.bucket}; running the DAGs with {runner.mode}")

        mark = time.monotonic()
        say(
            f"retrain_detector: the first champion, {args.epochs} epochs on the 14 days up to "
            f"{days['first_window_end']} ..."
        )
        first = _retrain_result(
            runner,
            runner.run(
                "retrain_detector",
                {
                    **TRAINING,
                    "epochs": args.epochs,
                    "reason": "first champion: 14 days of traffic before serving starts",
                    "end_date": days["first_window_end"],
                    "base": "yolo11n.yaml",
                },
            ),
        )
        phases["first_champion"] = time.monotonic() - mark
        policy = effective_policy(first["plan"])
        print_retrain("1. the first champion (no champion yet: the floors decide)", first)
        if not first["decision"]["promote"]:
            raise SystemExit(
                "the first model did not pass the floors: nothing serves, the story ends"
            )

        mark = time.monotonic()
        say()
        say(
            f"2. serve-batch: the champion serves {days['served'][0]} .. {days['served'][-1]} "
            f"({len(days['served'])} days) in {args.serve_workers} processes ..."
        )
        served = serve_days(
            days["served"], workers=args.serve_workers, log_path=args.root / "logs" / "demo.log"
        )
        phases["serve"] = time.monotonic() - mark
        print_serving(served, phases["serve"], args.serve_workers)

        mark = time.monotonic()
        note = runner.before_drift_checks(policy)
        if note:
            say(f"  note: {note}")
        rows = []
        for day, expected in days["checks"]:
            say(f"drift_monitor: checking the window ending {day} ({expected}) ...")
            rows.append({"expected": expected, **_run_check(runner, day)})
        phases["drift_checks"] = time.monotonic() - mark
        say()
        say("3. drift_monitor, day after day, against the champion's own outputs on its window")
        print_checks(rows, truth)
        last = rows[-1]
        confirmed = last["decision"]["severity"] == "critical" and last["event_id"] is not None

        retrain = rollout = monthly = final_guard = None
        if confirmed:
            mark = time.monotonic()
            how = "as the drift-confirmed Asset would"
            if isinstance(runner, SchedulerRunner):
                how = (
                    "by hand, after the review the drift-confirmed Asset's run opened"
                    if note
                    else "started by the drift-confirmed Asset event"
                )
            say(
                f"retrain_detector: drift event {last['event_id']} confirmed, fine-tuning the "
                f"champion on the 14 days up to {last['decision']['window']['end']} ({how}) ..."
            )
            retrain = _retrain_result(
                runner,
                runner.retrain_after_confirmed_drift(
                    last,
                    {
                        **TRAINING,
                        "epochs": args.fine_tune_epochs,
                        "reason": "drift confirmed in "
                        + ", ".join(last["decision"]["drifted_features"]),
                        "end_date": last["decision"]["window"]["end"],
                        "base": "champion",
                    },
                    challenger_params(policy),
                ),
            )
            phases["retrain"] = time.monotonic() - mark
            print_retrain(
                f"4. retraining for drift event {last['event_id']} (fine-tuned from the champion)",
                retrain,
            )

        if retrain is not None and retrain["decision"]["promote"]:
            mark = time.monotonic()
            say()
            say(f"5. the rollout of challenger v{retrain['candidate']['version']}, day by day:")
            rollout_days = iter(days["rollout"])
            world = RolloutWorld(
                s3=s3,
                bucket=settings.bucket,
                book=book,
                days=rollout_days,
                base_frames=args.frames_per_day,
                write_traffic=lambda day, n: write_day_traffic(
                    sink, spec, (date.fromisoformat(day) - spec.start_date).days, n
                ),
                serve=lambda day: serve_in_process([day])[0],
            )
            rollout = drive_rollout(runner, world, policy)
            phases["rollout"] = time.monotonic() - mark
            print_rollout(rollout, policy)

            client = tracking.client(settings.mlflow_tracking_uri)
            champion_now = registry.aliases(client, settings.registered_model).get("champion")
            if rollout["days"] and champion_now == str(retrain["candidate"]["version"]):
                mark = time.monotonic()
                window_end = rollout["days"][-1]
                say(
                    f"retrain_detector: the monthly fine-tune of champion v{champion_now}, "
                    f"{args.monthly_epochs} epochs on the 14 days up to {window_end} ..."
                )
                monthly = _retrain_result(
                    runner,
                    runner.run(
                        "retrain_detector",
                        {
                            **TRAINING,
                            **challenger_params(policy),
                            "epochs": args.monthly_epochs,
                            "reason": "monthly fine-tune (what the schedule on the 1st runs)",
                            "end_date": window_end,
                            "base": "champion",
                        },
                    ),
                )
                print_retrain("6. the monthly fine-tune (from the new champion)", monthly)
                say()
                say("rollout_guard: the new challenger's first look ...")
                final_guard = guard_run(runner, book)
                phases["monthly"] = time.monotonic() - mark
        phases["total"] = time.monotonic() - began

        client = tracking.client(settings.mlflow_tracking_uri)
        aliases = registry.aliases(client, settings.registered_model)
        verified = book.verify()
        agree = routing_state.agreement(routing_state.Stores.from_settings(s3, settings))
        timeline = routing_timeline(s3, settings.bucket)
        outcomes = expected_outcomes(
            first=first,
            checks=rows,
            retrain=retrain,
            monthly=monthly,
            timeline=timeline,
            aliases=aliases,
            ledger_ok=verified.ok,
        )
        print_ending(
            timeline=timeline,
            final_guard=final_guard,
            aliases=aliases,
            verified=verified,
            agreement=agree,
            outcomes=outcomes,
            phases=phases,
            settings=settings,
            latest=monthly or retrain or first,
        )
        if isinstance(runner, SchedulerRunner):
            say(f"Airflow UI:   {runner.api.base_url}/dags  (task logs of every run)")
        else:
            say(f"task logs: {log_path}")
            say()
            say(
                "Airflow and MLflow UIs: `make up`, then `make demo` runs the DAGs under the "
                "scheduler; `make down` to stop."
            )
        summary = summary_document(
            truth=truth,
            phases=phases,
            checks=rows,
            retrains=[first, retrain, monthly],
            served=served,
            policy=policy,
            rollout=rollout,
            timeline=timeline,
            final_guard=final_guard,
            aliases=aliases,
            ledger_ok=verified.ok,
            outcomes=outcomes,
        )
        (args.root / "demo-summary.json").write_text(json.dumps(summary, indent=2, default=str))
        ok = all(outcomes.values())
        if as_json:
            emit_json({"ok": ok, **summary})
        if not ok:
            say("unexpected outcome: see the tables above")
        return 0 if ok else 1
    finally:
        if runner is not None:
            runner.close()
        if not (already_running or args.keep):
            stack.stop()
