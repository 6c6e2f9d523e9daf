"""The sender of :mod:`driftloop.airflow.notifiers`: the Slack provider's
``SlackWebhookNotifier`` with slack_sdk's retry handlers, and the record of a message that
did not arrive.

Imported when a notification goes out, never when a DAG file is parsed: the provider brings
slack_sdk, aiohttp and (through Airflow's provider manager) SQLAlchemy.

Delivery (:meth:`DriftloopNotifier.deliver`): no connection ``Settings.alerts_conn_id``, or
one without a webhook URL → the log line "notifications off", nothing else. Otherwise the
message (:func:`driftloop.notify.messages.build_message`) is posted with up to 3 tries and
exponential backoff (:mod:`driftloop.notify.retry`). A message still not delivered — the
tries spent, a 4xx, a payload that cannot be built, a connection that cannot be read — is
logged at ERROR in the task log and appended to the audit ledger as ``notification_failed``:
on the drift event (``drift_event:<id>``, next to its ``drift_event`` and ``approval`` rows)
when the notification is about one, else on the model version, else on the DAG run. Nothing
here raises into the task it reports on.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook
from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook
from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

from driftloop.airflow.notifiers import context_facts, drift_event_id, failure_facts
from driftloop.config.settings import Settings
from driftloop.notify.messages import KINDS, build_message
from driftloop.notify.retry import BACKOFF_S, TRIES, retry_handlers

log = logging.getLogger(__name__)

#: seconds one request may take (connect + response) before it counts as a connection error
TIMEOUT_S = 10
#: the ledger kind of a notification that was not delivered
FAILED_KIND = "notification_failed"


class DriftloopNotifier(SlackWebhookNotifier):
    """A message of ``kind`` (:data:`driftloop.notify.messages.KINDS`) to the alerts webhook.

    ``payload``: what the message says; None: built when it runs — from the failed task's
    context (``task_failure``) or from the ledger's rows of the DAG run (``promotion``,
    ``rejection``, ``rollback``). ``conn_id``: default ``Settings.alerts_conn_id``, read when
    it runs. ``drift_event_task``: see :func:`driftloop.airflow.notifiers.drift_event_id`."""

    # Built from data when it runs, never rendered as a Jinja template: a reason or a
    # feature name with braces stays text.
    template_fields = ()

    def __init__(
        self,
        kind: str,
        payload: Mapping[str, Any] | None = None,
        *,
        conn_id: str | None = None,
        tries: int = TRIES,
        backoff_s: float = BACKOFF_S,
        timeout_s: int = TIMEOUT_S,
        drift_event_task: str | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"unknown notification kind {kind!r}; expected one of {KINDS}")
        super().__init__(
            slack_webhook_conn_id=conn_id or "",  # "": Settings.alerts_conn_id when it runs
            text="",
            timeout=timeout_s,
            retry_handlers=retry_handlers(tries, backoff_s),
        )
        self.kind = kind
        self.payload = None if payload is None else dict(payload)
        self.conn_id = conn_id
        self.tries = tries
        self.drift_event_task = drift_event_task

    @property
    def hook(self) -> SlackWebhookHook:
        # a new hook per message: the connection is looked up when the message goes out
        return SlackWebhookHook(
            slack_webhook_conn_id=self.slack_webhook_conn_id,
            timeout=self.timeout,
            retry_handlers=self.retry_handlers,
        )

    def notify(self, context) -> None:
        self.deliver(context)

    def deliver(self, context: Mapping[str, Any] | None) -> bool:
        """Send the message; True when the webhook took it. Never raises: a failure is
        logged at ERROR and recorded in the ledger, and the caller carries on."""
        context = context or {}
        try:
            settings = Settings.from_env()
        except Exception as err:  # a broken setting must not fail the task being reported on
            log.error("%s notification not sent: %s", self.kind, err)
            return False
        conn_id = self.conn_id or settings.alerts_conn_id
        self.slack_webhook_conn_id = conn_id
        payload: dict[str, Any] = dict(self.payload or {})
        try:
            # what the failure's ledger row needs, should the full payload not come together
            payload = {**context_facts(context), **payload}
            event = drift_event_id(payload, context, self.drift_event_task)
            payload["drift_event_id"] = event
            if not webhook_configured(conn_id):
                log.info(
                    "notifications off: no webhook in Airflow connection %r; the %s "
                    "notification is not sent",
                    conn_id,
                    self.kind,
                )
                return False
            payload = self._payload(settings, context)
            if payload.get("drift_event_id") in (None, ""):
                payload["drift_event_id"] = event
            message = build_message(self.kind, payload)
            self.hook.send(
                text=message["text"],
                blocks=message["blocks"],
                unfurl_links=False,
                unfurl_media=False,
            )
        except Exception as err:
            log.error(
                "%s notification not delivered (Airflow connection %r, up to %d tries): %s: %s",
                self.kind,
                conn_id,
                self.tries,
                type(err).__name__,
                err,
            )
            record_failure(settings, self.kind, payload, err, tries=self.tries)
            return False
        log.info("%s notification delivered (connection %r)", self.kind, conn_id)
        return True

    def _payload(self, settings: Settings, context: Mapping[str, Any]) -> dict[str, Any]:
        facts = context_facts(context)
        if self.payload is not None:
            payload = {**facts, **self.payload}
        elif self.kind == "task_failure":
            payload = {**facts, **failure_facts(context)}
        else:
            from driftloop.notify.payloads import FROM_LEDGER

            if self.kind not in FROM_LEDGER or not facts.get("run_id"):
                raise ValueError(f"a {self.kind} notification needs a payload")
            payload = {**facts, **FROM_LEDGER[self.kind](settings, facts["run_id"])}
        payload.setdefault("model", settings.registered_model)
        version = payload.get("version") or payload.get("subject") or payload.get("restored")
        if version and not payload.get("mlflow_url") and settings.mlflow_tracking_uri:
            payload["mlflow_url"] = _mlflow_url(settings, payload["model"], version)
        return payload


def webhook_configured(conn_id: str) -> bool:
    """Is there a connection ``conn_id`` with a webhook URL? Only "not found" means no; any
    other error reading it is raised (a failed notification, recorded)."""
    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return bool((connection.password or "").strip())


def _mlflow_url(settings: Settings, model: str, version: Any) -> str | None:
    from driftloop.airflow.links import mlflow_model_version_url

    try:
        return mlflow_model_version_url(settings.mlflow_tracking_uri, model, version)
    except ValueError:  # a tracking URI without a web UI: no link
        return None


def failure_subject(payload: Mapping[str, Any], settings: Settings) -> str:
    """The ledger subject of a failed notification: its drift event, else its model version,
    else its DAG run."""
    if payload.get("drift_event_id") not in (None, ""):
        return f"drift_event:{payload['drift_event_id']}"
    version = payload.get("version") or payload.get("subject") or payload.get("withdrawn")
    if version:
        return f"model:{payload.get('model') or settings.registered_model}/v{version}"
    if payload.get("dag_id") and payload.get("run_id"):
        return f"dag_run:{payload['dag_id']}/{payload['run_id']}"
    return "notifications"


def failure_key(kind: str, payload: Mapping[str, Any]) -> str:
    """The failure row's idempotency key: one per task try and kind (a re-run of the same
    try adds nothing); outside a task, unique."""
    dag_id, run_id = payload.get("dag_id"), payload.get("run_id")
    if not (dag_id and run_id):
        return f"{FAILED_KIND}/{kind}/{uuid.uuid4().hex}"
    task = payload.get("task_id") or "-"
    where = [dag_id, run_id, task, str(payload.get("map_index", -1))]
    return "/".join([*where, FAILED_KIND, kind, f"try{payload.get('try_number', 0)}"])


def record_failure(
    settings: Settings, kind: str, payload: Mapping[str, Any], error: BaseException, *, tries: int
) -> None:
    """Append the undelivered notification to the audit ledger. A ledger that cannot take
    it is logged at ERROR too: the task still carries on."""
    subject = failure_subject(payload, settings)
    run_id = payload.get("run_id")
    try:
        from driftloop.retrain.records import ledger

        ledger(settings).append(
            FAILED_KIND,
            actor=f"airflow:{run_id}" if run_id else "driftloop:notifications",
            subject=subject,
            payload={
                "notification": kind,
                "error": f"{type(error).__name__}: {error}"[:1000],
                "tries": tries,
                "dag_id": payload.get("dag_id"),
                "run_id": run_id,
                "task_id": payload.get("task_id"),
                "drift_event_id": payload.get("drift_event_id"),
            },
            idempotency_key=failure_key(kind, payload),
        )
    except Exception as err:
        log.error("the undelivered %s notification is not in the audit ledger: %s", kind, err)
        return
    log.error("recorded %s of the %s notification on %s", FAILED_KIND, kind, subject)
