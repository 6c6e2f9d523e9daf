"""Which model serves a frame and which one scores it in shadow: the routing document, per stage.

Serving follows the MLflow aliases for which versions exist and the routing document
(``rollout/routing.json``, :mod:`driftloop.promotion.routing`) for how frames are split.
Per frame, ``u = frame_bucket(image_id)`` (a stable hash in [0, 1)):

======== ============================================ =======================================
stage    served by                                    also scored (not served)
======== ============================================ =======================================
serving  champion                                     —
shadow   champion (= baseline)                        subject (challenger) when u < shadow_share
canary   subject when u < share, else the champion    baseline (champion) when u < share
guard    champion (= subject, just promoted)          baseline (previous-champion) when
                                                      u < shadow_share
======== ============================================ =======================================

A document whose versions disagree with the aliases (a half-done change) is not followed: the
``champion`` alias serves alone and :attr:`Route.note` says why (the batch logs it as a warning).
No document is stage ``serving`` with sequence 0.

A frame whose served model fails is served by the champion when the champion is another
version (canary's subject frames); :meth:`Route.fallback` names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from driftloop.promotion.registry import CHAMPION
from driftloop.promotion.routing import (
    RoutingDoc,
    consistent_with_aliases,
    disagreement,
    frame_bucket,
)

#: ``sequence`` of the records written while no routing document exists
NO_DOCUMENT_SEQUENCE = 0


@dataclass(frozen=True)
class FramePlan:
    """What happens to one frame: the version that serves it, and the one that also scores
    it in shadow (None: scored by one model only)."""

    served: str
    shadow: str | None = None

    def order(self, index: int) -> tuple[str, ...]:
        """The models in the order they run on frame ``index``: the two of a paired frame
        alternate which goes first (frame parity), so neither always runs on a warm cache."""
        if self.shadow is None:
            return (self.served,)
        pair = (self.served, self.shadow)
        return pair if index % 2 == 0 else pair[::-1]


@dataclass(frozen=True)
class Route:
    """The routing in force for a batch (see the module doc)."""

    stage: str
    sequence: int
    rollout_id: str | None
    champion: str  # the version holding the champion alias: serves, and is the fallback
    subject: str | None = None
    baseline: str | None = None
    share: float = 0.0
    shadow_share: float = 0.0
    #: why the routing document is not followed (None: it is, or there is none)
    note: str | None = None

    @property
    def versions(self) -> tuple[str, ...]:
        """The versions this route scores with, champion first (what is loaded)."""
        found = [self.champion, self.subject, self.baseline]
        return tuple(dict.fromkeys(v for v in found if v is not None))

    def role(self, version: str) -> str:
        """A version's role in the records: ``subject``/``baseline`` in a rollout stage,
        ``champion`` in stage serving."""
        if self.stage == "serving":
            if version != self.champion:
                raise ValueError(f"version {version} has no role in stage serving")
            return "champion"
        if version == self.subject:
            return "subject"
        if version == self.baseline:
            return "baseline"
        raise ValueError(f"version {version} has no role in stage {self.stage}")

    def plan(self, image_id: str) -> FramePlan:
        if self.stage == "serving":
            return FramePlan(self.champion)
        u = frame_bucket(image_id)
        if self.stage == "shadow":
            return FramePlan(self.baseline, self.subject if u < self.shadow_share else None)
        if self.stage == "canary":
            if u < self.share:
                return FramePlan(self.subject, self.baseline)
            return FramePlan(self.baseline)
        # guard: the just-promoted champion serves; the previous one scores a share in shadow
        return FramePlan(self.subject, self.baseline if u < self.shadow_share else None)

    def fallback(self, failed: str) -> str | None:
        """Who serves a frame whose served model ``failed``: the champion, unless it is the
        one that failed (then nobody: the frame is not served)."""
        return None if failed == self.champion else self.champion

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _champion_alone(doc: RoutingDoc | None, champion: str, note: str | None) -> Route:
    sequence = NO_DOCUMENT_SEQUENCE if doc is None else doc.sequence
    return Route("serving", sequence, None, champion, note=note)


def route_for(doc: RoutingDoc | None, aliases: Mapping[str, str]) -> Route:
    """The route of a routing document (None: no document) under the registry's aliases
    (``{alias: version}``). No champion alias is an error: there is nothing to serve."""
    champion = aliases.get(CHAMPION)
    if champion is None:
        raise LookupError(
            f"no version holds the {CHAMPION!r} alias (aliases: {dict(aliases)}): nothing to serve"
        )
    champion = str(champion)
    if doc is None:
        return _champion_alone(None, champion, None)
    if not consistent_with_aliases(doc, aliases):
        note = f"{disagreement(doc, aliases)}: the champion alias (v{champion}) serves alone"
        return _champion_alone(doc, champion, note)
    if doc.stage == "serving":
        return _champion_alone(doc, champion, None)
    return Route(
        stage=doc.stage,
        sequence=doc.sequence,
        rollout_id=doc.rollout_id,
        champion=champion,
        subject=doc.subject,
        baseline=doc.baseline,
        share=doc.share,
        shadow_share=doc.shadow_share,
    )
