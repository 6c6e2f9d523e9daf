"""Fault injection (issue 9, item 7): the proxy's modes against the real S3 and MLflow
clients, then DAG steps under each fault, recovered, with every invariant checked.

Each case asserts the correct behaviour — the step fails closed or completes correctly, the
re-run recovers, every invariant holds — so a step that fails open fails its case (MLflow 500
during ``evaluate`` did, before the registry's reads treated only "not found" as absent).
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import SESSION_ROOT, load_dag

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def faulted(stack):
    from driftloop_dev.faults.services import FaultedServices

    services = FaultedServices(stack)
    yield services
    services.close()


def _s3_client(url: str):
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=2, read_timeout=2, retries={"max_attempts": 1})
    return boto3.client("s3", endpoint_url=url, config=config)


def test_every_mode_reaches_the_s3_client_as_its_own_error(faulted):
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    s3 = _s3_client(faulted.proxies["s3"].url)
    assert "Buckets" in s3.list_buckets()  # pass: a pooled connection now exists
    expected = {
        "refuse": EndpointConnectionError,
        "reset": ConnectionClosedError,
        "stall": ReadTimeoutError,
    }
    for mode, error in expected.items():
        with faulted.fault("s3", mode), pytest.raises(error):
            s3.list_buckets()
        assert "Buckets" in s3.list_buckets()  # healed: the same client works again
    with faulted.fault("s3", "http500"), pytest.raises(ClientError) as caught:
        s3.list_buckets()
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    started = time.monotonic()
    with faulted.fault("s3", "stall"), pytest.raises(ReadTimeoutError):
        s3.list_buckets()
    assert time.monotonic() - started < 10  # a stall costs the client's timeout, no more


def test_a_fault_can_hit_only_matching_requests(faulted, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from driftloop_dev.faults import Fault

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    client = MlflowClient(faulted.proxies["mlflow"].url)
    name = f"faults-match-{time.time_ns()}"
    client.create_registered_model(name)
    only_alias = Fault("http500", method="POST", path=r"/registered-models/alias")
    with faulted.fault("mlflow", only_alias) as proxy:
        client.set_registered_model_tag(name, "reached", "yes")  # not matched: passes
        with pytest.raises(MlflowException):
            client.set_registered_model_alias(name, "champion", "1")
        assert proxy.stats.faulted == {"http500": 1}
    assert client.get_registered_model(name).tags["reached"] == "yes"


@pytest.fixture(scope="module")
def harness(stack, faulted):
    from driftloop_dev.faults.harness import FaultHarness

    faulted.close()  # the harness brings its own proxies
    built = FaultHarness(stack, SESSION_ROOT / "faults", load_dag)
    yield built
    built.close()


def _run(harness, dag_id, step, service, mode):
    from driftloop_dev.faults import Fault
    from driftloop_dev.faults.cases import run_case, table
    from driftloop_dev.faults.harness import Case

    outcome = run_case(harness, Case(dag_id, step, service, Fault(mode)))
    print(table([outcome]))
    return outcome


# MLflow failing during evaluate's champion read must fail the task (no promotion decided
# by the floors alone) and leave the champion to a complete, recorded promotion.
@pytest.mark.parametrize(
    ("step", "service", "mode"),
    [
        ("evaluate", "mlflow", "http500"),
        ("gate", "s3", "refuse"),
        ("promote", "mlflow", "reset"),
        ("promote", "mlflow", "stall"),
    ],
)
def test_retrain_steps_recover_from_faults(harness, step, service, mode):
    outcome = _run(harness, "retrain_detector", step, service, mode)
    assert not outcome.problems, outcome
    assert outcome.outcome in (
        "failed-then-recovered",
        "failed closed",
        "completed",
        "completed (fault not hit)",
    ), outcome


@pytest.mark.parametrize(("service", "mode"), [("mlflow", "http500"), ("mlflow", "refuse")])
def test_rollback_recovers_from_faults(harness, service, mode):
    outcome = _run(harness, "rollback_detector", "rollback", service, mode)
    assert outcome.outcome == "failed-then-recovered", outcome


# Runs after the retrain cases (file order): drift then follows their registered model, whose
# champion has a stored training-window reference; an MLflow 500 while `plan` reads the champion reference must fail
# the task, never fall back to the sliding reference.
@pytest.mark.parametrize(
    ("step", "service", "mode"),
    [
        ("validate_partition", "s3", "reset"),
        ("plan", "mlflow", "http500"),
        ("plan", "s3", "stall"),
        ("measure_performance", "mlflow", "http500"),
    ],
)
def test_drift_steps_recover_from_faults(harness, step, service, mode):
    outcome = _run(harness, "drift_monitor", step, service, mode)
    assert outcome.outcome in ("failed-then-recovered", "completed"), outcome
    assert outcome.faulted_requests > 0, outcome
