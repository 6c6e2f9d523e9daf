"""The approval step: a HITL branch operator that records who answered, and when, from
Airflow's own HITL record (as the HITL trigger read it)."""

from __future__ import annotations

import importlib
from typing import Any

from airflow.providers.standard.operators.hitl import HITLBranchOperator


def answer_from_event(event: dict[str, Any]) -> dict[str, Any]:
    """The answer as the audit trail keeps it, from the HITL trigger's event: what the
    triggerer read from Airflow's HITL record. The event reaches ``execute_complete`` through
    the task instance's own row (``next_kwargs``), which no API lets a user write — unlike
    XCom. (Airflow 3.3's task supervisor does not serve the HITL record to a task directly.)"""
    user = event.get("responded_by_user")
    if user is not None and not isinstance(user, dict):
        user = dict(user)
    responded_at = event.get("responded_at")
    return {
        "chosen_options": list(event.get("chosen_options") or []),
        "responded_by_user": user,
        "responded_at": responded_at.isoformat()
        if hasattr(responded_at, "isoformat")
        else responded_at,
        "timedout": bool(event.get("timedout", False)),
    }


class RecordedHITLBranchOperator(HITLBranchOperator):
    """A HITL branch that hands the answer, as the HITL trigger read it from Airflow's HITL
    record, to ``record_answer`` — ``"module:function"``, called as
    ``function(answer, run_id=…)`` — which writes it where decisions read it (the ledger).

    The stock operator returns only the chosen branch; the steps that act on the decision
    need the responder too, from a record users cannot edit.
    """

    def __init__(
        self, *, record_answer: str | None = None, describe_request: str | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.record_answer = record_answer
        #: ``"module:function"`` called as ``function(run_id=…) -> (subject, body)`` when the
        #: task starts: the question is worded from the records, not from XComs users can edit
        self.describe_request = describe_request

    def execute(self, context):
        if self.describe_request:
            self.subject, self.body = _call(self.describe_request, run_id=context["run_id"])
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        # the answer goes to the ledger, where decisions read it; never to XCom, which users
        # can edit through the REST API
        if "error" not in event and self.record_answer:
            _call(self.record_answer, answer_from_event(event), run_id=context["run_id"])
        return super().execute_complete(context=context, event=event)


def _call(target: str, *args, **kwargs):
    """Call ``"module:function"`` (imported when the task runs: DAG files stay light)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(*args, **kwargs)
