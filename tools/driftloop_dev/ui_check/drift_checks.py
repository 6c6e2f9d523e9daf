"""The drift page check: the "Drift" nav entry (plugin ``driftloop_drift_page``) opens the page
inside the Airflow UI for the signed-in user, lists the drift events the page's JSON lists,
and shows both charts (screenshot ``drift-page.png``).

The JSON (``/driftloop/drift/data``) is read with the REST client's bearer token; the page is
opened in the browser with the UI's session cookie: both go through Airflow's own auth.
"""

from __future__ import annotations

from driftloop_dev.ui_check.constants import (
    DRIFT_CHART_LABELS,
    DRIFT_DATA_PATH,
    DRIFT_PAGE_NAV,
    DRIFT_PAGE_PATH,
)
from driftloop_dev.ui_check.results import CheckResult

#: what the page renders: one row per event, the charts as labelled inline SVG
_PAGE_JS = """() => ({
  rows: Array.from(document.querySelectorAll('#events tr[data-event-id]')).map(r => [
    r.dataset.eventId, r.dataset.status]),
  charts: Array.from(document.querySelectorAll('svg[role="img"]')).map(s =>
    s.getAttribute('aria-label')),
  buttons: document.querySelectorAll('button[data-action]').length,
})"""


class DriftPageChecks:
    """Part of the checks (:class:`~driftloop_dev.ui_check.checks._Checks`)."""

    # 10 ------------------------------------------------------------------------ drift page
    def drift_page(self, check: CheckResult) -> None:
        b = self.browser
        data = self.api.get(DRIFT_DATA_PATH)
        check.urls.append(self.api.url(DRIFT_DATA_PATH))
        events = data["events"]
        expected = [[str(e["id"]), e["status"]] for e in events["events"]]
        check.data.update(total=events["total"], expected=expected)
        if not events["total"]:
            raise AssertionError(f"{DRIFT_DATA_PATH} lists no drift events")
        url = self.url + DRIFT_PAGE_NAV
        b.goto(url)
        check.urls.append(url)
        frame = b.page.frame_locator(f'iframe[src*="{DRIFT_PAGE_PATH.lstrip("/")}"]').first
        frame.locator("#events tr[data-event-id]").first.wait_for(
            state="visible", timeout=b.timeout_ms
        )
        shown = frame.locator("body").evaluate(f"(body) => ({_PAGE_JS})()")
        check.screenshots.append(b.shot("drift-page.png"))
        check.data.update(shown=shown)
        problems = []
        if shown["rows"] != expected:
            problems.append(f"rows {shown['rows']} != the data's {expected}")
        missing = [label for label in DRIFT_CHART_LABELS if label not in shown["charts"]]
        if missing:
            problems.append(f"charts missing: {missing} (shown: {shown['charts']})")
        if problems:
            raise AssertionError("; ".join(problems))
        open_events = sum(1 for e in events["events"] if e["open"])
        check.detail = (
            f"the Drift nav page lists {len(expected)} of {events['total']} drift events "
            f"({open_events} open, with {shown['buttons']} action buttons) and "
            f"{len(shown['charts'])} charts"
        )
