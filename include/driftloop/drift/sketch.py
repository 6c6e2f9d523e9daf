"""Mergeable sketches of inference-log windows.

A ``Binning`` is fitted once on a bounded sample of the reference window: fine and coarse
reference-quantile edges for every numeric feature, and a PCA basis for the embedding whose
components are sketched like numeric features. A ``Profile`` holds, per feature, counts on
those bins (plus per-bin sums, moments, min/max and nulls) and per-category counts. Profiles
of partitions add up exactly, so a 14-day window is the sum of 14 cached daily profiles and
memory is bounded by one record batch, whatever the number of rows.

A ``bottom-k`` sample (the k rows with the smallest seeded random keys) rides along: the
union of per-partition bottom-k samples, cut back to k, is a uniform sample of the window,
and its first m rows are a uniform sample of size m. It feeds the Evidently report and the
embedding MMD test.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftloop.contracts import schema
from driftloop.contracts.columns import ColumnContract, inference_contract
from driftloop.drift.bins import EdgeLookup, bin_maps, quantile_edges
from driftloop.drift.samples import (
    SAMPLE_KEY,
    keyed_batch,
    merge_samples,
    seeded_rng,
)

PCA_COMPONENTS = 5
SKETCH_VERSION = 1


def pca_feature_names(
    n_components: int = PCA_COMPONENTS, column: str = schema.EMBEDDING_COLUMN
) -> list[str]:
    return [f"{column}_pc{i + 1}" for i in range(n_components)]


@dataclass(frozen=True)
class Binning:
    """Bin edges and the embedding basis every profile of one comparison shares."""

    fine_edges: dict[str, list[float]]
    coarse_edges: dict[str, list[float]]
    pca_mean: list[float]
    pca_components: list[list[float]]
    version: int = SKETCH_VERSION
    #: the table's column roles; None: the project's inference logs (binnings written before
    #: contracts existed carry none, and their ids must not change)
    contract: ColumnContract | None = None

    @property
    def columns(self) -> ColumnContract:
        return self.contract if self.contract is not None else inference_contract()

    @property
    def numeric_features(self) -> list[str]:
        return list(self.fine_edges)

    @property
    def pca_features(self) -> list[str]:
        embedding = self.columns.embedding
        if embedding is None or not self.pca_components:
            return []
        return pca_feature_names(len(self.pca_components), embedding.column)

    @property
    def binning_id(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:24]

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """PCA coordinates of embedding rows. Rows in their own precision (float32 from the
        logs) are multiplied as they are and centred after: ``(E - m) C' = E C' - m C'``, which
        spares a float64 copy of the whole matrix (its cost dominated sketching)."""
        components = np.asarray(self.pca_components)
        offset = np.asarray(self.pca_mean) @ components.T
        product = embeddings @ components.T.astype(embeddings.dtype, copy=False)
        return product.astype(float, copy=False) - offset

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "fine_edges": self.fine_edges,
            "coarse_edges": self.coarse_edges,
            "pca_mean": self.pca_mean,
            "pca_components": self.pca_components,
        }
        if self.contract is not None and self.contract != inference_contract():
            out["contract"] = self.contract.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Binning:
        if data.get("version") != SKETCH_VERSION:
            raise ValueError(f"binning version {data.get('version')} != {SKETCH_VERSION}")
        return cls(
            fine_edges={k: list(v) for k, v in data["fine_edges"].items()},
            coarse_edges={k: list(v) for k, v in data["coarse_edges"].items()},
            pca_mean=list(data["pca_mean"]),
            pca_components=[list(r) for r in data["pca_components"]],
            contract=(
                ColumnContract.from_dict(data["contract"], source="binning")
                if data.get("contract")
                else None
            ),
        )

    @classmethod
    def fit(
        cls, sample, n_components: int = PCA_COMPONENTS, contract: ColumnContract | None = None
    ) -> Binning:
        """Fit on a reference sample (a pyarrow Table or RecordBatch with the contract's
        columns; ``contract`` None: the project's inference logs)."""
        columns = contract if contract is not None else inference_contract()
        missing = [c for c in columns.columns if c not in sample.schema.names]
        if missing:
            raise ValueError(
                f"contract {columns.name!r}: the reference has no column(s) {missing}; "
                f"it has {sample.schema.names}"
            )
        numeric = {name: _numeric_column(sample, name) for name in columns.numeric}
        mean: np.ndarray = np.zeros(0)
        components: np.ndarray = np.zeros((0, 0))
        if columns.embedding is not None:
            embeddings = embedding_matrix(sample, columns.embedding.column, columns.embedding.dim)
            mean = embeddings.mean(axis=0)
            # principal axes of the centred sample; sign fixed so the basis is reproducible
            _, _, vt = np.linalg.svd(embeddings - mean, full_matrices=False)
            components = vt[:n_components]
            signs = np.sign(
                components[np.arange(len(components)), np.abs(components).argmax(axis=1)]
            )
            components = components * signs[:, None]
            projected = (embeddings - mean) @ components.T
            names = pca_feature_names(len(components), columns.embedding.column)
            for i, name in enumerate(names):
                numeric[name] = projected[:, i]
        edges = {k: quantile_edges(v, k) for k, v in numeric.items()}
        return cls(
            fine_edges={k: fine for k, (fine, _) in edges.items()},
            coarse_edges={k: coarse for k, (_, coarse) in edges.items()},
            pca_mean=[float(v) for v in mean],
            pca_components=[[float(v) for v in row] for row in components],
            contract=contract,
        )


def _numeric_column(batch, name: str) -> np.ndarray:
    column = batch.column(name)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=float)


def embedding_matrix(
    batch,
    column_name: str = schema.EMBEDDING_COLUMN,
    dim: int = schema.EMBEDDING_DIM,
    dtype=float,
) -> np.ndarray:
    """The embedding column as an ``(rows, dim)`` matrix (``dtype=None``: the stored precision,
    without a copy where Arrow allows)."""
    column = batch.column(column_name)
    if hasattr(column, "combine_chunks"):
        column = column.combine_chunks()
    values = column.flatten().to_numpy(zero_copy_only=False)
    if dtype is not None:
        values = np.asarray(values, dtype=dtype)
    if values.size != len(column) * dim:
        raise ValueError(
            f"column {column_name!r}: {values.size} values in {len(column)} rows, "
            f"expected {dim} per row (nulls or ragged lists)"
        )
    return values.reshape(len(column), dim)


@dataclass
class NumericSketch:
    fine_counts: np.ndarray
    fine_sums: np.ndarray
    coarse_counts: np.ndarray
    count: int = 0
    nulls: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")

    @classmethod
    def empty(cls, fine_edges: list[float], coarse_edges: list[float]) -> NumericSketch:
        nf, nc = len(fine_edges) + 1, len(coarse_edges) + 1
        return cls(np.zeros(nf, np.int64), np.zeros(nf), np.zeros(nc, np.int64))

    def add(
        self,
        values: np.ndarray,
        fine_edges: list[float],
        coarse_edges: list[float],
        coarse_of_fine: np.ndarray | None = None,
        lookup: EdgeLookup | None = None,
    ) -> None:
        """Count ``values`` (NaN and inf are nulls). ``coarse_of_fine`` (see
        :func:`_coarse_index`) maps fine bins to coarse bins when the coarse edges are fine
        edges, which saves the second search; ``lookup`` replaces the binary search."""
        finite = np.isfinite(values)
        v = values if finite.all() else values[finite]
        self.nulls += int(values.size - v.size)
        if v.size == 0:
            return
        if lookup is not None:
            fine_idx = lookup.index(v)
        else:
            fine_idx = np.searchsorted(fine_edges, v, side="right")
        fine_counts = np.bincount(fine_idx, minlength=self.fine_counts.size)
        self.fine_counts += fine_counts
        self.fine_sums += np.bincount(fine_idx, weights=v, minlength=self.fine_sums.size)
        if coarse_of_fine is not None:
            self.coarse_counts += np.bincount(
                coarse_of_fine, weights=fine_counts, minlength=self.coarse_counts.size
            ).astype(np.int64)
        else:
            coarse_idx = np.searchsorted(coarse_edges, v, side="right")
            self.coarse_counts += np.bincount(coarse_idx, minlength=self.coarse_counts.size)
        self.count += int(v.size)
        self.total += float(v.sum())
        # vdot, not dot: no BLAS call (its thread pool stalls on a busy machine)
        self.total_sq += float(np.vdot(v, v))
        self.minimum = min(self.minimum, float(v.min()))
        self.maximum = max(self.maximum, float(v.max()))

    def merge(self, other: NumericSketch) -> NumericSketch:
        return NumericSketch(
            self.fine_counts + other.fine_counts,
            self.fine_sums + other.fine_sums,
            self.coarse_counts + other.coarse_counts,
            self.count + other.count,
            self.nulls + other.nulls,
            self.total + other.total,
            self.total_sq + other.total_sq,
            min(self.minimum, other.minimum),
            max(self.maximum, other.maximum),
        )

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    @property
    def std(self) -> float:
        if self.count == 0:
            return float("nan")
        variance = max(self.total_sq / self.count - self.mean**2, 0.0)
        return float(np.sqrt(variance))

    def to_dict(self) -> dict[str, Any]:
        return {
            "fine_counts": self.fine_counts.tolist(),
            "fine_sums": self.fine_sums.tolist(),
            "coarse_counts": self.coarse_counts.tolist(),
            "count": self.count,
            "nulls": self.nulls,
            "total": self.total,
            "total_sq": self.total_sq,
            "minimum": self.minimum if self.count else None,
            "maximum": self.maximum if self.count else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericSketch:
        return cls(
            np.asarray(data["fine_counts"], np.int64),
            np.asarray(data["fine_sums"], float),
            np.asarray(data["coarse_counts"], np.int64),
            int(data["count"]),
            int(data["nulls"]),
            float(data["total"]),
            float(data["total_sq"]),
            float("inf") if data["minimum"] is None else float(data["minimum"]),
            float("-inf") if data["maximum"] is None else float(data["maximum"]),
        )


@dataclass
class Profile:
    """Sketch of one partition or of a whole window (the sum of its partitions)."""

    binning_id: str
    numeric: dict[str, NumericSketch]
    categorical: dict[str, dict[str, int]]
    rows: int = 0
    days: list[str] = field(default_factory=list)

    @classmethod
    def empty(cls, binning: Binning) -> Profile:
        return cls(
            binning_id=binning.binning_id,
            numeric={
                name: NumericSketch.empty(binning.fine_edges[name], binning.coarse_edges[name])
                for name in binning.numeric_features
            },
            categorical={name: {} for name in binning.columns.categorical},
        )

    def add_batch(self, batch, binning: Binning) -> None:
        columns = binning.columns
        maps = bin_maps(binning)
        for name in columns.numeric:
            self.numeric[name].add(
                _numeric_column(batch, name),
                binning.fine_edges[name],
                binning.coarse_edges[name],
                *maps[name],
            )
        if binning.pca_features:
            embedding = columns.embedding
            projected = binning.project(
                embedding_matrix(batch, embedding.column, embedding.dim, dtype=None)
            )
            for i, name in enumerate(binning.pca_features):
                self.numeric[name].add(
                    np.ascontiguousarray(projected[:, i]),
                    binning.fine_edges[name],
                    binning.coarse_edges[name],
                    *maps[name],
                )
        for name in columns.categorical:
            counts = self.categorical[name]
            for key, count in category_counts(batch.column(name)).items():
                counts[key] = counts.get(key, 0) + count
        self.rows += batch.num_rows

    def merge(self, other: Profile) -> Profile:
        if other.binning_id != self.binning_id:
            raise ValueError(
                f"cannot merge profiles on different binnings: {self.binning_id} != {other.binning_id}"
            )
        categorical = {}
        for name in set(self.categorical) | set(other.categorical):
            merged = dict(self.categorical.get(name, {}))
            for key, count in other.categorical.get(name, {}).items():
                merged[key] = merged.get(key, 0) + count
            categorical[name] = merged
        return Profile(
            binning_id=self.binning_id,
            numeric={k: v.merge(other.numeric[k]) for k, v in self.numeric.items()},
            categorical=categorical,
            rows=self.rows + other.rows,
            days=sorted(set(self.days) | set(other.days)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SKETCH_VERSION,
            "binning_id": self.binning_id,
            "rows": self.rows,
            "days": self.days,
            "numeric": {k: v.to_dict() for k, v in self.numeric.items()},
            "categorical": self.categorical,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        if data.get("version") != SKETCH_VERSION:
            raise ValueError(f"profile version {data.get('version')} != {SKETCH_VERSION}")
        return cls(
            binning_id=data["binning_id"],
            numeric={k: NumericSketch.from_dict(v) for k, v in data["numeric"].items()},
            categorical={k: dict(v) for k, v in data["categorical"].items()},
            rows=int(data["rows"]),
            days=list(data["days"]),
        )


NULL_CATEGORY = "<null>"


def category_counts(column) -> dict[str, int]:
    """Counts of each value of a categorical Arrow column (nulls as ``<null>``), with Arrow
    compute: no Python loop over rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    counts = pc.value_counts(column)
    out: dict[str, int] = {}
    for value, count in zip(
        counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
    ):
        key = NULL_CATEGORY if value is None else str(value)
        out[key] = out.get(key, 0) + int(count)
    return out


def merge_profiles(profiles: Iterable[Profile]) -> Profile:
    merged: Profile | None = None
    for profile in profiles:
        merged = profile if merged is None else merged.merge(profile)
    if merged is None:
        raise ValueError("no profiles to merge")
    return merged


def sketch_partition(
    batches: Iterable, *, binning: Binning | None, day: str, seed_key: str, sample_size: int
):
    """One pass over a partition: its profile (when a binning is given) and its bottom-k sample."""
    from threadpoolctl import threadpool_limits

    rng = seeded_rng(seed_key)
    profile = Profile.empty(binning) if binning is not None else None
    sample = None
    # one BLAS thread: the embedding projection is small per batch, and a BLAS pool fighting
    # the Parquet decoder and other tasks for two cores costs more than it gives
    with threadpool_limits(1, user_api="blas"):
        # candidates (rows whose key is below the sample's largest) wait in ``pending`` and
        # are merged in bulk: one sort per few batches instead of one per batch
        pending: list = []
        pending_rows = 0
        for batch in batches:
            if profile is not None:
                profile.add_batch(batch, binning)
            full = sample is not None and sample.num_rows >= sample_size
            below = sample.column(SAMPLE_KEY)[-1].as_py() if full else None
            keyed = keyed_batch(batch, rng, below)
            pending.append(keyed)
            pending_rows += keyed.num_rows
            if sample is None or pending_rows >= sample_size:
                sample = merge_samples([sample, *pending], sample_size)
                pending, pending_rows = [], 0
        if pending:
            sample = merge_samples([sample, *pending], sample_size)
    if profile is not None:
        profile.days = [day]
    return profile, sample
