"""The drift engine on any table: sketch, compare and decide on local Parquet files or Arrow
tables, with the same functions ``drift_monitor`` runs on S3 partitions.

    from driftloop.contracts.columns import load_contract
    from driftloop.drift.engine import DriftEngine

    engine = DriftEngine(contract=load_contract("columns.yaml"))
    reference = engine.reference(["ref/dt=2026-01-01", "ref/dt=2026-01-02", ...])
    current = [engine.sketch_day(path, reference=reference) for path in current_paths]
    decision = engine.check(reference, current)            # a drift.decision.Decision

Each source is one day (or any period the caller treats as the unit of a check): a
``pyarrow.Table``, a Parquet file, or a directory of Parquet files. A reference given as a
single source is cut into contiguous chunks (:data:`REFERENCE_CHUNKS`) so the calibration
still sees how much the reference varies within itself (NannyML's reference chunks). Memory is
bounded by one record batch plus the bounded samples.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftloop.config.drift_policy import Policy
from driftloop.contracts.columns import ColumnContract, inference_contract
from driftloop.drift.compare import (
    FeatureComparison,
    ReferenceDays,
    compare_check,
    feature_methods,
)
from driftloop.drift.decision import Decision, decide
from driftloop.drift.samples import merge_samples
from driftloop.drift.sketch import Binning, Profile, merge_profiles, sketch_partition
from driftloop.drift.sources import iter_source_batches

#: chunks a single-source reference is cut into for the calibration's day-to-day estimate
REFERENCE_CHUNKS = 10


@dataclass(frozen=True)
class DaySketch:
    """One day (unit) of data: its profile on the reference's bins and its bounded sample."""

    day: str
    profile: Profile
    sample: Any  # pyarrow.Table


@dataclass(frozen=True)
class Reference:
    binning: Binning
    profile: Profile
    sample: Any
    days: ReferenceDays


def source_name(source: Any, index: int) -> str:
    """A day's name: ``dt=…`` of a partition directory, a file's stem, else its position."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        return path.name.removeprefix("dt=") if path.is_dir() else path.stem
    return f"{index:04d}"


def _row_count(source: Any) -> int:
    import pyarrow.parquet as pq

    if hasattr(source, "num_rows"):
        return int(source.num_rows)
    path = Path(source)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def chunked_batches(batches: Iterator, total_rows: int, chunks: int) -> Iterator[tuple[int, Any]]:
    """``(chunk index, batch slice)`` in order: contiguous chunks of about
    ``total_rows / chunks`` rows, cut across batches (streamed: one batch in memory)."""
    chunks = max(1, min(chunks, total_rows))
    bounds = [round(i * total_rows / chunks) for i in range(chunks + 1)]
    offset, index = 0, 0
    for batch in batches:
        start = 0
        while start < batch.num_rows:
            position = offset + start
            while index < chunks - 1 and position >= bounds[index + 1]:
                index += 1
            take = min(batch.num_rows - start, max(bounds[index + 1] - position, 1))
            yield index, batch.slice(start, take)
            start += take
        offset += batch.num_rows


class DriftEngine:
    """Sketch, compare and decide for one table contract under one policy."""

    def __init__(self, contract: ColumnContract | None = None, policy: Policy | None = None):
        from driftloop.config.drift_policy import load_policy
        from driftloop.config.settings import DEFAULT_POLICY_PATH

        self.contract = contract if contract is not None else inference_contract()
        self.policy = policy if policy is not None else load_policy(DEFAULT_POLICY_PATH)

    # the project's own contract keeps binnings (and their ids) as they always were
    @property
    def _binning_contract(self) -> ColumnContract | None:
        return None if self.contract == inference_contract() else self.contract

    def _sketch(self, batches, *, binning: Binning | None, day: str):
        return sketch_partition(
            batches,
            binning=binning,
            day=day,
            seed_key=f"{self.contract.name}/{day}",
            sample_size=self.policy.sample_size,
        )

    def _units(self, sources: Sequence[Any], chunks: int) -> Iterator[tuple[str, Iterator]]:
        """The reference's units, streamed: one per source, or contiguous chunks of a single
        source (each pass over the reference calls this again: one batch in memory)."""
        from itertools import groupby

        columns = self.contract.columns
        if len(sources) == 1 and chunks > 1:
            source = sources[0]
            name = source_name(source, 0)
            stream = chunked_batches(
                iter_source_batches(source, columns), _row_count(source), chunks
            )
            for index, group in groupby(stream, key=lambda pair: pair[0]):
                yield f"{name}#{index + 1}", (batch for _, batch in group)
            return
        for i, source in enumerate(sources):
            yield source_name(source, i), iter_source_batches(source, columns)

    def reference(
        self,
        sources: Sequence[Any],
        days: Sequence[str] | None = None,
        chunks: int = REFERENCE_CHUNKS,
    ) -> Reference:
        """Fit the bins on the reference's sample and sketch each of its days (two passes)."""
        sources = list(sources)
        if not sources:
            raise ValueError("a reference needs at least one source")

        def units():
            named = self._units(sources, chunks)
            if days is None:
                yield from named
                return
            for day, (_, batches) in zip(days, named, strict=True):
                yield day, batches

        if days is not None and len(sources) > 1 and len(days) != len(sources):
            raise ValueError(f"{len(days)} day names for {len(sources)} reference sources")
        samples = [self._sketch(b, binning=None, day=d)[1] for d, b in units()]
        sample = merge_samples(samples, self.policy.sample_size)
        binning = Binning.fit(sample, contract=self._binning_contract)
        profiles = [self._sketch(b, binning=binning, day=d)[0] for d, b in units()]
        return Reference(
            binning, merge_profiles(profiles), sample, ReferenceDays.from_profiles(profiles)
        )

    def sketch_day(self, source: Any, *, reference: Reference, day: str | None = None) -> DaySketch:
        name = day if day is not None else source_name(source, 0)
        profile, sample = self._sketch(
            iter_source_batches(source, self.contract.columns), binning=reference.binning, day=name
        )
        if profile.rows == 0:
            raise ValueError(f"day {name!r}: no rows")
        return DaySketch(name, profile, sample)

    def compare(
        self, reference: Reference, current: Sequence[DaySketch]
    ) -> list[FeatureComparison]:
        if not current:
            raise ValueError("a check needs at least one current day")
        names = [d.day for d in current]
        if len(set(names)) != len(names):
            raise ValueError(f"current days must be distinct, got {names}")
        embedding = self.contract.embedding
        return compare_check(
            reference.profile,
            reference.sample,
            [(d.profile, d.sample) for d in current],
            methods=feature_methods(
                self.policy, reference.profile, embedding.column if embedding else None
            ),
            reference_days=reference.days,
            recent_days=self.policy.recent_days,
            mmd_sample_size=self.policy.mmd_sample_size,
            mmd_permutations=self.policy.mmd_permutations,
            draws=self.policy.calibration_draws,
            embedding=embedding,
        )

    def check(
        self,
        reference: Reference,
        current: Sequence[DaySketch],
        previous_levels: Sequence[Mapping[str, str]] = (),
    ) -> Decision:
        """The verdict of one check; ``previous_levels``: earlier checks' ``feature_levels``,
        newest first (the k-of-n rule)."""
        return decide(self.compare(reference, current), self.policy, previous_levels)


def decision_rows(decision: Decision) -> list[dict[str, Any]]:
    """One row per feature for a table: level, effect and significance of its shown window."""
    rows = []
    for f in sorted(decision.features, key=lambda v: (v.feature,)):
        rows.append(
            {
                "feature": f.feature,
                "kind": f.kind,
                "method": f.method,
                "window": f.window,
                "effect": f.effect,
                "q_value": f.q_value,
                "level_now": f.level_now,
                "alert_level": f.alert_level,
                "alerting": f.alerting,
            }
        )
    return rows


def format_table(decision: Decision) -> str:
    """The decision as a text table: each feature's shown window, effect, q-value, its level in
    this check alone (``now``) and after the k-of-n rule (``alert``)."""
    rows = decision_rows(decision)
    header = (
        f"{'feature':<22} {'kind':<11} {'method':<16} {'window':<8} {'effect':>9} {'q':>9}  "
        f"{'now':<8} alert"
    )
    lines = [f"severity: {decision.severity} (policy {decision.policy_version})", header]
    for r in rows:
        alert = r["alert_level"] if r["alerting"] else "(not alerting)"
        lines.append(
            f"{r['feature']:<22} {r['kind']:<11} {r['method']:<16} {r['window']:<8} "
            f"{r['effect']:>9.4f} {r['q_value']:>9.2e}  {r['level_now']:<8} {alert}"
        )
    return "\n".join(lines)
