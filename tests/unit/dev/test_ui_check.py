"""The pure parts of the UI check: reading the stack, UI URLs, log and link parsing, results."""

from __future__ import annotations

import json

import pytest

from driftloop_dev.ui_check import (
    CheckResult,
    UICheckResult,
    extra_links,
    latest,
    main,
    parse_mlflow_artifact_url,
    ran,
    read_stack,
    summarise_log,
    ti_label,
    ui_url,
)

AIRFLOW = "http://127.0.0.1:8080"
RUN = "scheduled__2026-11-01T04:00:00+00:00"


def _source_header(*sources: str) -> list[dict]:
    return [
        {"event": "::group::Log message source details"},
        *({"event": s} for s in sources),
        {"event": "::endgroup::"},
    ]


# ---------------------------------------------------------------------------- URLs


def test_ui_url_encodes_run_ids_and_builds_task_pages():
    assert ui_url(AIRFLOW + "/") == f"{AIRFLOW}/dags"
    assert ui_url(AIRFLOW, "drift_monitor") == f"{AIRFLOW}/dags/drift_monitor"
    run_page = f"{AIRFLOW}/dags/retrain_detector/runs/scheduled__2026-11-01T04%3A00%3A00%2B00%3A00"
    assert ui_url(AIRFLOW, "retrain_detector", RUN) == run_page
    assert (
        ui_url(AIRFLOW, "retrain_detector", RUN, "train", tab="details")
        == f"{run_page}/tasks/train/details"
    )
    assert (
        ui_url(AIRFLOW, "retrain_detector", RUN, "profile", map_index=3, try_number=2)
        == f"{run_page}/tasks/profile/mapped/3?try_number=2"
    )
    # map_index -1 is the unmapped instance: no /mapped segment
    assert ui_url(AIRFLOW, "d", "r", "t", map_index=-1) == f"{AIRFLOW}/dags/d/runs/r/tasks/t"


def test_ti_label():
    assert ti_label("d", "r", "t") == "d/r/t"
    assert ti_label("d", "r", "t", 2, 1) == "d/r/t[2] try 1"


def test_parse_mlflow_artifact_url_and_its_url_forms():
    url = "http://127.0.0.1:5000/#/experiments/3/runs/abc123/artifactPath/evidently/evidently.html"
    link = parse_mlflow_artifact_url(url)
    assert (link.base, link.experiment_id, link.run_id, link.artifact_path) == (
        "http://127.0.0.1:5000",
        "3",
        "abc123",
        "evidently/evidently.html",
    )
    forms = link.url_forms()
    assert forms["artifactPath"] == url
    assert forms["artifacts"].endswith("/runs/abc123/artifacts/evidently/evidently.html")
    assert forms["artifacts-tab"].endswith("/runs/abc123/artifacts?path=evidently%2Fevidently.html")
    # a path prefix of the MLflow server is kept
    prefixed = parse_mlflow_artifact_url(
        "https://ops.example/mlflow/#/experiments/1/runs/r/artifactPath/a.html"
    )
    assert prefixed.base == "https://ops.example/mlflow"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("s3://driftloop/reports/drift/r/evidently.html", "not an http"),
        ("http://127.0.0.1:5000/#/experiments/3/runs/abc123", "not an MLflow UI artifact URL"),
        (
            "http://127.0.0.1:5000/#/experiments/3/runs/abc123/artifactPath/",
            "not an MLflow UI artifact URL",
        ),
        ("not a url", "not an http"),
    ],
)
def test_parse_mlflow_artifact_url_refuses_other_urls(url, reason):
    with pytest.raises(ValueError, match=reason):
        parse_mlflow_artifact_url(url)


# ---------------------------------------------------------------------------- logs


def test_summarise_log_counts_lines_of_its_own_and_the_first_top_level_line():
    content = [
        *_source_header("/stack/airflow/logs/dag_id=d/run_id=r/task_id=t/attempt=1.log"),
        {"timestamp": "2026-11-29T15:42:37Z", "event": "::group::Pre Execute"},
        {"timestamp": "2026-11-29T15:42:40Z", "event": "DAG bundles loaded: dags-folder"},
        {"timestamp": "2026-11-29T15:42:41Z", "event": "::endgroup::"},
        {"timestamp": "2026-11-29T15:42:42Z", "event": "window ends 2026-11-28\nsecond line"},
        {"timestamp": "2026-11-29T15:42:42Z", "event": "Done. Returned value was: {}"},
    ]
    summary = summarise_log(content)
    assert summary.sources == ("/stack/airflow/logs/dag_id=d/run_id=r/task_id=t/attempt=1.log",)
    assert summary.lines == 3
    assert summary.first_line == "window ends 2026-11-28"
    assert summary.ok
    assert summary.reason() == "ok"


def test_summarise_log_flags_an_unreadable_log():
    summary = summarise_log(
        _source_header(
            "Could not read served logs: Hostname not available for worker. Please check your "
            "`hostname_callable` configuration."
        )
    )
    assert not summary.ok
    assert summary.lines == 0
    assert "Could not read served logs" in summary.reason()


def test_summarise_log_flags_a_missing_log_file_even_with_other_lines():
    content = [
        *_source_header("Log file not found on worker 'w1'. This attempt may have run elsewhere."),
        {"event": "a line from the triggerer"},
    ]
    summary = summarise_log(content)
    assert summary.lines == 1
    assert not summary.ok
    assert "Log file not found" in summary.reason()


def test_summarise_log_flags_no_logs_and_empty_logs():
    no_logs = summarise_log(
        [*_source_header(), {"event": "No logs available for this task.", "timestamp": None}]
    )
    assert not no_logs.ok
    assert "No logs available" in no_logs.reason()
    empty = summarise_log(_source_header("/logs/attempt=1.log"))
    assert not empty.ok
    assert empty.reason().startswith("empty log")
    assert not summarise_log([]).ok
    assert not summarise_log(None).ok


def test_summarise_log_reads_plain_string_content():
    summary = summarise_log(["*** Found local files:", "[2026-11-29] INFO - hello"])
    assert summary.ok
    assert summary.lines == 2
    assert summary.first_line == "*** Found local files:"


def test_first_line_falls_in_no_group_or_is_none():
    only_grouped = summarise_log(
        [*_source_header("f"), {"event": "::group::Pre Execute"}, {"event": "inside"}]
    )
    assert only_grouped.lines == 1
    assert only_grouped.first_line is None


# ---------------------------------------------------------------------------- what ran


@pytest.mark.parametrize(
    ("ti", "expected"),
    [
        # ran on a worker
        ({"start_date": "t", "state": "success", "hostname": "vm", "try_number": 1}, True),
        # failed on a worker
        ({"start_date": "t", "state": "failed", "hostname": "vm", "try_number": 1}, True),
        # skipped by itself (AirflowSkipException): it ran, so it has a log
        ({"start_date": "t", "state": "skipped", "hostname": "vm", "try_number": 1}, True),
        # skipped by a branch: a start date but try 0, no host
        ({"start_date": "t", "state": "skipped", "hostname": "", "try_number": 0}, False),
        # an EmptyOperator the scheduler marked done: never queued, no host
        (
            {
                "start_date": "t",
                "state": "success",
                "hostname": "",
                "try_number": 1,
                "queued_when": None,
            },
            False,
        ),
        # queued to the executor but died before a host took it: must have a log
        (
            {
                "start_date": "t",
                "state": "failed",
                "hostname": "",
                "try_number": 1,
                "queued_when": "q",
            },
            True,
        ),
        ({"start_date": None, "state": None, "hostname": "", "try_number": 0}, False),
    ],
)
def test_ran(ti, expected):
    assert ran(ti) is expected


# ---------------------------------------------------------------------------- REST bodies


def test_extra_links_drops_links_without_url():
    body = {
        "extra_links": {"Drift report": "http://m/#/x", "MLflow run": None},
        "total_entries": 2,
    }
    assert extra_links(body) == {"Drift report": "http://m/#/x"}
    assert extra_links({"extra_links": {}, "total_entries": 0}) == {}
    with pytest.raises(ValueError, match="unexpected extra links response"):
        extra_links({"extra_links": ["Drift report"]})


def test_latest_run():
    runs = [
        {"dag_run_id": "a", "run_after": "2026-11-29T10:00:00Z"},
        {"dag_run_id": "b", "run_after": "2026-11-29T12:00:00Z"},
        {"dag_run_id": "c", "run_after": "2026-11-29T11:00:00Z"},
    ]
    assert latest(runs)["dag_run_id"] == "b"
    assert latest([]) is None


# ---------------------------------------------------------------------------- stack + result


def _stack(root, urls):
    (root / "airflow").mkdir(parents=True)
    (root / "stack.json").write_text(json.dumps({"urls": urls}))
    (root / "airflow" / "simple_auth_manager_passwords.json").write_text(
        json.dumps({"admin": "s3cret"})
    )


def test_read_stack(tmp_path):
    _stack(tmp_path, {"airflow": AIRFLOW + "/", "mlflow": "http://127.0.0.1:5000"})
    assert read_stack(tmp_path) == (AIRFLOW, "admin", "s3cret")
    with pytest.raises(LookupError):
        read_stack(tmp_path, "viewer")


def test_read_stack_without_airflow(tmp_path):
    _stack(tmp_path, {"mlflow": "http://127.0.0.1:5000"})
    with pytest.raises(LookupError, match=r"urls\.airflow"):
        read_stack(tmp_path)


def test_main_without_a_stack_exits_2(tmp_path, capsys):
    assert main(["--root", str(tmp_path / "nothing")]) == 2
    assert "no stack with Airflow" in capsys.readouterr().err


def test_result_ok_failed_and_json(tmp_path):
    result = UICheckResult(AIRFLOW, tmp_path)
    assert not result.ok  # nothing checked is not a pass
    result.checks += [
        CheckResult("login", True, "signed in"),
        CheckResult("asset_triggered_run", None, "not asked for"),
    ]
    assert result.ok
    assert result.failed == []
    result.checks.append(CheckResult("task_logs_api", False, "2 task logs are bad"))
    assert not result.ok
    assert result.failed == ["task_logs_api"]
    written = json.loads(result.write().read_text())
    assert written["ok"] is False
    assert written["failed"] == ["task_logs_api"]
    assert [c["name"] for c in written["checks"]] == [
        "login",
        "asset_triggered_run",
        "task_logs_api",
    ]
    assert result.check("login").detail == "signed in"
