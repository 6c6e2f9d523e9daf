"""The routing document: what serving follows during a rollout (S3 ``rollout/routing.json``).

MLflow aliases say which versions exist (``champion``, ``challenger``, ``previous-champion``);
the routing document says how serving uses them right now: the stage (serving, shadow, canary,
guard), which version is under evaluation (``subject``) against which incumbent
(``baseline``), the canary's share of served frames and the share of frames scored in shadow.
Every change gets the next ``sequence`` and is written twice: first write-once to
``rollout/history/<sequence:08d>.json`` (the history is the audit trail, and a second,
different change claiming the same sequence fails there), then over ``rollout/routing.json``
with a conditional write on the ETag read before (compare-and-set: a writer that lost a race
fails instead of overwriting). The rollout guard's transitions
(:mod:`driftloop.promotion.rollout`) are the only writers.

The serving side reads the document with :func:`read_routing` and serves it only when
:func:`consistent_with_aliases` says the document's versions are the alias holders its stage
implies; otherwise (a change half done: aliases moved, document not yet written) it serves the
``champion`` alias alone. No document means stage serving. :func:`frame_bucket` places a frame
in [0, 1) by a stable hash of its id, so a frame is in the canary or the shadow sample on every
run and in every process.

Imports the standard library only (boto3 clients are passed in).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

ROUTING_KEY = "rollout/routing.json"
HISTORY_PREFIX = "rollout/history/"
FORMAT = 1
SERVING, SHADOW, CANARY, GUARD = "serving", "shadow", "canary", "guard"
STAGES = (SERVING, SHADOW, CANARY, GUARD)
# alias names as in driftloop.promotion.registry (not imported: this module stays stdlib-only
# for the serving side)
_CHAMPION, _CHALLENGER, _PREVIOUS = "champion", "challenger", "previous-champion"


class RoutingMoved(RuntimeError):
    """The routing document is not where the change expected it: another change came first.
    Nothing was written; a retry cannot fix it."""


def history_key(sequence: int) -> str:
    return f"{HISTORY_PREFIX}{int(sequence):08d}.json"


def frame_bucket(image_id: str) -> float:
    """A frame's stable place in [0, 1): the first 8 bytes of sha256(image_id), big-endian,
    divided by 2**64. A frame is in a share ``s`` of frames when ``frame_bucket(id) < s``."""
    digest = hashlib.sha256(str(image_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def utc_now_text() -> str:
    """The wall clock as the document writes it: ``2026-11-30T10:15:00Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rollout_id_for(subject: str, moment: str) -> str:
    """``rollout-<subject>-<YYYYMMDDTHHMMSSZ>`` from an ``updated_at`` text."""
    stamp = moment.replace("-", "").replace(":", "")
    return f"rollout-{subject}-{stamp}"


@dataclass(frozen=True)
class RoutingDoc:
    """One version of the routing document (field order = the JSON's key order). Built with
    the ``next_*_doc`` functions or :meth:`from_dict`; both check the stage's invariants."""

    format: int
    model: str
    sequence: int
    stage: str
    champion: str
    subject: str | None
    baseline: str | None
    share: float
    shadow_share: float
    rollout_id: str | None
    updated_at: str
    updated_by: str
    reason: str

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError(f"routing document: {'; '.join(problems)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        """The stored bytes: the same document always gives the same bytes (a re-run's
        write-once history write is then a no-op)."""
        return (json.dumps(self.to_dict(), indent=2) + "\n").encode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = ROUTING_KEY) -> RoutingDoc:
        """A document read from ``source``; a missing, unknown or mistyped key is a ValueError
        naming the source and the key."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: the routing document must be a JSON object")
        names = [f.name for f in fields(cls)]
        missing = [name for name in names if name not in data]
        unknown = sorted(set(data) - set(names))
        if missing or unknown:
            raise ValueError(f"{source}: missing keys {missing}, unknown keys {unknown}")
        if data["format"] != FORMAT:
            raise ValueError(f"{source}: 'format' {data['format']!r} unknown (expected {FORMAT})")
        try:
            return cls(
                format=FORMAT,
                model=_text(data, "model"),
                sequence=_count(data, "sequence"),
                stage=_text(data, "stage"),
                champion=_text(data, "champion"),
                subject=_text(data, "subject", optional=True),
                baseline=_text(data, "baseline", optional=True),
                share=_fraction(data, "share"),
                shadow_share=_fraction(data, "shadow_share"),
                rollout_id=_text(data, "rollout_id", optional=True),
                updated_at=_text(data, "updated_at"),
                updated_by=_text(data, "updated_by"),
                reason=str(data["reason"]),
            )
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    def summary(self) -> str:
        """One line for a task's log and XCom: the stage and who serves what."""
        if self.stage == SERVING:
            return f"#{self.sequence} serving: v{self.champion} serves alone"
        text = {
            SHADOW: f"v{self.subject} shadows v{self.baseline} on {self.shadow_share:.0%} of frames",
            CANARY: f"v{self.subject} serves {self.share:.0%} of frames (paired with v{self.baseline})",
            GUARD: f"v{self.subject} serves, v{self.baseline} shadows {self.shadow_share:.0%}",
        }[self.stage]
        return f"#{self.sequence} {self.stage} ({self.rollout_id}): {text}"


def _text(data: Mapping[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = data[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise ValueError(f"{key!r} must be a non-empty string, got {value!r}")
    return str(value)


def _count(data: Mapping[str, Any], key: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key!r} must be an integer, got {value!r}")
    return value


def _fraction(data: Mapping[str, Any], key: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key!r} must be a number, got {value!r}")
    return float(value)


def _problems(doc: RoutingDoc) -> list[str]:
    """What breaks the stage's invariants (the spec's meaning of each field per stage)."""
    problems = []
    if doc.stage not in STAGES:
        return [f"'stage' must be one of {STAGES}, got {doc.stage!r}"]
    if doc.sequence < 1:
        problems.append(f"'sequence' must be >= 1, got {doc.sequence}")
    for name in ("share", "shadow_share"):
        if not 0.0 <= getattr(doc, name) <= 1.0:
            problems.append(f"{name!r} must be within [0, 1], got {getattr(doc, name)}")
    evaluated = (doc.subject, doc.baseline, doc.rollout_id)
    if doc.stage == SERVING:
        if evaluated != (None, None, None) or doc.share or doc.shadow_share:
            problems.append("stage serving has no subject, baseline, rollout_id or shares")
        return problems
    if None in evaluated:
        problems.append(f"stage {doc.stage} needs subject, baseline and rollout_id")
    if doc.subject == doc.baseline:
        problems.append(f"subject and baseline are both v{doc.subject}")
    incumbent = doc.subject if doc.stage == GUARD else doc.baseline
    if doc.champion != incumbent:
        role = "subject" if doc.stage == GUARD else "baseline"
        problems.append(f"stage {doc.stage}: champion v{doc.champion} must be the {role}")
    if doc.stage == CANARY:
        if not 0 < doc.share < 1 or doc.shadow_share != doc.share:
            problems.append("stage canary needs 0 < share < 1 and shadow_share == share")
    elif doc.share:
        problems.append(f"stage {doc.stage} has share 0 (only the canary serves the subject)")
    elif not doc.shadow_share:
        problems.append(f"stage {doc.stage} needs shadow_share > 0")
    return problems


# -- building the next document --------------------------------------------------------------


@dataclass(frozen=True)
class Stamp:
    """Who changes the document (``updated_by``), why, and when (wall clock, UTC)."""

    by: str
    reason: str
    at: str = field(default_factory=lambda: utc_now_text())


def _next(
    current: RoutingDoc | None, model: str, stamp: Stamp, stage: str, champion: str, **roles
) -> RoutingDoc:
    # one document per bucket: a change for another registered model takes it over (the
    # sequence goes on), as the bucket's serving now follows that model
    evaluated = {"subject": None, "baseline": None, "rollout_id": None}
    return RoutingDoc(
        format=FORMAT,
        model=model,
        sequence=(current.sequence if current else 0) + 1,
        stage=stage,
        champion=str(champion),
        **{**evaluated, "share": 0.0, "shadow_share": 0.0, **roles},
        updated_at=stamp.at,
        updated_by=stamp.by,
        reason=stamp.reason,
    )


def next_serving_doc(
    current: RoutingDoc | None, stamp: Stamp, *, model: str, champion: str
) -> RoutingDoc:
    """The champion serves alone (the end of a rollout, a rejection, a rollback)."""
    return _next(current, model, stamp, SERVING, champion)


def next_shadow_doc(
    current: RoutingDoc | None,
    stamp: Stamp,
    *,
    model: str,
    champion: str,
    challenger: str,
    shadow_share: float = 1.0,
) -> RoutingDoc:
    """A rollout starts: the champion serves every frame, the challenger scores them too."""
    subject, baseline = str(challenger), str(champion)
    rollout_id = rollout_id_for(subject, stamp.at)
    return _next(
        current,
        model,
        stamp,
        SHADOW,
        baseline,
        subject=subject,
        baseline=baseline,
        shadow_share=float(shadow_share),
        rollout_id=rollout_id,
    )


def next_canary_doc(current: RoutingDoc, stamp: Stamp, *, share: float) -> RoutingDoc:
    """Shadow passed: the challenger serves ``share`` of the frames, each also scored by the
    champion (the same rollout)."""
    if current.stage != SHADOW:
        raise ValueError(f"a canary follows stage shadow, not {current.stage}")
    roles = {"subject": current.subject, "baseline": current.baseline}
    return _next(
        current,
        current.model,
        stamp,
        CANARY,
        current.champion,
        **roles,
        share=float(share),
        shadow_share=float(share),
        rollout_id=current.rollout_id,
    )


def next_guard_doc(
    current: RoutingDoc | None,
    stamp: Stamp,
    *,
    model: str,
    champion: str,
    previous: str,
    shadow_share: float,
    rollout_id: str | None = None,
) -> RoutingDoc:
    """A new champion serves; the previous one scores ``shadow_share`` of the frames until the
    guard period ends. ``rollout_id``: the challenger's rollout that led here (else a new one)."""
    subject = str(champion)
    rollout_id = rollout_id or rollout_id_for(subject, stamp.at)
    return _next(
        current,
        model,
        stamp,
        GUARD,
        subject,
        subject=subject,
        baseline=str(previous),
        shadow_share=float(shadow_share),
        rollout_id=rollout_id,
    )


# -- what serving may follow ------------------------------------------------------------------


def consistent_with_aliases(doc: RoutingDoc | None, aliases: Mapping[str, str]) -> bool:
    """Whether serving may follow ``doc``: its champion holds the ``champion`` alias and its
    subject and baseline hold the aliases its stage implies (shadow, canary: ``challenger`` =
    subject, ``champion`` = baseline; guard: ``champion`` = subject, ``previous-champion`` =
    baseline). When not, the scorer serves the ``champion`` alias alone. No document: True
    (stage serving)."""
    if doc is None:
        return True
    held = {alias: str(version) for alias, version in aliases.items()}
    if held.get(_CHAMPION) != doc.champion:
        return False
    if doc.stage in (SHADOW, CANARY):
        return held.get(_CHALLENGER) == doc.subject and held.get(_CHAMPION) == doc.baseline
    if doc.stage == GUARD:
        return held.get(_CHAMPION) == doc.subject and held.get(_PREVIOUS) == doc.baseline
    return True


def disagreement(doc: RoutingDoc | None, aliases: Mapping[str, str]) -> str:
    """Why :func:`consistent_with_aliases` is False, in words ("" when it is True)."""
    if consistent_with_aliases(doc, aliases):
        return ""
    assert doc is not None
    roles = {
        SHADOW: (_CHALLENGER, _CHAMPION),
        CANARY: (_CHALLENGER, _CHAMPION),
        GUARD: (_CHAMPION, _PREVIOUS),
    }.get(doc.stage)
    wanted = f"champion=v{doc.champion}"
    if roles:
        wanted += f", {roles[0]}=v{doc.subject}, {roles[1]}=v{doc.baseline}"
    return (
        f"routing document #{doc.sequence} (stage {doc.stage}) needs {wanted}; "
        f"the registry holds {dict(aliases) or 'no aliases'}"
    )


# -- S3 --------------------------------------------------------------------------------------


def _no_such_key(err: BaseException) -> bool:
    # only the store's "this key does not exist" is absence: a missing bucket, a 403 or a
    # 500 must fail, or serving would fall back to "no rollout" on a broken store
    response = getattr(err, "response", None)
    return isinstance(response, dict) and response.get("Error", {}).get("Code") == "NoSuchKey"


def _read(s3, bucket: str) -> tuple[RoutingDoc | None, str | None]:
    """The current document and its ETag; (None, None) only when S3 says NoSuchKey."""
    try:
        obj = s3.get_object(Bucket=bucket, Key=ROUTING_KEY)
    except Exception as err:
        if _no_such_key(err):
            return None, None
        raise
    body = obj["Body"].read()
    try:
        data = json.loads(body)
    except ValueError as err:
        raise ValueError(f"s3://{bucket}/{ROUTING_KEY}: not valid JSON: {err}") from None
    return RoutingDoc.from_dict(data, f"s3://{bucket}/{ROUTING_KEY}"), obj["ETag"]


def read_routing(s3, bucket: str) -> RoutingDoc | None:
    """The routing document; None only when S3 says the key does not exist (NoSuchKey). Any
    other error is raised; a malformed document is a ValueError naming the key."""
    return _read(s3, bucket)[0]


def read_history(s3, bucket: str, sequence: int) -> RoutingDoc | None:
    """History entry ``sequence``; None only on NoSuchKey."""
    key = history_key(sequence)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as err:
        if _no_such_key(err):
            return None
        raise
    return RoutingDoc.from_dict(json.loads(body), f"s3://{bucket}/{key}")


def write_routing(s3, bucket: str, doc: RoutingDoc) -> str:
    """Write ``doc``: history entry first (write-once), then ``rollout/routing.json``,
    conditionally on the document it replaces (``sequence - 1``, or none for the first).

    Idempotent: a re-run with the same document finds its history entry (same bytes) and a
    current document equal to it, and writes nothing. :class:`RoutingMoved` when the current
    document is neither the predecessor nor ``doc`` (another change came first), or when S3
    refuses the conditional write (another writer in between);
    :class:`~driftloop.contracts.storage.WriteOnceViolation` when the history entry holds
    another change of the same sequence."""
    from driftloop.contracts.storage import put_once

    where = f"s3://{bucket}/{ROUTING_KEY}"
    current, etag = _read(s3, bucket)
    if current == doc:
        put_once(s3, bucket, history_key(doc.sequence), doc.to_json(), "application/json")
        return where
    seen = 0 if current is None else current.sequence
    if seen != doc.sequence - 1:
        raise RoutingMoved(
            f"{where} is at sequence {seen}"
            + ("" if current is None else f" ({current.stage}, by {current.updated_by})")
            + f"; document #{doc.sequence} ({doc.stage}) was built on #{doc.sequence - 1}"
        )
    put_once(s3, bucket, history_key(doc.sequence), doc.to_json(), "application/json")
    condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
    try:
        s3.put_object(
            Bucket=bucket,
            Key=ROUTING_KEY,
            Body=doc.to_json(),
            ContentType="application/json",
            **condition,
        )
    except Exception as err:
        response = getattr(err, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
            raise RoutingMoved(
                f"{where} changed while document #{doc.sequence} was written: {code or status}"
            ) from err
        raise
    return where
