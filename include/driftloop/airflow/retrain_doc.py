"""The documentation of ``retrain_detector`` (its ``doc_md``: Markdown shown in the Airflow UI).

Kept here, out of ``dags/retrain_detector.py``, so that the DAG file stays its wiring.
"""

RETRAIN_DETECTOR_DOC = """\
### retrain_detector

Runs on the `driftloop_drift_confirmed` Asset (emitted by `drift_monitor`), on the
`driftloop_labels` Asset (a labeled day landed: `labels_landed` or a labeling pipeline), on the
1st of every month, or by hand (Params: reason, `last_n_days`, epochs, image size, base,
`dry_run`, and `drift_event_id` to retrain for a drift event after its review; the
promotion-policy Params override the policy file for this run only, recorded as version
`<version>+override`; a Param may make the gate stricter, but loosen it — a lower floor, a
wider tolerance, another metric — only together with `approval: required`, so that an
operator approves what the file would refuse).

1. `plan` — why (drift event, new labels, schedule, person), which days, the effective
   promotion policy and the `auto_retrain` flag (policy file, overridable by the Airflow
   Variable `driftloop_auto_retrain`). Off: a confirmed drift opens a **review** instead of
   training, new labels train nothing. New labels train only when the window (ending on the
   latest labeled day announced) holds at least `new_labels.min_frames` labeled frames that
   the champion's dataset snapshot does not (no champion: a first training); fewer, the plan
   says how many ("12 new labeled frames since the champion's snapshot, policy needs 200") and
   `skip_training` records that in the ledger instead of training. `dry_run`: snapshot
   only. Unknown conf keys and bad Params fail here, without retries (a store error: one).
2. *dataset* — `snapshot_dataset`: labeled frames of the window + the fixed golden set → an
   immutable YOLO dataset under `datasets/<sha256>/` with a manifest.
3. *training* — `train`: one entrypoint (`python -m driftloop.training.train`), a
   KubernetesPodOperator on the GPU pool (`DRIFTLOOP_TRAINING_BACKEND=kubernetes`) or the
   training virtualenv on this machine (`local`); pool `gpu` caps concurrent trainings. It
   trains (one progress line per epoch in the task log), exports ONNX FP32 + INT8 and logs
   everything to MLflow (experiment `retrain-detector`): the dataset snapshot as the run's
   input, the git commit, Ultralytics' plots, and both ONNX files as MLflow models (signature,
   input example). `reference_profile`: the candidate's drift reference — its own INT8 outputs
   on the window's stored frames (`frames/dt=D/`, up to `reference_scoring.max_frames_per_day`
   a day, kept under `reference-scoring/<run_id>/`), or, when a day has none, the window's
   inference logs (the old champion's outputs); the model card says which.
   `register_candidate`: the INT8 model becomes a model version
   (`models:/<name>@champion` loads with `mlflow.onnx` / `mlflow.pyfunc`), tagged with its FP32
   twin, dataset hash, code version, trigger, drift event and reference (one per DAG run, also
   when re-run). Extra links: **MLflow run**, **Registered model**.
4. *evaluation* — `evaluate`: candidate and champion on the same evaluation split in one
   process: mAP@0.5 and mAP@0.5:0.95 with a paired bootstrap CI of the delta, INT8 p95 latency
   measured interleaved, INT8-vs-FP32 loss. `gate` applies the promotion policy to the
   evaluation on record in the ledger; any evaluation error → no promotion. `model_record`
   writes the model card + `model.json` (its hash tagged on the version) before anything moves.
5. *promotion* — `promote` (alias `champion`, old one → `previous-champion`; or `challenger`
   per policy), after an operator's approval when the policy asks — or `reject` (reasons tagged
   on the version, champion untouched). `promote` acts only on the ledger's records of this
   run (the gate's decision, the operator's answer from Airflow's HITL record), never on XCom;
   it moves the alias as a guarded transaction (intent row, compare-and-set, completion row)
   and refuses when the champion changed since the evaluation — start a new run to evaluate
   against the new champion. `update_routing` then writes the routing document serving
   follows (`rollout/routing.json`): a challenger starts its rollout in shadow, a new champion
   its guard period (`rollout_guard` takes over); `announce_champion` / `announce_rollout`
   emit the `driftloop_champion` / `driftloop_rollout` Assets when the alias moved / a rollout
   started.
6. *record* — retention (never a version holding an alias), and the hash-chained audit ledger
   (`driftloop ledger verify`).

A promotion to `champion` closes the drift event the run was for as `RESOLVED`, naming the
new champion (a rejection leaves it open). A failed run leaves the champion untouched (or,
after a partial promotion, a re-run of `promote` finishes it), records the failed tasks in
the ledger and marks its drift event `RETRAINING_FAILED` (still open). To undo a promotion,
trigger `rollback_detector`.
"""
