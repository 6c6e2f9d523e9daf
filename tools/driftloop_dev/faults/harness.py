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
trains in ``.venv-train``; later runs copy that MLflow run into a new one (``train_local`` is
patched in this process). A fault on ``train`` therefore hits the task's own store calls and
that copy, not a training subprocess.

Which (step, service) pairs are run: a :data:`SURVEY` run of each DAG, healthy, counts the
requests every step sends each service; a pair with none cannot meet the fault (the proxy is
the only way to the service) and is reported ``untouched`` with that count, not run.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
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
        "resolve_run", "wait_for_data", "plan", "validate_partition", "validate", "reference",
        "profile_partition",
        "statistics", "measure_performance",
        "decide", "evidently_report", "log_to_mlflow", "push_metrics", "open_drift_event",
        "await_approval", "confirm_drift",
    ),
    "retrain_detector": (
        "plan", "snapshot_dataset", "reference_profile", "train", "register_candidate",
        "evaluate", "gate", "model_record", "await_promotion_approval", "promote", "reject",
        "retention",
    ),
    "rollback_detector": ("rollback",),
}  # fmt: skip
NOT_RUN: dict[tuple[str, str], str] = {}
#: the Human-in-the-loop steps, and what the on-call responder answers them (in their cases
#: and in their DAG's survey the approval is required: the retrain policy file, the drift Param)
APPROVAL_ANSWERS = {
    ("retrain_detector", "await_promotion_approval"): "Promote",
    ("drift_monitor", "await_approval"): "Retrain",
}
FAULTS = (Fault("refuse"), Fault("reset"), Fault("stall"), Fault("http500"))
SERVICES = ("s3", "mlflow")
#: the step name of a DAG's survey run (healthy, every step's requests counted)
SURVEY = "(survey)"
#: the training each retrain case's candidate gets: ``useless`` fails the gate's floors
TRAINING_OF_STEP = {"reject": "useless"}
#: faults on part of a step's requests: half-done alias moves, tags and anchors
PARTIAL_FAULTS = {
    # a promotion sets previous-champion, then champion: the second write fails
    ("retrain_detector", "promote"): (
        ("mlflow", Fault("http500", method="POST", path=r"/registered-models/alias", after=1)),
        ("mlflow", Fault("http500", method="POST", path=r"/model-versions/set-tag")),
        ("s3", Fault("http500", method="PUT", path=r"/audit/anchors/")),
    ),
    # a rollback sets champion, then deletes previous-champion: the delete fails
    ("rollback_detector", "rollback"): (
        ("mlflow", Fault("http500", method="DELETE", path=r"/registered-models/alias")),
        ("mlflow", Fault("http500", method="POST", path=r"/model-versions/set-tag")),
        ("s3", Fault("http500", method="PUT", path=r"/audit/anchors/")),
    ),
    ("retrain_detector", "retention"): (
        ("mlflow", Fault("http500", method="POST", path=r"/model-versions/set-tag", after=1)),
    ),
}


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
    #: failed-then-recovered | failed closed | completed | completed (fault not hit) |
    #: untouched | violation | not run | survey | harness error
    outcome: str
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
    """Every step × service × fault, then the partial faults (:data:`PARTIAL_FAULTS`)."""
    cases = [
        Case(dag_id, step, service, fault)
        for dag_id in dag_ids
        for step in STEPS[dag_id]
        for service in services
        for fault in faults
    ]
    return cases + [
        Case(dag_id, step, service, fault)
        for (dag_id, step), partial in PARTIAL_FAULTS.items()
        if dag_id in dag_ids
        for service, fault in partial
        if service in services
    ]


def survey_cases(dag_ids=ORDER) -> list[Case]:
    """One healthy, counted run per DAG; retrain twice (its promote and its reject path)."""
    cases = [Case(dag_id, SURVEY, "-", Fault()) for dag_id in dag_ids]
    if "retrain_detector" in dag_ids:  # reject first: it leaves a version retention archives
        cases.insert(cases.index(Case("retrain_detector", SURVEY, "-", Fault())),
                     Case("retrain_detector", SURVEY, "reject", Fault()))  # fmt: skip
    return cases


def untouched(case: Case, touches: dict[tuple[str, str], dict[str, int]]) -> Outcome | None:
    """The case's outcome without running it when its DAG's survey saw its step send its
    service no request (None: run it)."""
    seen = touches.get((case.dag_id, case.step))
    if seen is None or seen.get(case.service, 0) > 0:
        return None
    return Outcome(case, "untouched", note=f"healthy survey run: 0 requests to {case.service}")


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
        #: what the last :meth:`instrument` recorded
        self.last_record: dict | None = None
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
        # with the reject survey first (an unprotected version), every promotion from the
        # survey on archives one: retention writes (ledger rows, tags) in the survey and in
        # every case, so its S3 and MLflow faults are run, not only once ten versions exist
        policy["retention"] = {**policy.get("retention", {}), "keep_last": 1}
        (folder / "policy.yaml").write_text(yaml.safe_dump(policy))
        approval = {**policy, "approval": "required"}
        (folder / "approval_policy.yaml").write_text(yaml.safe_dump(approval))
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

    @contextmanager
    def approving(self, case: Case):
        """When ``case`` is an approval step's or its DAG's survey: the approval required and
        an on-call responder answering every request (a retried or re-run task asks again)
        until the case ends. Yields the run conf it adds."""
        step = next((s for d, s in APPROVAL_ANSWERS if d == case.dag_id), None)
        if step is None or case.step not in (step, SURVEY):
            # explicit: dag.test() of the same in-memory DAG keeps a Param a previous run set
            yield {"approval": None} if case.dag_id == "drift_monitor" else {}
            return
        from driftloop_dev.oncall import HITLResponder, OnCallUser

        responder = HITLResponder(
            case.dag_id, step, APPROVAL_ANSWERS[(case.dag_id, step)],
            OnCallUser(id="7", name="oncall-faults"), timeout=7200, keep_answering=True,
        )  # fmt: skip
        policy = os.environ.get("DRIFTLOOP_PROMOTION_POLICY_PATH", "")
        if case.dag_id == "retrain_detector":
            os.environ["DRIFTLOOP_PROMOTION_POLICY_PATH"] = str(
                Path(policy).with_name("approval_policy.yaml")
            )
        responder.start()
        try:
            yield {"approval": "required"} if case.dag_id == "drift_monitor" else {}
        finally:
            responder.stop()
            os.environ["DRIFTLOOP_PROMOTION_POLICY_PATH"] = policy
        if responder.error is not None:
            raise RuntimeError(f"the on-call responder failed: {responder.error!r}")

    def run_dag(self, dag_id: str, conf: dict, moment: datetime | None = None):
        """``dag.test()`` of one DAG run; the same ``moment`` re-runs the same DAG run."""
        if moment is None:
            self._moment += timedelta(hours=1)
            moment = self._moment
        dag_run = self._dag(dag_id).test(run_conf=conf, logical_date=moment, run_after=moment)
        states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
        return dag_run, states, moment

    @contextmanager
    def instrument(self, case: Case):
        """What the case's DAG run runs under: the fault on its step's first try, or, for a
        :data:`SURVEY` case, every step counted (see :meth:`counting_requests`)."""
        if case.step == SURVEY:
            context = self.counting_requests(case.dag_id)
        else:
            context = self.fault_on_first_try(case)
        with context as record:
            self.last_record = record
            yield record

    @contextmanager
    def fault_on_first_try(self, case: Case):
        """The fault is on while the first try of ``case.step`` runs, off for every other
        moment; yields what happened (``tries``, ``raised``, ``hits``)."""
        record = {"tries": 0, "raised": None, "hits": 0}
        proxy = self.services.proxies[case.service]

        def wrap(original, name):
            @functools.wraps(original)
            def wrapped(*args, **kwargs):
                if name != "execute_complete":  # a deferred try resumes: the same try
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

            return wrapped

        with self._wrapped(case.dag_id, case.step, wrap, retry_now=True):
            yield record

    @contextmanager
    def counting_requests(self, dag_id: str):
        """A healthy run with every step of ``dag_id`` counted: yields ``{"touches": {step:
        {service: requests, "seconds": s}}, "tries": n, "raised": None, "hits": 0}``.
        A step that sends a service no request in a healthy run cannot meet its fault."""
        record = {"tries": 0, "raised": None, "hits": 0, "touches": {}}
        proxies = self.services.proxies

        def requests_so_far() -> dict[str, int]:
            return {n: p.stats.forwarded + sum(p.stats.faulted.values())
                    for n, p in proxies.items()}  # fmt: skip

        def counter(step):
            def wrap(original, name):
                @functools.wraps(original)
                def wrapped(*args, **kwargs):
                    record["tries"] += 1
                    before, started = requests_so_far(), time.monotonic()
                    try:
                        return original(*args, **kwargs)
                    finally:
                        after = requests_so_far()
                        seen = record["touches"].setdefault(step, dict.fromkeys(proxies, 0))
                        for name in proxies:
                            seen[name] += after[name] - before[name]
                        seen["seconds"] = round(
                            seen.get("seconds", 0.0) + time.monotonic() - started, 1
                        )

                return wrapped

            return wrap

        with ExitStack() as stack:
            for step in STEPS[dag_id]:
                stack.enter_context(self._wrapped(dag_id, step, counter(step)))
            yield record

    @contextmanager
    def _wrapped(self, dag_id: str, step: str, wrap, *, retry_now: bool = False):
        """``step``'s callable (its sensor's ``poke``, its HITL operator's ``execute`` and
        ``execute_complete``) replaced by ``wrap(callable)`` while the context is open;
        ``wrap(callable, attribute name)``; ``retry_now``: its retry delay 0, so a retry runs at once, as Airflow would after it."""
        task = self._dag(dag_id).get_task(step)
        # a mapped task keeps its callable and retry delay in partial_kwargs: patch there
        holder = getattr(task, "partial_kwargs", None)
        if not isinstance(holder, dict) or "python_callable" not in holder:
            holder = None
        if holder is not None:
            attrs = ["python_callable"]
        elif hasattr(task, "poke"):
            attrs = ["poke"]
        elif getattr(task, "python_callable", None) is not None:
            attrs = ["python_callable"]
        else:
            attrs = ["execute", "execute_complete"]
        saved = {a: holder[a] if holder is not None else getattr(task, a) for a in attrs}
        saved_delay = holder.get("retry_delay") if holder is not None else task.retry_delay

        def put(name, value):
            if holder is not None:
                holder[name] = value
            else:
                setattr(task, name, value)

        for name, original in saved.items():
            put(name, wrap(original, name))
        if retry_now:
            put("retry_delay", timedelta(0))
        try:
            yield
        finally:
            for name, original in saved.items():
                put(name, original)
            put("retry_delay", saved_delay)


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
