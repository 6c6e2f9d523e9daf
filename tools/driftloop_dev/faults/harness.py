"""Runs each step of drift_monitor, retrain_detector and rollback_detector under a fault,
then recovers, and checks the invariants (:mod:`.invariants`) after every case.

The DAGs are the repository's own (``DagBag``), run with ``dag.test()`` — the scheduler's
dependency logic, trigger rules, branches, XCom and mapped tasks, in this process. The fault
is switched on for the *first try* of the step under test only (its callable is wrapped) and
off again when it returns or raises; the step's ``retry_delay`` is 0, so a step with retries is
retried at once, as Airflow would after the delay. A run that still failed is then re-run as
a whole (same DAG run, cleared: what an operator does), healthy. Each case gets its own world:
registered model name, ledger/drift-history database and promotion policy.

Training is real but cached: the first run of each kind (``useless``: 0 epochs, ``good``)
trains in ``.venv-train``; later runs reuse that MLflow run (``train_local`` is patched in
this process). Faults are therefore not injected into ``train`` itself.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from driftloop_dev.faults.proxy import Fault
from driftloop_dev.faults.services import FaultedServices

log = logging.getLogger(__name__)

RETRAIN_END = "2032-06-30"
DRIFT_END = "2032-03-31"
#: the steps each DAG's cases put under a fault (others are listed with the reason)
STEPS = {
    "drift_monitor": (
        "resolve_run", "wait_for_data", "plan", "validate", "reference", "profile_partition",
        "statistics",
        "decide", "evidently_report", "log_to_mlflow", "push_metrics", "open_drift_event",
        "confirm_drift",
    ),
    "retrain_detector": (
        "plan", "snapshot_dataset", "reference_profile", "register_candidate", "evaluate",
        "gate", "promote", "model_record", "retention",
    ),
    "rollback_detector": ("rollback",),
}  # fmt: skip
NOT_RUN = {
    ("retrain_detector", "train"): "cached: trained once healthy, reused by every case",
    ("retrain_detector", "reject"): "the cases' candidate passes the gate (reject path unused)",
    ("retrain_detector", "await_promotion_approval"): "policy approval none in these worlds "
    "(the HITL path is covered by test_retrain_dag's HITLResponder)",
    ("drift_monitor", "await_approval"): "policy approval none in these worlds",
}
FAULTS = (Fault("refuse"), Fault("reset"), Fault("stall"), Fault("http500"))
SERVICES = ("s3", "mlflow")


@dataclass(frozen=True)
class Case:
    dag_id: str
    step: str
    service: str
    fault: Fault

    def __str__(self) -> str:
        return f"{self.dag_id}.{self.step} {self.service}:{self.fault}"


@dataclass
class Outcome:
    case: Case
    outcome: (
        str  # failed-then-recovered | completed | completed (fault not hit) | violation | not run
    )
    problems: list[str] = field(default_factory=list)
    note: str = ""
    faulted_requests: int = 0
    seconds: float = 0.0

    @property
    def violation(self) -> bool:
        return self.outcome == "violation"


#: retrain first: its world (a champion with a drift reference) is the one drift cases follow
ORDER = ("retrain_detector", "rollback_detector", "drift_monitor")


def all_cases(dag_ids=ORDER, services=SERVICES, faults=FAULTS) -> list[Case]:
    return [
        Case(dag_id, step, service, fault)
        for dag_id in dag_ids
        for step in STEPS[dag_id]
        for service in services
        for fault in faults
    ]


class FaultHarness:
    """Runs :class:`Case` s on a running embedded stack (``stack``, its env applied)."""

    def __init__(self, stack, workdir: Path, load_dag: Callable[[str], object]):
        import boto3

        from driftloop.config.settings import Settings

        self.stack, self.workdir, self.load_dag = stack, Path(workdir), load_dag
        self.services = FaultedServices(stack)
        self._saved_env = dict(os.environ)
        os.environ.update(self.services.env)
        self.bucket = Settings.from_env().bucket
        self.s3 = boto3.client("s3", endpoint_url=stack.components["s3"].url)  # not proxied
        self._dags: dict[str, object] = {}
        self._trained: dict[str, dict] = {}
        self._training = "good"
        self._moment = datetime(2033, 1, 1, tzinfo=UTC)
        self._worlds = 0
        #: the world the retrain and rollback cases share (see cases._retrain_world)
        self.retrain_world: dict[str, str] | None = None
        self._data_written: set[str] = set()
        self._patch_training()

    def close(self) -> None:
        self._unpatch_training()
        self.services.close()
        os.environ.clear()
        os.environ.update(self._saved_env)

    # -- setup ------------------------------------------------------------------------------

    def _patch_training(self) -> None:
        from driftloop.retrain import local_training

        real = self._real_train = local_training.train_local

        @functools.wraps(real)
        def cached(settings, plan, snapshot_doc, run_id):
            if self._training not in self._trained:
                self._trained[self._training] = real(settings, plan, snapshot_doc, run_id)
                return dict(self._trained[self._training])
            return _fresh_run_like(settings, self._trained[self._training])

        local_training.train_local = cached

    def _unpatch_training(self) -> None:
        from driftloop.retrain import local_training

        local_training.train_local = self._real_train

    def _dag(self, dag_id: str):
        if dag_id not in self._dags:
            self._dags[dag_id] = self.load_dag(dag_id)
        return self._dags[dag_id]

    def write_data(self, kind: str) -> None:
        """The synthetic world of ``kind`` (``retrain``: labeled frames; ``drift``: an abrupt
        drift), once per harness."""
        if kind in self._data_written:
            return
        from driftloop_dev.synth import S3Sink, generate_world

        sink = S3Sink(self.s3, self.bucket)
        if kind == "retrain":
            generate_world(sink, "stable", days=14, end_date=RETRAIN_END, rows_per_day=200,
                           labeled_per_day=40)  # fmt: skip
        else:
            generate_world(sink, "abrupt", days=42, drift_day=28, end_date=DRIFT_END,
                           rows_per_day=400, labeled_per_day=2)  # fmt: skip
        self._data_written.add(kind)

    def new_world(self) -> dict[str, str]:
        """A registered model, a database and promotion policies of its own; returns the
        environment that selects it."""
        self._worlds += 1
        folder = self.workdir / f"world-{self._worlds}"
        folder.mkdir(parents=True, exist_ok=True)
        policy = yaml.safe_load(
            Path(
                self._saved_env.get("DRIFTLOOP_PROMOTION_POLICY_PATH")
                or (self.stack.repo / "include/driftloop/config/promotion_policy.yaml")
            ).read_text()
        )
        policy.update({"min_map50": 0.2, "min_map50_95": 0.08, "max_p95_latency_ms": 1000.0,
                       "latency_tolerance": 0.5, "approval": "none"})  # fmt: skip
        (folder / "policy.yaml").write_text(yaml.safe_dump(policy))
        seed = {**policy, "min_map50": 0.0, "min_map50_95": 0.0}
        (folder / "seed_policy.yaml").write_text(yaml.safe_dump(seed))
        world = {
            "DRIFTLOOP_REGISTERED_MODEL": f"faults-detector-{self._worlds}",
            **self._anchor_bucket(),
            "DRIFTLOOP_DATABASE_URL": f"sqlite:///{folder / 'driftloop.db'}",
            "DRIFTLOOP_PROMOTION_POLICY_PATH": str(folder / "policy.yaml"),
        }
        os.environ.update(world)
        return world

    def _anchor_bucket(self) -> dict[str, str]:
        """A bucket of its own for the world's ledger anchors: anchors are write-once and
        numbered by row id, so two ledgers cannot share one (when anchoring is on)."""
        if not self._saved_env.get("DRIFTLOOP_LEDGER_ANCHOR_BUCKET"):
            return {}
        bucket = f"faults-anchors-{os.getpid()}-{self._worlds}"
        self.s3.create_bucket(Bucket=bucket)
        return {"DRIFTLOOP_LEDGER_ANCHOR_BUCKET": bucket}

    def run_dag(self, dag_id: str, conf: dict, moment: datetime | None = None):
        """``dag.test()`` of one DAG run; the same ``moment`` re-runs the same DAG run."""
        if moment is None:
            self._moment += timedelta(hours=1)
            moment = self._moment
        dag_run = self._dag(dag_id).test(run_conf=conf, logical_date=moment, run_after=moment)
        states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
        return dag_run, states, moment

    @contextmanager
    def fault_on_first_try(self, case: Case):
        """The fault is on while the first try of ``case.step`` runs, off for every other
        moment; yields what happened (``tries``, ``raised``, ``hits``)."""
        task = self._dag(case.dag_id).get_task(case.step)
        # a mapped task keeps its callable and retry delay in partial_kwargs: patch there
        holder = getattr(task, "partial_kwargs", None)
        if not isinstance(holder, dict) or "python_callable" not in holder:
            holder = None
        attr = "poke" if hasattr(task, "poke") else "python_callable"
        original = holder[attr] if holder is not None else getattr(task, attr, None)
        if original is None:
            raise LookupError(f"{case.step} has no callable the harness can wrap")
        record = {"tries": 0, "raised": None, "hits": 0}
        proxy = self.services.proxies[case.service]

        @functools.wraps(original)
        def wrapped(*args, **kwargs):
            record["tries"] += 1
            if record["tries"] > 1:
                return original(*args, **kwargs)
            before = sum(proxy.stats.faulted.values())
            self.services.set(case.service, case.fault)
            try:
                return original(*args, **kwargs)
            except BaseException as err:
                record["raised"] = f"{type(err).__name__}: {err}"[:240]
                raise
            finally:
                self.services.heal()
                record["hits"] = sum(proxy.stats.faulted.values()) - before

        def put(callable_, delay):
            if holder is not None:
                holder[attr], holder["retry_delay"] = callable_, delay
            else:
                setattr(task, attr, callable_)
                task.retry_delay = delay

        saved_delay = holder.get("retry_delay") if holder is not None else task.retry_delay
        put(wrapped, timedelta(0))
        try:
            yield record
        finally:
            put(original, saved_delay)


def _fresh_run_like(settings, trained: dict) -> dict:
    """The cached training result in a new MLflow run of its own (its artifacts and tags
    copied, its logged ONNX models shared): one run per model version, as real trainings
    give — a version's ``model.json`` lives in its run, so two versions must not share one."""
    import tempfile
    from pathlib import Path

    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri)
    source = client.get_run(trained.get("mlflow_run_id") or trained["run_id"])
    tags = {k: v for k, v in source.data.tags.items() if not k.startswith("mlflow.")}
    run = client.create_run(source.info.experiment_id, tags=tags)
    with tempfile.TemporaryDirectory(prefix="driftloop-faults-run-") as work:
        local = Path(client.download_artifacts(source.info.run_id, "", work))
        for written_later in ("model.json", "model_card.md", "drift_reference"):
            path = local / written_later
            if path.is_dir():
                import shutil

                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        client.log_artifacts(run.info.run_id, str(local))
    client.set_terminated(run.info.run_id)
    fresh = dict(trained)
    for key in ("mlflow_run_id", "run_id"):
        if key in fresh:
            fresh[key] = run.info.run_id
    return fresh
