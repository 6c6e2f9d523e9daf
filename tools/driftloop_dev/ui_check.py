"""What an operator sees in the Airflow 3 UI after ``make demo`` (under ``make up``): checked in a
headless Chromium, with screenshots.

::

    python -m driftloop_dev.ui_check --root .stack --out .stack/ui-check

or, on any running stack, from a test::

    from driftloop_dev.ui_check import run_ui_check
    result = run_ui_check(airflow_url, "admin", password, out_dir)
    assert result.ok, result.failed

The checks (each one passes or fails on its own; ``result.json`` in the out dir lists them):

``login``
    the UI redirects to the simple auth manager's login page; the username/password form
    signs in and lands in the app with a session token.
``dag_list``
    every DAG the REST API lists is shown on the DAG list (screenshot ``dag-list.png``).
``import_errors``
    ``GET /api/v2/importErrors`` is empty, and neither the home page nor the DAG list shows a
    "Dag Import Error" (screenshot ``home.png``).
``asset_triggered_run``
    a run of ``retrain_detector`` (``expect_asset_triggered``) with ``run_type``
    ``asset_triggered`` exists and consumed an Asset event; its run page (grid + run details)
    opens, names it and shows "Asset Triggered" (screenshot ``asset-triggered-run.png``).
    Fails when there is none.
``task_logs_api``
    every try of every task instance that ran (has a start date and a host, or a state other
    than skipped/upstream_failed) in every run of ``drift_monitor``, ``retrain_detector`` and
    ``rollback_detector`` has a log with lines of its own through
    ``GET …/taskInstances/{task}/logs/{try}?map_index=…`` and none of Airflow's "Log file not
    found" / "Could not read served logs" / "No logs available" messages.
``task_log_view``
    one task's log (``log_to_mlflow`` of the latest drift check) opens in the UI, shows a line of
    the log and, with its collapsed "Log message source details" group opened, none of those
    messages (screenshot ``task-log.png``).
``drift_report_link``
    ``log_to_mlflow`` pushed the XCom ``drift_report_url`` (an http(s) MLflow UI URL); the REST
    ``…/links`` answer has the same URL under "Drift report"; the task instance's Details tab
    renders a "Drift report" link to it (screenshot ``drift-report-link.png``).
``mlflow_report``
    that URL, opened in the browser, shows the MLflow run's artifact view with the Evidently
    HTML report rendered in its iframe (text "Drift" inside the report; screenshot
    ``mlflow-drift-report.png``). When it does not render, the other URL forms of the MLflow UI
    are tried and the detail says which one does.

Chromium is Debian's (``/usr/bin/chromium``; ``make system-deps`` installs it), driven by the
``playwright`` package's own driver: nothing is downloaded at run time. The exit status is 1
when any check fails (they are named on stderr), 2 when the stack or Chromium is missing.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from driftloop_dev.airflow_api import AirflowAPI, AirflowAPIError
from driftloop_dev.airflow_runs import all_pages, dag_runs, task_instances

CHROMIUM = "/usr/bin/chromium"
#: the network is closed: without these Chromium keeps dialling out (and floods refused
#: connections); --no-sandbox because the check may run as root in a container
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1600, "height": 1000}

DAGS_WITH_LOGS = ("drift_monitor", "retrain_detector", "rollback_detector")
DRIFT_DAG = "drift_monitor"
REPORT_TASK = "log_to_mlflow"
REPORT_XCOM_KEY = "drift_report_url"
REPORT_LINK_NAME = "Drift report"
#: what the Evidently data-drift report shows (in MLflow's artifact iframe)
EVIDENTLY_TEXT = "Drift"
MLFLOW_LINK_NAME = "MLflow run"

#: what Airflow writes in place of a log it could not read (file_task_handler / log_reader)
LOG_PROBLEM_PHRASES = (
    "Log file not found",
    "Could not read served logs",
    "No logs available for this task",
    "Please make sure that all your Airflow components",
    "Log file does not exist",
)
#: what the UI shows when there are DAG import errors (dashboard.json: importErrors)
IMPORT_ERROR_TEXT = "Dag Import Error"
#: the run type on a run's page (common.json: runTypes.asset_triggered)
ASSET_TRIGGERED_LABEL = "Asset Triggered"
#: task states in which a task instance with a start date need not have run its code (a
#: branch or trigger rule skipped it): checked only when a host ran it
NOT_RUN_STATES = frozenset({"skipped", "upstream_failed", "removed"})

SOURCE_GROUP = "::group::Log message source details"
END_GROUP = "::endgroup::"
GROUP_PREFIX = "::group::"
#: how the UI's log viewer titles the collapsed source group
SOURCE_GROUP_LABEL = "Log message source details"


# --------------------------------------------------------------------------- results


@dataclass
class CheckResult:
    """One check: ``ok`` is True (passed), False (failed) or None (not asked for)."""

    name: str
    ok: bool | None
    detail: str
    urls: list[str] = field(default_factory=list)
    screenshots: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class UICheckResult:
    airflow_url: str
    out_dir: Path
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and not self.failed

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.ok is False]

    def check(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failed": self.failed,
            "airflow_url": self.airflow_url,
            "out_dir": str(self.out_dir),
            "checks": [asdict(c) for c in self.checks],
        }

    def write(self) -> Path:
        path = self.out_dir / "result.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        return path


# --------------------------------------------------------------------------- pure parts


def read_stack(root: Path, username: str = "admin") -> tuple[str, str, str]:
    """``(airflow_url, username, password)`` of the stack under ``root``: ``stack.json``'s
    ``urls.airflow`` and the simple auth manager's password file."""
    state = json.loads((root / "stack.json").read_text())
    url = (state.get("urls") or {}).get("airflow")
    if not url:
        raise LookupError(f"{root / 'stack.json'} has no urls.airflow: started without --ui?")
    passwords = json.loads((root / "airflow" / "simple_auth_manager_passwords.json").read_text())
    if username not in passwords:
        raise LookupError(f"no password for {username!r} in the simple auth manager's file")
    return url.rstrip("/"), username, passwords[username]


def ui_url(
    base: str,
    dag_id: str | None = None,
    run_id: str | None = None,
    task_id: str | None = None,
    *,
    map_index: int = -1,
    tab: str | None = None,
    try_number: int | None = None,
) -> str:
    """A page of the Airflow 3 UI (its React routes): ``/dags``, ``/dags/{dag}``,
    ``/dags/{dag}/runs/{run}``, ``…/tasks/{task}`` (``…/mapped/{i}`` for a mapped instance),
    then an optional tab (``details``, ``xcom`` …) and ``?try_number=``. Run ids hold ``:``
    and ``+``: every segment is percent-encoded."""
    url = base.rstrip("/") + "/dags"
    if dag_id is None:
        return url
    url += "/" + quote(dag_id, safe="")
    if run_id is not None:
        url += "/runs/" + quote(run_id, safe="")
        if task_id is not None:
            url += "/tasks/" + quote(task_id, safe="")
            if map_index is not None and map_index >= 0:
                url += f"/mapped/{map_index}"
    if tab:
        url += "/" + tab.strip("/")
    if try_number is not None:
        url += "?" + urlencode({"try_number": try_number})
    return url


def ti_path(dag_id: str, run_id: str, task_id: str) -> str:
    """The REST path (relative to ``/api/v2/``) of a task instance."""
    return (
        f"dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
        f"/taskInstances/{quote(task_id, safe='')}"
    )


def ti_label(dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number=None) -> str:
    label = f"{dag_id}/{run_id}/{task_id}" + (f"[{map_index}]" if map_index >= 0 else "")
    return label + (f" try {try_number}" if try_number is not None else "")


def _event_text(entry: Any) -> str:
    if isinstance(entry, Mapping):
        return str(entry.get("event") or "")
    return str(entry or "")


@dataclass(frozen=True)
class LogSummary:
    """What a task log from ``GET …/logs/{try}`` holds: the sources Airflow read it from, the
    number of lines of its own (not group markers), Airflow's messages about a log it could
    not read, and the first top-level line (what the UI shows without expanding a group)."""

    sources: tuple[str, ...]
    lines: int
    problems: tuple[str, ...]
    first_line: str | None

    @property
    def ok(self) -> bool:
        return self.lines > 0 and not self.problems

    def reason(self) -> str:
        if self.problems:
            return "; ".join(self.problems)
        if self.lines == 0:
            return "empty log" + (f" (sources: {', '.join(self.sources)})" if self.sources else "")
        return "ok"


def problem_phrases(text: str) -> list[str]:
    """The :data:`LOG_PROBLEM_PHRASES` in ``text``."""
    return [phrase for phrase in LOG_PROBLEM_PHRASES if phrase.lower() in text.lower()]


def summarise_log(content: Sequence[Any] | None) -> LogSummary:
    """Summarise the ``content`` of a log response (structured messages or, from older log
    handlers, plain strings)."""
    texts = [_event_text(e) for e in content or ()]
    sources: list[str] = []
    body = texts
    if texts and texts[0].strip() == SOURCE_GROUP:
        end = next((i for i, t in enumerate(texts) if t.strip() == END_GROUP), len(texts))
        sources = [t for t in texts[1:end] if t.strip()]
        body = texts[end + 1 :]
    problems = []
    for text in sources + body:
        for phrase in problem_phrases(text):
            problems.append(f"{phrase!r}: {text.strip()[:300]}")
    lines = 0
    depth = 0
    first_line = None
    for text in body:
        stripped = text.strip()
        if stripped.startswith(GROUP_PREFIX):
            depth += 1
            continue
        if stripped == END_GROUP:
            depth = max(0, depth - 1)
            continue
        if not stripped:
            continue
        lines += 1
        if first_line is None and depth == 0:
            first_line = stripped.splitlines()[0]
    return LogSummary(tuple(sources), lines, tuple(dict.fromkeys(problems)), first_line)


def ran(ti: Mapping[str, Any]) -> bool:
    """Did this task instance (or try) run, so that it must have a log? It has a start date,
    and a host ran it or the executor was given it. Not run: a task that a branch or trigger
    rule skipped (a start date, try 0, no host) and an ``EmptyOperator`` that the scheduler
    marked done itself (a start date, never queued, no host)."""
    if not ti.get("start_date") or ti.get("try_number") == 0:
        return False
    if ti.get("hostname"):
        return True
    return ti.get("state") not in NOT_RUN_STATES and bool(ti.get("queued_when"))


def extra_links(body: Mapping[str, Any] | None) -> dict[str, str]:
    """``{name: url}`` of a ``…/links`` response (``{"extra_links": {name: url | null}}``);
    links without a URL are left out."""
    links = (body or {}).get("extra_links") or {}
    if not isinstance(links, Mapping):
        raise ValueError(f"unexpected extra links response: {body!r}")
    return {str(name): str(url) for name, url in links.items() if url}


_MLFLOW_ARTIFACT = re.compile(
    r"^#/experiments/(?P<experiment>[^/]+)/runs/(?P<run>[^/]+)/(?:artifactPath|artifacts)/(?P<path>.+)$"
)


@dataclass(frozen=True)
class MlflowArtifactLink:
    base: str
    experiment_id: str
    run_id: str
    artifact_path: str

    def url_forms(self) -> dict[str, str]:
        """The MLflow UI URLs that may open the artifact, the route the link uses first."""
        run = f"{self.base}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return {
            "artifactPath": f"{run}/artifactPath/{self.artifact_path}",
            "artifacts": f"{run}/artifacts/{self.artifact_path}",
            "artifacts-tab": f"{run}/artifacts?{urlencode({'path': self.artifact_path})}",
        }


def parse_mlflow_artifact_url(url: str) -> MlflowArtifactLink:
    """Split an MLflow UI artifact URL (``{base}/#/experiments/{e}/runs/{r}/artifactPath/{p}``)
    into its parts; ``ValueError`` for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    match = _MLFLOW_ARTIFACT.match("#" + parts.fragment)
    if not match:
        raise ValueError(
            f"not an MLflow UI artifact URL (#/experiments/<e>/runs/<r>/artifactPath/<path>): {url!r}"
        )
    base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    return MlflowArtifactLink(base, match["experiment"], match["run"], match["path"])


def latest(runs: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The run that was queued/started last (REST runs carry ``run_after``)."""
    ordered = sorted(runs, key=lambda r: str(r.get("run_after") or r.get("start_date") or ""))
    return ordered[-1] if ordered else None


# --------------------------------------------------------------------------- REST helpers


def tries(api: AirflowAPI, ti: Mapping[str, Any]) -> list[dict]:
    """Every try of a task instance (the current one included)."""
    path = f"{ti_path(ti['dag_id'], ti['dag_run_id'], ti['task_id'])}/{ti['map_index']}/tries"
    return api.get(path)["task_instances"]


def task_log(api: AirflowAPI, ti: Mapping[str, Any], try_number: int) -> list[Any]:
    path = f"{ti_path(ti['dag_id'], ti['dag_run_id'], ti['task_id'])}/logs/{try_number}"
    return api.get(path, map_index=ti["map_index"], full_content="true")["content"]


# --------------------------------------------------------------------------- the browser


class _Browser:
    """A logged-in Chromium page on the Airflow UI; screenshots go to ``out_dir``."""

    def __init__(self, page, out_dir: Path, timeout_s: float):
        self.page = page
        self.out_dir = out_dir
        self.timeout_ms = timeout_s * 1000

    def goto(self, url: str) -> None:
        self.page.goto(url, wait_until="domcontentloaded", timeout=self.timeout_ms)
        self.settle()

    def settle(self) -> None:
        """Let the single-page app fetch and render (network idle; bounded)."""
        try:
            self.page.wait_for_load_state("networkidle", timeout=min(self.timeout_ms, 15000))
        except Exception:  # polling pages (running tasks) never go idle
            pass

    def text(self) -> str:
        return self.page.evaluate("() => document.body ? document.body.innerText : ''")

    def wait_text(self, text: str, timeout_ms: float | None = None) -> None:
        self.page.get_by_text(text, exact=False).first.wait_for(
            state="visible", timeout=timeout_ms or self.timeout_ms
        )

    def shot(self, name: str, *, full_page: bool = False) -> str:
        path = self.out_dir / name
        self.page.screenshot(path=str(path), full_page=full_page)
        return str(path)


def launch_chromium(playwright, executable: str = CHROMIUM):
    if not Path(executable).exists():
        raise FileNotFoundError(
            f"{executable} not found: install Debian's chromium (`make system-deps` as root)"
        )
    return playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))


# --------------------------------------------------------------------------- the checks


class _Checks:
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

    def run(self, name: str, fn: Callable[[CheckResult], None], *, ui: bool = True) -> CheckResult:
        """Run one check; an exception fails it (with a screenshot of the page when it is a UI
        check)."""
        check = CheckResult(name, True, "")
        began = time.monotonic()
        if ui and not self.logged_in and name != "login":
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
        missing = []
        for dag_id in dag_ids:
            try:
                b.page.locator(f'a[href$="/dags/{dag_id}"]').first.wait_for(
                    state="visible", timeout=b.timeout_ms
                )
            except Exception:
                missing.append(dag_id)
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

    # 5 ------------------------------------------------------------------ drift report link
    def drift_report_link(self, check: CheckResult) -> None:
        b = self.browser
        run_id = self._report_run()
        path = ti_path(DRIFT_DAG, run_id, REPORT_TASK)
        xcom_url = self._xcom(run_id)
        links = extra_links(self.api.get(f"{path}/links"))
        check.urls.append(self.api.url(f"{path}/links"))
        check.data.update(run_id=run_id, xcom=xcom_url, extra_links=links)
        problems = []
        if not xcom_url or urlsplit(str(xcom_url)).scheme not in ("http", "https"):
            problems.append(f"XCom {REPORT_XCOM_KEY} is not an http(s) URL: {xcom_url!r}")
        link_url = links.get(REPORT_LINK_NAME)
        if link_url is None:
            problems.append(f"REST links have no {REPORT_LINK_NAME!r}: {sorted(links)}")
        elif xcom_url and link_url != xcom_url:
            problems.append(f"REST {REPORT_LINK_NAME!r} is {link_url!r}, XCom is {xcom_url!r}")
        url = ui_url(self.url, DRIFT_DAG, run_id, REPORT_TASK, tab="details")
        b.goto(url)
        check.urls.append(url)
        link = b.page.locator("a", has_text=REPORT_LINK_NAME).first
        try:
            link.wait_for(state="visible", timeout=b.timeout_ms)
            href = link.get_attribute("href")
        except Exception:
            href = None
        check.data["ui_href"] = href
        check.screenshots.append(b.shot("drift-report-link.png"))
        if href is None:
            problems.append(f"no {REPORT_LINK_NAME!r} link on the task's Details tab")
        elif href != (link_url or xcom_url):
            problems.append(
                f"the UI's {REPORT_LINK_NAME!r} link goes to {href!r}, not {link_url!r}"
            )
        if problems:
            raise AssertionError("; ".join(problems))
        self.report_url = link_url
        check.detail = f"{REPORT_LINK_NAME!r} of {DRIFT_DAG} {run_id} links to {link_url} (XCom, REST and UI agree)"

    def _report_run(self) -> str:
        for run in reversed(dag_runs(self.api, DRIFT_DAG)):
            for ti in task_instances(self.api, DRIFT_DAG, run["dag_run_id"]):
                if ti["task_id"] == REPORT_TASK and ti["state"] == "success":
                    return run["dag_run_id"]
        raise AssertionError(f"no {DRIFT_DAG} run whose {REPORT_TASK} succeeded")

    def _xcom(self, run_id: str) -> Any:
        path = ti_path(DRIFT_DAG, run_id, REPORT_TASK)
        try:
            return self.api.get(f"{path}/xcomEntries/{REPORT_XCOM_KEY}", deserialize="true")[
                "value"
            ]
        except AirflowAPIError as err:
            if err.status == 404:
                return None
            raise

    def mlflow_report(self, check: CheckResult) -> None:
        b = self.browser
        url = getattr(self, "report_url", None)
        if not url:
            run_id = self._report_run()
            url = extra_links(self.api.get(f"{ti_path(DRIFT_DAG, run_id, REPORT_TASK)}/links")).get(
                REPORT_LINK_NAME
            ) or self._xcom(run_id)
        if not url:
            raise AssertionError("no drift report URL to open")
        link = parse_mlflow_artifact_url(url)
        check.data["link"] = asdict(link)
        forms = link.url_forms()
        outcomes: dict[str, str] = {}
        for name, form_url in [("link", url)] + [(k, v) for k, v in forms.items() if v != url]:
            check.urls.append(form_url)
            outcome, snippet = self._open_report(form_url, link.artifact_path)
            outcomes[name] = outcome
            if snippet:
                check.data["report_text"] = snippet
            if name == "link":
                check.screenshots.append(b.shot("mlflow-drift-report.png"))
                if outcome == "ok":
                    break
            elif outcome == "ok":
                check.screenshots.append(b.shot(f"mlflow-drift-report-{name}.png"))
                break
        check.data["outcomes"] = outcomes
        if outcomes.get("link") != "ok":
            working = [forms[n] for n, o in outcomes.items() if o == "ok" and n in forms]
            raise AssertionError(
                f"the drift report link {url} does not show the Evidently report ({outcomes['link']})"
                + (
                    f"; this URL form does: {working[0]}"
                    if working
                    else "; no other URL form does either"
                )
            )
        check.detail = f"{url} renders the Evidently report (artifact {link.artifact_path})"

    def _open_report(self, url: str, artifact_path: str) -> tuple[str, str]:
        """``('ok', snippet)`` when the MLflow UI at ``url`` shows the artifact (the page names
        it) rendered in an iframe with Evidently's content ("Drift"); else what it shows."""
        b = self.browser
        b.page.goto("about:blank")  # a change of the #fragment alone would not reload the app
        b.goto(url)
        self._close_mlflow_assistant()
        name = artifact_path.rsplit("/", 1)[-1]
        deadline = time.monotonic() + max(self.timeout_s, 60)
        last = "no iframe"
        while time.monotonic() < deadline:
            for frame in b.page.frames:
                if frame == b.page.main_frame:
                    continue
                try:
                    text = frame.evaluate("() => document.body ? document.body.innerText : ''")
                except Exception:
                    continue
                if EVIDENTLY_TEXT.lower() in text.lower():
                    if name not in b.text():
                        return (
                            f"an iframe with {EVIDENTLY_TEXT!r}, but the page names no {name!r}",
                            "",
                        )
                    snippet = " ".join(text.split())[:300]
                    return "ok", snippet
                last = f"an iframe without {EVIDENTLY_TEXT!r} ({len(text)} characters)"
            time.sleep(1)
        page_text = " ".join(b.text().split())
        return f"{last}; the page shows {page_text[:300]!r}", ""

    def _close_mlflow_assistant(self) -> None:
        """MLflow 3.17 opens its "MLflow Assistant" side panel, which squeezes the artifact
        view; close it when it is there (cosmetic: screenshots)."""
        page = self.browser.page
        try:
            page.get_by_text("MLflow Assistant").first.wait_for(state="visible", timeout=5000)
            page.locator('button[aria-label="Close"]').first.click(timeout=2000)
        except Exception:
            pass


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m driftloop_dev.ui_check", description=__doc__.split("\n")[0]
    )
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
    args = parser.parse_args(argv)
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
