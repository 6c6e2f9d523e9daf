"""Rollout state changes as guarded transactions between the registry, the routing document
and the ledger; and what the guard does next (:func:`next_action`).

Three stores hold the rollout's state: the MLflow aliases (which versions exist), the routing
document in S3 (:mod:`driftloop.promotion.routing`: how serving uses them) and the audit
ledger (what happened, why). None has transactions with the others, so every change of the
routing document — with or without an alias move before it — follows one protocol
(:func:`apply_change`), the one :mod:`driftloop.promotion.transactions` uses for aliases:

1. **done?** — the completion row (kind ``rollout``, idempotency key ``key``) exists: return it.
2. **intent** — a ``rollout_intent`` row ``<key>/intent`` fixes the whole change: the new
   document (its sequence, time stamp, rollout id), the sequence it replaces, the alias move
   and the version tags. A re-run reads the first attempt's intent and finishes exactly that.
3. **compare-and-set on the document** — the current document must be the one the change was
   decided on (``expected_sequence``) or already the new one (an earlier attempt wrote it);
   anything else → a ``rollout_aborted`` row and :class:`~driftloop.promotion.routing.RoutingMoved`.
4. **aliases** — the move, as its own guarded change (key ``<key>/aliases``: promotion,
   rejection or rollback rows, compare-and-set on the aliases the decision saw; a champion
   moved meanwhile → :class:`~driftloop.promotion.transactions.ChampionMoved`). Then the
   aliases must be what the new document names (:func:`~driftloop.promotion.routing.consistent_with_aliases`),
   also for a change that moves none (the compare-and-set on the aliases of a document-only
   change).
5. **document** — history entry (write-once) and ``rollout/routing.json`` (conditional write).
6. **complete** — the ``rollout`` row: the document, the evidence summary, the ledger ids of the
   intent and of the alias change.

After a failure at any point the stores agree or are finished by a re-run: before 4 nothing
moved; between 4 and 5 the aliases moved and the document is the old one, which then no
longer matches the aliases, so serving falls back to the ``champion`` alias alone (never half
of a change) until the re-run writes the document; between 5 and 6 the document is written
and the re-run only adds the completion row. A change whose DAG run is never re-run is
finished by the next guard run (:func:`finish_pending`), which finds its intent in the ledger
and its first effects in the registry or the history.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from driftloop.promotion.routing import (
    CANARY,
    GUARD,
    SERVING,
    SHADOW,
    RoutingDoc,
    RoutingMoved,
    consistent_with_aliases,
    disagreement,
    read_history,
    read_routing,
    write_routing,
)

HOLD, TO_CANARY, PROMOTE, REJECT, ROLLBACK, END_GUARD = (
    "hold",
    "to_canary",
    "promote",
    "reject",
    "rollback",
    "end_guard",
)
ACTIONS = (HOLD, TO_CANARY, PROMOTE, REJECT, ROLLBACK, END_GUARD)
VERDICTS = ("hold", "pass", "fail")
#: ledger kinds of a routing change
ROLLOUT, ROLLOUT_INTENT, ROLLOUT_ABORTED = "rollout", "rollout_intent", "rollout_aborted"
#: what each stage's verdict leads to (stage serving has nothing to judge: hold)
_NEXT = {
    SHADOW: {"hold": HOLD, "pass": TO_CANARY, "fail": REJECT},
    CANARY: {"hold": HOLD, "pass": PROMOTE, "fail": REJECT},
    GUARD: {"hold": HOLD, "pass": END_GUARD, "fail": ROLLBACK},
}


def verdict_of(comparison: Any) -> str:
    """The verdict of a :class:`StageComparison` or of its ``to_dict()``."""
    verdict = comparison.get("verdict") if isinstance(comparison, Mapping) else comparison.verdict
    if verdict not in VERDICTS:
        raise ValueError(f"stage verdict must be one of {VERDICTS}, got {verdict!r}")
    return verdict


def next_action(doc: RoutingDoc | None, comparison: Any) -> str:
    """What the guard does after a stage's comparison: shadow → ``to_canary`` or ``reject``,
    canary → ``promote`` or ``reject``, guard → ``end_guard`` or ``rollback``; ``hold`` while
    the evidence is not enough (and always in stage serving or without a document)."""
    verdict = verdict_of(comparison)
    if doc is None or doc.stage == SERVING:
        return HOLD
    return _NEXT[doc.stage][verdict]


def evidence_summary(comparison: Any) -> dict[str, Any] | None:
    """The verdict, frames, hours and the failing checks of a comparison (the ledger row's
    summary; the full evidence is recorded with the decision)."""
    if comparison is None:
        return None
    data = comparison if isinstance(comparison, Mapping) else comparison.to_dict()
    keep = ("name", "camera", "estimate", "low", "high", "threshold", "status")
    failed = [
        {k: check.get(k) for k in keep}
        for check in data.get("checks") or []
        if check.get("status") == "fail"
    ]
    return {
        "verdict": data.get("verdict"),
        "frames": data.get("frames"),
        "hours": data.get("hours"),
        "failed": failed,
    }


def failure_reasons(comparison: Any) -> list[str]:
    """The failing checks in words: ``latency_p95_ratio (all): 1.52 [1.41, 1.63] vs 1.1``."""
    summary = evidence_summary(comparison) or {"failed": []}

    def number(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)

    return [
        f"{c['name']} ({c['camera']}): {number(c['estimate'])} "
        f"[{number(c['low'])}, {number(c['high'])}] vs {number(c['threshold'])}"
        for c in summary["failed"]
    ]


# -- the guarded change -----------------------------------------------------------------------


@dataclass(frozen=True)
class Stores:
    """Where the rollout's state lives: MLflow client, ledger, S3 client and bucket, model."""

    client: Any
    book: Any
    s3: Any
    bucket: str
    model: str

    @classmethod
    def from_settings(cls, s3, settings) -> Stores:
        from driftloop.drift import tracking
        from driftloop.retrain.records import ledger

        client = tracking.client(settings.mlflow_tracking_uri)
        return cls(client, ledger(settings), s3, settings.bucket, settings.registered_model)

    def aliases(self) -> dict[str, str]:
        from driftloop.promotion import registry

        return registry.aliases(self.client, self.model)

    def subject(self, version: str) -> str:
        return f"model:{self.model}/v{version}"


@dataclass(frozen=True)
class RoutingChange:
    """One change of the routing document and the alias move that goes with it.

    ``version``: the version the change is about (the ledger rows' subject); ``move``: an
    :class:`~driftloop.promotion.transactions.AliasMove` made before the document is written;
    ``tags``: ``{version: {tag: value}}`` set with the move; ``details``: reason, evidence
    summary, … (into the ledger rows)."""

    action: str
    version: str
    doc: RoutingDoc
    expected_sequence: int | None
    move: Any = None
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        move = None
        if self.move is not None:
            move = {
                "kind": self.move.kind,
                "version": self.move.subject_version,
                **self.move.to_dict(),
            }
        return {
            "action": self.action,
            "version": self.version,
            "doc": self.doc.to_dict(),
            "expected_sequence": self.expected_sequence,
            "move": move,
            "tags": self.tags,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoutingChange:
        from driftloop.promotion.transactions import AliasMove

        doc = RoutingDoc.from_dict(data["doc"], "the rollout intent")
        raw = data.get("move")
        move = None
        if raw is not None:
            move = AliasMove(
                raw["kind"],
                doc.model,
                str(raw["version"]),
                dict(raw["expected"]),
                dict(raw["intended"]),
            )
        return cls(
            action=data["action"],
            version=str(data["version"]),
            doc=doc,
            expected_sequence=data.get("expected_sequence"),
            move=move,
            tags={v: dict(t) for v, t in (data.get("tags") or {}).items()},
            details=dict(data.get("details") or {}),
        )


def _done(entry) -> dict[str, Any]:
    return {**entry.payload, "ledger_id": entry.id, "already_done": True}


def apply_change(
    stores: Stores, *, key: str, actor: str, build: Callable[[], RoutingChange]
) -> dict[str, Any]:
    """Carry out the change ``build()`` describes with the protocol above (``build`` is called
    only when no attempt has recorded an intent yet). Returns the completion row's payload
    plus ``ledger_id`` and ``already_done``."""
    done = stores.book.get(key)
    if done is not None:
        return _done(done)
    intent = stores.book.get(f"{key}/intent")
    if intent is None:
        change = build()
        intent = stores.book.append(
            ROLLOUT_INTENT,
            actor=actor,
            subject=stores.subject(change.version),
            payload=change.to_dict(),
            idempotency_key=f"{key}/intent",
        )
    return _finish(stores, key, actor, intent)


def _finish(stores: Stores, key: str, actor: str, intent) -> dict[str, Any]:
    from driftloop.promotion.transactions import ChampionMoved

    change = RoutingChange.from_dict(intent.payload)  # the first attempt's intent wins
    current = read_routing(stores.s3, stores.bucket)
    seen = None if current is None else current.sequence
    if current != change.doc and seen != change.expected_sequence:
        _abort(
            stores, key, actor, change, {"routing": None if current is None else current.to_dict()}
        )
        raise RoutingMoved(
            f"the routing document is at #{seen} "
            + ("" if current is None else f"({current.summary()}, by {current.updated_by})")
            + f"; this {change.action} was decided on #{change.expected_sequence}: nothing moved"
        )
    moved = None
    if change.move is not None:
        try:
            moved = _move_aliases(stores, f"{key}/aliases", actor, change)
        except ChampionMoved as err:
            _abort(stores, key, actor, change, {"aliases": stores.aliases(), "error": str(err)})
            raise
    aliases = stores.aliases()
    if not consistent_with_aliases(change.doc, aliases):
        _abort(stores, key, actor, change, {"aliases": aliases})
        raise ChampionMoved(f"{disagreement(change.doc, aliases)}: this {change.action} stops")
    if change.move is None:  # with a move, its guarded change sets the tags
        from driftloop.promotion import registry

        for version, tags in change.tags.items():
            registry.set_tags(stores.client, stores.model, version, tags)
    write_routing(stores.s3, stores.bucket, change.doc)
    entry = stores.book.append(
        ROLLOUT,
        actor=actor,
        subject=stores.subject(change.version),
        payload={
            "action": change.action,
            "doc": change.doc.to_dict(),
            **change.details,
            "intent_ledger_id": intent.id,
            "alias_change_ledger_id": None if moved is None else moved["ledger_id"],
        },
        idempotency_key=key,
    )
    return {**entry.payload, "ledger_id": entry.id, "already_done": False}


def _move_aliases(stores: Stores, key: str, actor: str, change: RoutingChange) -> dict:
    from driftloop.promotion import transactions
    from driftloop.promotion.rollback import guarded_rollback

    move = change.move
    if move.kind == transactions.ROLLBACK:  # the one rollback function, as rollback_detector's
        withdrawn = str(move.expected["champion"])
        return guarded_rollback(
            stores.client,
            stores.book,
            stores.model,
            key=key,
            actor=actor,
            reason=str(change.details.get("reason", "")),
            expected=move.expected,
            withdrawn_tags=change.tags.get(withdrawn, {}),
            details=change.details,
        )
    return transactions.guarded_move(
        stores.client,
        stores.book,
        move,
        key=key,
        actor=actor,
        details=change.details,
        tags=lambda m: change.tags,
    )


def _abort(stores: Stores, key: str, actor: str, change: RoutingChange, found: dict) -> None:
    stores.book.append(
        ROLLOUT_ABORTED,
        actor=actor,
        subject=stores.subject(change.version),
        payload={"action": change.action, "doc": change.doc.to_dict(), "found": found},
        idempotency_key=f"{key}/aborted",
    )


def finish_pending(stores: Stores) -> dict[str, Any] | None:
    """Finish a change that an earlier run left half done and nobody re-ran: an intent built on
    the current document, without completion or abort, whose aliases were already touched
    (its ``<key>/aliases/intent`` row exists) or whose document is already in the history.
    Returns its completion (None: nothing pending). An intent that moved nothing yet is left
    alone: it is stale the moment another change is written."""
    current = read_routing(stores.s3, stores.bucket)
    seen = None if current is None else current.sequence
    written = read_history(stores.s3, stores.bucket, (seen or 0) + 1)
    book = stores.book
    for intent in book.entries(kind=ROLLOUT_INTENT):
        payload = intent.payload
        if payload["doc"]["model"] != stores.model or payload["expected_sequence"] != seen:
            continue
        key = intent.idempotency_key.removesuffix("/intent")
        ended = (key, f"{key}/aborted", f"{key}/aliases/aborted")
        if any(book.get(k) is not None for k in ended):
            continue
        started = book.get(f"{key}/aliases/intent") is not None
        if started or (written is not None and written.to_dict() == payload["doc"]):
            return _finish(stores, key, intent.actor, intent)
    return None


def last_completed(stores: Stores) -> Any:
    """The newest ``rollout`` row of the model (None: none yet)."""
    rows = [
        e for e in stores.book.entries(kind=ROLLOUT) if e.payload["doc"]["model"] == stores.model
    ]
    return rows[-1] if rows else None


def agreement(stores: Stores) -> tuple[bool, str]:
    """Do registry, routing document and ledger agree? ``(ok, explanation)``: the document
    names the alias holders of its stage, it is the one of the last completed ``rollout`` row,
    and the ledger's champion is the registry's."""
    from driftloop.promotion import transactions

    doc = read_routing(stores.s3, stores.bucket)
    if doc is not None and doc.model != stores.model:
        return False, f"the routing document is of {doc.model!r}, not {stores.model!r}"
    aliases = stores.aliases()
    if not consistent_with_aliases(doc, aliases):
        return False, disagreement(doc, aliases)
    last = last_completed(stores)
    recorded = None if last is None else last.payload["doc"]
    if recorded != (None if doc is None else doc.to_dict()):
        seq = None if recorded is None else recorded["sequence"]
        return (
            False,
            f"the routing document is #{doc and doc.sequence}, the ledger's last is #{seq}",
        )
    ok, why = transactions.registry_agrees(stores.client, stores.book, stores.model)
    if not ok:
        return False, why
    return True, f"{why}; routing document {doc.summary() if doc else 'absent (serving)'}"
