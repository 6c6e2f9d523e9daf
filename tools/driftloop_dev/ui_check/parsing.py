"""The pure parts: the stack's Airflow login, UI URLs, task-log summaries, extra links, MLflow
artifact URLs (unit-tested without a browser)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from driftloop_dev.airflow_api import AirflowAPI
from driftloop_dev.ui_check.constants import (
    END_GROUP,
    GROUP_PREFIX,
    LOG_PROBLEM_PHRASES,
    NOT_RUN_STATES,
    SOURCE_GROUP,
)


def read_stack(root: Path, username: str = "admin") -> tuple[str, str, str]:
    """``(airflow_url, username, password)`` of the stack under ``root``: ``stack.json``'s
    ``urls.airflow`` and the simple auth manager's password file."""
    state = json.loads((root / "stack.json").read_text())
    url = (state.get("urls") or {}).get("airflow")
    if not url:
        raise LookupError(f"{root / 'stack.json'} has no urls.airflow: started without --ui?")
    passwords = json.loads((root / "airflow" / "simple_auth_manager_passwords.json").read_text())
    if username not in passwords:
        raise LookupError(f"no password for {username!r} in the simple auth manager's file")
    return url.rstrip("/"), username, passwords[username]


def ui_url(
    base: str,
    dag_id: str | None = None,
    run_id: str | None = None,
    task_id: str | None = None,
    *,
    map_index: int = -1,
    tab: str | None = None,
    try_number: int | None = None,
) -> str:
    """A page of the Airflow 3 UI (its React routes): ``/dags``, ``/dags/{dag}``,
    ``/dags/{dag}/runs/{run}``, ``…/tasks/{task}`` (``…/mapped/{i}`` for a mapped instance),
    then an optional tab (``details``, ``xcom`` …) and ``?try_number=``. Run ids hold ``:``
    and ``+``: every segment is percent-encoded."""
    url = base.rstrip("/") + "/dags"
    if dag_id is None:
        return url
    url += "/" + quote(dag_id, safe="")
    if run_id is not None:
        url += "/runs/" + quote(run_id, safe="")
        if task_id is not None:
            url += "/tasks/" + quote(task_id, safe="")
            if map_index is not None and map_index >= 0:
                url += f"/mapped/{map_index}"
    if tab:
        url += "/" + tab.strip("/")
    if try_number is not None:
        url += "?" + urlencode({"try_number": try_number})
    return url


def ti_path(dag_id: str, run_id: str, task_id: str) -> str:
    """The REST path (relative to ``/api/v2/``) of a task instance."""
    return (
        f"dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
        f"/taskInstances/{quote(task_id, safe='')}"
    )


def ti_label(dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number=None) -> str:
    label = f"{dag_id}/{run_id}/{task_id}" + (f"[{map_index}]" if map_index >= 0 else "")
    return label + (f" try {try_number}" if try_number is not None else "")


def _event_text(entry: Any) -> str:
    if isinstance(entry, Mapping):
        return str(entry.get("event") or "")
    return str(entry or "")


@dataclass(frozen=True)
class LogSummary:
    """What a task log from ``GET …/logs/{try}`` holds: the sources Airflow read it from, the
    number of lines of its own (not group markers), Airflow's messages about a log it could
    not read, and the first top-level line (what the UI shows without expanding a group)."""

    sources: tuple[str, ...]
    lines: int
    problems: tuple[str, ...]
    first_line: str | None

    @property
    def ok(self) -> bool:
        return self.lines > 0 and not self.problems

    def reason(self) -> str:
        if self.problems:
            return "; ".join(self.problems)
        if self.lines == 0:
            return "empty log" + (f" (sources: {', '.join(self.sources)})" if self.sources else "")
        return "ok"


def problem_phrases(text: str) -> list[str]:
    """The :data:`LOG_PROBLEM_PHRASES` in ``text``."""
    return [phrase for phrase in LOG_PROBLEM_PHRASES if phrase.lower() in text.lower()]


def summarise_log(content: Sequence[Any] | None) -> LogSummary:
    """Summarise the ``content`` of a log response (structured messages or, from older log
    handlers, plain strings)."""
    texts = [_event_text(e) for e in content or ()]
    sources: list[str] = []
    body = texts
    if texts and texts[0].strip() == SOURCE_GROUP:
        end = next((i for i, t in enumerate(texts) if t.strip() == END_GROUP), len(texts))
        sources = [t for t in texts[1:end] if t.strip()]
        body = texts[end + 1 :]
    problems = []
    for text in sources + body:
        for phrase in problem_phrases(text):
            problems.append(f"{phrase!r}: {text.strip()[:300]}")
    lines = 0
    depth = 0
    first_line = None
    for text in body:
        stripped = text.strip()
        if stripped.startswith(GROUP_PREFIX):
            depth += 1
            continue
        if stripped == END_GROUP:
            depth = max(0, depth - 1)
            continue
        if not stripped:
            continue
        lines += 1
        if first_line is None and depth == 0:
            first_line = stripped.splitlines()[0]
    return LogSummary(tuple(sources), lines, tuple(dict.fromkeys(problems)), first_line)


def ran(ti: Mapping[str, Any]) -> bool:
    """Did this task instance (or try) run, so that it must have a log? It has a start date,
    and a host ran it or the executor was given it. Not run: a task that a branch or trigger
    rule skipped (a start date, try 0, no host) and an ``EmptyOperator`` that the scheduler
    marked done itself (a start date, never queued, no host)."""
    if not ti.get("start_date") or ti.get("try_number") == 0:
        return False
    if ti.get("hostname"):
        return True
    return ti.get("state") not in NOT_RUN_STATES and bool(ti.get("queued_when"))


def extra_links(body: Mapping[str, Any] | None) -> dict[str, str]:
    """``{name: url}`` of a ``…/links`` response (``{"extra_links": {name: url | null}}``);
    links without a URL are left out."""
    links = (body or {}).get("extra_links") or {}
    if not isinstance(links, Mapping):
        raise ValueError(f"unexpected extra links response: {body!r}")
    return {str(name): str(url) for name, url in links.items() if url}


_MLFLOW_ARTIFACT = re.compile(
    r"^#/experiments/(?P<experiment>[^/]+)/runs/(?P<run>[^/]+)/(?:artifactPath|artifacts)/(?P<path>.+)$"
)


@dataclass(frozen=True)
class MlflowArtifactLink:
    base: str
    experiment_id: str
    run_id: str
    artifact_path: str

    def url_forms(self) -> dict[str, str]:
        """The MLflow UI URLs that may open the artifact, the route the link uses first."""
        run = f"{self.base}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return {
            "artifactPath": f"{run}/artifactPath/{self.artifact_path}",
            "artifacts": f"{run}/artifacts/{self.artifact_path}",
            "artifacts-tab": f"{run}/artifacts?{urlencode({'path': self.artifact_path})}",
        }


def parse_mlflow_artifact_url(url: str) -> MlflowArtifactLink:
    """Split an MLflow UI artifact URL (``{base}/#/experiments/{e}/runs/{r}/artifactPath/{p}``)
    into its parts; ``ValueError`` for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    match = _MLFLOW_ARTIFACT.match("#" + parts.fragment)
    if not match:
        raise ValueError(
            f"not an MLflow UI artifact URL (#/experiments/<e>/runs/<r>/artifactPath/<path>): {url!r}"
        )
    base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    return MlflowArtifactLink(base, match["experiment"], match["run"], match["path"])


def latest(runs: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The run that was queued/started last (REST runs carry ``run_after``)."""
    ordered = sorted(runs, key=lambda r: str(r.get("run_after") or r.get("start_date") or ""))
    return ordered[-1] if ordered else None


# --------------------------------------------------------------------------- REST helpers


def tries(api: AirflowAPI, ti: Mapping[str, Any]) -> list[dict]:
    """Every try of a task instance (the current one included)."""
    path = f"{ti_path(ti['dag_id'], ti['dag_run_id'], ti['task_id'])}/{ti['map_index']}/tries"
    return api.get(path)["task_instances"]


def task_log(api: AirflowAPI, ti: Mapping[str, Any], try_number: int) -> list[Any]:
    path = f"{ti_path(ti['dag_id'], ti['dag_run_id'], ti['task_id'])}/logs/{try_number}"
    return api.get(path, map_index=ti["map_index"], full_content="true")["content"]
