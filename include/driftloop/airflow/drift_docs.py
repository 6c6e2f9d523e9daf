"""The longer parts of ``drift_monitor``'s documentation (its DAG page shows the DAG file's
docstring followed by :data:`DRIFT_MONITOR_DOC`): the drift event's life cycle, the
performance verdict and manual triggers. Text only: the DAG file imports it at parse time."""

DRIFT_MONITOR_DOC = """
**Performance.** `measure_performance` scores the champion on the labeled days of the window
(`labeled/dt=<day>/`, overall and per camera, mAP with a bootstrap CI) and estimates its
mAP from its confidences on the days without labels (`performance_days` table,
`reports/drift/<run>/performance.json`). `decide` judges the stored series against the
champion's own evaluation (policy section `performance:`: a day breaches when its CI's upper
bound is below the baseline minus `drop_warning` / `drop_critical`, k-of-n over the judged
days); the check's severity is the worse of input drift and performance. A performance
breach without input drift opens a drift event of kind `performance`.

**A drift event** stays open (`NEEDS_REVIEW`, `ACTIONED`, `RETRAINING_FAILED`) until a
retraining for it is promoted champion (**RESOLVED**), an operator accepts it as the new
normal (**ACCEPTED**: the form, or the `drift_accept_new_normal` DAG; the window last checked
becomes the reference) or ignores it (**IGNORED**: the reference slides on). While an event
measured against a **sliding** reference is open, later checks keep the reference of the check
that opened it ("frozen by drift event N"): a persistent drift keeps alerting until it is dealt
with. `decision.json` and the drift history record each check's reference rule and why
(docs/architecture.md, "Life cycle of a drift event").

**Manual trigger**: set `end_date` to check another day; the threshold Params override the policy
for this run only (the run's policy version is then recorded as `<version>+override`).
"""

LOG_TO_MLFLOW_DOC = (
    "Logs the check to MLflow (experiment `drift-monitor`), with its `performance/*` metrics. "
    "Its **Details** tab has two extra links: **MLflow run** and **Drift report** (the "
    "Evidently report, opened in the MLflow UI). The approval form links the same report."
)
