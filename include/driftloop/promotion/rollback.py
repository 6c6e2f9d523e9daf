"""The steps of ``rollback_detector``: put the previous champion back, by hand, on the record.

One step, not a history walk: ``champion`` returns to ``previous-champion`` (which is then
cleared), the withdrawn version is tagged ``rolled_back`` with the reason, and the audit ledger
records who asked, why and both versions. A re-run of the same DAG run changes nothing twice.
"""

from __future__ import annotations

from typing import Any

from driftloop.config.settings import Settings


def rollback(settings: Settings, reason: str, actor: str, run_id: str) -> dict[str, Any]:
    """The one-step rollback: ``champion`` back to ``previous-champion``, recorded in the
    ledger with who asked and why. A re-run of the same DAG run returns the recorded change
    instead of rolling back a second time."""
    from driftloop.audit.ledger import Ledger
    from driftloop.drift import tracking
    from driftloop.promotion import registry

    key = f"rollback_detector/{run_id}/rollback"
    book = Ledger(settings.database_url)
    done = book.get(key)
    if done is not None:
        return {**done.payload, "ledger_id": done.id, "already_done": True}
    client = tracking.client(settings.mlflow_tracking_uri)
    change = registry.rollback(client, settings.registered_model)
    restored, withdrawn = change.after[registry.CHAMPION], change.before[registry.CHAMPION]
    registry.set_tags(client, settings.registered_model, withdrawn, {"rolled_back": reason[:4900]})
    entry = book.append(
        "rollback",
        actor=actor,
        subject=f"model:{settings.registered_model}/v{restored}",
        payload={
            "reason": reason,
            "withdrawn": withdrawn,
            "restored": restored,
            "aliases": change.to_dict(),
        },
        idempotency_key=key,
    )
    return {**entry.payload, "ledger_id": entry.id, "already_done": False}
