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
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftloop.contracts import schema

FINE_BINS = 200
COARSE_BINS = 10
PCA_COMPONENTS = 5
SAMPLE_KEY = "_sample_key"
SKETCH_VERSION = 1


def pca_feature_names(n_components: int = PCA_COMPONENTS) -> list[str]:
    return [f"embedding_pc{i + 1}" for i in range(n_components)]


def _quantile_edges(values: np.ndarray, n_bins: int) -> list[float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("cannot fit bins on a column with no finite values")
    qs = np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
    return [float(v) for v in np.unique(qs)]


@dataclass(frozen=True)
class Binning:
    """Bin edges and the embedding basis every profile of one comparison shares."""

    fine_edges: dict[str, list[float]]
    coarse_edges: dict[str, list[float]]
    pca_mean: list[float]
    pca_components: list[list[float]]
    version: int = SKETCH_VERSION

    @property
    def numeric_features(self) -> list[str]:
        return list(self.fine_edges)

    @property
    def binning_id(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:24]

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        return (embeddings - np.asarray(self.pca_mean)) @ np.asarray(self.pca_components).T

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "fine_edges": self.fine_edges,
            "coarse_edges": self.coarse_edges,
            "pca_mean": self.pca_mean,
            "pca_components": self.pca_components,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Binning:
        if data.get("version") != SKETCH_VERSION:
            raise ValueError(f"binning version {data.get('version')} != {SKETCH_VERSION}")
        return cls(
            fine_edges={k: list(v) for k, v in data["fine_edges"].items()},
            coarse_edges={k: list(v) for k, v in data["coarse_edges"].items()},
            pca_mean=list(data["pca_mean"]),
            pca_components=[list(r) for r in data["pca_components"]],
        )

    @classmethod
    def fit(cls, sample, n_components: int = PCA_COMPONENTS) -> Binning:
        """Fit on a reference sample (a pyarrow Table or RecordBatch with the contract's columns)."""
        numeric = {name: _numeric_column(sample, name) for name in schema.NUMERIC_FEATURES}
        embeddings = embedding_matrix(sample)
        mean = embeddings.mean(axis=0)
        # principal axes of the centred sample; sign fixed so the basis is reproducible
        _, _, vt = np.linalg.svd(embeddings - mean, full_matrices=False)
        components = vt[:n_components]
        signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
        components = components * signs[:, None]
        projected = (embeddings - mean) @ components.T
        for i, name in enumerate(pca_feature_names(n_components)):
            numeric[name] = projected[:, i]
        return cls(
            fine_edges={k: _quantile_edges(v, FINE_BINS) for k, v in numeric.items()},
            coarse_edges={k: _quantile_edges(v, COARSE_BINS) for k, v in numeric.items()},
            pca_mean=[float(v) for v in mean],
            pca_components=[[float(v) for v in row] for row in components],
        )


def _numeric_column(batch, name: str) -> np.ndarray:
    column = batch.column(name)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=float)


def embedding_matrix(batch) -> np.ndarray:
    column = batch.column(schema.EMBEDDING_COLUMN)
    if hasattr(column, "combine_chunks"):
        column = column.combine_chunks()
    values = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=float)
    return values.reshape(len(column), schema.EMBEDDING_DIM)


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

    def add(self, values: np.ndarray, fine_edges: list[float], coarse_edges: list[float]) -> None:
        finite = np.isfinite(values)
        self.nulls += int((~finite).sum())
        v = values[finite]
        if v.size == 0:
            return
        fine_idx = np.searchsorted(fine_edges, v, side="right")
        self.fine_counts += np.bincount(fine_idx, minlength=self.fine_counts.size)
        self.fine_sums += np.bincount(fine_idx, weights=v, minlength=self.fine_sums.size)
        coarse_idx = np.searchsorted(coarse_edges, v, side="right")
        self.coarse_counts += np.bincount(coarse_idx, minlength=self.coarse_counts.size)
        self.count += int(v.size)
        self.total += float(v.sum())
        self.total_sq += float(np.dot(v, v))
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
            categorical={name: {} for name in schema.CATEGORICAL_FEATURES},
        )

    def add_batch(self, batch, binning: Binning) -> None:
        for name in schema.NUMERIC_FEATURES:
            self.numeric[name].add(
                _numeric_column(batch, name), binning.fine_edges[name], binning.coarse_edges[name]
            )
        projected = binning.project(embedding_matrix(batch))
        for i, name in enumerate(pca_feature_names(len(binning.pca_components))):
            self.numeric[name].add(
                projected[:, i], binning.fine_edges[name], binning.coarse_edges[name]
            )
        for name in schema.CATEGORICAL_FEATURES:
            counts = self.categorical[name]
            for value in batch.column(name).to_pylist():
                key = "<null>" if value is None else str(value)
                counts[key] = counts.get(key, 0) + 1
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


def merge_profiles(profiles: Iterable[Profile]) -> Profile:
    merged: Profile | None = None
    for profile in profiles:
        merged = profile if merged is None else merged.merge(profile)
    if merged is None:
        raise ValueError("no profiles to merge")
    return merged


# --- bottom-k samples -------------------------------------------------------------------


def seeded_rng(*parts: str) -> np.random.Generator:
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def bottom_k(table, k: int):
    """The k rows with the smallest sample keys, sorted by key."""
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return table
    order = pc.sort_indices(table, sort_keys=[(SAMPLE_KEY, "ascending")])
    return table.take(order[:k])


def keyed_batch(batch, rng: np.random.Generator):
    import pyarrow as pa

    keys = pa.array(rng.random(batch.num_rows))
    table = pa.Table.from_batches([batch])
    return table.append_column(SAMPLE_KEY, keys)


def merge_samples(samples: Iterable, k: int):
    import pyarrow as pa

    tables = [s for s in samples if s is not None and s.num_rows]
    if not tables:
        raise ValueError("no sample rows to merge")
    return bottom_k(pa.concat_tables(tables, promote_options="default"), k)


def table_to_parquet_bytes(table) -> bytes:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def parquet_bytes_to_table(data: bytes):
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data))


# --- reading partitions -----------------------------------------------------------------


def iter_partition_batches(
    s3, bucket: str, keys: Iterable[str], batch_size: int = 65_536
) -> Iterator:
    """Record batches of a partition's part files, one part in memory at a time."""
    import pyarrow.parquet as pq

    from driftloop.contracts.storage import get_bytes

    for key in keys:
        parquet = pq.ParquetFile(io.BytesIO(get_bytes(s3, bucket, key)))
        yield from parquet.iter_batches(batch_size=batch_size, columns=list(schema.COLUMN_NAMES))


def sketch_partition(
    batches: Iterable, *, binning: Binning | None, day: str, seed_key: str, sample_size: int
):
    """One pass over a partition: its profile (when a binning is given) and its bottom-k sample."""
    rng = seeded_rng(seed_key)
    profile = Profile.empty(binning) if binning is not None else None
    sample = None
    for batch in batches:
        if profile is not None:
            profile.add_batch(batch, binning)
        keyed = bottom_k(keyed_batch(batch, rng), sample_size)
        sample = keyed if sample is None else merge_samples([sample, keyed], sample_size)
    if profile is not None:
        profile.days = [day]
    return profile, sample
