"""Driving DAG runs through a running Airflow's REST API, as an operator or a client would.

What ``make demo`` (under ``make up``) and the end-to-end scheduler test do: trigger runs with
``logical_date: null``, announce new data (inference logs, labeled days) with an Asset event,
wait for runs (also those that an Asset event starts), answer Human-in-the-loop requests, and
read task states and XComs.
Standard library only, on top of :class:`driftloop_dev.airflow_api.AirflowAPI`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

from driftloop_dev.airflow_api import AirflowAPI, AirflowAPIError

FINISHED_RUN_STATES = frozenset({"success", "failed"})
#: task states from which a task instance moves on by itself
BUSY_TASK_STATES = frozenset(
    {None, "none", "scheduled", "queued", "running", "deferred", "up_for_retry", "restarting"}
)


class RunError(RuntimeError):
    """A DAG run did not end as expected; the message names its failed tasks."""


def wait_until(predicate: Callable[[], Any], what: str, timeout: float, interval: float = 2.0):
    """Poll ``predicate`` until it returns something truthy; its last value on success."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def run_path(dag_id: str, run_id: str | None = None) -> str:
    """``dags/{dag_id}/dagRuns[/{run_id}]`` with both ids escaped (run ids hold ``+`` and ``:``)."""
    path = f"dags/{quote(dag_id, safe='')}/dagRuns"
    return path if run_id is None else f"{path}/{quote(run_id, safe='')}"


def all_pages(api: AirflowAPI, path: str, key: str, page: int = 100, **params: Any) -> list[dict]:
    """Every item of a paged REST collection (``limit``/``offset``, ``total_entries``)."""
    items: list[dict] = []
    while True:
        body = api.get(path, limit=page, offset=len(items), **params)
        items.extend(body[key])
        if not body[key] or len(items) >= body.get("total_entries", 0):
            return items


def trigger(api: AirflowAPI, dag_id: str, conf: Mapping[str, Any] | None = None) -> dict:
    """A manual run with ``logical_date: null`` (what API clients send by default)."""
    return api.post(run_path(dag_id), {"logical_date": None, "conf": dict(conf or {})})


def dag_run(api: AirflowAPI, dag_id: str, run_id: str) -> dict:
    return api.get(run_path(dag_id, run_id))


def dag_runs(api: AirflowAPI, dag_id: str, **filters: Any) -> list[dict]:
    """The DAG's runs, oldest first (filters as the REST API's query parameters)."""
    return all_pages(api, run_path(dag_id), "dag_runs", order_by="run_after", **filters)


def task_instances(api: AirflowAPI, dag_id: str, run_id: str) -> list[dict]:
    return all_pages(api, f"{run_path(dag_id, run_id)}/taskInstances", "task_instances")


def task_states(api: AirflowAPI, dag_id: str, run_id: str) -> dict[str, str | None]:
    """``task_id`` (``task_id[i]`` for mapped instances) → state."""
    states = {}
    for ti in task_instances(api, dag_id, run_id):
        key = ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]"
        states[key] = ti["state"]
    return states


def wait_for_run(
    api: AirflowAPI,
    dag_id: str,
    run_id: str,
    timeout: float,
    *,
    expect: Iterable[str] = ("success",),
) -> dict:
    """Wait until the run ends; raises :class:`RunError` naming failed tasks when its state is
    not one of ``expect``."""
    run = wait_until(
        lambda: (r := dag_run(api, dag_id, run_id)) and r["state"] in FINISHED_RUN_STATES and r,
        f"{dag_id} run {run_id} to finish",
        timeout,
    )
    if run["state"] not in set(expect):
        states = task_states(api, dag_id, run_id)
        failed = sorted(t for t, s in states.items() if s in ("failed", "upstream_failed"))
        raise RunError(f"{dag_id} run {run_id} ended {run['state']}; failed tasks: {failed}")
    return run


def wait_for_task_state(
    api: AirflowAPI, dag_id: str, run_id: str, task_id: str, states: Iterable[str], timeout: float
) -> str:
    wanted = set(states)
    return wait_until(
        lambda: (s := task_states(api, dag_id, run_id).get(task_id)) in wanted and s,
        f"{dag_id}.{task_id} of {run_id} to be {sorted(wanted)}",
        timeout,
        interval=1.0,
    )


def xcom(api: AirflowAPI, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
    """A task's XCom value (deserialised), or None when it pushed none."""
    try:
        entry = api.get(
            f"{run_path(dag_id, run_id)}/taskInstances/{quote(task_id)}/xcomEntries/{quote(key)}",
            deserialize="true",
        )
    except AirflowAPIError as err:
        if err.status == 404:
            return None
        raise
    return entry["value"]


def asset_id(api: AirflowAPI, name: str) -> int:
    """The id of the Asset called ``name`` (known once a DAG that uses it was parsed)."""
    assets = api.get("assets", name_pattern=name, limit=100)["assets"]
    for asset in assets:
        if asset["name"] == name:
            return asset["id"]
    raise LookupError(f"no Asset named {name!r} (is the DAG that uses it parsed?)")


def post_asset_event(api: AirflowAPI, name: str, extra: Mapping[str, Any]) -> dict:
    """What the serving side does when a day's partition has landed."""
    return api.post("assets/events", {"asset_id": asset_id(api, name), "extra": dict(extra)})


#: the Asset a labeled day announces (driftloop.airflow.assets.LABELS)
LABELS_ASSET = "driftloop_labels"


def announce_labeled_day(api: AirflowAPI, day: str, frames: int) -> dict:
    """What a labeling pipeline does when a labeled day (``labeled/dt=D/``, ``_SUCCESS`` last)
    has landed, instead of waiting for ``labels_landed``: the event ``retrain_detector``
    listens to."""
    return post_asset_event(api, LABELS_ASSET, {"day": day, "frames": int(frames)})


def answer_hitl(
    api: AirflowAPI, dag_id: str, run_id: str, task_id: str, option: str, map_index: int = -1
) -> dict:
    """Answer a Human-in-the-loop request as the API user (recorded as the responder)."""
    return api.patch(
        f"{run_path(dag_id, run_id)}/taskInstances/{quote(task_id)}/{map_index}/hitlDetails",
        {"chosen_options": [option]},
    )


def runs_started_by(api: AirflowAPI, source_dag_id: str, source_run_id: str) -> list[dict]:
    """The DAG runs that the Asset events emitted by one run started (``dag_id``, ``run_id``,
    ``state`` …), through the events' ``created_dagruns``."""
    events = api.get(
        "assets/events", source_dag_id=source_dag_id, source_run_id=source_run_id, limit=100
    )["asset_events"]
    return [run for event in events for run in event["created_dagruns"]]


def wait_for_run_started_by(
    api: AirflowAPI, source_dag_id: str, source_run_id: str, dag_id: str, timeout: float
) -> dict:
    """Wait until an Asset event of the source run has started a run of ``dag_id``."""
    return wait_until(
        lambda: next(
            (
                r
                for r in runs_started_by(api, source_dag_id, source_run_id)
                if r["dag_id"] == dag_id
            ),
            None,
        ),
        f"a {dag_id} run started by the Asset events of {source_dag_id} {source_run_id}",
        timeout,
    )
