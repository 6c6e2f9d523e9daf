"""The inference-log data contract: one row per scored image.

This module is the single source of truth for the columns the serving side writes to
``inference/dt=YYYY-MM-DD/*.parquet``: the synthetic generator writes them, validation
checks them, and drift statistics read the roles from here. Columns beyond these are
accepted (additive schema change), listed as a warning and ignored by drift statistics; a
missing or retyped column of the contract fails validation. It imports nothing heavy so
that DAG files may read it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EMBEDDING_DIM = 64
CLASS_NAMES: tuple[str, ...] = ("ball", "player")
# ``none`` is the top class of an image with no detections.
TOP_CLASSES: tuple[str, ...] = (*CLASS_NAMES, "none")

Role = Literal["id", "time", "numeric", "categorical", "embedding"]


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # pyarrow type string: "double", "int32", "string", "timestamp[us, tz=UTC]", ...
    role: Role
    min_value: float | None = None
    max_value: float | None = None
    nullable: bool = False
    drift: bool = True  # whether drift statistics are computed for it


COLUMNS: tuple[Column, ...] = (
    Column("ts", "timestamp[us, tz=UTC]", "time", drift=False),
    Column("image_id", "string", "id", drift=False),
    Column("camera_id", "string", "categorical"),
    Column("model_version", "string", "categorical", drift=False),
    Column("brightness", "double", "numeric", 0.0, 255.0),
    Column("contrast", "double", "numeric", 0.0, 128.0),
    Column("saturation", "double", "numeric", 0.0, 1.0),
    Column("sharpness", "double", "numeric", 0.0, 10_000.0),
    Column("mean_r", "double", "numeric", 0.0, 255.0),
    Column("mean_g", "double", "numeric", 0.0, 255.0),
    Column("mean_b", "double", "numeric", 0.0, 255.0),
    Column("embedding", f"fixed_size_list<item: float>[{EMBEDDING_DIM}]", "embedding"),
    Column("n_detections", "int32", "numeric", 0, 100),
    Column("top_class", "string", "categorical"),
    Column("confidence_mean", "double", "numeric", 0.0, 1.0),
    Column("confidence_max", "double", "numeric", 0.0, 1.0),
    Column("latency_ms", "double", "numeric", 0.0, 60_000.0),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}

#: numeric columns whose distribution is compared between windows
NUMERIC_FEATURES: tuple[str, ...] = tuple(
    c.name for c in COLUMNS if c.role == "numeric" and c.drift
)
#: categorical columns whose category mix is compared between windows
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(
    c.name for c in COLUMNS if c.role == "categorical" and c.drift
)
EMBEDDING_COLUMN = "embedding"
#: when the image was scored: every row of ``dt=DAY`` must fall in [DAY, DAY + 1) UTC
TIME_COLUMN = "ts"

#: categories the contract allows; anything else fails validation
ALLOWED_CATEGORIES: dict[str, tuple[str, ...]] = {
    "top_class": TOP_CLASSES,
}
#: camera ids are an open set (new cameras are drift, not corruption) but must look like ids
CAMERA_ID_REGEX = r"^cam-[0-9]{2,3}$"

#: the prediction-side columns: drift here with stable inputs is the concept-drift proxy
PREDICTION_FEATURES: tuple[str, ...] = (
    "n_detections",
    "top_class",
    "confidence_mean",
    "confidence_max",
)


def arrow_schema():
    """The pyarrow schema of an inference-log partition (imports pyarrow lazily)."""
    import pyarrow as pa

    types = {
        "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
        "string": pa.string(),
        "double": pa.float64(),
        "int32": pa.int32(),
        f"fixed_size_list<item: float>[{EMBEDDING_DIM}]": pa.list_(pa.float32(), EMBEDDING_DIM),
    }
    return pa.schema([pa.field(c.name, types[c.dtype], nullable=c.nullable) for c in COLUMNS])
