"""A task that emits an Asset event only when the run really changed what the Asset names.

A task's outlets emit their event whenever it succeeds, so "announce only if" is a task that
*skips* otherwise (a skipped task emits nothing). ``retrain_detector`` and ``rollout_guard``
announce ``driftloop_champion`` / ``driftloop_rollout`` this way; the reason comes from the
ledger, through ``explain`` (``"module:function"`` taking ``(settings, run_id, name)`` and
returning the announcement, or None), imported when the task runs: the DAG file stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from airflow.sdk import task


def announce_task(asset: Any, name: str, explain: str, **task_kwargs: Any):
    """The task ``announce_<name>`` with ``asset`` as its outlet (call it in the DAG body)."""

    @task(task_id=f"announce_{name}", outlets=[asset], **task_kwargs)
    def announced(run_id=None) -> str:
        from airflow.sdk.exceptions import AirflowSkipException

        from driftloop.config.settings import Settings

        module, function = explain.split(":")
        why = getattr(importlib.import_module(module), function)(Settings.from_env(), run_id, name)
        if why is None:  # a skipped task emits no Asset event
            raise AirflowSkipException(f"this run changed no {name}")
        return why

    return announced()
