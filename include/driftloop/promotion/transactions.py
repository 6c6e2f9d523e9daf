"""Moving the champion as a guarded transaction between the MLflow registry and the ledger.

MLflow has no transactions and the ledger is another database, so every step that moves an
alias (promotion, rollback) follows one protocol that keeps them in agreement after any
single failure:

1. **done?** — the completion row (idempotency key ``key``) exists: return it, change nothing.
2. **intent** — a row ``<key>/intent`` says what is about to change: the aliases the step
   expects to find and the ones it will leave. It is written once; a re-run after a failure
   reads the first attempt's intent, so it finishes *that* change and never re-derives it from
   a registry that the half-done attempt already moved (a re-run rollback would otherwise
   withdraw the version it had just restored).
3. **compare-and-set** — the registry now:
   * still in the expected state, or part-way from it to the intended one (each alias at its
     expected or intended value: an earlier attempt died between two alias writes) → move
     the aliases;
   * already in the intended state (an earlier attempt moved them and failed before its
     completion row) → go on to 4;
   * anything else (someone moved the champion since the decision was made) → an
     ``<key>/aborted`` row and :class:`ChampionMoved`: nothing is moved, no retry can fix it.
4. **complete** — tags on the versions, then the completion row with the aliases before (from
   the intent) and after (read back from the registry).

So the ledger's completed rows always tell where ``champion`` is:
:func:`champion_per_ledger` replays them and :func:`registry_agrees` compares that with the
registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from driftloop.promotion import registry

#: ledger kinds of the three rows of a guarded change
PROMOTION, ROLLBACK = "promotion", "rollback"


class ChampionMoved(RuntimeError):
    """The registry is neither where the decision found it nor where the step would leave it:
    someone else moved an alias in between. Nothing was changed."""


@dataclass(frozen=True)
class AliasMove:
    """One guarded change: the aliases expected before and intended after (``None``: the
    alias must be absent)."""

    kind: str  # PROMOTION or ROLLBACK
    model: str
    subject_version: str  # the version the ledger row is about
    expected: dict[str, str | None]
    intended: dict[str, str | None]

    def matches(self, current: Mapping[str, str], wanted: Mapping[str, str | None]) -> bool:
        return all(current.get(alias) == version for alias, version in wanted.items())

    def reachable_from(self, current: Mapping[str, str]) -> bool:
        """Is ``current`` the expected state, or a state a half-done attempt left on the way
        to the intended one (every alias at its expected or its intended value)?"""
        for alias in {*self.expected, *self.intended}:
            allowed = {self.expected.get(alias, current.get(alias))}
            if alias in self.intended:
                allowed.add(self.intended[alias])
            if current.get(alias) not in allowed:
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"expected": self.expected, "intended": self.intended}


def promotion_move(
    model: str, version: str, *, expected_champion: str | None, target: str
) -> AliasMove:
    """Candidate ``version`` to ``target`` (``champion``: the old one becomes
    ``previous-champion``; ``challenger``: the champion stays), provided the champion is still
    ``expected_champion`` (the one the candidate was evaluated against)."""
    version = str(version)
    expected: dict[str, str | None] = {registry.CHAMPION: expected_champion}
    if target == registry.CHAMPION:
        intended: dict[str, str | None] = {registry.CHAMPION: version}
        if expected_champion is not None and expected_champion != version:
            intended[registry.PREVIOUS_CHAMPION] = expected_champion
    elif target == registry.CHALLENGER:
        intended = {registry.CHAMPION: expected_champion, registry.CHALLENGER: version}
    else:
        raise ValueError(
            f"promotion target must be {registry.CHAMPION!r} or {registry.CHALLENGER!r}, "
            f"got {target!r}"
        )
    return AliasMove(PROMOTION, model, version, expected, intended)


def rollback_move(model: str, current: Mapping[str, str]) -> AliasMove:
    """``champion`` back to ``previous-champion``, which is then cleared. A ``challenger`` in
    ``current`` (a rollout in shadow or canary) is cleared too: its evidence compared it with
    the champion being withdrawn, so its rollout ends with the rollback."""
    champion = current.get(registry.CHAMPION)
    previous = current.get(registry.PREVIOUS_CHAMPION)
    challenger = current.get(registry.CHALLENGER)
    if previous is None or champion is None:
        raise LookupError(
            f"{model} has no {registry.PREVIOUS_CHAMPION!r} version to roll back to "
            f"(aliases: {dict(current) or 'none'})"
        )
    expected = {registry.CHAMPION: champion, registry.PREVIOUS_CHAMPION: previous}
    intended = {registry.CHAMPION: previous, registry.PREVIOUS_CHAMPION: None}
    if challenger is not None:
        expected[registry.CHALLENGER] = challenger
        intended[registry.CHALLENGER] = None
    return AliasMove(ROLLBACK, model, previous, expected=expected, intended=intended)


def _apply(client, move: AliasMove) -> None:
    """Set the intended aliases, then delete the ones to clear: ``previous-champion`` is set
    before ``champion`` moves and cleared only after, so a failure half-way always leaves both
    the old and the new champion reachable by an alias."""
    order = (registry.PREVIOUS_CHAMPION, registry.CHALLENGER, registry.CHAMPION)
    current = registry.aliases(client, move.model)
    pending = [a for a in order if a in move.intended and current.get(a) != move.intended[a]]
    for alias in pending:
        if move.intended[alias] is not None:
            client.set_registered_model_alias(move.model, alias, move.intended[alias])
    for alias in pending:
        if move.intended[alias] is None:
            client.delete_registered_model_alias(move.model, alias)
    # a promotion to champion ends a challenger period of the same version
    if (
        move.kind == PROMOTION
        and move.intended.get(registry.CHAMPION) == move.subject_version
        and current.get(registry.CHALLENGER) == move.subject_version
    ):
        client.delete_registered_model_alias(move.model, registry.CHALLENGER)


def guarded_move(
    client,
    book,
    move: AliasMove,
    *,
    key: str,
    actor: str,
    details: Mapping[str, Any],
    tags: Callable[[AliasMove], Mapping[str, Mapping[str, str]]],
) -> dict[str, Any]:
    """Carry out ``move`` with the intent / compare-and-set / completion protocol.

    ``tags(move)`` gives ``{version: {tag: value}}`` to set before the completion row.
    Returns the completion row's payload plus ``ledger_id`` and ``already_done``.
    """
    done = book.get(key)
    if done is not None:
        return {**done.payload, "ledger_id": done.id, "already_done": True}
    subject = f"model:{move.model}/v{move.subject_version}"
    intent_row = book.append(
        f"{move.kind}_intent",
        actor=actor,
        subject=subject,
        payload={**move.to_dict(), **details},
        idempotency_key=f"{key}/intent",
    )
    move = AliasMove(  # the first attempt's intent wins over whatever this attempt derived
        move.kind,
        move.model,
        move.subject_version,
        dict(intent_row.payload["expected"]),
        dict(intent_row.payload["intended"]),
    )
    before = registry.aliases(client, move.model)
    if not move.matches(before, move.intended):
        if not move.reachable_from(before):
            book.append(
                f"{move.kind}_aborted",
                actor=actor,
                subject=subject,
                payload={**move.to_dict(), "found": before},
                idempotency_key=f"{key}/aborted",
            )
            raise ChampionMoved(
                f"{move.model}: expected aliases {move.expected}, found {before or 'none'} — "
                f"the registry changed since this {move.kind} was decided; nothing was moved"
            )
        _apply(client, move)
    after = registry.aliases(client, move.model)
    if not move.matches(after, move.intended):
        raise ChampionMoved(
            f"{move.model}: after the {move.kind} the aliases are {after}, not {move.intended} "
            "(another writer moved them at the same time)"
        )
    for version, version_tags in tags(move).items():
        registry.set_tags(client, move.model, version, version_tags)
    entry = book.append(
        move.kind,
        actor=actor,
        subject=subject,
        payload={
            **details,
            "aliases": {"before": _known(move.expected), "after": _known(move.intended)},
            "intent_ledger_id": intent_row.id,
        },
        idempotency_key=key,
    )
    return {**entry.payload, "ledger_id": entry.id, "already_done": False}


def _known(aliases: Mapping[str, str | None]) -> dict[str, str]:
    return {alias: version for alias, version in aliases.items() if version is not None}


def champion_per_ledger(book, model: str) -> str | None:
    """Where the ledger says ``champion`` is: the last completed promotion or rollback of
    ``model`` (None when there is none)."""
    prefix = f"model:{model}/v"
    champion = None
    for entry in book.entries():
        if entry.kind in (PROMOTION, ROLLBACK) and entry.subject.startswith(prefix):
            after = (entry.payload or {}).get("aliases", {}).get("after", {})
            if registry.CHAMPION in after:
                champion = str(after[registry.CHAMPION])
    return champion


def registry_agrees(client, book, model: str) -> tuple[bool, str]:
    """Does the registry's ``champion`` equal the ledger's? ``(ok, explanation)``."""
    in_registry = registry.aliases(client, model).get(registry.CHAMPION)
    in_ledger = champion_per_ledger(book, model)
    if in_registry == in_ledger:
        return True, f"champion v{in_registry} in registry and ledger"
    return False, f"registry champion {in_registry!r} but the ledger says {in_ledger!r}"
