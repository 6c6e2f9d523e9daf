"""The pure parts: the stack's Airflow login and MLflow URL, UI URLs, task-log summaries, extra
links, MLflow artifact URLs, the rollout's DAGs, stages and aliases (unit-tested without a
browser)."""

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
    ROLLOUT_STAGES,
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


def read_mlflow_url(root: Path) -> str | None:
    """``stack.json``'s ``urls.mlflow`` of the stack under ``root`` (None: no MLflow)."""
    state = json.loads((root / "stack.json").read_text())
    url = (state.get("urls") or {}).get("mlflow")
    return url.rstrip("/") if url else None


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


# --------------------------------------------------------------------------- the rollout


def dag_problems(expected: Iterable[str], dags: Iterable[Mapping[str, Any]]) -> list[str]:
    """What keeps the ``expected`` DAGs from running, from the REST ``dags`` list: not listed
    (not parsed), import errors, paused."""
    by_id = {d["dag_id"]: d for d in dags}
    problems = []
    for dag_id in expected:
        dag = by_id.get(dag_id)
        if dag is None:
            problems.append(f"{dag_id} is not listed")
            continue
        if dag.get("has_import_errors"):
            problems.append(f"{dag_id} has import errors")
        if dag.get("is_paused"):
            problems.append(f"{dag_id} is paused")
    return problems


_STAGE_SUMMARY = re.compile(r"^#\d+ (?P<stage>serving|shadow|canary|guard)\b")


def stage_of(summary: Any) -> str | None:
    """The stage that rollout_guard's ``routing`` task pushed as its XCom ``rollout_stage``:
    ``"serving"`` (no rollout) or ``RoutingDoc.summary()`` (``"#2 shadow (rollout-3-…): v3
    shadows v2 on 100% of frames"``); None when the value names no stage."""
    text = str(summary or "").strip()
    if text == "serving":
        return text
    match = _STAGE_SUMMARY.match(text)
    return match["stage"] if match else None


def pick_stage_run(summaries: Iterable[tuple[str, Any]]) -> tuple[str, str] | None:
    """From ``(run_id, rollout_stage XCom)`` pairs, newest run first: the first run in a
    rollout stage (shadow, canary, guard), else the first with any stage (serving), else None.
    Stops reading at the first rollout stage (the pairs may be fetched lazily)."""
    fallback = None
    for run_id, summary in summaries:
        stage = stage_of(summary)
        if stage in ROLLOUT_STAGES:
            return run_id, str(summary).strip()
        if stage is not None and fallback is None:
            fallback = (run_id, str(summary).strip())
    return fallback


def mlflow_model_url(base: str, name: str) -> str:
    """The MLflow UI's page of a registered model (its versions table)."""
    return f"{base.rstrip('/')}/#/models/{quote(name, safe='')}"


def parse_alias_tag(text: str) -> str:
    """An alias as the MLflow UI's tag shows it (``"@ champion"``, with a no-break space) → its
    name."""
    name = str(text).replace("\xa0", " ").strip()
    return name[1:].strip() if name.startswith("@") else name


_VERSION_HREF = re.compile(r"/versions/(?P<version>\d+)(?:[/?#]|$)")


def aliases_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """``{alias: version}`` from the rows of the MLflow UI's versions table, each
    ``{"href": <the version link>, "aliases": [<alias tag texts>]}``; rows without a version
    link (the header) are left out. ValueError when the UI shows one alias on two versions."""
    shown: dict[str, str] = {}
    for row in rows:
        match = _VERSION_HREF.search(str(row.get("href") or ""))
        if not match:
            continue
        for text in row.get("aliases") or ():
            alias = parse_alias_tag(text)
            if not alias:
                continue
            if alias in shown and shown[alias] != match["version"]:
                raise ValueError(
                    f"the MLflow UI shows alias {alias!r} on v{shown[alias]} "
                    f"and v{match['version']}"
                )
            shown[alias] = match["version"]
    return shown


def alias_problems(
    expected: Iterable[str], shown: Mapping[str, str], registry: Mapping[str, str]
) -> list[str]:
    """Where the MLflow UI (``shown``) and the registry as the MLflow client sees it
    (``registry``) disagree, and which ``expected`` alias either lacks."""
    problems = []
    expected = list(expected)
    for alias in dict.fromkeys([*expected, *shown, *registry]):
        held, ui = registry.get(alias), shown.get(alias)
        if ui == held:
            if held is None:  # expected, and on no version
                problems.append(f"alias {alias!r} is on no version (registry and MLflow UI)")
            continue
        if ui is None:
            problems.append(f"the MLflow UI shows no alias {alias!r} (the registry: v{held})")
        elif held is None:
            problems.append(f"the MLflow UI shows alias {alias!r} on v{ui}, the registry has none")
        else:
            problems.append(
                f"the MLflow UI shows alias {alias!r} on v{ui}, the registry on v{held}"
            )
    return problems
