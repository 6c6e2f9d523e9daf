"""Labeled frames new to the champion: whether the ``driftloop_labels`` Asset starts a training.

A ``retrain_detector`` run started by new labels trains only when its training window holds
at least ``new_labels.min_frames`` (promotion policy) labeled frames that the champion was not
trained on. What the champion was trained on is its dataset snapshot: the model version's tag
``dataset_sha256`` names ``datasets/<sha256>/``, whose manifest lists the source key of every
frame it took (``sources``) and of every one it refused (``rejected``). A frame is *new* when
its ``(day, stem)`` is in neither: a day the snapshot covered in part counts only its frames
that came later.

A labeled frame is what a snapshot would take from ``labeled/dt=D/``: an ``images/<stem>.*``
with its ``labels/<stem>.txt`` (paired by :func:`driftloop.retrain.frames.discover_frames`,
without downloading them). No champion: nothing was learned yet, new labels start a first
training as the other triggers do. A champion without the tag (registered by hand) knows no
snapshot: every frame counts as new. S3 and MLflow errors other than "not found" propagate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from driftloop.config.settings import Settings
from driftloop.contracts import storage

#: the model-version tag naming the dataset snapshot a version was trained on (register.py)
DATASET_TAG = "dataset_sha256"
_LABELED_KEY = re.compile(
    rf"^{storage.LABELED_PREFIX}/dt=(\d{{4}}-\d{{2}}-\d{{2}})/(?:images|labels)/([^/]+)\.[^./]+$"
)


def labeled_stems(s3, bucket: str, day: str) -> list[str]:
    """The stems of the day's labeled frames (image + label pairs), sorted."""
    from driftloop.retrain.frames import discover_frames

    prefix = storage.labeled_prefix(day)
    keys = [entry["Key"] for entry in storage.list_keys(s3, bucket, prefix)]
    return sorted(frame.stem for frame in discover_frames(keys, prefix, []))


def snapshot_frames(manifest: Mapping[str, Any]) -> set[tuple[str, str]]:
    """``(day, stem)`` of every labeled frame a snapshot manifest took or refused (golden
    frames come from elsewhere and are left out)."""
    keys = [*manifest.get("sources", {}).values()]
    keys += [entry.get("key", "") for entry in manifest.get("rejected", ())]
    found = (_LABELED_KEY.match(str(key)) for key in keys)
    return {(match.group(1), match.group(2)) for match in found if match}


def count_new(
    labeled: Mapping[str, Iterable[str]], known: set[tuple[str, str]] | None
) -> dict[str, dict[str, int]]:
    """Per day with labeled frames: ``{"labeled": n, "new": m}``, a frame new when its
    ``(day, stem)`` is not ``known`` (``None``: no snapshot to compare with, all are new)."""
    counts = {}
    for day, stems in sorted(labeled.items()):
        stems = list(stems)
        if stems:
            new = [s for s in stems if known is None or (day, s) not in known]
            counts[day] = {"labeled": len(stems), "new": len(new)}
    return counts


def _plural(n: int) -> str:
    return f"{n} new labeled frame{'' if n == 1 else 's'}"


def judge(
    counts: Mapping[str, Mapping[str, int]],
    min_frames: int,
    *,
    champion: str | None,
    dataset_sha256: str | None,
) -> dict[str, Any]:
    """The verdict the plan records: counts, threshold, ``enough`` and why."""
    new = sum(day["new"] for day in counts.values())
    labeled = sum(day["labeled"] for day in counts.values())
    if champion is None:
        enough = True
        reason = f"no champion yet: new labels start a first training ({labeled} labeled frames)"
    else:
        enough = new >= min_frames
        since = (
            "since the champion's snapshot"
            if dataset_sha256
            else f"(champion v{champion} records no dataset snapshot: every frame counts)"
        )
        reason = f"{_plural(new)} {since}, policy needs {min_frames}"
    return {
        "champion": champion,
        "dataset_sha256": dataset_sha256,
        "min_frames": int(min_frames),
        "labeled_frames": labeled,
        "new_frames": new,
        "days": {day: dict(c) for day, c in counts.items()},
        "enough": enough,
        "reason": reason,
    }


def champion_snapshot(s3, settings: Settings) -> tuple[str | None, str | None, set | None]:
    """``(champion version, dataset sha256, its frames)``; ``(None, None, None)`` without a
    champion, ``(version, None, None)`` for a champion without the tag. A tagged snapshot
    without its manifest is an error (ValueError naming it): the record is broken."""
    from driftloop.drift import tracking
    from driftloop.promotion import registry
    from driftloop.retrain.snapshot_io import dataset_uri, load_manifest

    client = tracking.client(settings.mlflow_tracking_uri)
    version = registry.version_with_alias(client, settings.registered_model, registry.CHAMPION)
    if version is None:
        return None, None, None
    sha256 = (version.tags or {}).get(DATASET_TAG) or None
    if sha256 is None:
        return str(version.version), None, None
    manifest = load_manifest(s3, dataset_uri(settings.bucket, sha256))
    return str(version.version), sha256, snapshot_frames(manifest)


def check_new_labels(
    s3, settings: Settings, days: Sequence[str], min_frames: int
) -> dict[str, Any]:
    """Whether the labeled frames of ``days`` new to the champion reach ``min_frames``
    (see :func:`judge` for what the plan gets)."""
    champion, sha256, known = champion_snapshot(s3, settings)
    labeled = {day: labeled_stems(s3, settings.bucket, day) for day in days}
    return judge(count_new(labeled, known), min_frames, champion=champion, dataset_sha256=sha256)
