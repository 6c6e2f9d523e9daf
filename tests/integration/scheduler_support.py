"""What the tests under the real scheduler share: the stack, the serving side (its S3 client,
``driftloop serve-batch``), waits on runs and Asset events, and the timeline each test writes.

The end-to-end loop (``test_scheduler_e2e.py``) and the rollout scenarios
(``test_scheduler_rollout.py``) both run the shape of ``make up`` — PostgreSQL, the api-server,
scheduler, dag-processor and triggerer as separate processes — and drive it only through the
REST API and Asset events. Each writes a timeline (test event → DAG run → task → state →
time) under ``.stack/`` so that a person can see what happened, and where a run stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path

from driftloop_dev.airflow_runs import (
    FINISHED_RUN_STATES,
    dag_run,
    dag_runs,
    run_path,
    task_instances,
    task_states,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]


class Timeline:
    """What the test did, with the wall clock; merged with the task times of the runs of
    ``dag_ids`` at the end."""

    def __init__(self, dag_ids: Iterable[str]):
        self.dag_ids = tuple(dag_ids)
        self.events: list[tuple[float, str]] = []
        self.started = time.time()

    def note(self, what: str) -> None:
        self.events.append((time.time(), what))

    def write(self, api, path: Path, *, since: float | None = None) -> str:
        """The merged timeline as a Markdown table, written to ``path``; ``since`` (a wall
        clock time): leave out the runs and tasks that started before it (a module's earlier
        tests)."""
        rows = [(at, "test", what, "", "") for at, what in self.events]
        for dag_id in self.dag_ids:
            for run in dag_runs(api, dag_id):
                rows.append(
                    (
                        ts_of(run["queued_at"] or run["run_after"]),
                        f"{dag_id}",
                        f"run {run['dag_run_id']} ({run['run_type']}) queued",
                        run["state"],
                        "",
                    )
                )
                for ti in every_try(api, dag_id, run["dag_run_id"]):
                    if not ti["start_date"] or ti["try_number"] == 0:
                        continue  # never ran: a branch not taken, or skipped downstream
                    task = ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
                    took = (
                        f"{ts_of(ti['end_date']) - ts_of(ti['start_date']):.1f} s"
                        if ti["end_date"]
                        else ""
                    )
                    rows.append(
                        (
                            ts_of(ti["start_date"]),
                            f"{dag_id} {run['dag_run_id']}",
                            f"{task} try {ti['try_number']}",
                            ti["state"],
                            took,
                        )
                    )
        if since is not None:
            rows = [row for row in rows if row[0] >= since]
        rows.sort(key=lambda row: row[0])
        start = rows[0][0] if rows else time.time()
        lines = [
            "| t (s) | where | what | state | took |",
            "|---:|---|---|---|---:|",
            *(
                f"| {at - start:7.1f} | {where} | {what} | {state} | {took} |"
                for at, where, what, state, took in rows
            ),
        ]
        text = "\n".join(lines) + "\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return text


def every_try(api, dag_id: str, run_id: str) -> list[dict]:
    """Every try of every task instance of a run (the list endpoint shows only the latest)."""
    out = []
    for ti in task_instances(api, dag_id, run_id):
        if ti["try_number"] > 1:
            out += api.get(
                f"{run_path(dag_id, run_id)}/taskInstances/{ti['task_id']}/{ti['map_index']}/tries"
            )["task_instances"]
        else:
            out.append(ti)
    return out


def emitted_assets(api, dag_id: str, run_id: str) -> set[str]:
    """The names of the Assets whose events the run's tasks emitted."""
    events = api.get("assets/events", source_dag_id=dag_id, source_run_id=run_id, limit=100)
    return {event.get("name") or event["uri"] for event in events["asset_events"]}


def wait_for_task_or_end(
    api, dag_id: str, run_id: str, task_id: str, state: str, timeout: float
) -> dict[str, str | None]:
    """Wait until the task is in ``state`` or the run ended (whichever comes first: a run
    that fails early does not leave the test waiting); the run's task states."""
    wait_until(
        lambda: (
            task_states(api, dag_id, run_id).get(task_id) == state
            or dag_run(api, dag_id, run_id)["state"] in FINISHED_RUN_STATES
        ),
        f"{dag_id}.{task_id} of {run_id} to be {state} (or the run to end)",
        timeout,
    )
    return task_states(api, dag_id, run_id)


def wait_for_all_runs(api, dag_id: str, timeout: float) -> list[dict]:
    """Wait until no run of the DAG is queued or running; its runs, oldest first."""
    return wait_until(
        lambda: (
            (runs := dag_runs(api, dag_id))
            and all(run["state"] in FINISHED_RUN_STATES for run in runs)
            and runs
        ),
        f"every {dag_id} run to end",
        timeout,
    )


def serve_batch(stack, day: str, timeout: float = 900) -> dict:
    """``driftloop serve-batch --day D --json`` as its user runs it (a subprocess with the
    stack's environment: the serving side is not Airflow); its JSON summary."""
    command = os.path.join(os.path.dirname(sys.executable), "driftloop")
    # none of the test session's own store settings (its stack, a test's registered model)
    ours = ("DRIFTLOOP_", "AIRFLOW", "MLFLOW_", "AWS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    done = subprocess.run(
        [command, "serve-batch", "--day", day, "--json"],
        env={**env, **stack.env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def ts_of(value: str) -> float:
    """A REST API timestamp as a wall clock time."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def serving_s3(stack):
    """The serving side's client: straight to moto, not through a proxy of the Airflow
    processes."""
    import boto3

    env = stack.env
    return boto3.client(
        "s3",
        endpoint_url=stack.urls["s3"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


@contextlib.contextmanager
def running_scheduler_stack(
    root: Path, extra_env: Mapping[str, str], *, s3_proxy: bool = False
) -> Iterator:
    """The embedded stack with the Airflow processes (LocalExecutor on PostgreSQL) under
    ``root``, ``extra_env`` added to their environment; stopped on exit.

    ``s3_proxy``: every Airflow process reaches S3 through a :class:`FaultProxy` that the test
    controls (``stack.proxy``; the test's own client goes straight to moto); else
    ``stack.proxy`` is None."""
    from driftloop_dev.stack import EmbeddedStack

    env = dict(extra_env)
    proxy = None
    if s3_proxy:
        from driftloop_dev.faults import FaultProxy

        core = EmbeddedStack(root, REPO).start()  # moto, mlflow: the proxy needs moto's port
        proxy = FaultProxy(core.components["s3"].port, name="s3")
        connection = json.loads(core.env["AIRFLOW_CONN_AWS_DEFAULT"])
        connection["extra"]["endpoint_url"] = proxy.url
        env.update(
            {
                # every Airflow process reaches S3 through the proxy; the test's client does not
                "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
                "AWS_ENDPOINT_URL_S3": proxy.url,
            }
        )
    stack = EmbeddedStack(root, REPO, with_airflow_ui=True, extra_env=env)
    try:
        stack.start()
        stack.proxy = proxy
        yield stack
    finally:
        stack.stop()
        if proxy is not None:
            proxy.close()
