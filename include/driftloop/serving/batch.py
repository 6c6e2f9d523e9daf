"""One day of serving: read the day's frames, score them in order, write what serving logs.

:func:`serve_day` reads the frame manifest ``frames/dt=D/_frames.jsonl`` (one JSON object a
line: ``image_id``, ``key``, ``ts`` (ISO 8601, UTC, inside the day), ``camera_id``; a missing
or malformed line fails naming it), decides the route from the routing document and the
aliases (:mod:`.route`), loads the versions it needs (:mod:`.models`), scores every frame
(:mod:`.scorer`), then writes, each write-once:

1. ``inference/dt=D/part-serve-<sequence>.parquet`` — the inference log (exactly the contract's
   schema; ``model_version`` = the version that served the frame);
2. ``serving/dt=D/part-<rollout_id|none>-<sequence>-<token>.parquet`` — the serving records
   (``token``: a hash of the file's bytes);
3. ``inference/dt=D/_SUCCESS`` last: the drift monitor's sensor waits for it.

A day is served once: a day whose inference prefix holds anything (its ``_SUCCESS``, or the
parts of an earlier run that did not finish) is refused before anything is read or written.
A frame file that S3 says does not exist, or that does not decode, is a per-frame error (not
served); any other store error fails the batch. A day where no frame could be served fails
before writing.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np  # noqa: TID253 (the scorer's process, never a DAG file)

from driftloop.contracts import storage
from driftloop.contracts.stores import is_not_found
from driftloop.promotion.registry import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION
from driftloop.promotion.routing import ROUTING_KEY, read_routing
from driftloop.serving import layout, records
from driftloop.serving.route import Route, route_for
from driftloop.serving.scorer import Frame, FrameScorer, ScoredFrame

log = logging.getLogger(__name__)

MANIFEST_FIELDS = ("image_id", "key", "ts", "camera_id")
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


class DayAlreadyServed(RuntimeError):
    """The day's inference partition exists (or an earlier run left parts): a day is served
    once."""


def _day(day: date | str) -> date:
    if isinstance(day, date):
        return day
    try:
        return date.fromisoformat(str(day))
    except ValueError:
        raise ValueError(f"day must be YYYY-MM-DD, got {day!r}") from None


def _timestamp(text: Any, where: str) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"{where}: 'ts' must be an ISO 8601 string, got {text!r}")
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{where}: 'ts' {text!r} is not an ISO 8601 timestamp") from None
    if ts.tzinfo is None:
        raise ValueError(f"{where}: 'ts' {text!r} has no time zone (expected UTC)")
    return ts.astimezone(UTC)


def parse_manifest(text: str, day: date | str, source: str) -> list[Frame]:
    """The frames of a manifest's text, in order; any bad line is a ValueError naming
    ``source`` and the line number."""
    day = _day(day)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    frames: list[Frame] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{source} line {number}"
        try:
            entry = json.loads(line)
        except ValueError as err:
            raise ValueError(f"{where}: not a JSON object ({err})") from None
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: not a JSON object")
        missing = [name for name in MANIFEST_FIELDS if name not in entry]
        if missing:
            raise ValueError(f"{where}: missing {missing}")
        for name in ("image_id", "key", "camera_id"):
            if not isinstance(entry[name], str) or not entry[name]:
                raise ValueError(f"{where}: {name!r} must be a non-empty string")
        ts = _timestamp(entry["ts"], where)
        if not start <= ts < start + timedelta(days=1):
            raise ValueError(f"{where}: 'ts' {entry['ts']} is not on {day.isoformat()}")
        if entry["image_id"] in seen:
            raise ValueError(
                f"{where}: image_id {entry['image_id']!r} already on line {seen[entry['image_id']]}"
            )
        seen[entry["image_id"]] = number
        frames.append(Frame(entry["image_id"], entry["key"], ts, entry["camera_id"]))
    if not frames:
        raise ValueError(f"{source}: the frame manifest lists no frames")
    return frames


def read_manifest(s3, bucket: str, day: date | str) -> list[Frame]:
    key = layout.manifest_key(day)
    source = storage.s3_uri(bucket, key)
    try:
        body = storage.get_bytes(s3, bucket, key)
    except Exception as err:
        if is_not_found(err):
            raise FileNotFoundError(f"{source}: no frame manifest for {day}") from None
        raise
    return parse_manifest(body.decode("utf-8"), day, source)


def refuse_if_served(s3, bucket: str, day: date | str) -> None:
    """Raise :class:`DayAlreadyServed` when the day's inference prefix holds any object."""
    existing = [o["Key"] for o in storage.list_keys(s3, bucket, storage.inference_prefix(day))]
    if storage.success_key(day) in existing:
        raise DayAlreadyServed(
            f"s3://{bucket}/{storage.success_key(day)} exists: {storage.day_str(day)} was "
            "already served (a day is served once)"
        )
    if existing:
        raise DayAlreadyServed(
            f"s3://{bucket}/{storage.inference_prefix(day)} holds {existing[:5]} without "
            "_SUCCESS (an earlier run did not finish); remove them to serve the day again"
        )


def _alias_of(route: Route, aliases: Mapping[str, str]) -> dict[str, str]:
    """Which alias names each version of the route (champion first)."""
    held = {str(v): a for a, v in aliases.items() if a in (PREVIOUS_CHAMPION, CHALLENGER)}
    held.update({str(v): a for a, v in aliases.items() if a == CHAMPION})
    return {version: held[version] for version in route.versions}


def _decode(data: bytes):
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def _read_frame(s3, bucket: str, frame: Frame) -> tuple[Any, str | None]:
    """The decoded frame, or None and why not (absent, undecodable); store faults raise."""
    try:
        data = storage.get_bytes(s3, bucket, frame.key)
    except Exception as err:
        if is_not_found(err):
            return None, f"FileNotFoundError: s3://{bucket}/{frame.key} does not exist"
        raise
    try:
        return _decode(data), None
    except Exception as err:  # a broken file is this frame's problem, not the day's
        return None, f"{type(err).__name__}: {frame.key}: {err}"


def to_parquet(table) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy", version="2.6")
    return buf.getvalue()


def summarize(scored: Sequence[ScoredFrame], route: Route) -> dict[str, Any]:
    """Counts and latencies of a scored day (per model: scored, served, errors, p50/p95)."""
    latencies: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, Counter] = defaultdict(Counter)
    served_latencies = []
    for item in scored:
        for version, result in item.results.items():
            counts[version]["scored"] += 1
            if result.error is not None:
                counts[version]["errors"] += 1
            else:
                latencies[version].append(result.latency_ms)
        if item.served_by is not None:
            counts[item.served_by]["served"] += 1
            served_latencies.append(item.results[item.served_by].latency_ms)

    def pct(values: list[float], q: float) -> float | None:
        return round(float(np.percentile(values, q)), 3) if values else None

    models = {
        version: {
            "role": route.role(version),
            "scored": counts[version]["scored"],
            "served": counts[version]["served"],
            "errors": counts[version]["errors"],
            "latency_p50_ms": pct(latencies[version], 50),
            "latency_p95_ms": pct(latencies[version], 95),
        }
        for version in sorted(counts, key=lambda v: route.versions.index(v))
    }
    return {
        "frames": len(scored),
        "served": sum(1 for s in scored if s.served_by is not None),
        "paired": sum(1 for s in scored if s.paired),
        "errors": sum(m["errors"] for m in models.values()),
        "latency_p95_ms": pct(served_latencies, 95),
        "models": models,
    }


def serve_day(s3, bucket: str, day: date | str, store) -> dict[str, Any]:
    """Serve one day (see the module doc) with the models of ``store`` (a
    :class:`~driftloop.serving.models.ModelStore`); returns the day's summary."""
    day = _day(day)
    began = time.perf_counter()
    refuse_if_served(s3, bucket, day)
    doc = read_routing(s3, bucket)
    if doc is not None and doc.model != store.name:
        raise ValueError(
            f"s3://{bucket}/{ROUTING_KEY} routes model {doc.model!r}, not {store.name!r} (the "
            "registered model served here): wrong bucket or DRIFTLOOP_REGISTERED_MODEL?"
        )
    aliases = store.aliases()
    route = route_for(doc, aliases)
    if route.note:
        log.warning("%s", route.note)
    frames = read_manifest(s3, bucket, day)
    alias_of = _alias_of(route, aliases)
    models = {version: store.load(alias_of[version], version) for version in route.versions}
    scorer = FrameScorer(route, models)
    log.info(
        "serving %s: %d frames, stage %s (sequence %d), versions %s",
        day,
        len(frames),
        route.stage,
        route.sequence,
        list(route.versions),
    )
    scoring_began = time.perf_counter()
    scored: list[ScoredFrame] = []
    for index, frame in enumerate(frames):
        image, problem = _read_frame(s3, bucket, frame)
        if problem is not None:
            scored.append(scorer.unreadable(frame, problem))
        else:
            scored.append(scorer.score(frame, image, index))
    scoring_s = time.perf_counter() - scoring_began
    rows = [s.inference_row for s in scored if s.inference_row is not None]
    if not rows:
        first = next((r.error for s in scored for r in s.results.values() if r.error), None)
        raise RuntimeError(
            f"no frame of {day} could be served ({len(scored)} frames; first error: {first})"
        )
    inference_key = layout.inference_part_key(day, route.sequence)
    storage.put_once(
        s3, bucket, inference_key, to_parquet(records.inference_table(rows)), PARQUET_CONTENT_TYPE
    )
    serving_bytes = to_parquet(records.serving_table([r for s in scored for r in s.serving_rows]))
    token = hashlib.sha256(serving_bytes).hexdigest()[:16]
    serving_key = layout.serving_part_key(day, route.rollout_id, route.sequence, token)
    storage.put_once(s3, bucket, serving_key, serving_bytes, PARQUET_CONTENT_TYPE)
    storage.put_once(s3, bucket, storage.success_key(day), b"", "text/plain")
    seconds = time.perf_counter() - began
    return {
        "day": day.isoformat(),
        "bucket": bucket,
        **{k: v for k, v in route.to_dict().items() if k in ("stage", "sequence", "rollout_id")},
        "note": route.note,
        **summarize(scored, route),
        "keys": {
            "inference": inference_key,
            "serving": serving_key,
            "success": storage.success_key(day),
        },
        "seconds": round(seconds, 3),
        "scoring_s": round(scoring_s, 3),
        # frames read, decoded and scored per second (model loading and writes excluded)
        "frames_per_s": round(len(scored) / scoring_s, 2) if scoring_s > 0 else None,
    }
