"""The pure parts of the UI check: reading the stack, UI URLs, log and link parsing, results."""

from __future__ import annotations

import json

import pytest

from driftloop_dev.ui_check import (
    CHECKS,
    ROLLOUT_DAGS,
    CheckResult,
    UICheckResult,
    alias_problems,
    aliases_from_rows,
    dag_problems,
    extra_links,
    latest,
    main,
    mlflow_model_url,
    parse_alias_tag,
    parse_mlflow_artifact_url,
    pick_stage_run,
    ran,
    read_mlflow_url,
    read_stack,
    run_ui_check,
    stage_of,
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


def test_read_mlflow_url(tmp_path):
    _stack(tmp_path, {"airflow": AIRFLOW, "mlflow": "http://127.0.0.1:5000/"})
    assert read_mlflow_url(tmp_path) == "http://127.0.0.1:5000"
    _stack(tmp_path / "no-mlflow", {"airflow": AIRFLOW})
    assert read_mlflow_url(tmp_path / "no-mlflow") is None


def test_read_stack_without_airflow(tmp_path):
    _stack(tmp_path, {"mlflow": "http://127.0.0.1:5000"})
    with pytest.raises(LookupError, match=r"urls\.airflow"):
        read_stack(tmp_path)


def test_main_without_a_stack_exits_2(tmp_path, capsys):
    assert main(["--root", str(tmp_path / "nothing")]) == 2
    assert "no stack with Airflow" in capsys.readouterr().err


def test_run_ui_check_refuses_unknown_checks(tmp_path):
    with pytest.raises(ValueError, match=r"unknown checks \['rollout_stage'\]"):
        run_ui_check(AIRFLOW, "admin", "pw", tmp_path, only=("rollout_stage",))
    assert {"rollout_dags", "rollout_guard_run", "mlflow_aliases"} <= set(CHECKS)
    assert CHECKS[0] == "login"


def test_main_with_an_unknown_check_exits_2(tmp_path, capsys):
    _stack(tmp_path, {"airflow": AIRFLOW, "mlflow": "http://127.0.0.1:5000"})
    assert main(["--root", str(tmp_path), "--only", "mlflow_aliases,nope"]) == 2
    assert "unknown checks ['nope']" in capsys.readouterr().err


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


# ---------------------------------------------------------------------------- the rollout


def _dag(dag_id: str, *, paused: bool = False, errors: bool = False) -> dict:
    return {"dag_id": dag_id, "is_paused": paused, "has_import_errors": errors}


def test_dag_problems_names_missing_broken_and_paused_dags():
    dags = [_dag(d) for d in ROLLOUT_DAGS]
    assert dag_problems(ROLLOUT_DAGS, dags) == []
    assert dag_problems(ROLLOUT_DAGS, [*dags, _dag("other", paused=True, errors=True)]) == []
    dags = [
        _dag("drift_monitor"),
        _dag("retrain_detector", errors=True),
        _dag("rollout_guard", paused=True),
        _dag("drift_accept_new_normal", paused=True, errors=True),
    ]
    assert dag_problems(ROLLOUT_DAGS, dags) == [
        "retrain_detector has import errors",
        "rollout_guard is paused",
        "rollback_detector is not listed",
        "drift_accept_new_normal has import errors",
        "drift_accept_new_normal is paused",
    ]


@pytest.mark.parametrize(
    ("summary", "stage"),
    [
        ("serving", "serving"),
        ("#3 serving: v2 serves alone", "serving"),
        ("#1 shadow (rollout-3-20261130T102645Z): v3 shadows v2 on 100% of frames", "shadow"),
        (
            "#2 canary (rollout-3-20261130T102645Z): v3 serves 5% of frames (paired with v2)",
            "canary",
        ),
        ("#4 guard (rollout-3-20261130T102645Z): v3 serves, v2 shadows 25%", "guard"),
        ("  #4 guard (r): v3 serves, v2 shadows 25%\n", "guard"),
        ("#4 guarded", None),
        ("shadow", None),
        ("", None),
        (None, None),
        ({"stage": "shadow"}, None),
    ],
)
def test_stage_of(summary, stage):
    assert stage_of(summary) == stage


def test_pick_stage_run_prefers_the_newest_rollout_stage_and_stops_there():
    read = []

    def newest_first():
        for pair in [
            ("r5", None),  # routing has not run yet
            ("r4", "serving"),
            ("r3", "#2 canary (x): v3 serves 5% of frames (paired with v2)"),
            ("r2", "#1 shadow (x): v3 shadows v2 on 100% of frames"),
        ]:
            read.append(pair[0])
            yield pair

    assert pick_stage_run(newest_first()) == (
        "r3",
        "#2 canary (x): v3 serves 5% of frames (paired with v2)",
    )
    assert read == ["r5", "r4", "r3"]  # r2's XCom is never fetched


def test_pick_stage_run_falls_back_to_serving_or_none():
    assert pick_stage_run([("r2", "serving"), ("r1", "#1 serving: v1 serves alone")]) == (
        "r2",
        "serving",
    )
    assert pick_stage_run([("r2", None), ("r1", "garbage")]) is None
    assert pick_stage_run([]) is None


def test_mlflow_model_url():
    assert (
        mlflow_model_url("http://127.0.0.1:5000/", "driftloop-detector")
        == "http://127.0.0.1:5000/#/models/driftloop-detector"
    )
    assert mlflow_model_url("http://m", "a b/c") == "http://m/#/models/a%20b%2Fc"


def test_parse_alias_tag():
    assert parse_alias_tag("@\xa0champion") == "champion"
    assert parse_alias_tag(" @ previous-champion ") == "previous-champion"
    assert parse_alias_tag("challenger") == "challenger"
    assert parse_alias_tag("@") == ""


def _row(version: str | None, *aliases: str) -> dict:
    href = None if version is None else f"#/models/driftloop-detector/versions/{version}"
    return {"href": href, "aliases": list(aliases)}


def test_aliases_from_rows_reads_the_versions_table():
    rows = [
        _row(None),  # the header row
        _row("3", "@\xa0challenger"),
        _row("2", "@\xa0champion", "@\xa0prod"),
        _row("1", "@\xa0previous-champion"),
        _row("12"),
        {"href": "#/models/m", "aliases": ["@ stray"]},  # no version link: not a version row
    ]
    assert aliases_from_rows(rows) == {
        "challenger": "3",
        "champion": "2",
        "prod": "2",
        "previous-champion": "1",
    }
    assert aliases_from_rows([]) == {}


def test_aliases_from_rows_refuses_an_alias_on_two_versions():
    with pytest.raises(ValueError, match="'champion' on v2 and v3"):
        aliases_from_rows([_row("2", "@ champion"), _row("3", "@ champion")])
    # the same tag twice on one version is one alias
    assert aliases_from_rows([_row("2", "@ champion", "@ champion")]) == {"champion": "2"}


EXPECTED = ("champion", "challenger", "previous-champion")
HELD = {"champion": "2", "challenger": "3", "previous-champion": "1"}


def test_alias_problems_none_when_the_ui_shows_what_the_registry_holds():
    assert alias_problems(EXPECTED, dict(HELD), HELD) == []
    # an alias not expected is fine as long as the UI agrees with the registry
    assert alias_problems(["champion"], {**HELD, "prod": "2"}, {**HELD, "prod": "2"}) == []


def test_alias_problems_names_a_missing_alias():
    held = {"champion": "2", "previous-champion": "1"}
    assert alias_problems(EXPECTED, dict(held), held) == [
        "alias 'challenger' is on no version (registry and MLflow UI)"
    ]


def test_alias_problems_names_what_the_ui_gets_wrong():
    shown = {"champion": "3", "previous-champion": "1", "stale": "1"}
    assert alias_problems(EXPECTED, shown, HELD) == [
        "the MLflow UI shows alias 'champion' on v3, the registry on v2",
        "the MLflow UI shows no alias 'challenger' (the registry: v3)",
        "the MLflow UI shows alias 'stale' on v1, the registry has none",
    ]
