"""Routing documents as the spec writes them (plain dicts), for the serving tests."""

from __future__ import annotations

import hashlib

from driftloop.promotion.routing import RoutingDoc

CHAMPION, CHALLENGER, PREVIOUS = "3", "4", "2"


def bucket(image_id: str) -> float:
    """The spec's frame bucket, written out here: first 8 bytes of sha256 / 2**64."""
    return int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:8], "big") / 2**64


def doc(stage: str, **overrides) -> RoutingDoc:
    rollout = {
        "serving": {"subject": None, "baseline": None, "share": 0.0, "shadow_share": 0.0},
        "shadow": {"subject": CHALLENGER, "baseline": CHAMPION, "share": 0.0, "shadow_share": 1.0},
        "canary": {"subject": CHALLENGER, "baseline": CHAMPION, "share": 0.3, "shadow_share": 0.3},
        "guard": {"subject": CHAMPION, "baseline": PREVIOUS, "share": 0.0, "shadow_share": 0.25},
    }[stage]
    data = {
        "format": 1,
        "model": "driftloop-detector",
        "sequence": 7,
        "stage": stage,
        "champion": CHAMPION,
        **rollout,
        "rollout_id": None if stage == "serving" else f"rollout-{CHALLENGER}-20310105T000000Z",
        "updated_at": "2031-01-05T00:00:00Z",
        "updated_by": "test",
        "reason": "test",
        **overrides,
    }
    return RoutingDoc.from_dict(data)


def aliases(stage: str) -> dict[str, str]:
    """The aliases a consistent registry holds in ``stage``."""
    if stage in ("shadow", "canary"):
        return {"champion": CHAMPION, "challenger": CHALLENGER, "previous-champion": PREVIOUS}
    return {"champion": CHAMPION, "previous-champion": PREVIOUS}
