"""One fault case from setup to verdict, and the table of many (``bench/faults.py``)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from driftloop_dev.faults import invariants
from driftloop_dev.faults.harness import (
    DRIFT_END,
    NOT_RUN,
    RETRAIN_END,
    SURVEY,
    TRAINING_OF_STEP,
    Case,
    FaultHarness,
    Outcome,
)

RETRAIN_CONF = {"end_date": RETRAIN_END, "last_n_days": 14, "imgsz": 160, "batch": 8,
                "reason": "fault harness", "base": "yolo11n.yaml"}  # fmt: skip
GOOD_EPOCHS, USELESS_EPOCHS = 3, 0
#: k-of-n 1 of 1: every case's check of the drifted window is critical on its own, so the
#: event, approval and confirmation steps run in each case (the default 2 of 3 needs history)
DRIFT_CONF = {"end_date": DRIFT_END, "hysteresis_k": 1, "hysteresis_n": 1}


def run_case(harness: FaultHarness, case: Case) -> Outcome:
    """Set up the case's world healthy, run its DAG run with the fault on the step's first
    try, re-run it healthy if it failed, and check every invariant after each run."""
    started = time.monotonic()
    _DIRECT.update({n: harness.stack.components[n].url for n in ("s3", "mlflow")})
    if (case.dag_id, case.step) in NOT_RUN:
        return Outcome(case, "not run", note=NOT_RUN[(case.dag_id, case.step)])
    runner = {"drift_monitor": _drift_case, "retrain_detector": _retrain_case,
              "rollback_detector": _rollback_case}[case.dag_id]  # fmt: skip
    try:
        outcome = runner(harness, case)
    except Exception as err:  # the harness itself could not run the case: say so
        outcome = Outcome(case, "harness error", note=f"{type(err).__name__}: {err}")
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome


def run_survey(harness: FaultHarness, case: Case) -> tuple[Outcome, dict]:
    """A :data:`SURVEY` case: its DAG run healthy with every step's requests counted, and the
    invariants checked as after any case. Returns its outcome (``survey``, or ``violation``:
    a healthy run broke an invariant) and ``{(dag_id, step): {service: requests}}``."""
    outcome = run_case(harness, case)
    record = harness.last_record or {}
    touches = {(case.dag_id, step): seen for step, seen in record.get("touches", {}).items()}
    if outcome.outcome in ("completed (fault not hit)", "completed"):
        steps = ", ".join(
            f"{step} {seen['s3']}/{seen['mlflow']}" for (_, step), seen in touches.items()
        )  # the full counts, and each step's seconds: the touches table
        outcome = Outcome(case, "survey", note=f"requests s3/mlflow: {steps}",
                          seconds=outcome.seconds)  # fmt: skip
    return outcome, touches


def _verdict(case, record, final_state, problems, note="", rerun=False) -> Outcome:
    """``failed-then-recovered``: the step failed under the fault and succeeded on Airflow's
    retry or the run's re-run; ``failed closed``: it failed, had no retry, and the run ended
    on its failure path (e.g. a failed evaluation → the gate rejects), which is correct."""
    if final_state != "success":
        problems = [*problems, f"the DAG run did not recover: {final_state}"]
    if problems:
        outcome = "violation"
    elif record["raised"] and not record["raised"].startswith("AirflowSkipException"):
        outcome = "failed-then-recovered" if rerun or record["tries"] > 1 else "failed closed"
    elif record["tries"] == 0:
        outcome = "not run"
        note = note or f"{case.step} was not reached in this DAG run"
    elif record["hits"] == 0:
        outcome = "completed (fault not hit)"
    else:
        outcome = "completed"
    return Outcome(case, outcome, problems, note or (record["raised"] or ""), record["hits"])


def _stores():
    from driftloop.config.settings import Settings
    from driftloop.drift import tracking

    settings = Settings.from_env()
    try:  # the ledger as the tasks open it: HMAC key and S3 anchors
        from driftloop.audit.wiring import ledger_for
    except ImportError:  # a checkout before the anchored ledger
        from driftloop.audit.ledger import Ledger

        return settings, Ledger(settings.database_url), tracking
    return settings, ledger_for(settings, s3=_direct_s3()), tracking


def _direct_s3():
    """S3 without the proxy: the invariants read the stores as they are."""
    import boto3

    return boto3.client("s3", endpoint_url=_DIRECT["s3"])


#: the stack's own URLs (set by :func:`run_case`), not the proxies'
_DIRECT: dict[str, str] = {}


def check_registry_and_ledger(harness: FaultHarness) -> list[str]:
    """Champion == ledger; ledger verifies; one version per run; one row per step."""
    from mlflow import MlflowClient

    from driftloop.promotion import registry

    settings, book, _ = _stores()
    client = MlflowClient(harness.stack.components["mlflow"].url)
    model = settings.registered_model
    entries = book.entries() if book.exists() else []
    try:
        versions = client.search_model_versions(f"name='{model}'")
    except Exception as err:
        versions = [] if "RESOURCE_DOES_NOT_EXIST" in str(err) else _raise(err)
    aliases = registry.aliases(client, model)
    return [
        *invariants.champion_matches_ledger(aliases, entries, model),
        *(invariants.ledger_verifies(book) if entries else []),
        *invariants.one_version_per_run(versions),
        *invariants.one_row_per_step(entries),
    ]


def _raise(err):
    raise err


def _champion(harness) -> str | None:
    from mlflow import MlflowClient

    from driftloop.promotion import registry

    settings, _, _ = _stores()
    client = MlflowClient(harness.stack.components["mlflow"].url)
    return registry.aliases(client, settings.registered_model).get("champion")


def _event(event_id: int):
    from driftloop.drift import history

    settings, _, _ = _stores()
    return history.get_event(history.engine_for(settings.database_url), event_id)


def _promote_seed(harness: FaultHarness, world: dict, epochs: int, training: str) -> None:
    """A healthy retraining that promotes (the seed policy has floors 0 for the useless one)."""
    import os

    if training == "useless":
        os.environ["DRIFTLOOP_PROMOTION_POLICY_PATH"] = world[
            "DRIFTLOOP_PROMOTION_POLICY_PATH"
        ].replace("policy.yaml", "seed_policy.yaml")
    harness._training = training
    try:
        # every key explicit: a conf key left out would keep the value a previous dag.test()
        # of the same in-memory DAG put into its params
        conf = {**RETRAIN_CONF, "epochs": epochs, "drift_event_id": None}
        _, states, _ = harness.run_dag("retrain_detector", conf)
    finally:
        os.environ["DRIFTLOOP_PROMOTION_POLICY_PATH"] = world["DRIFTLOOP_PROMOTION_POLICY_PATH"]
    if states.get("promote") != "success":
        raise RuntimeError(f"seed retraining ({training}) did not promote: {states}")


def seed_retrain_world(harness: FaultHarness) -> dict:
    """The retrain world, seeded now: drift cases run without the retrain cases (a shard of
    the table) then still follow a champion with a stored training-window reference."""
    return _retrain_world(harness)


def _retrain_world(harness: FaultHarness) -> dict:
    """The world the retrain and rollback cases share: seeded once with a promoted champion
    (a re-trained candidate is non-inferior to it: each case's run promotes again, so every
    case has a champion and a previous champion). A case that ends in a violation retires it:
    the next case starts a fresh one, so one violation is reported once."""
    world = harness.retrain_world
    if world is None:
        harness.write_data("retrain")
        world = harness.retrain_world = harness.new_world()
        _promote_seed(harness, world, USELESS_EPOCHS, "useless")
    else:
        import os

        os.environ.update(world)
    return world


def _retire_on_violation(harness: FaultHarness, outcome: Outcome) -> Outcome:
    if outcome.violation:
        harness.retrain_world = None
    return outcome


def _failed(dag_run, states) -> bool:
    """The run failed, or one of its tasks did (a failed evaluation ends in a rejection:
    the run succeeds, but the retraining did not do what it was for)."""
    return dag_run.state != "success" or "failed" in states.values()


def _retrain_case(harness: FaultHarness, case: Case) -> Outcome:
    from driftloop.drift import history

    _retrain_world(harness)
    settings, _, _ = _stores()
    event_id = history.open_event(history.engine_for(settings.database_url),
                                  f"fault-case-{time.time_ns()}", "critical",
                                  ["brightness"])  # fmt: skip
    champion_before = _champion(harness)
    before = invariants.input_keys(harness.s3, harness.bucket)
    rejected = case.step == SURVEY and case.service == "reject"
    harness._training = "useless" if rejected else TRAINING_OF_STEP.get(case.step, "good")
    epochs = USELESS_EPOCHS if harness._training == "useless" else GOOD_EPOCHS
    with harness.approving(case) as approval_conf:
        conf = {**RETRAIN_CONF, "epochs": epochs, "drift_event_id": event_id, **approval_conf}
        with harness.instrument(case) as record:
            dag_run, states, moment = harness.run_dag("retrain_detector", conf)
        problems = check_registry_and_ledger(harness)
        rerun = _failed(dag_run, states)
        promoted = _champion(harness) != champion_before
        problems += invariants.event_status_is_true(_event(event_id), rerun, promoted)
        problems += invariants.compared_with_the_champion(
            _xcom(dag_run, "evaluate"), champion_before
        )
        if rerun:  # what an operator does after a failed retraining: re-run it
            dag_run, states, _ = harness.run_dag("retrain_detector", conf, moment)
            problems += check_registry_and_ledger(harness)
            promoted = _champion(harness) != champion_before
            problems += invariants.event_status_is_true(
                _event(event_id), _failed(dag_run, states), promoted
            )
    problems += invariants.inputs_kept(before, invariants.input_keys(harness.s3, harness.bucket))
    final = "failed" if _failed(dag_run, states) else "success"
    return _retire_on_violation(harness, _verdict(case, record, final, problems, rerun=rerun))


def _rollback_case(harness: FaultHarness, case: Case) -> Outcome:
    world = _retrain_world(harness)
    if _previous_champion(harness) is None:  # a rollback needs one: promote again, healthy
        _promote_seed(harness, world, GOOD_EPOCHS, "good")
    with harness.instrument(case) as record:
        dag_run, _, moment = harness.run_dag("rollback_detector", {"reason": "fault harness"})
    problems = check_registry_and_ledger(harness)
    final = dag_run.state
    rerun = final != "success"
    if rerun:
        dag_run, _, _ = harness.run_dag("rollback_detector", {"reason": "fault harness"}, moment)
        final = dag_run.state
        problems += check_registry_and_ledger(harness)
    return _retire_on_violation(harness, _verdict(case, record, str(final), problems, rerun=rerun))


def _previous_champion(harness) -> str | None:
    from mlflow import MlflowClient

    from driftloop.promotion import registry

    settings, _, _ = _stores()
    client = MlflowClient(harness.stack.components["mlflow"].url)
    return registry.aliases(client, settings.registered_model).get("previous-champion")


def _drift_case(harness: FaultHarness, case: Case) -> Outcome:
    """A drift check in a fresh world; when the retrain cases left one, in theirs: drift then
    follows a champion with a stored training-window reference. Drift events earlier cases
    left open are ignored first (as an operator would): each case's drift is a new one, so its
    event, approval and confirmation steps run."""
    import os

    harness.write_data("drift")
    if harness.retrain_world is not None:  # its model, ledger and history: they must agree
        os.environ.update(harness.retrain_world)
    else:
        harness.new_world()
    _ignore_ongoing_events()
    champion = _champion(harness)
    before = invariants.input_keys(harness.s3, harness.bucket)
    with harness.approving(case) as approval_conf:
        conf = {**DRIFT_CONF, **approval_conf}
        with harness.instrument(case) as record:
            dag_run, _, moment = harness.run_dag("drift_monitor", conf)
        problems = check_registry_and_ledger(harness)
        problems += invariants.reference_is_the_champions(_xcom(dag_run, "reference"), champion)
        final = dag_run.state
        rerun = final != "success"
        if rerun:
            dag_run, _, _ = harness.run_dag("drift_monitor", conf, moment)
            final = dag_run.state
            problems += check_registry_and_ledger(harness)
            problems += invariants.reference_is_the_champions(_xcom(dag_run, "reference"), champion)
    problems += invariants.inputs_kept(before, invariants.input_keys(harness.s3, harness.bucket))
    return _verdict(case, record, str(final), problems, rerun=rerun)


def _ignore_ongoing_events() -> None:
    import sqlalchemy as sa

    from driftloop.drift import history

    settings, _, _ = _stores()
    engine = history.engine_for(settings.database_url)
    with engine.connect() as conn:
        ongoing = conn.execute(
            sa.select(history.drift_events.c.id).where(
                history.drift_events.c.status.in_(history.ONGOING_EVENT_STATUSES)
            )
        ).scalars()
        ids = list(ongoing)
    for event_id in ids:
        history.set_event_status(engine, event_id, "IGNORED", actor="fault-harness",
                                 note="the next fault case checks a new drift")  # fmt: skip


def _xcom(dag_run, task_id: str):
    for ti in dag_run.get_task_instances():
        if ti.task_id == task_id and ti.state == "success":
            return ti.xcom_pull(task_ids=task_id)
    return None


def merge_touches(into: dict, seen: dict) -> None:
    """Add one survey's counts to ``into``: the larger count of each step and service (the
    two retrain surveys each run one path)."""
    for pair, counts in seen.items():
        known = into.setdefault(pair, dict.fromkeys(counts, 0))
        for service, n in counts.items():
            known[service] = max(known.get(service, 0), n)


def touches_table(touches: dict[tuple[str, str], dict[str, int]]) -> str:
    """What the survey runs saw: requests per step and service in a healthy run."""
    rows = [("step", "s3", "mlflow", "s")] + [
        (f"{dag_id}.{step}", str(seen.get("s3", 0)), str(seen.get("mlflow", 0)),
         f"{seen.get('seconds', 0):.0f}")
        for (dag_id, step), seen in touches.items()
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(r[i].rjust(widths[i]) if i else r[i].ljust(widths[i])
                               for i in range(4)) for r in rows)  # fmt: skip


def table(outcomes: Iterable[Outcome]) -> str:
    """step × fault → outcome, with the invariants' problems of each violation. ``hits``:
    requests the fault answered (0 for ``refuse``: refused connections never reach the proxy)."""
    rows = [("case", "outcome", "hits", "s", "note / problems")]
    violations = 0
    outcomes = list(outcomes)
    for o in outcomes:
        violations += o.violation
        detail = "; ".join(o.problems) if o.problems else o.note
        rows.append(
            (str(o.case), o.outcome, str(o.faulted_requests), f"{o.seconds:.0f}", detail[:160])
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
    counts = {name: sum(o.outcome == name for o in outcomes)
              for name in ("untouched", "not run", "survey", "harness error")}  # fmt: skip
    run = len(outcomes) - sum(counts.values())
    lines.append(
        f"summary: cases={len(outcomes)} run={run} untouched={counts['untouched']} "
        f"not_run={counts['not run']} surveys={counts['survey']} "
        f"harness_errors={counts['harness error']} violations={violations}"
    )
    return "\n".join(lines)
