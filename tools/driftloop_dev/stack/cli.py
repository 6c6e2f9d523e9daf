"""``python -m driftloop_dev.stack`` / ``driftloop stack``: up, down, status, env."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

from driftloop.config.settings import Settings
from driftloop_dev.stack.airflow_db import migrate_airflow_db
from driftloop_dev.stack.constants import ADMIN_USER, BIN_DIR, DEFAULT_REPO, StackError
from driftloop_dev.stack.embedded import EmbeddedStack


def _print_summary(stack: EmbeddedStack, out=sys.stdout) -> None:
    for name, info in stack.status().items():
        if "skipped" in info:
            print(f"{name:22} skipped: {info['skipped']}", file=out)
            continue
        state = "healthy" if info["healthy"] else ("running" if info["running"] else "DOWN")
        startup = f"{info['startup_s']:.1f}s" if info["startup_s"] is not None else "-"
        print(
            f"{name:22} {info['url'] or '-':34} {state:8} pid={info['pid']:<8} "
            f"rss={info['rss_mb']:.0f}MiB pss={info['pss_mb']:.0f}MiB startup={startup}",
            file=out,
        )


ACTIONS = ("up", "down", "status", "env")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The stack's options, shared by ``python -m driftloop_dev.stack`` and ``driftloop stack``."""
    parser.add_argument("action", choices=ACTIONS, help="up, down, status or env")
    parser.add_argument(
        "--root", type=Path, default=None, help="state, logs and data (default <repo>/.stack)"
    )
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO, help="the DAG repository")
    parser.add_argument(
        "--ui",
        action="store_true",
        help="up: also run Airflow (PostgreSQL, api-server, scheduler, dag-processor, triggerer)",
    )
    parser.add_argument(
        "--celery",
        action="store_true",
        help="up: Airflow with the CeleryExecutor (Redis, two workers); implies --ui",
    )
    parser.add_argument(
        "--dags-folder", type=Path, default=None, help="up: the DAGs folder (default <repo>/dags)"
    )
    parser.add_argument(
        "--no-airflow-db", action="store_true", help="up: skip `airflow db migrate` (without --ui)"
    )
    parser.set_defaults(handler=run)
    return parser


def register(subparsers, parents: list[argparse.ArgumentParser]) -> None:
    """``driftloop stack …`` (entry point of the ``driftloop.commands`` group)."""
    add_arguments(
        subparsers.add_parser(
            "stack",
            parents=parents,
            help="the embedded stack: up, down, status, env (development)",
            description=__doc__.split("\n")[0],
        )
    )


def ui_lines(stack: EmbeddedStack) -> list[str]:
    """Where a person opens the stack: the Airflow UI with its login, the MLflow UI, S3."""
    urls = stack.urls
    lines = []
    if "airflow" in stack.components:
        url = urls["airflow"]
        lines.append(
            f"Airflow UI:        {url}  login {ADMIN_USER} / {stack.admin_password}  "
            f"({stack.env['AIRFLOW__CORE__EXECUTOR']}, DAGs run unpaused)"
        )
        lines.append(f"Airflow REST API:  {url}/api/v2  (token: POST {url}/auth/token)")
    mlflow = urls["mlflow"]
    model = Settings.from_env(stack.env).registered_model
    lines.append(f"MLflow UI:         {mlflow}  (experiments, runs; no login)")
    lines.append(f"MLflow registry:   {mlflow}/#/models/{model}")
    lines.append(f"S3 (moto):         {urls['s3']}  (key testing / testing)")
    if "pushgateway" in urls:
        lines.append(f"Pushgateway:       {urls['pushgateway']}")
    return lines


def _summary(stack: EmbeddedStack) -> dict:
    return {
        "root": str(stack.root),
        "reused": stack.reused,
        "urls": stack.urls,
        "components": stack.status(),
        "login": (
            {"user": ADMIN_USER, "passwords_file": str(stack.passwords_file)}
            if "airflow" in stack.components
            else None
        ),
    }


def run(args: argparse.Namespace) -> int:
    as_json = getattr(args, "json", False)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    root = args.root if args.root is not None else args.repo / ".stack"
    stack = EmbeddedStack(
        root,
        args.repo,
        with_airflow_ui=args.ui,
        executor="celery" if args.celery else "local",
        dags_folder=args.dags_folder,
    )

    if args.action == "up":
        began = time.monotonic()
        try:
            stack.start()
            migration = None if args.no_airflow_db else migrate_airflow_db(stack.env)
        except StackError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if as_json:
            print(json.dumps(_summary(stack), indent=2, sort_keys=True))
            return 0
        verb = "already running" if stack.reused else f"started in {time.monotonic() - began:.1f} s"
        print(f"driftloop stack {verb} (root {stack.root})")
        if migration is not None and migration.ran:
            print(f"airflow db migrate: {migration.seconds:.1f} s")
        _print_summary(stack)
        print()
        print("\n".join(ui_lines(stack)))
        print(f"login file:        {stack.passwords_file}")
        print(
            f'environment:       eval "$({shlex.quote(str(BIN_DIR / "driftloop"))} stack env '
            f'--root {shlex.quote(str(stack.root))})"'
        )
        return 0

    if not stack.load():
        print(f"no stack recorded in {stack.root}", file=sys.stderr)
        return 0 if args.action == "down" else 3
    if args.action == "down":
        stack.stop()
        if as_json:
            print(json.dumps({"root": str(stack.root), "stopped": True}))
        else:
            print(f"driftloop stack in {stack.root} stopped")
        return 0
    if args.action == "status":
        report = stack.status()
        if as_json:
            print(json.dumps(_summary(stack), indent=2, sort_keys=True))
        else:
            _print_summary(stack)
        return 0 if all(r.get("healthy", True) for r in report.values()) else 1
    if as_json:
        print(json.dumps(stack.env, indent=2, sort_keys=True))
        return 0
    for key, value in sorted(stack.env.items()):
        print(f"export {key}={shlex.quote(value)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m driftloop_dev.stack", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return run(add_arguments(parser).parse_args(argv))
