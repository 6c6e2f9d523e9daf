"""Putting the previous champion back, on the record: by hand (``rollback_detector``) or by the
rollout guard after an SLO miss in the guard period (``rollout_guard``).

One step, not a history walk: ``champion`` returns to ``previous-champion`` (which is then
cleared), the withdrawn version is tagged ``rolled_back`` with the reason (and, from the
guard, the evidence), and the audit ledger records who asked, why and both versions. It is a
guarded change (:mod:`driftloop.promotion.transactions`). A ``challenger`` in shadow or canary
is withdrawn in the same move (tagged ``rollout_ended``): its evidence compared it with the
champion being withdrawn. The intent row fixes which version is
withdrawn and which restored, so a re-run after a partial failure finishes that rollback — it
never rolls back a second time, and never tags the restored version as withdrawn. Both callers
use :func:`guarded_rollback`; the guard passes the aliases its decision saw, so a champion
that moved since is never withdrawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftloop.config.settings import Settings

#: MLflow keeps model-version tag values up to 5000 characters
TAG_VALUE_LIMIT = 4900


def guarded_rollback(
    client,
    book,
    model: str,
    *,
    key: str,
    actor: str,
    reason: str,
    expected: Mapping[str, str] | None = None,
    withdrawn_tags: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``champion`` back to ``previous-champion`` as the guarded change ``key``.

    ``expected``: the aliases the caller decided on (``champion`` and ``previous-champion``);
    None: the registry's aliases now (a person asked for "the previous one"). ``withdrawn_tags``
    go on the withdrawn version beside ``rolled_back``; ``details`` into the ledger rows.
    A re-run of the same ``key`` returns the recorded change (``already_done``)."""
    from driftloop.promotion import registry, transactions

    done = book.get(key)
    if done is not None:
        return {**done.payload, "ledger_id": done.id, "already_done": True}
    intent = book.get(f"{key}/intent")
    if intent is None:
        current = registry.aliases(client, model) if expected is None else expected
        move = transactions.rollback_move(model, current)
    else:  # an earlier attempt decided what to withdraw and restore: finish exactly that
        move = transactions.AliasMove(
            transactions.ROLLBACK,
            model,
            str(intent.payload["intended"][registry.CHAMPION]),
            dict(intent.payload["expected"]),
            dict(intent.payload["intended"]),
        )
    withdrawn = str(move.expected[registry.CHAMPION])
    restored = str(move.intended[registry.CHAMPION])
    tags = {withdrawn: {"rolled_back": reason[:TAG_VALUE_LIMIT], **dict(withdrawn_tags or {})}}
    challenger = move.expected.get(registry.CHALLENGER)
    if challenger is not None:  # its rollout ends with the rollback (transactions.rollback_move)
        ended = f"rollout ended: v{withdrawn} rolled back to v{restored}: {reason}"
        tags[str(challenger)] = {"rollout_ended": ended[:TAG_VALUE_LIMIT]}
    return transactions.guarded_move(
        client,
        book,
        move,
        key=key,
        actor=actor,
        details={
            **dict(details or {}),
            "reason": reason,
            "withdrawn": withdrawn,
            "restored": restored,
            "challenger_withdrawn": challenger,
        },
        tags=lambda m: tags,
    )


def rollback(settings: Settings, reason: str, actor: str, run_id: str) -> dict[str, Any]:
    """``rollback_detector``'s step: ``champion`` back to ``previous-champion``, recorded with
    who asked and why. A re-run of the same DAG run returns the recorded change."""
    from driftloop.drift import tracking
    from driftloop.retrain.records import ledger

    return guarded_rollback(
        tracking.client(settings.mlflow_tracking_uri),
        ledger(settings),
        settings.registered_model,
        key=f"rollback_detector/{run_id}/rollback",
        actor=actor,
        reason=reason,
    )
