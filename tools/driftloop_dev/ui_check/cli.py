"""``python -m driftloop_dev.ui_check`` / ``driftloop ui-check``, and :func:`run_ui_check`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from driftloop_dev.airflow_api import AirflowAPI
from driftloop_dev.ui_check.browser import _Browser, launch_chromium
from driftloop_dev.ui_check.checks import _Checks
from driftloop_dev.ui_check.constants import CHROMIUM, VIEWPORT
from driftloop_dev.ui_check.parsing import read_stack
from driftloop_dev.ui_check.results import CheckResult, UICheckResult


def run_ui_check(
    airflow_url: str,
    username: str,
    password: str,
    out_dir: str | Path,
    *,
    expect_asset_triggered: str | None = "retrain_detector",
    chromium: str = CHROMIUM,
    timeout_s: float = 30.0,
) -> UICheckResult:
    """Run every check against the Airflow at ``airflow_url``; screenshots and ``result.json``
    go to ``out_dir``. ``expect_asset_triggered`` names the DAG that must have an
    Asset-triggered run (None: not checked)."""
    from playwright.sync_api import sync_playwright

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    airflow_url = airflow_url.rstrip("/")
    result = UICheckResult(airflow_url, out)
    api = AirflowAPI(airflow_url, username, password)
    checks = _Checks(api, airflow_url, username, password, result, timeout_s)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, chromium)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.set_default_timeout(timeout_s * 1000)
            checks.browser = _Browser(context.new_page(), out, timeout_s)
            checks.run("login", checks.login)
            checks.run("dag_list", checks.dag_list)
            checks.run("import_errors", checks.import_errors)
            if expect_asset_triggered:
                checks.run(
                    "asset_triggered_run",
                    lambda c: checks.asset_triggered_run(c, expect_asset_triggered),
                )
            else:
                result.checks.append(CheckResult("asset_triggered_run", None, "not asked for"))
            checks.run("task_logs_api", checks.task_logs_api, ui=False)
            checks.run("task_log_view", checks.task_log_view)
            checks.run("drift_report_link", checks.drift_report_link)
            checks.run("mlflow_report", checks.mlflow_report)
        finally:
            browser.close()
    result.write()
    return result


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The check's options, shared by ``python -m driftloop_dev.ui_check`` and
    ``driftloop ui-check``."""
    parser.add_argument("--root", type=Path, default=Path(".stack"), help="the stack's root")
    parser.add_argument("--out", type=Path, default=None, help="default <root>/ui-check")
    parser.add_argument("--username", default="admin")
    parser.add_argument(
        "--expect-asset-triggered",
        default="retrain_detector",
        help="the DAG that must have an Asset-triggered run ('' for none)",
    )
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per UI wait")
    parser.set_defaults(handler=run)
    return parser


def register(subparsers, parents: list[argparse.ArgumentParser]) -> None:
    """``driftloop ui-check`` (entry point of the ``driftloop.commands`` group)."""
    add_arguments(
        subparsers.add_parser(
            "ui-check",
            parents=parents,
            help="check the Airflow UI of a running `make up` stack in headless Chromium",
            description="What an operator sees in the Airflow UI, checked in headless Chromium.",
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m driftloop_dev.ui_check",
        description="What an operator sees in the Airflow UI, checked in headless Chromium.",
    )
    parser.add_argument("--json", action="store_true", help="print result.json's document")
    return run(add_arguments(parser).parse_args(argv))


def run(args: argparse.Namespace) -> int:
    try:
        url, username, password = read_stack(args.root, args.username)
    except (OSError, LookupError, ValueError) as exc:
        print(f"error: no stack with Airflow under {args.root}: {exc}", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else args.root / "ui-check"
    try:
        result = run_ui_check(
            url,
            username,
            password,
            out,
            expect_asset_triggered=args.expect_asset_triggered or None,
            chromium=args.chromium,
            timeout_s=args.timeout,
        )
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return 1 if result.failed else 0
    for check in result.checks:
        mark = {True: "PASS", False: "FAIL", None: "SKIP"}[check.ok]
        print(f"{mark}  {check.name:<20} {check.detail}")
        for shot in check.screenshots:
            print(f"      screenshot {shot}")
    print(f"result: {result.out_dir / 'result.json'}")
    if result.failed:
        print(f"failed checks: {', '.join(result.failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
