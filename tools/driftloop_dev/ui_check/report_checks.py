"""The drift-report checks: the "Drift report" link of ``log_to_mlflow`` and the Evidently report
it opens in the MLflow UI."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

from driftloop_dev.airflow_api import AirflowAPIError
from driftloop_dev.airflow_runs import dag_runs, task_instances
from driftloop_dev.ui_check.constants import (
    DRIFT_DAG,
    EVIDENTLY_TEXT,
    REPORT_LINK_NAME,
    REPORT_TASK,
    REPORT_XCOM_KEY,
)
from driftloop_dev.ui_check.parsing import extra_links, parse_mlflow_artifact_url, ti_path, ui_url
from driftloop_dev.ui_check.results import CheckResult


class ReportChecks:
    """Part of the checks (:class:`~driftloop_dev.ui_check.checks._Checks`)."""

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
