"""What an operator sees in the Airflow 3 UI after ``make demo`` (under ``make up``): checked in a
headless Chromium, with screenshots.

::

    python -m driftloop_dev.ui_check --root .stack --out .stack/ui-check
    driftloop ui-check --root .stack

or, on any running stack, from a test::

    from driftloop_dev.ui_check import run_ui_check
    result = run_ui_check(airflow_url, "admin", password, out_dir, mlflow_url=mlflow_url)
    assert result.ok, result.failed

(``only=("rollout_dags", …)`` runs just those checks; the CLI's ``--only``.)

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
``rollout_dags``
    ``drift_monitor``, ``retrain_detector``, ``rollout_guard``, ``rollback_detector`` and
    ``drift_accept_new_normal`` are listed by the REST API without import errors and not
    paused, and each is on the DAG list (screenshot ``rollout-dags.png``).
``rollout_guard_run``
    a run of ``rollout_guard`` exists (REST) whose ``routing`` task pushed the XCom
    ``rollout_stage`` (the routing document's summary: the stage, who serves, who shadows):
    the newest in a rollout stage (shadow, canary, guard), else the newest with any stage
    (serving). Its run page opens (screenshot ``rollout-guard-run-page.png``) and the
    ``routing`` task's XCom tab shows the stage (screenshot ``rollout-guard-run.png``).
``mlflow_aliases``
    the MLflow UI's page of the registered model (``driftloop-detector``) shows the expected
    aliases (``champion``, ``challenger``, ``previous-champion``: what the demo ends with;
    ``expect_aliases`` / ``--expect-aliases``) on the versions that hold them as the MLflow
    client reads the registry; a missing or misplaced alias is named (screenshot
    ``mlflow-aliases.png``). Needs the MLflow URL (the CLI reads ``stack.json``'s
    ``urls.mlflow``); without it the check is not asked for.

``drift_page``
    the "Drift" nav entry (plugin ``driftloop_drift_page``) opens the drift page inside the
    UI for the signed-in user; it lists the drift events ``/driftloop/drift/data`` lists (ids
    and statuses, newest first) and shows the drift and performance charts (screenshot
    ``drift-page.png``). Fails when there is no drift event.

Chromium is Debian's (``/usr/bin/chromium``; ``make system-deps`` installs it), driven by the
``playwright`` package's own driver: nothing is downloaded at run time. The exit status is 1
when any check fails (they are named on stderr), 2 when the stack or Chromium is missing.

Modules: :mod:`.constants`, :mod:`.results`, :mod:`.parsing` (the pure parts), :mod:`.browser`,
:mod:`.checks` (Airflow UI), :mod:`.report_checks` (drift report, MLflow), :mod:`.rollout_checks`
(rollout DAGs, the guard's stage, aliases), :mod:`.drift_checks` (the drift page), :mod:`.cli`
(:func:`run_ui_check`, ``main``; also ``driftloop ui-check``).
"""

from driftloop_dev.ui_check.cli import CHECKS, main, register, run_ui_check
from driftloop_dev.ui_check.constants import CHROMIUM, EXPECTED_ALIASES, ROLLOUT_DAGS
from driftloop_dev.ui_check.parsing import (
    LogSummary,
    MlflowArtifactLink,
    alias_problems,
    aliases_from_rows,
    dag_problems,
    extra_links,
    latest,
    mlflow_model_url,
    parse_alias_tag,
    parse_mlflow_artifact_url,
    pick_stage_run,
    problem_phrases,
    ran,
    read_mlflow_url,
    read_stack,
    stage_of,
    summarise_log,
    task_log,
    ti_label,
    ti_path,
    tries,
    ui_url,
)
from driftloop_dev.ui_check.results import CheckResult, UICheckResult

__all__ = [
    "CHECKS",
    "CHROMIUM",
    "EXPECTED_ALIASES",
    "ROLLOUT_DAGS",
    "CheckResult",
    "LogSummary",
    "MlflowArtifactLink",
    "UICheckResult",
    "alias_problems",
    "aliases_from_rows",
    "dag_problems",
    "extra_links",
    "latest",
    "main",
    "mlflow_model_url",
    "parse_alias_tag",
    "parse_mlflow_artifact_url",
    "pick_stage_run",
    "problem_phrases",
    "ran",
    "read_mlflow_url",
    "read_stack",
    "register",
    "run_ui_check",
    "stage_of",
    "summarise_log",
    "task_log",
    "ti_label",
    "ti_path",
    "tries",
    "ui_url",
]
