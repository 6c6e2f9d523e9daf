"""The ``labeling:`` section of the drift policy: what the daily labeling queue picks.

A module of its own so that ``drift_policy.py`` stays small; :class:`Labeling` is a field of
:class:`driftloop.config.drift_policy.Policy`. How the signals are computed and combined:
:mod:`driftloop.labeling.select`.

Imports pydantic only (DAG files read the policy at parse time).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: the queue's signals, in the order quotas are filled (see driftloop.labeling.select)
SIGNALS = ("new_camera", "disagreement", "novelty", "uncertainty")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignalWeights(_Model):
    """Weights of the combined score (each signal is in [0, 1])."""

    uncertainty: float = Field(1.0, ge=0, description="Weight of 1 - |2c - 1| (c: confidence).")
    disagreement: float = Field(
        1.0, ge=0, description="Weight of 1 - agreement F1 of champion and challenger boxes."
    )
    novelty: float = Field(
        1.0, ge=0, description="Weight of the embedding's distance percentile to the reference."
    )
    new_camera: float = Field(1.0, ge=0, description="Weight of 'camera not in the reference'.")


class SignalQuotas(_Model):
    """Share of the day's budget reserved for the frames highest in one signal (only frames
    where the signal is > 0); the rest of the budget goes by the combined score."""

    uncertainty: float = Field(0.2, ge=0, le=1)
    disagreement: float = Field(0.2, ge=0, le=1)
    novelty: float = Field(0.2, ge=0, le=1)
    new_camera: float = Field(0.2, ge=0, le=1)


class EmbeddingDistance(_Model):
    """How far a frame is from the reference in embedding space."""

    distance: Literal["cosine", "euclidean"] = Field(
        "cosine", description="Distance between two embeddings."
    )
    neighbors: int = Field(
        5,
        ge=1,
        le=100,
        description="k: a frame's distance is its mean distance to its k "
        "nearest reference embeddings.",
    )
    reference_rows: int = Field(
        2000,
        ge=10,
        description="Reference sample rows compared against (its first rows: a "
        "uniform sample), bounding the work per frame.",
    )


class Labeling(_Model):
    """``labeling:``: the daily labeling queue (``labeling_queue`` DAG)."""

    budget_per_day: int = Field(
        200, ge=1, le=10_000, description="Frames queued for labeling per served day, at most."
    )
    weights: SignalWeights = Field(default_factory=SignalWeights)
    quotas: SignalQuotas = Field(default_factory=SignalQuotas)
    embedding: EmbeddingDistance = Field(default_factory=EmbeddingDistance)

    @model_validator(mode="after")
    def _quotas_fit_the_budget(self) -> Labeling:
        total = sum(getattr(self.quotas, s) for s in SIGNALS)
        if total > 1 + 1e-9:
            raise ValueError(f"quotas add up to {total:g}: at most 1 (the whole budget)")
        if not any(getattr(self.weights, s) > 0 for s in SIGNALS):
            raise ValueError("weights: at least one signal needs a weight above 0")
        return self
