"""The steps of ``rollback_detector``: put the previous champion back, by hand, on the record.

One step, not a history walk: ``champion`` returns to ``previous-champion`` (which is then
cleared), the withdrawn version is tagged ``rolled_back`` with the reason, and the audit ledger
records who asked, why and both versions. It is a guarded change
(:mod:`driftloop.promotion.transactions`): the intent row fixes which version is withdrawn and
which restored, so a re-run after a partial failure finishes that rollback — it never rolls
back a second time, and never tags the restored version as withdrawn.
"""

from __future__ import annotations

from typing import Any

from driftloop.config.settings import Settings


def rollback(settings: Settings, reason: str, actor: str, run_id: str) -> dict[str, Any]:
    """``champion`` back to ``previous-champion``, recorded in the ledger with who asked and
    why. A re-run of the same DAG run returns the recorded change."""
    from driftloop.drift import tracking
    from driftloop.promotion import registry, transactions
    from driftloop.retrain.records import ledger

    key = f"rollback_detector/{run_id}/rollback"
    book = ledger(settings)
    done = book.get(key)
    if done is not None:
        return {**done.payload, "ledger_id": done.id, "already_done": True}
    client = tracking.client(settings.mlflow_tracking_uri)
    intent = book.get(f"{key}/intent")
    if intent is None:
        move = transactions.rollback_move(
            settings.registered_model, registry.aliases(client, settings.registered_model)
        )
    else:  # an earlier attempt decided what to withdraw and restore: finish exactly that
        move = transactions.AliasMove(
            transactions.ROLLBACK,
            settings.registered_model,
            str(intent.payload["intended"][registry.CHAMPION]),
            dict(intent.payload["expected"]),
            dict(intent.payload["intended"]),
        )
    withdrawn = str(move.expected[registry.CHAMPION])
    restored = str(move.intended[registry.CHAMPION])
    return transactions.guarded_move(
        client,
        book,
        move,
        key=key,
        actor=actor,
        details={"reason": reason, "withdrawn": withdrawn, "restored": restored},
        tags=lambda m: {withdrawn: {"rolled_back": reason[:4900]}},
    )
