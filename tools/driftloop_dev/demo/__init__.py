"""``make demo``: the whole loop end to end on the embedded stack, rollout included.

1. start (or reuse) the embedded stack under ``.stack/``: moto S3, mlflow server, pushgateway;
2. write an ``abrupt`` synthetic world (:mod:`.world`): 42 days, a lighting drop and a new
   camera from day 28; labeled frames every day and the cameras' traffic frames — never a
   synthetic inference log: every log and drift reference comes from a model's outputs;
3. ``retrain_detector`` trains the first champion on days 0-13 (no champion yet, so the floors
   alone decide); its drift reference is its own outputs on those days' frames;
4. ``driftloop serve-batch`` (:mod:`.serving`): the champion serves days 14-32 in two processes,
   writing the inference logs and serving records;
5. ``drift_monitor`` checks the day before the drift (nothing) and the fifth drifted day
   (critical: a drift event, the ``driftloop_drift_confirmed`` Asset);
6. ``retrain_detector`` for that event fine-tunes the champion; the gate passes it and, under
   the demo's promotion policy (:mod:`.policy`: ``promote_to: challenger``, shorter rollout
   stages), it becomes ``challenger`` in shadow;
7. the rollout (:mod:`.rollout`): a day served in shadow → ``rollout_guard`` → canary → a
   day → ``rollout_guard`` → promoted (the old champion is ``previous-champion``) → a day in the
   guard period → ``rollout_guard``;
8. a short monthly fine-tune of the new champion becomes the next challenger, and a last
   ``rollout_guard`` run holds in shadow: champion, challenger and previous-champion at once;
9. prints each stage's evidence, the routing document's history, the aliases, the ledger's
   verification, the expected outcomes (the exit status) and the phase timings
   (:mod:`.report`); ``<root>/demo-summary.json`` holds it all (:mod:`.summary`).

Two ways to run the DAGs (:mod:`.runners`):

- **under the scheduler** when ``make up`` is running (the stack under ``--root`` has the
  Airflow processes): every run is triggered through the REST API (``logical_date: null``),
  runs on the executor with its task logs in the UI; the retraining of step 6 is the run the
  drift-confirmed Asset event starts, and the rollout's Asset events start ``rollout_guard``
  runs of their own (the demo waits for them). Those processes read the promotion policy
  ``make up`` gave them: with production's, the rollout days are sized for its longer stages
  and the drift retraining goes through a review (see :meth:`.runners.SchedulerRunner.before_drift_checks`);
- with ``dag.test()`` in this process otherwise, under the demo's policy; step 6 is then
  triggered by hand for the drift event, as the Asset would.

The stack is stopped at the end unless it was already running (``make up``) or ``--keep``. A
stack that served a demo's days before is refused: the story starts from an empty world.

The terminal shows only the demo's own story: everything else this process and its children
write (library log lines of botocore, mlflow, alembic, Airflow …, warnings, task logs) goes to
``<root>/logs/demo.log`` (the ``dag.test()`` task logs to ``<root>/logs/demo-dag-test.log``).

Modules: :mod:`.cli` (options, the story in order), :mod:`.runners` (``dag.test()`` or the
scheduler), :mod:`.world`, :mod:`.serving`, :mod:`.policy`, :mod:`.rollout`, :mod:`.report`
(what is printed), :mod:`.summary` (expected outcomes, the JSON summary), :mod:`.terminal`
(what reaches the terminal).
"""
