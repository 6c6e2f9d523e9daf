"""The on-call operator, for ``dag.test()`` runs: answers a Human-in-the-loop request.

``dag.test()`` keeps a run alive while a HITL task waits in ``awaiting_input`` until a
response is recorded from outside. This answers it in a background thread through the Airflow
API's own handler of ``PATCH …/hitlDetails`` (validation, row locks, the resume of the parked
task), called in-process on the same metadata DB, minus HTTP and login.
``test_scheduler_e2e`` does the same through the REST API of a running scheduler, as a named user.
Used by ``test_retrain_dag`` and by the fault harness's approval cases.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class OnCallUser:
    """What the API's auth manager hands the handler as the current user."""

    id: str
    name: str

    def get_id(self) -> str:
        return self.id

    def get_name(self) -> str:
        return self.name


class HITLResponder(threading.Thread):
    """Waits for an unanswered request of ``dag_id.task_id`` and answers ``option``."""

    def __init__(
        self,
        dag_id: str,
        task_id: str,
        option: str,
        user: OnCallUser,
        timeout: float,
        before_answer=None,
        keep_answering: bool = False,
    ):
        super().__init__(daemon=True, name=f"hitl-{dag_id}-{task_id}")
        self.dag_id, self.task_id, self.option, self.user = dag_id, task_id, option, user
        #: called with (session, run_id) while the request waits, before it is answered
        self.before_answer = before_answer
        self.deadline = time.monotonic() + timeout
        #: answer every request until :meth:`stop` (a retried task asks again), not only one
        self.keep_answering = keep_answering
        #: the runs whose request was answered, in order
        self.answered: list[str] = []
        self.error: BaseException | None = None
        self._stopped = threading.Event()

    @property
    def answered_run_id(self) -> str | None:
        return self.answered[0] if self.answered else None

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=5)

    def run(self) -> None:
        try:
            while time.monotonic() < self.deadline and not self._stopped.is_set():
                run_id = self._answer_if_asked()
                if run_id is not None:
                    self.answered.append(run_id)
                    if not self.keep_answering:
                        return
                self._stopped.wait(1)
        except BaseException as err:  # reported by the caller through .error
            self.error = err

    def _answer_if_asked(self) -> str | None:
        from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
        from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
        from airflow.models.hitl import HITLDetail
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select

        with create_session() as session:
            run_id = session.execute(
                select(TaskInstance.run_id)
                .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
                .where(
                    TaskInstance.dag_id == self.dag_id,
                    TaskInstance.task_id == self.task_id,
                    TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                    HITLDetail.responded_at.is_(None),
                )
            ).scalar()
            if run_id is None:
                return None
            if self.before_answer is not None:
                self.before_answer(session, run_id)
            update_hitl_detail(
                dag_id=self.dag_id,
                dag_run_id=run_id,
                task_id=self.task_id,
                update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[self.option]),
                user=self.user,
                session=session,
            )
            return run_id
