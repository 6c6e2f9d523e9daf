"""Which registered-model versions to keep and which to archive (pure planning).

Keep the newest ``keep_last`` non-archived versions ("newest" by creation time, then version
number) plus every version holding a protected alias — ``champion``, ``previous-champion``,
``challenger`` — whatever its age, archived or not; archive every other non-archived
version. Applying a plan and planning again archives nothing new (idempotent). Carrying the
plan out (an MLflow tag or a delete, per the policy's ``retention.archive``) and writing it to
the ledger is the caller's job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

PROTECTED_ALIASES = frozenset({"champion", "previous-champion", "challenger"})


@dataclass(frozen=True)
class VersionInfo:
    version: int
    aliases: set[str] = field(default_factory=set)
    created_ms: int = 0
    archived: bool = False

    @property
    def protected(self) -> bool:
        return bool(PROTECTED_ALIASES & set(self.aliases))


@dataclass(frozen=True)
class RetentionPlan:
    keep: list[int]  # newest first
    archive: list[int]  # newest first; never a protected version
    protected: list[int] = field(default_factory=list)  # kept because of an alias
    already_archived: list[int] = field(default_factory=list)  # left as they are
    keep_last: int = 10

    @property
    def empty(self) -> bool:
        return not self.archive

    def to_dict(self) -> dict[str, Any]:
        return {
            "keep_last": self.keep_last,
            "keep": list(self.keep),
            "archive": list(self.archive),
            "protected": list(self.protected),
            "already_archived": list(self.already_archived),
        }


def plan_retention(versions: Iterable[VersionInfo], keep_last: int = 10) -> RetentionPlan:
    """Plan retention over all versions of one registered model."""
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
        raise ValueError(f"keep_last must be a non-negative integer, got {keep_last!r}")
    items = list(versions)
    seen: set[int] = set()
    for v in items:
        if v.version in seen:
            raise ValueError(f"version {v.version} is listed twice")
        seen.add(v.version)
    newest_first = sorted(items, key=lambda v: (v.created_ms, v.version), reverse=True)
    live = [v for v in newest_first if not v.archived]
    newest = {v.version for v in live[:keep_last]}
    protected = [v.version for v in newest_first if v.protected]
    keep = [v.version for v in newest_first if v.version in newest or v.protected]
    archive = [v.version for v in live if v.version not in newest and not v.protected]
    already = [v.version for v in newest_first if v.archived and not v.protected]
    return RetentionPlan(keep, archive, protected, already, keep_last)


def apply_plan(versions: Iterable[VersionInfo], plan: RetentionPlan) -> list[VersionInfo]:
    """The versions as they are after the plan is carried out by tagging (for dry runs and
    tests)."""
    archive = set(plan.archive)
    return [
        VersionInfo(v.version, set(v.aliases), v.created_ms, v.archived or v.version in archive)
        for v in versions
    ]
