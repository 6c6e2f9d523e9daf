"""The labeling queue's per-frame signals (driftloop.labeling.signals)."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.labeling import signals
from driftloop.promotion.rollout_agreement import FrameBoxes
from driftloop.promotion.rollout_records import ModelOutputs, PairedFrames


def test_uncertainty_peaks_at_one_half():
    values = signals.uncertainty(np.array([0.0, 0.25, 0.5, 0.9, 1.0, np.nan]))
    assert values == pytest.approx([0.0, 0.5, 1.0, 0.2, 0.0, 0.0])


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_novelty_is_a_percentile_of_the_references_own_distances(distance):
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(400, 8)) + np.array([5.0] + [0.0] * 7)
    alike = rng.normal(size=(200, 8)) + np.array([5.0] + [0.0] * 7)
    far = rng.normal(size=(20, 8)) * 0.1 + np.array([0.0] * 7 + [40.0])
    n_alike = signals.novelty(alike, reference, 5, distance)
    n_far = signals.novelty(far, reference, 5, distance)
    assert 0.3 < n_alike.mean() < 0.7  # like the reference: about uniform
    assert n_far.min() == 1.0  # beyond all of it
    assert ((n_alike >= 0) & (n_alike <= 1)).all()


def test_knn_distance_blocks_agree_with_brute_force(monkeypatch):
    rng = np.random.default_rng(1)
    rows, reference = rng.normal(size=(37, 4)), rng.normal(size=(50, 4))
    monkeypatch.setattr(signals, "BLOCK_ROWS", 8)
    got = signals.knn_distance(rows, reference, 3, "euclidean")
    full = np.linalg.norm(rows[:, None, :] - reference[None, :, :], axis=2)
    assert got == pytest.approx(np.sort(full, axis=1)[:, :3].mean(axis=1))
    with pytest.raises(ValueError, match="embedding distance must be one of"):
        signals.knn_distance(rows, reference, 3, "manhattan")


def test_new_camera():
    assert signals.new_camera(["cam-01", "cam-05"], {"cam-01"}).tolist() == [False, True]


def _outputs(boxes: list[list[tuple[int, float, float, float, float]]], error) -> ModelOutputs:
    counts = [len(b) for b in boxes]
    flat = [box for frame in boxes for box in frame]
    n = len(boxes)
    return ModelOutputs(
        np.ones(n),
        np.array(counts, float),
        np.ones(n),
        np.array(error, bool),
        FrameBoxes(
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            np.array([b[0] for b in flat], np.int64),
            np.ones(len(flat)),
            np.array([b[1:] for b in flat], float).reshape(-1, 4),
        ),
    )


def test_disagreement_is_one_minus_the_agreement_f1_of_paired_frames():
    same = [(0, 10.0, 10.0, 20.0, 20.0)]
    paired = PairedFrames(
        np.array(["agree", "differ", "failed"], dtype=object),
        np.array(["cam-01"] * 3, dtype=object),
        np.zeros(3, np.int64),
        _outputs([same, [(1, 50.0, 50.0, 60.0, 60.0)], same], [False, False, True]),
        _outputs([same, same, same], [False, False, False]),
    )
    assert signals.disagreement(paired) == {"agree": 0.0, "differ": 1.0}
    assert signals.lookup({"differ": 1.0}, ["agree", "differ"]).tolist() == [0.0, 1.0]
