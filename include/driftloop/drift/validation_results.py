"""The results of validating a drift check's partitions: a verdict per day, a summary per
window, and the error of a window with too few valid days.

Plain dataclasses, JSON round-trippable (they travel through XCom and into quarantine
documents); :mod:`.validation` produces them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from driftloop.contracts import storage


class InsufficientValidData(ValueError):
    """Too few valid partitions in a window to compute drift statistics."""


# --------------------------------------------------------------------------------------
# results


@dataclass
class PartitionVerdict:
    """The outcome of validating one day's partition."""

    day: str
    content_id: str
    valid: bool
    reasons: list[str] = field(default_factory=list)
    #: JSON-serialisable: the (time-independent) GE validation result, or the read error(s)
    result: dict[str, Any] = field(default_factory=dict)
    row_count: int = 0
    #: no Parquet file for the day: reported as missing, not as invalid
    missing: bool = False
    #: accepted findings worth a look: additive columns, duplicate part files
    warnings: list[str] = field(default_factory=list)
    #: columns the contract does not name (accepted; drift statistics ignore them)
    extra_columns: list[str] = field(default_factory=list)
    #: part files whose bytes equal an earlier part's: left out, so rows count once
    duplicate_keys: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartitionVerdict:
        return cls(
            day=data["day"],
            content_id=data["content_id"],
            valid=bool(data["valid"]),
            reasons=list(data.get("reasons", [])),
            result=dict(data.get("result", {})),
            row_count=int(data.get("row_count", 0)),
            missing=bool(data.get("missing", False)),
            warnings=list(data.get("warnings", [])),
            extra_columns=list(data.get("extra_columns", [])),
            duplicate_keys=list(data.get("duplicate_keys", [])),
        )


@dataclass
class WindowValidation:
    """Validation summary of a window of days."""

    valid_days: list[str]
    #: day -> reasons
    invalid: dict[str, list[str]]
    missing_days: list[str]
    valid_share: float
    min_valid_share: float
    #: day -> content id of the invalid partition (names the quarantine folder)
    invalid_content_ids: dict[str, str] = field(default_factory=dict)

    @property
    def n_days(self) -> int:
        return len(self.valid_days) + len(self.invalid) + len(self.missing_days)

    @property
    def sufficient(self) -> bool:
        if self.min_valid_share <= 0:
            return True
        # a tiny tolerance so that e.g. 4/5 against 0.8 counts as "at the threshold"
        return self.n_days > 0 and self.valid_share + 1e-9 >= self.min_valid_share

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, window_name: str) -> str:
        lines = [
            f"window {window_name!r}: {len(self.valid_days)}/{self.n_days} days valid "
            f"(valid share {self.valid_share:.3f}, required {self.min_valid_share:.3f})"
        ]
        for day in sorted(self.invalid):
            cid = self.invalid_content_ids.get(day, "")
            where = storage.inference_prefix(day) + (f" (content {cid})" if cid else "")
            lines.append(f"  invalid partition {where}: " + "; ".join(self.invalid[day]))
        if self.missing_days:
            lines.append("  missing days (no parquet files): " + ", ".join(self.missing_days))
        return "\n".join(lines)

    def raise_if_insufficient(self, window_name: str) -> None:
        if not self.sufficient:
            raise InsufficientValidData(self.describe(window_name))


# --------------------------------------------------------------------------------------
# summary


def summarize(
    verdicts: Sequence[PartitionVerdict],
    expected_days: Iterable[date | str],
    min_valid_share: float,
) -> WindowValidation:
    """Valid / invalid / missing days of a window; share = valid days / all days.

    All days are the expected days plus any day a verdict is about. An expected day without
    a verdict, or whose verdict is ``missing``, is a missing day.
    """
    by_day: dict[str, PartitionVerdict] = {}
    for v in verdicts:
        if v.day in by_day:
            raise ValueError(f"two verdicts for day {v.day}")
        by_day[v.day] = v
    days = sorted({storage.day_str(d) for d in expected_days} | set(by_day))
    valid_days, missing_days = [], []
    invalid: dict[str, list[str]] = {}
    invalid_ids: dict[str, str] = {}
    for day in days:
        v = by_day.get(day)
        if v is None or v.missing:
            missing_days.append(day)
        elif v.valid:
            valid_days.append(day)
        else:
            invalid[day] = list(v.reasons)
            invalid_ids[day] = v.content_id
    share = len(valid_days) / len(days) if days else 0.0
    return WindowValidation(
        valid_days=valid_days,
        invalid=invalid,
        missing_days=missing_days,
        valid_share=share,
        min_valid_share=float(min_valid_share),
        invalid_content_ids=invalid_ids,
    )
