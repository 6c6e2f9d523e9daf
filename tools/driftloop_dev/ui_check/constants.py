"""What the UI check looks for: Chromium, the DAGs and tasks, the texts Airflow shows."""

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

#: the DAGs of the loop with the rollout: each on the DAG list, active, without import errors
ROLLOUT_DAGS = (
    "drift_monitor",
    "retrain_detector",
    "rollout_guard",
    "rollback_detector",
    "drift_accept_new_normal",
)
GUARD_DAG = "rollout_guard"
#: the guard's first task pushes the stage it read from the routing document as this XCom
#: (``RoutingDoc.summary()``, e.g. "#2 shadow (rollout-3-…): v3 shadows v2 on 100% of
#: frames", or "serving"); the task's XCom tab renders it
ROUTING_TASK = "routing"
STAGE_XCOM_KEY = "rollout_stage"
ROLLOUT_STAGES = ("shadow", "canary", "guard")
#: how many of the guard's newest runs are searched for one with a stage
GUARD_RUNS_SEARCHED = 50
REGISTERED_MODEL = "driftloop-detector"
#: the aliases ``make demo`` ends with (driftloop.promotion.registry's names)
EXPECTED_ALIASES = ("champion", "challenger", "previous-champion")
#: an alias tag in the versions table of the MLflow UI's registered-model page
MLFLOW_ALIAS_TAG = '[role="status"][data-component-id*="aliastag" i]'

#: the drift page (plugin driftloop_drift_page): the UI's nav route, the page, its JSON
DRIFT_PAGE_NAV = "/plugin/driftloop-drift"
DRIFT_PAGE_PATH = "/driftloop/drift"
DRIFT_DATA_PATH = "/driftloop/drift/data"
#: the charts' aria-labels (driftloop.airflow.drift_charts)
DRIFT_CHART_LABELS = (
    "Drift: feature scores per daily check (1 = warn threshold)",
    "Performance: mAP@0.5:0.95 per day (all cameras)",
)
