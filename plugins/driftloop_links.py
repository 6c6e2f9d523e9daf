"""Airflow plugin: "MLflow run", "Drift report" and "Registered model" buttons on any task that
pushes their URL.

A task pushes ``mlflow_run_url``, ``drift_report_url`` or ``registered_model_url`` (keys in
:mod:`driftloop.airflow.links`) to
XCom; these global operator extra links read the value back and show it as a button in the
task instance view. Tasks that never push the key get a disabled button (empty link).

Where the link is resolved matters in Airflow 3:

* Global links are resolved by the **API server** (``/api/v2/.../links``). There the Task SDK's
  ``XCom.get_value`` cannot be used (it talks to a task supervisor that does not exist in that
  process, apache/airflow#59093), so the value is read from the metadata database, the same
  way Airflow's own ``XComOperatorLink`` does.
* Attached to an operator's ``operator_extra_links`` instead, a link is resolved by the **task
  runner** after the task finishes; there the Task SDK ``XCom.get_value`` (the configured XCom
  backend, ``airflow.sdk.execution_time.xcom.XCom``) is the right reader.

The value is parsed as plain JSON (never with Airflow's class-restoring decoder) and returned
only when it is an ``http(s)://`` URL, so XCom content cannot inject a script link or a button
that a browser cannot open.

This file is imported by every Airflow component that loads plugins: it imports only
``airflow`` and the dependency-free :mod:`driftloop.airflow.links`, never mlflow or pandas.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from driftloop.airflow.links import (
    DRIFT_REPORT_URL_KEY,
    MLFLOW_RUN_URL_KEY,
    REGISTERED_MODEL_URL_KEY,
    is_safe_link,
)

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

log = logging.getLogger(__name__)


def _in_task_runner() -> bool:
    """True inside a task process, where the Task SDK can reach its supervisor."""
    return hasattr(sys.modules.get("airflow.sdk.execution_time.task_runner"), "SUPERVISOR_COMMS")


def _decode(value: Any) -> Any:
    """An XCom value as stored: a JSON document (string) or an already-decoded value."""
    if isinstance(value, (str, bytes, bytearray)):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _read_xcom_from_metadata_db(ti_key: TaskInstanceKey, key: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(
                key=key,
                run_id=ti_key.run_id,
                dag_ids=ti_key.dag_id,
                task_ids=ti_key.task_id,
                map_indexes=ti_key.map_index,
            ).with_only_columns(XComModel.value)
        ).first()
    return None if row is None else _decode(row.value)


def read_xcom(ti_key: TaskInstanceKey, key: str) -> Any:
    """The XCom value ``key`` of the task instance ``ti_key``, or None when there is none."""
    if _in_task_runner():
        # the configured XCom backend class, as the task runner itself uses it
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_value(ti_key=ti_key, key=key)
    return _read_xcom_from_metadata_db(ti_key, key)


def link_from_xcom(ti_key: TaskInstanceKey, key: str) -> str:
    """The URL pushed under ``key``, or "" (disabled button) when absent, unsafe or unreadable."""
    try:
        value = read_xcom(ti_key, key)
    except Exception:  # a broken link must not break the task instance page
        log.warning("Could not read XCom %r for %s", key, ti_key, exc_info=True)
        return ""
    if isinstance(value, str):
        value = value.strip()
    if not is_safe_link(value):
        if value not in (None, ""):
            log.warning("Ignoring XCom %r for %s: not an http(s):// URL", key, ti_key)
        return ""
    return value


class XComUrlLink(BaseOperatorLink):
    """Base for links whose whole URL is an XCom value pushed by the task itself."""

    #: XCom key the task pushes its URL under.
    url_key: str = ""

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return link_from_xcom(ti_key, self.url_key)


class MlflowRunLink(XComUrlLink):
    """Opens the task's MLflow run (XCom key ``mlflow_run_url``)."""

    name = "MLflow run"
    url_key = MLFLOW_RUN_URL_KEY


class DriftReportLink(XComUrlLink):
    """Opens the drift report of the run (XCom key ``drift_report_url``)."""

    name = "Drift report"
    url_key = DRIFT_REPORT_URL_KEY


class RegisteredModelLink(XComUrlLink):
    """Opens the model version a task registered (XCom key ``registered_model_url``)."""

    name = "Registered model"
    url_key = REGISTERED_MODEL_URL_KEY


class DriftloopLinksPlugin(AirflowPlugin):
    """Registers the driftloop links on every operator (global operator extra links)."""

    name = "driftloop_links"
    global_operator_extra_links: ClassVar[list[BaseOperatorLink]] = [
        MlflowRunLink(),
        DriftReportLink(),
        RegisteredModelLink(),
    ]
