"""One frame through serving: features, the served model's detections, the shadow model's.

Per frame (:meth:`FrameScorer.score`):

1. image features from the pixels (:mod:`.features`; the same whoever serves);
2. the route's plan (:meth:`driftloop.serving.route.Route.plan`): the served model and, on a
   paired frame, the shadow model, run back to back on the same decoded image, the order
   alternating with the frame's parity;
3. each model: letterbox → ONNX Runtime → decode at the serving threshold (conf 0.25, IoU 0.7,
   max_det 100) → boxes in image pixels; ``latency_ms`` covers exactly that (pre-processing,
   the session, post-processing), then the embedding is pooled from the feature map;
4. any exception of one model on one frame is caught and becomes that model's ``error`` on
   that frame; a frame whose served model failed is served by the champion when the champion
   is another version (:meth:`Route.fallback`), else it is not served (no inference-log row).

The result is the frame's inference-log row (the served model's output) and its serving
records (one per model that scored it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np  # noqa: TID253 (the scorer's process, never a DAG file)

from driftloop.evaluation import detector
from driftloop.serving import embedding, records
from driftloop.serving.features import image_features
from driftloop.serving.route import Route

#: the serving threshold (what serving returns), not the evaluation's conf 0.001
SERVE_CONF = 0.25
SERVE_IOU = 0.7
SERVE_MAX_DET = 100


@dataclass(frozen=True)
class Frame:
    """One line of the day's frame manifest: the serving side's capture metadata."""

    image_id: str
    key: str
    ts: datetime  # capture time, UTC: the log time of everything written about the frame
    camera_id: str


@dataclass
class ModelResult:
    """One model's output on one frame, or its error."""

    version: str
    latency_ms: float | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    best_score: float = 0.0  # the best candidate's confidence, above the threshold or not
    embedding: np.ndarray | None = None
    error: str | None = None

    @classmethod
    def failed(cls, version: str, err: BaseException | str) -> ModelResult:
        text = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
        return cls(version=version, error=text)


def run_model(model, image) -> ModelResult:
    """Score ``image`` (PIL) with a :class:`~driftloop.serving.models.ServingModel`; any
    exception becomes the result's ``error``."""
    try:
        began = time.perf_counter()
        tensor, lb = detector.letterbox(image, model.imgsz)
        raw, fmap = model.run(tensor)
        det = detector.decode(raw, conf=SERVE_CONF, iou=SERVE_IOU, max_det=SERVE_MAX_DET)
        boxes = detector.scale_boxes(det.boxes, lb)
        latency_ms = (time.perf_counter() - began) * 1000.0
        scores = np.asarray(raw, dtype=np.float32).reshape(raw.shape[-2], -1)[4:]
        vector = embedding.embed(fmap, model.projection)
        if not np.isfinite(vector).all():
            raise FloatingPointError("the embedding has non-finite values")
        return ModelResult(
            version=model.version,
            latency_ms=latency_ms,
            boxes=boxes,
            scores=det.scores,
            classes=det.classes,
            best_score=float(scores.max()) if scores.size else 0.0,
            embedding=vector,
        )
    except Exception as err:  # one model's failure on one frame is recorded, not raised
        return ModelResult.failed(model.version, err)


@dataclass
class ScoredFrame:
    """What one frame leaves behind."""

    frame: Frame
    served_by: str | None  # None: no model could serve it
    results: dict[str, ModelResult]
    serving_rows: list[dict[str, Any]]
    inference_row: dict[str, Any] | None

    @property
    def paired(self) -> bool:
        return len(self.results) > 1


class FrameScorer:
    """Scores frames under one :class:`Route` with loaded models (``{version: model}``).
    ``score_model`` runs one model on one image (default :func:`run_model`; tests pass a
    fake)."""

    def __init__(
        self,
        route: Route,
        models: Mapping[str, Any],
        score_model: Callable[[Any, Any], ModelResult] = run_model,
    ):
        missing = [v for v in route.versions if v not in models]
        if missing:
            raise ValueError(f"route needs versions {missing}, not loaded")
        self.route = route
        self.models = dict(models)
        self.score_model = score_model

    def _run(self, version: str, image) -> ModelResult:
        result = self.score_model(self.models[version], image)
        result.version = version
        return result

    def score(self, frame: Frame, image, index: int) -> ScoredFrame:
        """Score one decoded frame (``index``: its place in the day, for the pair order)."""
        features = image_features(image)
        plan = self.route.plan(frame.image_id)
        results = {version: self._run(version, image) for version in plan.order(index)}
        served: str | None = plan.served
        if results[served].error is not None:
            fallback = self.route.fallback(served)
            if fallback is not None and fallback not in results:
                results[fallback] = self._run(fallback, image)
            ok = fallback is not None and results[fallback].error is None
            served = fallback if ok else None
        return self._scored(frame, features, results, served)

    def unreadable(self, frame: Frame, error: BaseException | str) -> ScoredFrame:
        """A frame that could not be read or decoded: the model that would have served it
        records the error; nothing is served."""
        version = self.route.plan(frame.image_id).served
        return self._scored(frame, None, {version: ModelResult.failed(version, error)}, None)

    def _scored(
        self,
        frame: Frame,
        features: Mapping[str, float] | None,
        results: dict[str, ModelResult],
        served: str | None,
    ) -> ScoredFrame:
        rows = [self._serving_row(frame, r, r.version == served) for r in results.values()]
        inference = None
        if served is not None and features is not None:
            r = results[served]
            inference = records.inference_row(
                ts=frame.ts,
                image_id=frame.image_id,
                camera_id=frame.camera_id,
                model_version=served,
                features=features,
                embedding=r.embedding,
                scores=r.scores,
                classes=r.classes,
                best_score=r.best_score,
                latency_ms=r.latency_ms,
            )
        return ScoredFrame(frame, served, results, rows, inference)

    def _serving_row(self, frame: Frame, result: ModelResult, served: bool) -> dict[str, Any]:
        boxes = None
        if result.error is None:
            boxes = records.box_rows(result.boxes, result.scores, result.classes)
        return records.serving_row(
            ts=frame.ts,
            image_id=frame.image_id,
            camera_id=frame.camera_id,
            model_version=result.version,
            role=self.route.role(result.version),
            served=served,
            stage=self.route.stage,
            sequence=self.route.sequence,
            rollout_id=self.route.rollout_id,
            latency_ms=result.latency_ms,
            boxes=boxes,
            error=result.error,
        )
