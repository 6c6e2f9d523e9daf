"""The Airflow UI checks: login, DAG list, import errors, the Asset-triggered run, task logs (the
drift report and rollout checks are mixed in from :mod:`.report_checks` and
:mod:`.rollout_checks`)."""

from __future__ import annotations

import re
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from driftloop_dev.airflow_api import AirflowAPI, AirflowAPIError
from driftloop_dev.airflow_runs import all_pages, dag_runs, task_instances
from driftloop_dev.ui_check.browser import _Browser
from driftloop_dev.ui_check.constants import (
    ASSET_TRIGGERED_LABEL,
    DAGS_WITH_LOGS,
    DRIFT_DAG,
    IMPORT_ERROR_TEXT,
    REPORT_TASK,
    SOURCE_GROUP_LABEL,
)
from driftloop_dev.ui_check.drift_checks import DriftPageChecks
from driftloop_dev.ui_check.parsing import (
    LogSummary,
    latest,
    problem_phrases,
    ran,
    summarise_log,
    task_log,
    ti_label,
    tries,
    ui_url,
)
from driftloop_dev.ui_check.report_checks import ReportChecks
from driftloop_dev.ui_check.results import CheckResult, UICheckResult
from driftloop_dev.ui_check.rollout_checks import RolloutChecks


class _Checks(ReportChecks, RolloutChecks, DriftPageChecks):
    def __init__(
        self,
        api: AirflowAPI,
        airflow_url: str,
        username: str,
        password: str,
        result: UICheckResult,
        timeout_s: float,
    ):
        self.api = api
        self.url = airflow_url
        self.username = username
        self.password = password
        self.result = result
        self.timeout_s = timeout_s
        self.browser: _Browser | None = None
        self.logged_in = False
        # the MLflow UI of mlflow_aliases (set by run_ui_check)
        self.mlflow_url: str | None = None
        self.registered_model = ""
        self.expect_aliases: tuple[str, ...] = ()

    def run(
        self,
        name: str,
        fn: Callable[[CheckResult], None],
        *,
        ui: bool = True,
        needs_login: bool | None = None,
    ) -> CheckResult:
        """Run one check; an exception fails it (with a screenshot of the page when it is a UI
        check). A UI check needs the Airflow login unless ``needs_login`` is False (a page of
        the MLflow UI)."""
        check = CheckResult(name, True, "")
        began = time.monotonic()
        needs_login = ui if needs_login is None else needs_login
        if needs_login and not self.logged_in and name != "login":
            check.ok, check.detail = False, "not run: the login failed"
        else:
            try:
                fn(check)
            except Exception as exc:
                check.ok = False
                check.detail = (check.detail + "; " if check.detail else "") + (
                    f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                )
                check.data["traceback"] = traceback.format_exc(limit=6)
                if ui and self.browser is not None:
                    try:
                        check.screenshots.append(self.browser.shot(f"{name}-failed.png"))
                        check.urls.append(self.browser.page.url)
                    except Exception:
                        pass
        check.data["seconds"] = round(time.monotonic() - began, 2)
        self.result.checks.append(check)
        self.result.write()
        return check

    # 1 -------------------------------------------------------------------------------- login
    def login(self, check: CheckResult) -> None:
        b = self.browser
        b.page.goto(self.url + "/", wait_until="domcontentloaded", timeout=b.timeout_ms)
        try:
            b.page.wait_for_url(re.compile(r"/auth/login"), timeout=b.timeout_ms)
        except Exception:
            raise AssertionError(
                f"{self.url}/ did not redirect to the login page (at {b.page.url})"
            ) from None
        check.urls.append(b.page.url)
        form = b.page.locator("input[name=username]")
        form.wait_for(state="visible", timeout=b.timeout_ms)
        b.page.fill("input[name=username]", self.username)
        b.page.fill("input[name=password]", self.password)
        check.screenshots.append(b.shot("login.png"))
        b.page.click("button[type=submit]")
        try:
            b.page.wait_for_url(lambda u: "/auth/login" not in u, timeout=b.timeout_ms)
        except Exception:
            raise AssertionError(
                f"still on the login page after signing in: {b.text()[:300]!r}"
            ) from None
        b.settle()
        cookies = {c["name"] for c in b.page.context.cookies()}
        if "_token" not in cookies:
            raise AssertionError(f"signed in but no _token cookie (cookies: {sorted(cookies)})")
        self.logged_in = True
        check.urls.append(b.page.url)
        check.detail = f"signed in as {self.username} at {check.urls[0]}; landed on {b.page.url}"

    # 2 ----------------------------------------------------------------------------- DAG list
    def dag_list(self, check: CheckResult) -> None:
        b = self.browser
        dag_ids = [d["dag_id"] for d in all_pages(self.api, "dags", "dags")]
        if not dag_ids:
            raise AssertionError("the REST API lists no DAGs")
        url = ui_url(self.url)
        b.goto(url)
        check.urls.append(url)
        missing = b.dags_not_listed(dag_ids)
        check.screenshots.append(b.shot("dag-list.png", full_page=True))
        check.data["dags"] = dag_ids
        if missing:
            raise AssertionError(f"DAGs not on the DAG list: {missing}")
        check.detail = f"{len(dag_ids)} DAGs listed: {', '.join(dag_ids)}"

    def import_errors(self, check: CheckResult) -> None:
        b = self.browser
        body = self.api.get("importErrors", limit=100)
        api_errors = [
            f"{e.get('filename')}: {str(e.get('stack_trace'))[-300:]}"
            for e in body["import_errors"]
        ]
        check.data["api_import_errors"] = api_errors
        check.urls.append(self.api.url("importErrors"))
        shown = {}
        for name, url in (("home", self.url + "/"), ("dag-list", ui_url(self.url))):
            b.goto(url)
            if name == "home":
                # the dashboard's stats have loaded once the health/run boxes render
                b.wait_text("Dags")
                check.screenshots.append(b.shot("home.png", full_page=True))
            check.urls.append(url)
            marks = b.page.locator(
                f'[aria-label*="{IMPORT_ERROR_TEXT}"], [title*="{IMPORT_ERROR_TEXT}"]'
            ).count()
            if marks or IMPORT_ERROR_TEXT.lower() in b.text().lower():
                shown[name] = marks or "text"
        check.data["ui_import_errors"] = shown
        problems = []
        if body.get("total_entries", len(api_errors)):
            problems.append(f"REST: {body.get('total_entries')} import errors: {api_errors}")
        if shown:
            problems.append(f"UI shows '{IMPORT_ERROR_TEXT}' on {sorted(shown)}")
        if problems:
            raise AssertionError("; ".join(problems))
        check.detail = "no import errors (REST importErrors empty; none shown on home or DAG list)"

    # 3 ---------------------------------------------------------------- asset-triggered run
    def asset_triggered_run(self, check: CheckResult, dag_id: str) -> None:
        b = self.browser
        runs = dag_runs(self.api, dag_id, run_type="asset_triggered")
        check.urls.append(self.api.url(f"dags/{dag_id}/dagRuns", {"run_type": "asset_triggered"}))
        runs = [r for r in runs if r.get("run_type") == "asset_triggered"]
        check.data["runs"] = [(r["dag_run_id"], r["state"]) for r in runs]
        run = latest(runs)
        if run is None:
            raise AssertionError(f"no asset-triggered run of {dag_id}")
        run_id = run["dag_run_id"]
        url = ui_url(self.url, dag_id, run_id)
        b.goto(url)
        check.urls.append(url)
        b.wait_text(run_id)
        # the grid: one bar per run, the run page's task rows
        tis = task_instances(self.api, dag_id, run_id)
        first_task = sorted(t["task_id"] for t in tis)[0] if tis else None
        if first_task:
            b.wait_text(first_task)
        # the run details name the run type as the UI's i18n has it (common.json: runTypes)
        b.wait_text(ASSET_TRIGGERED_LABEL)
        check.screenshots.append(b.shot("asset-triggered-run.png"))
        events = self.api.get(
            f"dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/upstreamAssetEvents"
        )["asset_events"]
        sources = [
            f"{e.get('name') or e.get('uri')} from {e.get('source_dag_id')} {e.get('source_run_id')}"
            for e in events
        ]
        check.data.update(run_id=run_id, state=run["state"], asset_events=sources)
        if not events:
            raise AssertionError(f"{dag_id} run {run_id} is asset_triggered but consumed no event")
        check.detail = (
            f"{dag_id} run {run_id} (state {run['state']}; started by {'; '.join(sources)}) "
            f"opens at {url} as {ASSET_TRIGGERED_LABEL!r}"
        )

    # 4 ------------------------------------------------------------------------- task logs
    def task_logs_api(self, check: CheckResult) -> None:
        checked = 0
        bad: list[str] = []
        per_dag: dict[str, int] = {}
        for dag_id in DAGS_WITH_LOGS:
            try:
                runs = dag_runs(self.api, dag_id)
            except AirflowAPIError as err:
                if err.status == 404 and dag_id == "rollback_detector":
                    continue
                raise
            for run in runs:
                for ti in task_instances(self.api, dag_id, run["dag_run_id"]):
                    if not ti.get("start_date"):
                        continue
                    attempts = [t for t in tries(self.api, ti) if ran(t)]
                    for attempt in attempts:
                        label = ti_label(
                            dag_id,
                            run["dag_run_id"],
                            ti["task_id"],
                            ti["map_index"],
                            attempt["try_number"],
                        )
                        try:
                            summary = summarise_log(task_log(self.api, ti, attempt["try_number"]))
                        except AirflowAPIError as err:
                            bad.append(f"{label} ({attempt['state']}): HTTP {err.status}")
                            continue
                        checked += 1
                        per_dag[dag_id] = per_dag.get(dag_id, 0) + 1
                        if not summary.ok:
                            bad.append(f"{label} ({attempt['state']}): {summary.reason()}")
        check.data.update(checked=checked, per_dag=per_dag, bad=bad)
        if checked == 0 and not bad:
            raise AssertionError("no task instance has run: no log to check")
        if bad:
            raise AssertionError(
                f"{len(bad)} of {checked + len(bad)} task logs are bad: " + "; ".join(bad[:20])
            )
        check.detail = f"{checked} task logs non-empty and readable ({per_dag})"

    def task_log_view(self, check: CheckResult) -> None:
        ti, try_number, summary = self._log_to_show()
        url, found = self.open_log(ti, try_number, summary.first_line, "task-log.png")
        check.urls.append(url)
        check.screenshots.append(str(self.browser.out_dir / "task-log.png"))
        check.data["expected_line"] = summary.first_line
        if found:
            raise AssertionError(f"the log view says {found}")
        check.detail = (
            f"{ti_label(ti['dag_id'], ti['dag_run_id'], ti['task_id'], ti['map_index'], try_number)}"
            f" shows its log ({summary.lines} lines; first: {summary.first_line[:80]!r})"
        )

    def open_log(
        self, ti: Mapping[str, Any], try_number: int, expected_line: str | None, shot: str
    ) -> tuple[str, list[str]]:
        """Open a task's log in the UI, wait for ``expected_line``, expand the collapsed
        "Log message source details" group (where Airflow says that it could not read a log)
        and screenshot it; the URL and the :data:`LOG_PROBLEM_PHRASES` the page holds."""
        b = self.browser
        url = ui_url(
            self.url,
            ti["dag_id"],
            ti["dag_run_id"],
            ti["task_id"],
            map_index=ti["map_index"],
            try_number=try_number,
        )
        b.goto(url)
        # the log viewer renders its lines once the log request has answered
        b.wait_text(expected_line[:60] if expected_line else SOURCE_GROUP_LABEL)
        # a collapsed group is not in the DOM at all: open it (the log viewer's group header)
        group = b.page.locator(f'[data-testid="summary-{SOURCE_GROUP_LABEL}"]').first
        try:
            group.click(timeout=5000)
            b.page.wait_for_timeout(500)
        except Exception:
            pass  # no source group: nothing hidden
        b.shot(shot)
        # textContent: also what a collapsed group still hides
        text = b.page.evaluate("() => document.body ? document.body.textContent : ''")
        return url, problem_phrases(text + "\n" + b.text())

    def _log_to_show(self) -> tuple[dict, int, LogSummary]:
        """``log_to_mlflow`` of the latest drift check that ran it, else any task that ran."""
        preferred: list[dict] = []
        others: list[dict] = []
        for run in reversed(dag_runs(self.api, DRIFT_DAG)):
            for ti in task_instances(self.api, DRIFT_DAG, run["dag_run_id"]):
                if ran(ti) and ti["state"] in ("success", "failed"):
                    (preferred if ti["task_id"] == REPORT_TASK else others).append(ti)
        candidates = preferred + others
        for ti in candidates:
            summary = summarise_log(task_log(self.api, ti, ti["try_number"]))
            if summary.ok and summary.first_line:
                return ti, ti["try_number"], summary
        raise AssertionError(f"no {DRIFT_DAG} task with a readable log to open in the UI")
