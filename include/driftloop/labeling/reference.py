"""What "far from the reference" and "a new camera" are measured against.

The reference is a drift reference bundle (:mod:`driftloop.drift.reference`), found as:

1. the champion's: the bundle of its training window, the URI on its MLflow model version
   (tag ``drift_reference_uri``; :func:`driftloop.drift.tracking.champion_reference`), unless
   an operator accepted a new normal for it;
2. else the reference of the newest drift check whose window ends on or before the day
   (``drift_checks.reference_id`` in the drift history): an accepted new normal, a frozen or
   a sliding reference — what ``drift_monitor`` measured that day against;
3. else none: the novelty and new-camera signals are 0 and the batch's manifest says so.

From the bundle: the cameras of its full-data profile (``categorical.camera_id``: every
camera of the window, not a sample) and the embeddings of the first ``reference_rows`` rows
of its sample (a uniform sample: bottom-k by random keys). Every file is checked against the
bundle's content address on read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from driftloop.config.settings import Settings
from driftloop.contracts import schema, storage


@dataclass(frozen=True, eq=False)
class LabelingReference:
    uri: str
    rule: str  # champion | accepted | frozen | sliding | ...
    reason: str
    cameras: frozenset[str]
    embeddings: np.ndarray = field(repr=False)  # (rows, EMBEDDING_DIM) float64

    def describe(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "rule": self.rule,
            "reason": self.reason,
            "cameras": sorted(self.cameras),
            "embedding_rows": int(self.embeddings.shape[0]),
        }


def _latest_check_reference(settings: Settings, day: date) -> dict[str, Any] | None:
    """The reference of the newest drift check whose window ends on or before ``day``."""
    import sqlalchemy as sa

    from driftloop.drift.history import drift_checks, engine_for

    query = (
        sa.select(
            drift_checks.c.reference_id,
            drift_checks.c.reference_rule,
            drift_checks.c.run_id,
            drift_checks.c.window_end,
        )
        .where(drift_checks.c.window_end <= day)
        .order_by(drift_checks.c.window_end.desc(), drift_checks.c.checked_at.desc())
        .limit(1)
    )
    with engine_for(settings.database_url).connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    from driftloop.drift.reference import BUNDLE_PREFIX

    return {
        "uri": storage.s3_uri(settings.bucket, f"{BUNDLE_PREFIX}{row.reference_id}/"),
        "rule": row.reference_rule or "sliding",
        "reason": f"the reference of drift check {row.run_id} (window ending {row.window_end})",
    }


def find_reference(settings: Settings, day: date) -> dict[str, Any] | None:
    """``{uri, rule, reason}`` of the reference (see the module doc), or None."""
    from driftloop.drift.tracking import champion_reference

    champion = champion_reference(settings.mlflow_tracking_uri, settings.registered_model)
    if champion is not None and champion.get("uri"):
        return {"uri": champion["uri"], "rule": "champion", "reason": champion["reason"]}
    return _latest_check_reference(settings, day)


def load_reference(s3, found: dict[str, Any], reference_rows: int) -> LabelingReference:
    """The cameras and embeddings of the bundle ``found["uri"]`` (integrity-checked)."""
    from driftloop.drift.reference import ReferenceBundle, load_profile, load_sample
    from driftloop.drift.sketch import embedding_matrix

    bundle = ReferenceBundle.from_uri(found["uri"])
    profile = load_profile(s3, bundle.profile_uri)
    cameras = profile.categorical.get("camera_id")
    if not cameras:
        raise ValueError(f"{bundle.profile_uri}: the profile counts no camera_id")
    sample = load_sample(s3, bundle.sample_uri)
    if schema.EMBEDDING_COLUMN not in sample.column_names:
        raise ValueError(f"{bundle.sample_uri}: no {schema.EMBEDDING_COLUMN!r} column")
    sample = sample.slice(0, reference_rows)
    embeddings = embedding_matrix(sample, schema.EMBEDDING_COLUMN, schema.EMBEDDING_DIM)
    return LabelingReference(
        bundle.uri,
        found["rule"],
        found["reason"],
        frozenset(str(c) for c in cameras),
        np.asarray(embeddings, dtype=np.float64),
    )
