"""Notifications to a Slack-compatible webhook: drift warnings and critical drift, promotions,
rejections, rollbacks, rollout stages and failed tasks — what DAG files import.

Three ways to send one:

* ``default_args["on_failure_callback"] = task_failure_notifier()`` — any task that fails for
  good (after its retries) says so;
* ``@task(on_success_callback=event_notifier("promotion"))`` — after ``promote``, ``reject``
  or ``rollback`` succeeded, the message describes what the ledger recorded for the run
  (:mod:`driftloop.notify.payloads`);
* :func:`send` — from inside a task (the drift warning, the drift event opened, the rollout
  guard's stage changes and automatic rollbacks), with the task's own payload.

The sender is the Slack provider's ``SlackWebhookNotifier`` with slack_sdk's retry handlers
(:mod:`driftloop.airflow.slack_notifier`, :mod:`driftloop.notify.retry`: 3 tries in all,
exponential backoff). This module only describes what to send: the callbacks import the
provider (slack_sdk, aiohttp, and SQLAlchemy through Airflow's provider manager) when they
run, so that a DAG file that names them still parses cheaply.

The webhook is the Airflow connection ``Settings.alerts_conn_id`` (``driftloop_alerts``;
type ``slackwebhook``, the URL as its password; compose sets it as ``AIRFLOW_CONN_<ID>``). No
such connection, or one without a URL: one log line "notifications off" and nothing else.
A notification never fails the task it reports on; one still undelivered after the tries is
logged at ERROR in the task log and recorded in the audit ledger (``notification_failed``,
on the drift event when it is about one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

#: the kinds a success callback describes from the ledger (driftloop.notify.payloads)
FROM_LEDGER_KINDS = ("promotion", "rejection", "rollback")
_EVENT_KEYS = ("drift_event_id", "event_id")


class Notification:
    """A task callback that sends a ``kind`` message (``payload``: what it says; None: built
    when it runs, from the failed task's context or the ledger's rows of the DAG run).
    ``options`` go to :class:`driftloop.airflow.slack_notifier.DriftloopNotifier`
    (``conn_id``, ``tries``, ``backoff_s``, ``timeout_s``, ``drift_event_task``)."""

    def __init__(self, kind: str, payload: Mapping[str, Any] | None = None, **options: Any):
        from driftloop.notify.messages import KINDS

        if kind not in KINDS:
            raise ValueError(f"unknown notification kind {kind!r}; expected one of {KINDS}")
        self.kind = kind
        self.payload = None if payload is None else dict(payload)
        self.options = options

    def __call__(self, context: Mapping[str, Any]) -> bool:
        return self.deliver(context)

    def deliver(self, context: Mapping[str, Any] | None) -> bool:
        """Send it now; True when delivered. Never raises (see the module's docstring)."""
        try:
            from driftloop.airflow.slack_notifier import DriftloopNotifier

            notifier = DriftloopNotifier(self.kind, self.payload, **self.options)
        except Exception as err:  # the provider missing or a bad option: never fail the task
            import logging

            logging.getLogger(__name__).error("%s notification not sent: %s", self.kind, err)
            return False
        return notifier.deliver(context)

    def __repr__(self) -> str:
        return f"Notification({self.kind!r})"


def task_failure_notifier(**options: Any) -> Notification:
    """For ``default_args["on_failure_callback"]``: a failed task (after its retries) posts
    the DAG, task, run, try and exception, with links to the run and the task's log.
    ``drift_event_task``: a task whose XCom names the run's drift event (``event_id``,
    ``drift_event_id`` or ``trigger.drift_event_id``), for the failure's ledger row."""
    return Notification("task_failure", **options)


def event_notifier(kind: str, **options: Any) -> Notification:
    """For a task's ``on_success_callback``: ``promotion``, ``rejection`` or ``rollback`` as
    the ledger recorded it for the DAG run."""
    if kind not in FROM_LEDGER_KINDS:
        raise ValueError(f"no ledger description of {kind!r}; expected one of {FROM_LEDGER_KINDS}")
    return Notification(kind, **options)


def send(
    kind: str, payload: Mapping[str, Any], context: Mapping[str, Any] | None = None, **options
) -> bool:
    """Send a ``kind`` message with ``payload`` from inside a task (``context``: the task's,
    default the current one). True when delivered; False when notifications are off or the
    webhook failed (logged and recorded) — never an exception for the task."""
    if context is None:
        try:
            from airflow.sdk import get_current_context

            context = get_current_context()
        except Exception:  # outside a task (a script, a test): no run to link to
            context = {}
    return Notification(kind, payload, **options).deliver(context)


# ----------------------------------------------------------------------------- context
def context_facts(context: Mapping[str, Any]) -> dict[str, Any]:
    """DAG, run, task, try and the browser links of the run and the task's log."""
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    dag_run = context.get("dag_run")
    facts: dict[str, Any] = {
        "dag_id": getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None),
        "run_id": context.get("run_id") or getattr(dag_run, "run_id", None),
        "task_id": getattr(ti, "task_id", None),
        "try_number": getattr(ti, "try_number", None),
        "map_index": getattr(ti, "map_index", None),
    }
    if facts["dag_id"] and facts["run_id"]:
        facts["airflow_url"] = run_url(facts["dag_id"], facts["run_id"])
    try:
        facts["log_url"] = ti.log_url if ti is not None else None
    except Exception:  # no API base URL configured: the message goes without the link
        facts["log_url"] = None
    return {key: value for key, value in facts.items() if value is not None}


def failure_facts(context: Mapping[str, Any]) -> dict[str, Any]:
    """The exception of a failed task, as text."""
    error = context.get("exception")
    if error is None:
        return {}
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    return {"exception": text}


def run_url(dag_id: str, run_id: str) -> str:
    """The DAG run's page in the Airflow UI (``[api] base_url``)."""
    from airflow.sdk.configuration import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    return f"{base}/dags/{quote(str(dag_id), safe='')}/runs/{quote(str(run_id), safe='')}"


def drift_event_id(
    payload: Mapping[str, Any], context: Mapping[str, Any], drift_event_task: str | None = None
) -> Any:
    """The drift event a notification is about: the payload's, the run's Params'
    (``drift_event_id``, ``event_id``), else what ``drift_event_task`` returned (None: none)."""
    params = context.get("params") or {}
    for source in (payload, params):
        for key in _EVENT_KEYS:
            try:
                value = source.get(key)
            except Exception:  # Params that cannot be read: no event from there
                value = None
            if value not in (None, ""):
                return value
    ti = context.get("ti") or context.get("task_instance")
    if not drift_event_task or ti is None:
        return None
    try:
        returned = ti.xcom_pull(task_ids=drift_event_task)
    except Exception:  # the task never ran (an earlier one failed)
        return None
    if not isinstance(returned, Mapping):
        return None
    trigger = returned.get("trigger")
    candidates = [returned.get(key) for key in _EVENT_KEYS]
    if isinstance(trigger, Mapping):
        candidates.append(trigger.get("drift_event_id"))
    return next((value for value in candidates if value not in (None, "")), None)
