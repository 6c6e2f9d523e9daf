"""The Slack messages of the loop's events: one pure function of a dict per kind.

The same message goes out from a task (a drift warning, a drift event opened), from a task's
success or failure callback (promotion, rejection, rollback, a failed task) and from the
rollout guard (a stage change, an automatic rollback). Built from plain data, it reads the
same wherever it was sent from, and it is tested without Airflow, a webhook or a clock.

Each message names the model version(s), the DAG run, the reason and its numbers, and links
the Airflow run, the MLflow model version and the drift report when the payload has them.
It is a Slack incoming-webhook body: ``text`` (the notification itself, and what a client
that renders no blocks shows) and Block Kit ``blocks`` (a header, the facts, the links).
Values are escaped for Slack's mrkdwn, so a feature name or a reason can never turn into a
link or a mention; links other than http(s) are left out; long parts are cut to Slack's
block limits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

KINDS = (
    "drift_warning",
    "drift_critical",
    "promotion",
    "rejection",
    "rollback",
    "rollout_stage",
    "task_failure",
)

#: Slack's Block Kit limits (characters): header text, a section's text, a field
HEADER_MAX, SECTION_MAX, FIELD_MAX = 150, 3000, 2000
#: list items shown before "… and N more" (features, reasons, checks)
MAX_ITEMS = 10
#: characters of an exception message shown in a task failure
EXCEPTION_MAX = 800


@dataclass
class _Parts:
    """What a kind's builder says; :func:`build_message` lays it out."""

    emoji: str
    title: str
    lines: list[str] = field(default_factory=list)  # mrkdwn, already escaped
    fields: list[tuple[str, str]] = field(default_factory=list)  # (label, escaped value)


def build_message(kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook body (``text`` and ``blocks``) of an event of ``kind`` (one of
    :data:`KINDS`) described by ``payload``.

    Keys every kind may carry: ``model`` (registered model), ``dag_id``, ``run_id``,
    ``task_id``, ``airflow_url`` (the DAG run), ``mlflow_url`` (the model version),
    ``report_url`` (the drift report), ``drift_event_id``. Each builder below names the keys
    its kind needs; a missing one raises ``ValueError`` naming the kind and the key."""
    try:
        builder = _BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown notification kind {kind!r}; expected one of {KINDS}") from None
    if not isinstance(payload, Mapping):
        raise ValueError(f"{kind} notification: the payload must be a mapping")
    parts = builder(payload)
    links = _links(payload)
    run = _run_line(payload)
    header = _cut(f"{parts.emoji} {parts.title}", HEADER_MAX)
    body = "\n".join(parts.lines)
    text_lines = [f"*{escape(parts.title)}*", *parts.lines]
    text_lines += [f"{label}: {value}" for label, value in parts.fields]
    if run:
        text_lines.append(run)
    if links:
        text_lines.append(" · ".join(links))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}
    ]
    if body:
        blocks.append({"type": "section", "text": _mrkdwn(_cut(body, SECTION_MAX))})
    if parts.fields:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    _mrkdwn(_cut(f"*{escape(label)}*\n{value}", FIELD_MAX))
                    for label, value in parts.fields[:MAX_ITEMS]
                ],
            }
        )
    context = [item for item in (run, " · ".join(links)) if item]
    if context:
        blocks.append(
            {"type": "context", "elements": [_mrkdwn(_cut(c, FIELD_MAX)) for c in context]}
        )
    return {"text": _cut(f"{parts.emoji} " + "\n".join(text_lines), SECTION_MAX), "blocks": blocks}


# ------------------------------------------------------------------------------ kinds
def _drift_warning(p: Mapping[str, Any]) -> _Parts:
    window = _window(p, "drift_warning")
    parts = _Parts(":warning:", f"Drift warning: {_model(p)}, window {window}")
    features = list(p.get("features") or [])
    if features or not _performance(p):
        parts.lines.append(f"{len(features)} feature(s) beyond the warning threshold:")
        parts.lines += _bullets([_feature(f) for f in features])
    _performance_line(parts, p)
    _reference_field(parts, p)
    return parts


def _drift_critical(p: Mapping[str, Any]) -> _Parts:
    window = _window(p, "drift_critical")
    event = _require(p, "drift_critical", "drift_event_id")
    parts = _Parts(":rotating_light:", f"Critical drift: drift event {event}, window {window}")
    # the features with their effects when given, else the drifted features' names
    features = list(p.get("features") or p.get("drifted_features") or [])
    if features or not _performance(p):
        parts.lines.append(f"Drifted features ({len(features)}):")
        parts.lines += _bullets([_feature(f) for f in features])
    _performance_line(parts, p)
    if p.get("approval") == "required":
        parts.lines.append("An operator's answer is requested (Airflow *Required actions*).")
    elif p.get("approval"):
        parts.lines.append("The policy needs no approval: the drift is confirmed for retraining.")
    parts.fields.append(("Drift event", escape(event)))
    _reference_field(parts, p)
    return parts


def _promotion(p: Mapping[str, Any]) -> _Parts:
    version = _require(p, "promotion", "version")
    target = str(p.get("target") or "champion")
    parts = _Parts(":trophy:", f"Promoted: {_model(p)} v{version} is {target}")
    previous = p.get("previous_version")
    replaced = f", replacing v{escape(previous)}" if previous else " (no champion before)"
    parts.lines.append(f"v{escape(version)} now holds the `{escape(target)}` alias{replaced}.")
    _reason(parts, p)
    parts.lines += _checks(p.get("checks"))
    parts.fields += [(target.capitalize(), f"v{escape(version)}")]
    if previous:
        parts.fields.append(("Previous", f"v{escape(previous)}"))
    _actor_and_event(parts, p)
    return parts


def _rejection(p: Mapping[str, Any]) -> _Parts:
    version = _require(p, "rejection", "version")
    parts = _Parts(":no_entry:", f"Rejected: {_model(p)} v{version}")
    champion = p.get("champion_version")
    kept = f"v{escape(champion)} stays champion" if champion else "no champion was changed"
    where = f" in stage `{escape(p['stage'])}`" if p.get("stage") else ""
    parts.lines.append(f"v{escape(version)} was not promoted{where}; {kept}.")
    reasons = [escape(r) for r in p.get("reasons") or []]
    if reasons:
        parts.lines.append("Reasons:")
        parts.lines += _bullets(reasons)
    _reason(parts, p)
    parts.lines += _checks(p.get("checks"), failed_only=True)
    parts.fields.append(("Candidate", f"v{escape(version)}"))
    if champion:
        parts.fields.append(("Champion", f"v{escape(champion)}"))
    _actor_and_event(parts, p)
    return parts


def _rollback(p: Mapping[str, Any]) -> _Parts:
    withdrawn = _require(p, "rollback", "withdrawn")
    restored = _require(p, "rollback", "restored")
    mode = str(p.get("mode") or "manual")
    parts = _Parts(
        ":leftwards_arrow_with_hook:",
        f"Rollback ({mode}): {_model(p)} v{withdrawn} withdrawn, v{restored} is champion again",
    )
    parts.lines.append(
        f"`champion` moved back from v{escape(withdrawn)} to v{escape(restored)} ({escape(mode)})."
    )
    _reason(parts, p)
    parts.lines += _checks(p.get("checks"), failed_only=True)
    parts.fields += [("Withdrawn", f"v{escape(withdrawn)}"), ("Restored", f"v{escape(restored)}")]
    _actor_and_event(parts, p)
    return parts


def _rollout_stage(p: Mapping[str, Any]) -> _Parts:
    subject = _require(p, "rollout_stage", "subject")
    to_stage = _require(p, "rollout_stage", "to_stage")
    from_stage = p.get("from_stage")
    move = f"{from_stage} → {to_stage}" if from_stage else str(to_stage)
    parts = _Parts(":twisted_rightwards_arrows:", f"Rollout: {_model(p)} v{subject} {move}")
    baseline = p.get("baseline")
    against = f" against v{escape(baseline)}" if baseline else ""
    parts.lines.append(f"v{escape(subject)} is now in `{escape(to_stage)}`{against}.")
    share = _float(p.get("share"))
    if share is not None and share > 0:
        parts.lines.append(f"It serves {share:.0%} of the frames.")
    if p.get("verdict"):
        parts.lines.append(f"Verdict of the stage before: *{escape(p['verdict'])}*.")
    _reason(parts, p)
    parts.lines += _checks(p.get("checks"))
    parts.fields.append(("Subject", f"v{escape(subject)}"))
    if baseline:
        parts.fields.append(("Baseline", f"v{escape(baseline)}"))
    if p.get("rollout_id"):
        parts.fields.append(("Rollout", f"`{escape(p['rollout_id'])}`"))
    if p.get("sequence") is not None:
        parts.fields.append(("Routing sequence", escape(p["sequence"])))
    _actor_and_event(parts, p)
    return parts


def _task_failure(p: Mapping[str, Any]) -> _Parts:
    dag_id = _require(p, "task_failure", "dag_id")
    task_id = _require(p, "task_failure", "task_id")
    _require(p, "task_failure", "run_id")
    parts = _Parts(":x:", f"Task failed: {dag_id}.{task_id}")
    tries = f" after try {escape(p['try_number'])}" if p.get("try_number") else ""
    parts.lines.append(f"`{escape(task_id)}` of `{escape(dag_id)}` failed{tries}.")
    if p.get("exception"):
        message = _cut(str(p["exception"]), EXCEPTION_MAX).replace("```", "'''")
        parts.lines.append(f"```{escape(message)}```")
    if p.get("log_url") and _safe_url(p["log_url"]):
        parts.lines.append(f"<{_url(p['log_url'])}|Task log>")
    if p.get("version"):
        parts.fields.append(("Model version", f"v{escape(p['version'])}"))
    _actor_and_event(parts, p)
    return parts


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], _Parts]] = {
    "drift_warning": _drift_warning,
    "drift_critical": _drift_critical,
    "promotion": _promotion,
    "rejection": _rejection,
    "rollback": _rollback,
    "rollout_stage": _rollout_stage,
    "task_failure": _task_failure,
}
assert set(_BUILDERS) == set(KINDS)


# ---------------------------------------------------------------------------- pieces
def escape(value: Any) -> str:
    """``value`` as mrkdwn text: ``&``, ``<`` and ``>`` escaped (Slack's rule), so that no
    value can open a link, a mention or a channel reference."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _require(p: Mapping[str, Any], kind: str, key: str) -> Any:
    value = p.get(key)
    if value is None or value == "":
        raise ValueError(f"{kind} notification: the payload has no {key!r}")
    return value


def _model(p: Mapping[str, Any]) -> str:
    return str(p.get("model") or "the detector")


def _window(p: Mapping[str, Any], kind: str) -> str:
    window = _require(p, kind, "window")
    if not isinstance(window, Mapping) or not window.get("start") or not window.get("end"):
        raise ValueError(f"{kind} notification: 'window' needs 'start' and 'end'")
    return f"{window['start']}..{window['end']}"


def _feature(f: Any) -> str:
    """``name method=effect (level)`` of a decision's feature dict, or a plain name."""
    if not isinstance(f, Mapping):
        return f"`{escape(f)}`"
    name = escape(f.get("feature", "?"))
    effect = _number(f.get("effect"))
    method = escape(f.get("method") or "effect")
    level = f.get("alert_level") or f.get("level")
    return f"`{name}` {method}={effect}" + (f" ({escape(level)})" if level else "")


def _performance(p: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The decision's performance verdict when it alerts (``performance``), else None."""
    perf = p.get("performance")
    if isinstance(perf, Mapping) and perf.get("level") not in (None, "none"):
        return perf
    return None


def _performance_line(parts: _Parts, p: Mapping[str, Any]) -> None:
    """The champion's accuracy drop: metric, drop, value vs its evaluation, cameras, days."""
    perf = _performance(p)
    if perf is None:
        return
    cameras = [str(c) for c in perf.get("breaching_cameras") or [] if c != "*"]
    where = (
        "camera(s) " + ", ".join(f"`{escape(c)}`" for c in cameras) if cameras else "all cameras"
    )
    days = ", ".join(escape(d) for d in (perf.get("breaching_days") or [])[:MAX_ITEMS])
    parts.lines.append(
        f"Accuracy drop ({escape(perf['level'])}): {escape(perf.get('metric') or 'mAP')} "
        f"{_number(perf.get('measured'))} vs the champion's {_number(perf.get('baseline'))} "
        f"(down {_number(perf.get('drop'))}) on {where}" + (f", days {days}" if days else "")
    )


def _reference_field(parts: _Parts, p: Mapping[str, Any]) -> None:
    reference = p.get("reference")
    if isinstance(reference, Mapping) and reference.get("kind"):
        described = str(reference["kind"])
        if reference.get("model_version"):
            described += f" (v{reference['model_version']})"
        elif reference.get("rule"):
            described += f" ({reference['rule']})"
        parts.fields.append(("Reference", escape(described)))
    if p.get("model_version"):
        parts.fields.append(("Champion", f"v{escape(p['model_version'])}"))


def _reason(parts: _Parts, p: Mapping[str, Any]) -> None:
    if p.get("reason"):
        parts.lines.append(f"Reason: {escape(p['reason'])}")


def _actor_and_event(parts: _Parts, p: Mapping[str, Any]) -> None:
    if p.get("actor"):
        parts.fields.append(("By", escape(p["actor"])))
    if p.get("drift_event_id"):
        parts.fields.append(("Drift event", escape(p["drift_event_id"])))


def _checks(checks: Any, *, failed_only: bool = False) -> list[str]:
    """One line per check of a gate decision (``passed``, ``value``, ``op``, ``threshold``)
    or a rollout stage (``status``, ``estimate``, ``low``, ``high``, ``threshold``)."""
    rows = []
    for check in checks or []:
        if not isinstance(check, Mapping):
            continue
        status = check.get("status")
        if status is None and "passed" in check:
            status = "pass" if check["passed"] else "fail"
        if failed_only and status not in ("fail", "failed"):
            continue
        value = check.get("estimate", check.get("value"))
        line = f"`{escape(check.get('name', '?'))}`"
        if check.get("camera") not in (None, "all"):
            line += f" [{escape(check['camera'])}]"
        line += f" {escape(str(status or '').upper())} {_number(value)}"
        if check.get("low") is not None or check.get("high") is not None:
            line += f" (CI {_number(check.get('low'))}..{_number(check.get('high'))})"
        if check.get("threshold") is not None:
            line += f", threshold {escape(check.get('op') or '')}{_number(check['threshold'])}"
        rows.append(line)
    if not rows:
        return []
    return ["Checks:", *_bullets(rows)]


def _bullets(items: Sequence[str]) -> list[str]:
    shown = [f"• {item}" for item in items[:MAX_ITEMS]]
    if len(items) > MAX_ITEMS:
        shown.append(f"… and {len(items) - MAX_ITEMS} more")
    return shown


def _run_line(p: Mapping[str, Any]) -> str:
    if not p.get("dag_id") or not p.get("run_id"):
        return ""
    task = f" / `{escape(p['task_id'])}`" if p.get("task_id") else ""
    return f"Run `{escape(p['dag_id'])}` / `{escape(p['run_id'])}`{task}"


_LINKS = (
    ("airflow_url", "Airflow run"),
    ("mlflow_url", "MLflow model version"),
    ("mlflow_run_url", "MLflow run"),
    ("report_url", "Drift report"),
)


def _links(p: Mapping[str, Any]) -> list[str]:
    return [f"<{_url(p[key])}|{label}>" for key, label in _LINKS if _safe_url(p.get(key))]


def _safe_url(value: Any) -> bool:
    """An http(s) URL with a host and nothing that would end Slack's ``<url|label>``."""
    if not isinstance(value, str) or any(c in value for c in "<>| \n\t"):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _url(value: str) -> str:
    return value.replace("&", "&amp;")  # Slack's escaping applies inside links too


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _number(value: Any) -> str:
    number = _float(value)
    if number is None:
        return "n/a"
    if number.is_integer() and abs(number) >= 1:
        return str(int(number))
    return f"{number:.4g}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}
