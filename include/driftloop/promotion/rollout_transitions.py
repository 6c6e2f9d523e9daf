"""The rollout's transitions: each builds one :class:`~driftloop.promotion.rollout.RoutingChange`
(the next routing document, the alias move before it, the version tags) and carries it out as
a guarded change (:func:`driftloop.promotion.rollout.apply_change`).

* after ``retrain_detector``'s ``promote`` (:func:`after_promotion`): a ``challenger`` starts
  its rollout in shadow; a new ``champion`` with a previous one starts its guard period; a
  first champion just serves;
* the guard's verdicts (:func:`guard_change`): shadow → canary (document only), canary pass →
  promote (``challenger`` → ``champion``, the old one → ``previous-champion``), reject in shadow
  or canary (``challenger`` removed, the version tagged with the reasons and the evidence),
  guard fail → rollback (the one guarded rollback of :mod:`driftloop.promotion.rollback`),
  guard pass → serving;
* after ``rollback_detector`` (:func:`after_manual_rollback`): the restored champion serves.

Every builder starts from the document and aliases its decision saw, never from what the
stores hold when it runs; the guarded change then refuses when they moved since.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from driftloop.promotion import rollout
from driftloop.promotion.rollback import TAG_VALUE_LIMIT
from driftloop.promotion.routing import (
    CANARY,
    GUARD,
    SHADOW,
    RoutingDoc,
    RoutingMoved,
    Stamp,
    next_canary_doc,
    next_guard_doc,
    next_serving_doc,
    next_shadow_doc,
    read_routing,
)

#: actions of the routing changes that follow a promotion or a manual rollback
START, START_GUARD, SERVE, RESTORE = "start", "start_guard", "serve", "restore"
#: the alias move of a rejected challenger (its ledger rows: rejection_intent, rejection)
REJECTION = "rejection"
#: version tags the rollout leaves
REJECTED_TAG, EVIDENCE_TAG, PROMOTED_TAG, GUARD_TAG = (
    "rollout_rejected",
    "rollout_evidence",
    "rollout_promoted",
    "rollout_guard",
)


class RolloutRefused(RuntimeError):
    """The records do not allow this rollout change (no promotion of this run, a challenger
    without a champion, an abort with nothing to abort): a retry cannot change that."""


def _tag(text: str) -> str:
    return text if len(text) <= TAG_VALUE_LIMIT else text[: TAG_VALUE_LIMIT - 1] + "…"


def evidence_tag(comparison: Any, decision_ledger_id: int | None = None) -> str:
    """The evidence as a version tag: the summary JSON (verdict, frames, hours, failing
    checks), cut to MLflow's tag limit; the full evidence is in the ledger."""
    summary = {**(rollout.evidence_summary(comparison) or {}), "ledger_id": decision_ledger_id}
    return _tag(json.dumps(summary, sort_keys=True, default=str))


# -- after retrain_detector's promote -------------------------------------------------------


def promotion_change(
    stores: rollout.Stores, promoted: Mapping[str, Any], guard_shadow_share: float, stamp: Stamp
) -> rollout.RoutingChange:
    """The routing change after a promotion, from its completion row's payload: target
    ``challenger`` → shadow, ``champion`` over a previous one → guard, a first champion →
    serving."""
    from driftloop.promotion import registry

    after = {k: str(v) for k, v in (promoted.get("aliases") or {}).get("after", {}).items()}
    current = read_routing(stores.s3, stores.bucket)
    expected = None if current is None else current.sequence
    model = stores.model
    details = {"reason": stamp.reason, "promotion_ledger_id": promoted.get("ledger_id")}
    if promoted["target"] == registry.CHALLENGER:
        challenger, champion = after.get(registry.CHALLENGER), after.get(registry.CHAMPION)
        if challenger is None or champion is None:
            raise RolloutRefused(
                f"{model}: a challenger is rolled out against a champion, and the promotion "
                f"left {after or 'no aliases'}: promote a first model to champion"
            )
        doc = next_shadow_doc(current, stamp, model=model, champion=champion, challenger=challenger)
        return rollout.RoutingChange(START, challenger, doc, expected, details=details)
    champion = after.get(registry.CHAMPION)
    if champion is None:
        raise RolloutRefused(f"{model}: the promotion to champion left no champion ({after})")
    previous = after.get(registry.PREVIOUS_CHAMPION)
    if previous is None:
        doc = next_serving_doc(current, stamp, model=model, champion=champion)
        return rollout.RoutingChange(SERVE, champion, doc, expected, details=details)
    doc = next_guard_doc(
        current,
        stamp,
        model=model,
        champion=champion,
        previous=previous,
        shadow_share=guard_shadow_share,
    )
    return rollout.RoutingChange(START_GUARD, champion, doc, expected, details=details)


def after_promotion(s3, settings, run_id: str) -> dict[str, Any]:
    """``retrain_detector``'s routing step after ``promote``: the change for this run's
    promotion (read from its completion row in the ledger, never XCom)."""
    from driftloop.config.promotion_policy import load_promotion_policy
    from driftloop.retrain.decision import step_key

    stores = rollout.Stores.from_settings(s3, settings)
    promoted = stores.book.get(step_key(run_id, "promote"))
    if promoted is None:
        raise RolloutRefused(f"run {run_id} has no completed promotion in the ledger")
    payload = {**promoted.payload, "ledger_id": promoted.id}
    version = promoted.subject.rsplit("/v", 1)[-1]
    guard = load_promotion_policy(settings.promotion_policy_path).rollout.guard
    stamp = Stamp(
        by=f"retrain_detector/{run_id}/update_routing",
        reason=f"v{version} promoted to {payload['target']} by {promoted.actor}",
    )
    return rollout.apply_change(
        stores,
        key=step_key(run_id, "routing"),
        actor=promoted.actor,
        build=lambda: promotion_change(stores, payload, guard.shadow_share, stamp),
    )


# -- the guard's verdicts ---------------------------------------------------------------------


def check_unchanged(stores: rollout.Stores, decision: Mapping[str, Any]) -> RoutingDoc:
    """The document the decision saw, provided the stores still hold it and the aliases it
    names; RoutingMoved / ChampionMoved naming what moved otherwise."""
    from driftloop.promotion import registry
    from driftloop.promotion.transactions import ChampionMoved

    seen = RoutingDoc.from_dict(decision["doc"], "the rollout decision")
    current = read_routing(stores.s3, stores.bucket)
    if current != seen:
        now = "no document" if current is None else current.summary()
        raise RoutingMoved(
            f"the routing document moved since the decision: {seen.summary()} → {now}"
        )
    aliases, was = stores.aliases(), decision.get("aliases") or {}
    moved = [
        f"{alias} v{was.get(alias)} → v{aliases.get(alias)}"
        for alias in registry.PROTECTED_ALIASES
        if aliases.get(alias) != was.get(alias)
    ]
    if moved:
        raise ChampionMoved(f"aliases moved since the decision: {', '.join(moved)}")
    return seen


def guard_change(
    stores: rollout.Stores,
    decision: Mapping[str, Any],
    policy_rollout,
    stamp: Stamp,
    *,
    decision_ledger_id: int | None = None,
) -> rollout.RoutingChange:
    """The change a guard decision (``action``, the document and aliases it saw, its evidence)
    asks for."""
    from driftloop.promotion import registry, transactions

    action = decision["action"]
    seen = check_unchanged(stores, decision)
    comparison = decision.get("comparison")
    details = {
        "reason": stamp.reason,
        "from_stage": seen.stage,
        "evidence": rollout.evidence_summary(comparison),
        "decision_ledger_id": decision_ledger_id,
    }

    def change(version: str, doc: RoutingDoc, **alias_change) -> rollout.RoutingChange:
        return rollout.RoutingChange(
            action, version, doc, seen.sequence, details=details, **alias_change
        )

    model, subject, baseline = stores.model, seen.subject, seen.baseline
    if action == rollout.TO_CANARY and seen.stage == SHADOW:
        return change(subject, next_canary_doc(seen, stamp, share=policy_rollout.canary.share))
    if action == rollout.PROMOTE and seen.stage == CANARY:
        move = transactions.promotion_move(
            model, subject, expected_champion=baseline, target=registry.CHAMPION
        )
        # the challenger period ends with the promotion: its alias is part of the change, so a
        # re-run after a crash between the alias writes still removes it
        move = transactions.AliasMove(
            move.kind,
            model,
            subject,
            {**move.expected, registry.CHALLENGER: subject},
            {**move.intended, registry.CHALLENGER: None},
        )
        doc = next_guard_doc(
            seen,
            stamp,
            model=model,
            champion=subject,
            previous=baseline,
            shadow_share=policy_rollout.guard.shadow_share,
            rollout_id=seen.rollout_id,
        )
        tags = {
            PROMOTED_TAG: _tag(f"{seen.stage} passed ({seen.rollout_id})"),
            "promoted_by": stamp.by,
        }
        return change(subject, doc, move=move, tags={subject: tags})
    if action == rollout.REJECT and seen.stage in (SHADOW, CANARY):
        move = transactions.AliasMove(
            REJECTION,
            model,
            subject,
            {registry.CHAMPION: baseline, registry.CHALLENGER: subject},
            {registry.CHAMPION: baseline, registry.CHALLENGER: None},
        )
        tags = {
            REJECTED_TAG: _tag(f"{seen.stage}: {stamp.reason}"),
            EVIDENCE_TAG: evidence_tag(comparison, decision_ledger_id),
        }
        doc = next_serving_doc(seen, stamp, model=model, champion=baseline)
        return change(subject, doc, move=move, tags={subject: tags})
    if action == rollout.ROLLBACK and seen.stage == GUARD:
        move = transactions.rollback_move(
            model, {registry.CHAMPION: subject, registry.PREVIOUS_CHAMPION: baseline}
        )
        tags = {EVIDENCE_TAG: evidence_tag(comparison, decision_ledger_id)}
        doc = next_serving_doc(seen, stamp, model=model, champion=baseline)
        return change(subject, doc, move=move, tags={subject: tags})
    if action == rollout.END_GUARD and seen.stage == GUARD:
        doc = next_serving_doc(seen, stamp, model=model, champion=subject)
        tags = {GUARD_TAG: _tag(f"passed ({seen.rollout_id})")}
        return change(subject, doc, tags={subject: tags})
    raise RolloutRefused(f"action {action!r} does not apply to stage {seen.stage}")


# -- after rollback_detector ------------------------------------------------------------------


def after_manual_rollback(
    s3, settings, run_id: str, rolled_back: Mapping[str, Any], actor: str
) -> dict[str, Any]:
    """``rollback_detector``'s routing change: the restored champion serves alone (a rollout in
    progress ends: it compared a challenger with the withdrawn champion)."""
    stores = rollout.Stores.from_settings(s3, settings)
    withdrawn, restored = str(rolled_back["withdrawn"]), str(rolled_back["restored"])
    stamp = Stamp(
        by=f"rollback_detector/{run_id}/rollback",
        reason=f"v{withdrawn} rolled back to v{restored} by {actor}: {rolled_back.get('reason')}",
    )

    def build() -> rollout.RoutingChange:
        current = read_routing(stores.s3, stores.bucket)
        doc = next_serving_doc(current, stamp, model=stores.model, champion=restored)
        expected = None if current is None else current.sequence
        details = {"reason": stamp.reason, "rollback_ledger_id": rolled_back.get("ledger_id")}
        return rollout.RoutingChange(RESTORE, withdrawn, doc, expected, details=details)

    return rollout.apply_change(
        stores, key=f"rollback_detector/{run_id}/routing", actor=actor, build=build
    )


def promotion_announcement(settings, run_id: str, asset: str) -> str | None:
    """Why ``retrain_detector``'s run emits ``asset``, from the ledger: "champion" when its
    promotion moved the ``champion`` alias, "rollout" when its routing change started a
    challenger's rollout (shadow); None: it does not."""
    from driftloop.retrain.decision import step_key
    from driftloop.retrain.records import ledger

    book = ledger(settings)
    promoted, routed = book.get(step_key(run_id, "promote")), book.get(step_key(run_id, "routing"))
    if promoted is None or routed is None:  # announced once the routing document agrees
        return None
    doc = RoutingDoc.from_dict(routed.payload["doc"], "the rollout row")
    if asset == "champion" and promoted.payload.get("target") == "champion":
        return f"v{doc.champion} is champion: {doc.summary()}"
    if asset == "rollout" and doc.stage == SHADOW:
        return f"rollout started: {doc.summary()}"
    return None
