"""Bounded uniform samples of a window: bottom-k by seeded random keys.

The k rows with the smallest keys of each partition; the union of per-partition samples, cut
back to k, is a uniform sample of the window, and its first m rows a uniform sample of size m.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable

import numpy as np

SAMPLE_KEY = "_sample_key"


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


def keyed_batch(batch, rng: np.random.Generator, below: float | None = None):
    """The batch with a random sample key per row; with ``below``, only the rows whose key is
    below it (the others cannot enter a bottom-k sample whose largest key is ``below``: the
    keys drawn, and so the sample, are the same either way)."""
    import pyarrow as pa

    keys = rng.random(batch.num_rows)
    table = pa.Table.from_batches([batch])
    if below is not None:
        keep = np.flatnonzero(keys < below)
        return table.take(pa.array(keep)).append_column(SAMPLE_KEY, pa.array(keys[keep]))
    return table.append_column(SAMPLE_KEY, pa.array(keys))


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
