"""``python -m driftloop_dev.ui_check`` / ``driftloop ui-check``, and :func:`run_ui_check`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection, Sequence
from pathlib import Path

from driftloop_dev.airflow_api import AirflowAPI
from driftloop_dev.ui_check.browser import _Browser, launch_chromium
from driftloop_dev.ui_check.checks import _Checks
from driftloop_dev.ui_check.constants import (
    CHROMIUM,
    EXPECTED_ALIASES,
    REGISTERED_MODEL,
    VIEWPORT,
)
from driftloop_dev.ui_check.parsing import read_mlflow_url, read_stack
from driftloop_dev.ui_check.results import CheckResult, UICheckResult

DESCRIPTION = "What an operator sees in the Airflow and MLflow UIs, checked in headless Chromium."
#: every check, in the order they run
CHECKS = (
    "login",
    "dag_list",
    "import_errors",
    "asset_triggered_run",
    "task_logs_api",
    "task_log_view",
    "drift_report_link",
    "mlflow_report",
    "rollout_dags",
    "rollout_guard_run",
    "mlflow_aliases",
    "drift_page",
)


def run_ui_check(
    airflow_url: str,
    username: str,
    password: str,
    out_dir: str | Path,
    *,
    expect_asset_triggered: str | None = "retrain_detector",
    mlflow_url: str | None = None,
    registered_model: str = REGISTERED_MODEL,
    expect_aliases: Sequence[str] = EXPECTED_ALIASES,
    only: Collection[str] | None = None,
    chromium: str = CHROMIUM,
    timeout_s: float = 30.0,
) -> UICheckResult:
    """Run the checks against the Airflow at ``airflow_url``; screenshots and ``result.json``
    go to ``out_dir``. ``expect_asset_triggered`` names the DAG that must have an
    Asset-triggered run (None: not checked). ``mlflow_aliases`` opens the MLflow UI at
    ``mlflow_url`` (None: not checked) and expects ``expect_aliases`` on
    ``registered_model`` (empty: not checked). ``only``: run just these checks (names of
    :data:`CHECKS`; ``login`` is added: the Airflow checks need it)."""
    from playwright.sync_api import sync_playwright

    unknown = sorted(set(only or ()) - set(CHECKS))
    if unknown:
        raise ValueError(f"only: unknown checks {unknown} (known: {', '.join(CHECKS)})")
    wanted = set(CHECKS) if only is None else {"login", *only}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    airflow_url = airflow_url.rstrip("/")
    result = UICheckResult(airflow_url, out)
    api = AirflowAPI(airflow_url, username, password)
    checks = _Checks(api, airflow_url, username, password, result, timeout_s)
    checks.mlflow_url = mlflow_url.rstrip("/") if mlflow_url else None
    checks.registered_model = registered_model
    checks.expect_aliases = tuple(expect_aliases)
    not_asked = {}
    if not expect_asset_triggered:
        not_asked["asset_triggered_run"] = "not asked for"
    if not checks.mlflow_url:
        not_asked["mlflow_aliases"] = "not asked for (no MLflow URL)"
    elif not checks.expect_aliases:
        not_asked["mlflow_aliases"] = "not asked for (no aliases expected)"
    steps = {
        "login": (checks.login, {}),
        "dag_list": (checks.dag_list, {}),
        "import_errors": (checks.import_errors, {}),
        "asset_triggered_run": (
            lambda c: checks.asset_triggered_run(c, expect_asset_triggered),
            {},
        ),
        "task_logs_api": (checks.task_logs_api, {"ui": False}),
        "task_log_view": (checks.task_log_view, {}),
        "drift_report_link": (checks.drift_report_link, {}),
        "mlflow_report": (checks.mlflow_report, {}),
        "rollout_dags": (checks.rollout_dags, {}),
        "rollout_guard_run": (checks.rollout_guard_run, {}),
        "mlflow_aliases": (checks.mlflow_aliases, {"needs_login": False}),
        "drift_page": (checks.drift_page, {}),
    }
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, chromium)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.set_default_timeout(timeout_s * 1000)
            checks.browser = _Browser(context.new_page(), out, timeout_s)
            for name in CHECKS:
                if name not in wanted:
                    continue
                if name in not_asked:
                    result.checks.append(CheckResult(name, None, not_asked[name]))
                    continue
                fn, options = steps[name]
                checks.run(name, fn, **options)
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
    parser.add_argument(
        "--mlflow-url", default=None, help="the MLflow UI (default: the stack's urls.mlflow)"
    )
    parser.add_argument("--registered-model", default=REGISTERED_MODEL)
    parser.add_argument(
        "--expect-aliases",
        default=",".join(EXPECTED_ALIASES),
        help="the aliases the registered model must show in the MLflow UI, comma-separated "
        "('' for none)",
    )
    parser.add_argument(
        "--only", default="", help=f"run only these checks, comma-separated ({', '.join(CHECKS)})"
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
            help="check the Airflow and MLflow UIs of a running `make up` stack in headless "
            "Chromium",
            description=DESCRIPTION,
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m driftloop_dev.ui_check",
        description=DESCRIPTION,
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
    mlflow_url = args.mlflow_url or read_mlflow_url(args.root)
    try:
        result = run_ui_check(
            url,
            username,
            password,
            out,
            expect_asset_triggered=args.expect_asset_triggered or None,
            mlflow_url=mlflow_url,
            registered_model=args.registered_model,
            expect_aliases=_names(args.expect_aliases),
            only=_names(args.only) or None,
            chromium=args.chromium,
            timeout_s=args.timeout,
        )
    except (FileNotFoundError, ValueError) as exc:
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


def _names(text: str) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


if __name__ == "__main__":
    sys.exit(main())
