"""The rollout checks: the loop's DAGs on the DAG list, a ``rollout_guard`` run with the stage it
judged (its ``routing`` task's XCom tab), and the registry's aliases in the MLflow UI.

The stage is what ``routing`` pushes as the XCom ``rollout_stage`` (the routing document's
summary); the UI renders it on that task's XCom tab, so no run note is needed to show it. The
aliases are compared with the registry as the MLflow client reads it, so the check fails when
the UI shows a stale or a missing alias, and names it.
"""

from __future__ import annotations

import time

from driftloop_dev.airflow_api import AirflowAPIError
from driftloop_dev.airflow_runs import all_pages, dag_run, dag_runs
from driftloop_dev.ui_check.constants import (
    GUARD_DAG,
    GUARD_RUNS_SEARCHED,
    IMPORT_ERROR_TEXT,
    MLFLOW_ALIAS_TAG,
    ROLLOUT_DAGS,
    ROLLOUT_STAGES,
    ROUTING_TASK,
    STAGE_XCOM_KEY,
)
from driftloop_dev.ui_check.parsing import (
    alias_problems,
    aliases_from_rows,
    dag_problems,
    mlflow_model_url,
    pick_stage_run,
    stage_of,
    ti_path,
    ui_url,
)
from driftloop_dev.ui_check.results import CheckResult

#: the rows of the MLflow UI's versions table: each row's version link and alias tags
_ALIAS_ROWS_JS = """(selector) => Array.from(document.querySelectorAll('[role="row"]')).map(row => {
  const link = row.querySelector('a[href*="/versions/"]');
  return {
    href: link ? link.getAttribute('href') : null,
    aliases: Array.from(row.querySelectorAll(selector)).map(tag => tag.innerText),
  };
})"""


class RolloutChecks:
    """Part of the checks (:class:`~driftloop_dev.ui_check.checks._Checks`)."""

    # 7 ------------------------------------------------------------------------ rollout DAGs
    def rollout_dags(self, check: CheckResult) -> None:
        b = self.browser
        dags = all_pages(self.api, "dags", "dags")
        check.urls.append(self.api.url("dags"))
        check.data["dags"] = {
            d["dag_id"]: {"paused": d.get("is_paused"), "import_errors": d.get("has_import_errors")}
            for d in dags
            if d["dag_id"] in ROLLOUT_DAGS
        }
        problems = [f"REST: {p}" for p in dag_problems(ROLLOUT_DAGS, dags)]
        url = ui_url(self.url)
        b.goto(url)
        check.urls.append(url)
        missing = b.dags_not_listed(ROLLOUT_DAGS)
        check.screenshots.append(b.shot("rollout-dags.png", full_page=True))
        if missing:
            problems.append(f"not on the DAG list: {missing}")
        if IMPORT_ERROR_TEXT.lower() in b.text().lower():
            problems.append(f"the DAG list shows '{IMPORT_ERROR_TEXT}'")
        if problems:
            raise AssertionError("; ".join(problems))
        check.detail = f"{', '.join(ROLLOUT_DAGS)} on the DAG list, active, without import errors"

    # 8 -------------------------------------------------------------------- rollout_guard run
    def rollout_guard_run(self, check: CheckResult) -> None:
        b = self.browser
        runs = dag_runs(self.api, GUARD_DAG)
        check.urls.append(self.api.url(f"dags/{GUARD_DAG}/dagRuns"))
        if not runs:
            raise AssertionError(f"no run of {GUARD_DAG} (REST)")
        newest = list(reversed(runs[-GUARD_RUNS_SEARCHED:]))
        seen: dict[str, str | None] = {}

        def summaries():
            for run in newest:
                seen[run["dag_run_id"]] = self._stage_xcom(run["dag_run_id"])
                yield run["dag_run_id"], seen[run["dag_run_id"]]

        picked = pick_stage_run(summaries())
        check.data["runs_read"] = seen
        if picked is None:
            raise AssertionError(
                f"none of the {len(newest)} newest {GUARD_DAG} runs has a {ROUTING_TASK} XCom "
                f"{STAGE_XCOM_KEY!r} naming a stage: {seen}"
            )
        run_id, summary = picked
        stage = stage_of(summary)
        run = dag_run(self.api, GUARD_DAG, run_id)
        check.data.update(
            run_id=run_id, stage=stage, summary=summary, state=run["state"], type=run["run_type"]
        )
        # the run's page: the grid with the tasks the stage led to
        url = ui_url(self.url, GUARD_DAG, run_id)
        b.goto(url)
        check.urls.append(url)
        b.wait_text(run_id)
        b.wait_text(ROUTING_TASK)
        check.screenshots.append(b.shot("rollout-guard-run-page.png"))
        # the routing task's XCom tab: where the UI renders the stage
        url = ui_url(self.url, GUARD_DAG, run_id, ROUTING_TASK, tab="xcom")
        b.goto(url)
        check.urls.append(url)
        b.wait_text(STAGE_XCOM_KEY)
        try:
            b.wait_text(summary)
        except Exception:
            check.screenshots.append(b.shot("rollout-guard-run.png"))
            raise AssertionError(
                f"the XCom tab of {GUARD_DAG} {run_id} {ROUTING_TASK} does not show "
                f"{STAGE_XCOM_KEY} {summary!r}: {' '.join(b.text().split())[:300]!r}"
            ) from None
        check.screenshots.append(b.shot("rollout-guard-run.png"))
        kind = "a rollout stage" if stage in ROLLOUT_STAGES else "no rollout"
        check.detail = (
            f"{GUARD_DAG} run {run_id} ({run['run_type']}, {run['state']}) is in stage {stage} "
            f"({kind}); the XCom tab of {ROUTING_TASK} shows {STAGE_XCOM_KEY} {summary!r}"
        )

    def _stage_xcom(self, run_id: str) -> str | None:
        path = f"{ti_path(GUARD_DAG, run_id, ROUTING_TASK)}/xcomEntries/{STAGE_XCOM_KEY}"
        try:
            return self.api.get(path, deserialize="true")["value"]
        except AirflowAPIError as err:
            if err.status == 404:  # the task did not run (yet), or pushed nothing
                return None
            raise

    # 9 ---------------------------------------------------------------------- MLflow aliases
    def mlflow_aliases(self, check: CheckResult) -> None:
        from mlflow import MlflowClient

        b = self.browser
        name, expected = self.registered_model, list(self.expect_aliases)
        registry = {
            alias: str(version)
            for alias, version in MlflowClient(self.mlflow_url)
            .get_registered_model(name)
            .aliases.items()
        }
        url = mlflow_model_url(self.mlflow_url, name)
        b.page.goto("about:blank")  # a change of the #fragment alone would not reload the app
        # not b.goto: the MLflow UI keeps polling, it never goes network-idle
        b.page.goto(url, wait_until="domcontentloaded", timeout=b.timeout_ms)
        check.urls.append(url)
        b.page.locator('[role="row"] a[href*="/versions/"]').first.wait_for(
            state="visible", timeout=b.timeout_ms
        )
        self._close_mlflow_assistant()
        # the versions render before their alias tags: read until the UI agrees with the
        # registry (bounded: a disagreement is what the check reports)
        deadline = time.monotonic() + min(self.timeout_s, 15)
        while True:
            shown = aliases_from_rows(b.page.evaluate(_ALIAS_ROWS_JS, MLFLOW_ALIAS_TAG))
            if shown == registry or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        check.screenshots.append(b.shot("mlflow-aliases.png"))
        check.data.update(model=name, expected=expected, registry=registry, shown=shown)
        problems = alias_problems(expected, shown, registry)
        if problems:
            raise AssertionError(f"registered model {name!r}: " + "; ".join(problems))
        check.detail = (
            f"the MLflow UI's page of {name!r} shows "
            + ", ".join(f"{alias} on v{shown[alias]}" for alias in expected)
            + " (as the MLflow client reads the registry)"
        )
