"""The champion's confidences of a day, from the inference logs (``inference/dt=D/*.parquet``).

Only a complete day (its ``_SUCCESS`` marker) is read, part by part and batch by batch, only
the columns the estimate needs (:data:`COLUMNS`, names from
:mod:`driftloop.contracts.schema`), exactly the content listed (ETag). Rows of other versions
(a challenger in shadow or canary) are left out. A part that cannot be read, or whose
``confidence_max`` is missing or out of the contract's range, is *rejected* with its key and
reason and its rows are not used; a store fault raises (the task retries).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from driftloop.contracts import schema, storage
from driftloop.retrain.frames import rejection

MODEL_COLUMN = "model_version"
SCORE_COLUMN = "confidence_max"
COLUMNS = [MODEL_COLUMN, SCORE_COLUMN]
BATCH_ROWS = 65_536


@dataclass
class DayConfidences:
    day: str
    complete: bool  # the day's _SUCCESS marker is there
    scores: list[float] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)


def _part_scores(key: str, parquet, version: str) -> tuple[list[float], str | None]:
    import numpy as np
    import pyarrow.compute as pc

    from driftloop.drift.partition_read import iter_part_batches

    missing = [c for c in COLUMNS if c not in parquet.schema_arrow.names]
    if missing:
        return [], f"{key}: missing column(s) {missing} of the inference-log contract"
    column = schema.BY_NAME[SCORE_COLUMN]
    out: list[float] = []
    for batch, reason in iter_part_batches(key, parquet, COLUMNS, BATCH_ROWS):
        if reason is not None:
            return [], reason
        mine = batch.filter(pc.equal(batch.column(MODEL_COLUMN).cast("string"), version))
        values = mine.column(SCORE_COLUMN).to_numpy(zero_copy_only=False).astype(np.float64)
        bad = ~np.isfinite(values) | (values < column.min_value) | (values > column.max_value)
        if bad.any():
            return [], (
                f"{key}: {int(bad.sum())} {SCORE_COLUMN} value(s) missing or outside "
                f"[{column.min_value}, {column.max_value}]"
            )
        out.extend(values.tolist())
    return out, None


def champion_confidences(s3, bucket: str, day: date | str, version: str) -> DayConfidences:
    """The ``confidence_max`` of every row the champion ``version`` served on ``day``."""
    from driftloop.drift.partition_read import fetch_part, open_part

    partition = storage.list_partition(s3, bucket, day)
    out = DayConfidences(partition.day, partition.has_success)
    if not partition.has_success:
        return out
    for key, etag in zip(partition.keys, partition.etags, strict=True):
        data, reason = fetch_part(s3, bucket, key, etag)
        parquet = None
        if reason is None:
            parquet, reason = open_part(key, data)
        if reason is None:
            scores, reason = _part_scores(key, parquet, str(version))
        if reason is not None:
            out.rejected.append(rejection(key, reason))
            continue
        out.scores.extend(scores)
    return out
