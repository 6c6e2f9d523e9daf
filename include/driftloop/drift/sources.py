"""Record batches of the tables the drift engine reads: S3 partitions, local Parquet files and
directories, Arrow tables: one batch (or one part file) in memory at a time."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

from driftloop.contracts import schema


def iter_partition_batches(
    s3,
    bucket: str,
    keys: Iterable[str],
    batch_size: int = 65_536,
    columns: Iterable[str] = schema.COLUMN_NAMES,
) -> Iterator:
    """Record batches of a partition's part files, one part in memory at a time."""
    import pyarrow.parquet as pq

    from driftloop.contracts.storage import get_bytes

    for key in keys:
        parquet = pq.ParquetFile(io.BytesIO(get_bytes(s3, bucket, key)))
        yield from parquet.iter_batches(batch_size=batch_size, columns=list(columns))


def iter_source_batches(source, columns: Iterable[str], batch_size: int = 65_536) -> Iterator:
    """Record batches of a local source: a pyarrow Table or RecordBatch, a Parquet file, or a
    directory of Parquet files (read in name order), one file in memory at a time; only
    ``columns`` are read. A missing column raises naming the source."""
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(columns)
    if isinstance(source, pa.RecordBatch):
        source = pa.Table.from_batches([source])
    if isinstance(source, pa.Table):
        missing = [c for c in columns if c not in source.column_names]
        if missing:
            raise ValueError(f"table has no column(s) {missing}; it has {source.column_names}")
        yield from source.select(columns).to_batches(max_chunksize=batch_size)
        return
    path = Path(source)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"{path}: no .parquet files")
    for file in files:
        parquet = pq.ParquetFile(file)
        missing = [c for c in columns if c not in parquet.schema_arrow.names]
        if missing:
            raise ValueError(f"{file}: no column(s) {missing}; it has {parquet.schema_arrow.names}")
        yield from parquet.iter_batches(batch_size=batch_size, columns=columns)
