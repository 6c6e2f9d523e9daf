"""One column map expectation's counts and first unexpected values, added up record batch
by record batch into Great Expectations' result shape."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from driftloop.drift.expectations import (
    RESULT_FORMAT,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa


PARTIAL_COUNT = int(RESULT_FORMAT["partial_unexpected_count"])

# --------------------------------------------------------------------------------------
# accumulating a column map expectation over batches


@dataclass
class _MapCounts:
    """Counts and first examples of one column map expectation, added up batch by batch."""

    #: False: the result carries no missing counts (GE's not-null check)
    with_missing: bool = True
    element_count: int = 0
    missing_count: int = 0
    unexpected_count: int = 0
    examples: list[Any] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    #: values whose identity pandas keeps apart (NaN): each counts on its own
    ungrouped: bool = False
    error: str | None = None

    def add(self, *, rows: int, missing: int, unexpected: int) -> None:
        self.element_count += rows
        self.missing_count += missing
        self.unexpected_count += unexpected

    @property
    def wants_examples(self) -> int:
        return PARTIAL_COUNT - len(self.examples)

    def add_examples(self, offset: int, indices: pa.Array, values: list[Any]) -> None:
        room = self.wants_examples
        self.indices += [offset + int(i) for i in indices.to_pylist()[:room]]
        self.examples += [json_value(v) for v in values[:room]]

    def result(self) -> dict[str, Any]:
        n, unexpected = self.element_count, self.unexpected_count
        nonmissing = n - self.missing_count
        total = unexpected / n * 100 if n else None
        if self.with_missing:
            percent = unexpected / nonmissing * 100 if n and nonmissing else None
        else:
            percent = total
        out: dict[str, Any] = {
            "element_count": n,
            "unexpected_count": unexpected,
            "unexpected_percent": percent,
            "partial_unexpected_list": list(self.examples),
        }
        if self.with_missing:
            out |= {
                "missing_count": self.missing_count,
                "missing_percent": self.missing_count / n * 100 if n else None,
                "unexpected_percent_total": total,
                "unexpected_percent_nonmissing": percent,
            }
        counts = _partial_counts(self.examples, ungrouped=self.ungrouped)
        if counts is not None:
            out["partial_unexpected_counts"] = counts
        out["partial_unexpected_index_list"] = list(self.indices)
        return out


def json_value(value: Any) -> Any:
    """An example value as GE's result document holds it (its JSON conversion): dates and
    times in ISO format, decimals as floats, bytes as their ``str``, lists as lists."""
    import datetime as dt
    from decimal import Decimal

    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return str(value)
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return str(value)


def _partial_counts(values: list[Any], *, ungrouped: bool) -> list[dict[str, Any]] | None:
    """GE's ``partial_unexpected_counts``: the examples counted, most common first, then by
    value; None where GE leaves it out (values that do not sort)."""
    if ungrouped:  # NaN != NaN: pandas' Counter keeps every missing float apart
        return [{"value": v, "count": 1} for v in values]
    try:
        ordered = sorted(Counter(values).most_common(PARTIAL_COUNT), key=lambda x: (-x[1], x[0]))
    except TypeError:
        return None
    return [{"value": value, "count": count} for value, count in ordered]
