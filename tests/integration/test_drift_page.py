"""The drift page on a real api-server (plugin ``driftloop_drift_page``), in headless Chromium.

A stack of its own (``make up``'s shape: PostgreSQL, api-server, scheduler, dag-processor and
triggerer as separate processes; its root under pytest's tmp) with a drift history seeded
through :mod:`driftloop.drift.history`: eight daily checks (per-feature drift scores from the
second on; the first from before scores were kept), an open event and an ignored one, and two
days of measured mAP. Then:

- without a session the page and its JSON answer 401; with the REST client's bearer token the
  JSON lists the events;
- the UI check ``drift_page``: the "Drift" nav entry opens the page inside the Airflow UI for
  the signed-in user, with the events and both charts (screenshot ``drift-page.png``); the
  drift chart draws the top features' scores (brightness, contrast, …) in the browser;
- *Retrain* on the open event triggers ``retrain_detector`` (paused here: the run stays
  queued) with the event in its conf, as the signed-in user;
- *Ignore* with a note triggers ``drift_ignore_event`` through the REST API as the signed-in
  user; the run succeeds and the event is IGNORED by ``admin`` with that note.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from driftloop_dev.airflow_runs import dag_run, wait_for_run, wait_until
from driftloop_dev.ui_check import CHROMIUM, run_ui_check
from driftloop_dev.ui_check.browser import launch_chromium
from driftloop_dev.ui_check.constants import DRIFT_DATA_PATH, DRIFT_PAGE_PATH, VIEWPORT
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
NEW_DAGS = ("drift_ignore_event", "retrain_detector", "drift_monitor")


@pytest.fixture(scope="module")
def page_stack(tmp_path_factory):
    """The running stack with a seeded drift history; yields ``(stack, {"open": id, …})``."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (make system-deps installs Debian's chromium)")
    from driftloop_dev.stack import EmbeddedStack

    root = tmp_path_factory.mktemp("drift-page-stack")
    extra_env = {
        "DRIFTLOOP_SENSOR_TIMEOUT_S": "20",
        "DRIFTLOOP_SENSOR_POKE_S": "5",
        "DRIFTLOOP_RETRAIN_CRON": "0 4 1 1 *",
    }
    stack = EmbeddedStack(root, REPO, with_airflow_ui=True, extra_env=extra_env)
    try:
        stack.start()
        yield stack, _seed(stack.env["DRIFTLOOP_DATABASE_URL"])
    finally:
        stack.stop()


def _seed(url: str) -> dict[str, int]:
    import sqlalchemy as sa

    from driftloop.drift import history
    from driftloop.performance.tables import performance_days

    engine = history.engine_for(url)
    for day in range(15, 23):
        scores = None if day == 15 else _scores(day)  # the 15th: before scores were kept
        levels = _levels(_scores(day))
        severity = max(levels.values(), key=("none", "warn", "critical").index)
        history.record_check(
            engine,
            history.CheckRecord(
                run_id=f"seeded__2026-11-{day}",
                window_start=date(2026, 11, day - 6),
                window_end=date(2026, 11, day),
                reference_kind="sliding",
                reference_id=f"sliding-{day}",
                severity=severity,
                policy_version="2026.11.3",
                feature_levels=levels,
                drifted_features=[f for f, level in levels.items() if level != "none"],
                feature_scores=scores,
            ),
        )
    ignored = history.open_event(engine, "seeded__2026-11-21", "critical", ["brightness"])
    history.close_event(engine, ignored, "IGNORED", actor="carol", note="a cleaned lens")
    opened = history.open_event(
        engine, "seeded__2026-11-22", "critical", ["contrast", "brightness"]
    )
    with engine.begin() as conn:
        for day, value in ((21, 0.52), (22, 0.41)):
            conn.execute(
                sa.insert(performance_days).values(
                    day=date(2026, 11, day), model_version="1", camera="*",
                    source="measured", n_frames=50, map50=value + 0.2, map50_95=value,
                    map50_95_low=value - 0.05, map50_95_high=value + 0.05,
                    baseline_map50_95=0.55, run_id=f"seeded__2026-11-{day}",
                    recorded_at=datetime(2026, 11, day, tzinfo=UTC),
                )
            )  # fmt: skip
        for day, value in ((19, 0.57), (20, 0.55), (21, 0.56), (22, 0.5)):  # label-free, daily
            conn.execute(
                sa.insert(performance_days).values(
                    day=date(2026, 11, day), model_version="1", camera="*",
                    source="estimated", n_frames=400, map50=None, map50_95=value,
                    map50_95_low=None, map50_95_high=None,
                    baseline_map50_95=0.55, run_id=f"seeded__2026-11-{day}",
                    recorded_at=datetime(2026, 11, day, tzinfo=UTC),
                )
            )  # fmt: skip
    return {"open": opened, "ignored": ignored}


#: (method, warn, critical, alert) and the effect of each seeded day, the 15th to the 22nd:
#: brightness drifts from the 19th, contrast follows; latency is charted, never alerts
_SEEDED = {
    "brightness": (("psi", 0.02, 0.25, True), (0.01, 0.01, 0.012, 0.015, 0.03, 0.08, 0.28, 0.35)),
    "contrast": (("psi", 0.02, 0.25, True), (0.009, 0.008, 0.01, 0.009, 0.012, 0.025, 0.05, 0.3)),
    "sharpness": (("psi", 0.05, 0.30, True), (0.02, 0.022, 0.018, 0.02, 0.025, 0.03, 0.04, 0.045)),
    "embedding": (("mmd", 0.01, 0.03, True), (0.002, 0.003, 0.002, 0.003, 0.004, 0.006, 0.008, 0.009)),
    "saturation": (("psi", 0.02, 0.25, True), (0.005, 0.006, 0.004, 0.005, 0.006, 0.007, 0.009, 0.01)),
    "mean_r": (("psi", 0.02, 0.25, True), (0.004, 0.004, 0.005, 0.004, 0.006, 0.006, 0.007, 0.008)),
    "latency_ms": (("psi", 0.02, 0.25, False), (0.01, 0.015, 0.02, 0.018, 0.02, 0.022, 0.02, 0.021)),
}  # fmt: skip


def _scores(day: int) -> dict[str, dict]:
    out = {}
    for feature, ((method, warn, critical, alert), effects) in _SEEDED.items():
        effect = effects[day - 15]
        out[feature] = {"effect": effect, "method": method, "score": effect / warn,
                        "window": "full", "warn": warn, "critical": critical, "alert": alert}  # fmt: skip
    return out


def _levels(scores: dict[str, dict]) -> dict[str, str]:
    def level(s):
        if not s["alert"] or s["effect"] < s["warn"]:
            return "none"
        return "critical" if s["effect"] >= s["critical"] else "warn"

    return {feature: level(s) for feature, s in scores.items()}


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with NO_PROXY.open(urllib.request.Request(url, headers=headers or {}), timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def test_no_session_is_refused_and_the_token_reads(page_stack):
    stack, events = page_stack
    base, api = stack.urls["airflow"], stack.airflow_client()
    assert _status(base + DRIFT_PAGE_PATH) == 401
    assert _status(base + DRIFT_DATA_PATH) == 401
    assert _status(base + DRIFT_DATA_PATH, {"Authorization": "Bearer not-a-jwt"}) in (401, 403)
    data = api.get(DRIFT_DATA_PATH)
    assert [(e["id"], e["status"]) for e in data["events"]["events"]] == [
        (events["open"], "NEEDS_REVIEW"),
        (events["ignored"], "IGNORED"),
    ]
    scores = data["scores"]
    assert [s["window"]["end"][-2:] for s in scores] == [str(d) for d in range(15, 23)]
    assert [s["n_critical"] for s in scores[-3:]] == [0, 1, 2]
    assert scores[0]["scores"] is None  # checked before scores were kept
    assert scores[-1]["scores"]["brightness"]["score"] == pytest.approx(0.35 / 0.02)
    assert [p["map50_95"] for p in data["performance"]["measured"]] == [0.52, 0.41]
    assert [p["map50_95"] for p in data["performance"]["estimated"]] == [0.57, 0.55, 0.56, 0.5]


def test_the_ui_check_sees_the_drift_page(page_stack, tmp_path):
    stack, events = page_stack
    result = run_ui_check(
        stack.urls["airflow"], "admin", stack.admin_password, tmp_path, only=("drift_page",)
    )
    assert result.ok, {name: result.check(name).detail for name in result.failed}
    check = result.check("drift_page")
    assert check.data["shown"]["rows"] == [
        [str(events["open"]), "NEEDS_REVIEW"],
        [str(events["ignored"]), "IGNORED"],
    ]
    assert check.data["shown"]["buttons"] == 2  # Retrain and Ignore on the open event only
    assert (tmp_path / "drift-page.png").stat().st_size > 10_000
    print(check.detail)


def _signed_in_page(playwright, stack):
    browser = launch_chromium(playwright)
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(stack.urls["airflow"] + "/", wait_until="domcontentloaded")
    page.wait_for_url(lambda u: "/auth/login" in u)
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", stack.admin_password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda u: "/auth/login" not in u)
    page.goto(stack.urls["airflow"] + DRIFT_PAGE_PATH, wait_until="domcontentloaded")
    return browser, page


def _click(page, event_id: int, action: str, note: str) -> str:
    """Type the note, click the action; the run id the page reports (its result line)."""
    page.fill(f'input[data-note="{event_id}"]', note)
    page.click(f'button[data-action="{action}"][data-event="{event_id}"]')
    page.wait_for_selector("#result[data-state]")
    state = page.get_attribute("#result", "data-state")
    assert state == "ok", page.inner_text("#result")
    return page.get_attribute("#result", "data-run-id")


def test_retrain_and_ignore_go_through_the_rest_api(page_stack):
    from playwright.sync_api import sync_playwright

    from driftloop.drift import history

    stack, events = page_stack
    api = stack.airflow_client()
    wait_until(
        lambda: set(NEW_DAGS) <= {d["dag_id"] for d in api.get("dags", limit=100)["dags"]},
        "the DAGs to be parsed",
        300,
    )
    api.patch("dags/retrain_detector", {"is_paused": True})  # the run must not train here
    event_id = events["open"]
    with sync_playwright() as playwright:
        browser, page = _signed_in_page(playwright, stack)
        try:
            lines = page.eval_on_selector_all(
                "svg polyline.series", "els => els.map(e => e.dataset.series)"
            )
            assert lines[:2] == ["brightness", "contrast"], lines
            assert page.locator('circle[data-series="no scores recorded"]').count() == 1
            retrain = _click(page, event_id, "retrain", "operator review: retrain")
            run = dag_run(api, "retrain_detector", retrain)
            assert run["conf"] == {"drift_event_id": event_id, "reason": "operator review: retrain"}
            assert run["triggering_user_name"] == "admin"
            api.delete(f"dags/retrain_detector/dagRuns/{retrain}")

            # Ignore without a note is not sent
            page.fill(f'input[data-note="{event_id}"]', "")
            page.click(f'button[data-action="ignore"][data-event="{event_id}"]')
            assert page.get_attribute("#result", "data-state") == "error"
            ignore = _click(page, event_id, "ignore", "glare from a new floodlight, expected")
        finally:
            browser.close()
    run = dag_run(api, "drift_ignore_event", ignore)
    assert run["triggering_user_name"] == "admin"
    assert run["conf"] == {"event_id": event_id, "note": "glare from a new floodlight, expected"}
    assert wait_for_run(api, "drift_ignore_event", ignore, 300)["state"] == "success"
    event = history.get_event(history.engine_for(stack.env["DRIFTLOOP_DATABASE_URL"]), event_id)
    assert (event["status"], event["actor"]) == ("IGNORED", "admin")
    assert event["note"] == "glare from a new floodlight, expected"
