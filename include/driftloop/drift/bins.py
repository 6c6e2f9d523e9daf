"""Bin edges of the sketches and how values find their bin fast.

Fine and coarse edges are reference quantiles; the coarse edges are every
``FINE_BINS // COARSE_BINS``-th fine edge, so coarse counts are sums of fine counts. An
:class:`EdgeLookup` finds a value's fine bin in a few vector passes instead of a binary search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from driftloop.drift.sketch import Binning

FINE_BINS = 200
COARSE_BINS = 10


def quantile_edges(values: np.ndarray, name: str) -> tuple[list[float], list[float]]:
    """Fine and coarse reference-quantile edges of one feature. The coarse edges are every
    ``FINE_BINS // COARSE_BINS``-th fine quantile, so coarse counts are sums of fine counts
    (one ``searchsorted`` per value instead of two)."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError(f"cannot fit bins on column {name!r}: it has no finite values")
    qs = np.quantile(values, np.linspace(0.0, 1.0, FINE_BINS + 1)[1:-1])
    step = FINE_BINS // COARSE_BINS
    coarse = qs[step - 1 :: step]
    return [float(v) for v in np.unique(qs)], [float(v) for v in np.unique(coarse)]


@dataclass(frozen=True)
class EdgeLookup:
    """``np.searchsorted(edges, v, side="right")`` in a few vector passes instead of a binary
    search per value: a uniform grid of cells over the edges' range gives each value a first
    guess (the bin at its cell's lower bound), and at most a few compare-and-step passes make it
    exact (both ways, so rounding at a cell boundary cannot shift a value's bin)."""

    edges: np.ndarray
    low: float
    scale: float
    start: np.ndarray
    steps: int

    #: more steps than this per value: a plain binary search is as fast
    MAX_STEPS = 4

    @classmethod
    def build(cls, edges: list[float]) -> EdgeLookup | None:
        e = np.asarray(edges, dtype=float)
        if e.size < 8 or not np.isfinite(e).all() or e[-1] <= e[0]:
            return None
        for cells in (1024, 8192, 65536):
            scale = cells / (e[-1] - e[0])
            lower = e[0] + np.arange(cells) / scale
            start = np.searchsorted(e, lower, side="right")
            per_cell = np.diff(np.append(start, e.size))
            steps = int(per_cell.max()) + 1
            if steps <= cls.MAX_STEPS:
                return cls(e, float(e[0]), float(scale), start.astype(np.int64), steps)
        return None

    def index(self, values: np.ndarray) -> np.ndarray:
        e, last = self.edges, self.edges.size - 1
        cell = np.clip(((values - self.low) * self.scale).astype(np.int64), 0, self.start.size - 1)
        idx = self.start[cell]
        for _ in range(self.steps):  # edges at or below the value not yet counted
            idx += (idx <= last) & (e[np.minimum(idx, last)] <= values)
        for _ in range(self.steps):  # edges above the value counted by rounding
            idx -= (idx > 0) & (e[np.maximum(idx - 1, 0)] > values)
        return np.where(values < self.low, 0, idx)


def coarse_index(fine_edges: list[float], coarse_edges: list[float]) -> np.ndarray | None:
    """For each fine bin, its coarse bin, when every coarse edge is a fine edge (else None:
    binnings fitted before coarse edges were fine quantiles count both separately)."""
    fine = np.asarray(fine_edges, dtype=float)
    coarse = np.asarray(coarse_edges, dtype=float)
    if not np.isin(coarse, fine).all():
        return None
    # fine bin i holds values in [fine[i-1], fine[i]); its coarse bin counts the coarse edges <= its lower edge
    lower = np.concatenate([[-np.inf], fine])
    return np.searchsorted(coarse, lower, side="right")


_BIN_MAPS: dict[str, dict[str, tuple[np.ndarray | None, EdgeLookup | None]]] = {}


def bin_maps(binning: Binning) -> dict[str, tuple[np.ndarray | None, EdgeLookup | None]]:
    """Per feature: the fine-to-coarse bin map and the edge lookup, once per binning."""
    key = binning.binning_id
    if key not in _BIN_MAPS:
        _BIN_MAPS[key] = {
            name: (
                coarse_index(binning.fine_edges[name], binning.coarse_edges[name]),
                EdgeLookup.build(binning.fine_edges[name]),
            )
            for name in binning.numeric_features
        }
    return _BIN_MAPS[key]
