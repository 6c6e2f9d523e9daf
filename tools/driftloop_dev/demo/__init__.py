"""``make demo``: the whole loop end to end on the embedded stack.

1. start (or reuse) the embedded stack under ``.stack/``: moto S3, mlflow server, pushgateway;
2. write an ``abrupt`` synthetic world: 42 days, a lighting drop and a new camera from day 28,
   with labeled frames every day;
3. the model in production: ``retrain_detector`` trains a first champion on the 14 days
   before the drift (no champion yet, so the promotion floors alone decide) and stores the
   drift reference of its training window with it;
4. ``drift_monitor`` checks a day before the drift and the first daily checks after it,
   against that champion's reference, as the scheduler would run them day after day: the
   last one confirms the drift and opens a drift event;
5. ``retrain_detector`` for that event: fine-tunes the champion on the drifted window,
   evaluates candidate and champion on the same split, and the gate promotes or rejects with
   its reasons;
6. prints the verdicts, the gate table, the model versions, the MLflow URLs and the audit
   ledger's verification.

Two ways to run the DAGs:

- **under the scheduler** when ``make up`` is running (the stack under ``--root`` has the
  Airflow processes): every run is triggered through the REST API (``logical_date: null``),
  runs on the executor with its task logs in the UI, and the retraining of step 5 is started
  by the ``driftloop_drift_confirmed`` Asset event that ``confirm_drift`` emits — the demo only
  waits for it;
- with ``dag.test()`` in this process otherwise (the stack without Airflow's processes); step
  5 is then triggered by hand for the drift event, as the Asset would.

The stack is stopped at the end unless it was already running (``make up``) or ``--kee

The terminal shows only the demo's own story: everything else this process and its children
write (library log lines of botocore, mlflow, alembic, Airflow …, warnings, task logs) goes to
``<root>/logs/demo.log`` (the ``dag.test()`` task logs to ``<root>/logs/demo-dag-test.log``).

Modules: :mod:`.cli` (options, the story in order), :mod:`.runners` (``dag.test()`` or the
scheduler), :mod:`.report` (the tables printed), :mod:`.terminal` (what reaches the terminal).
"""
