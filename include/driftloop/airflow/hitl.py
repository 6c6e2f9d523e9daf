"""The approval step: a HITL branch operator that keeps who answered, and when, for the audit trail."""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import HITLBranchOperator

#: XCom key under which the operator's answer (options, who, when) is kept for the record
ANSWER_XCOM_KEY = "hitl_answer"


class RecordedHITLBranchOperator(HITLBranchOperator):
    """A HITL branch whose answer, and who gave it, stays in XCom for the audit trail.

    The stock operator returns only the chosen branch; downstream tasks that record the
    decision need the responder too.
    """

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        if "error" not in event:
            responded_at = event.get("responded_at")
            context["ti"].xcom_push(
                key=ANSWER_XCOM_KEY,
                value={
                    "chosen_options": list(event.get("chosen_options") or []),
                    "responded_by_user": event.get("responded_by_user"),
                    "responded_at": responded_at.isoformat()
                    if hasattr(responded_at, "isoformat")
                    else responded_at,
                    "timedout": bool(event.get("timedout", False)),
                },
            )
        return super().execute_complete(context=context, event=event)
