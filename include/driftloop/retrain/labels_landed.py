"""Which labeled days landed since the last announcement: the steps of ``labels_landed``.

A labeled day is complete when ``labeled/dt=D/_SUCCESS`` exists (written last by the label
import). ``labels_landed`` announces each complete day once, with the ``driftloop_labels``
Asset; what it announced is a write-once record per day, ``labels/announced/dt=D.json``
(``{"day", "frames", "announced_by"}``), written after the event went out. A run that fails
between the two announces the day again in the next run (at least once, never lost); a
second announcement only makes ``retrain_detector`` count again.

:func:`new_labeled_days` finds complete days without a record and counts their frames,
:func:`announcement` is the event's ``extra`` (None when no frame is new: no event),
:func:`record_announced` writes the records. S3 errors other than "not found" propagate
(the task fails and retries): an unreadable bucket never reads as "nothing landed".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from driftloop.contracts import storage

#: one write-once record per announced labeled day
ANNOUNCED_PREFIX = "labels/announced"
_DAY = r"dt=(\d{4}-\d{2}-\d{2})"
_LABELED_DAY = re.compile(rf"^{storage.LABELED_PREFIX}/{_DAY}/$")
_ANNOUNCED = re.compile(rf"^{ANNOUNCED_PREFIX}/{_DAY}\.json$")


def announced_key(day: str) -> str:
    """``labels/announced/dt=D.json``: the record that ``day`` was announced."""
    return f"{ANNOUNCED_PREFIX}/dt={storage.day_str(day)}.json"


def labeled_days(s3, bucket: str) -> list[str]:
    """The days with a ``labeled/dt=D/`` partition (complete or not), sorted; listed by
    folder, not by object (a day holds thousands of images)."""
    days = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{storage.LABELED_PREFIX}/", Delimiter="/"
    )
    for page in pages:
        for entry in page.get("CommonPrefixes", []):
            match = _LABELED_DAY.match(entry["Prefix"])
            if match:  # anything else under labeled/ is no day partition
                days.append(match.group(1))
    return sorted(days)


def announced_days(s3, bucket: str) -> set[str]:
    """The days that have a record under ``labels/announced/``."""
    keys = (entry["Key"] for entry in storage.list_keys(s3, bucket, f"{ANNOUNCED_PREFIX}/"))
    return {match.group(1) for match in map(_ANNOUNCED.match, keys) if match}


def new_labeled_days(s3, bucket: str) -> list[dict[str, Any]]:
    """``[{"day", "frames"}]`` of every complete labeled day without a record, oldest first;
    ``frames``: its image + label pairs."""
    from driftloop.retrain.new_labels import labeled_stems

    done = announced_days(s3, bucket)
    found = []
    for day in labeled_days(s3, bucket):
        if day in done:
            continue
        if storage.exists(s3, bucket, storage.labeled_prefix(day) + storage.SUCCESS_MARKER):
            found.append({"day": day, "frames": len(labeled_stems(s3, bucket, day))})
    return found


def announcement(found: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The ``driftloop_labels`` event's extra for the days ``found``: ``day`` (the latest),
    ``days``, ``frames`` (in all) and ``frames_per_day``; None when they hold no frame."""
    per_day = {str(entry["day"]): int(entry["frames"]) for entry in found}
    per_day = {day: n for day, n in sorted(per_day.items()) if n > 0}
    if not per_day:
        return None
    days = list(per_day)
    return {
        "day": days[-1],
        "days": days,
        "frames": sum(per_day.values()),
        "frames_per_day": per_day,
    }


def record_announced(s3, bucket: str, found: Iterable[Mapping[str, Any]], run_id: str) -> list[str]:
    """Write the record of each day ``found`` (also a day without frames: it is complete and
    needs no second look); a day recorded meanwhile keeps its record. The records' keys."""
    keys = []
    for entry in found:
        key = announced_key(entry["day"])
        if not storage.exists(s3, bucket, key):
            record = {"day": entry["day"], "frames": int(entry["frames"]), "announced_by": run_id}
            storage.put_json_once(s3, bucket, key, record)
        keys.append(key)
    return keys
