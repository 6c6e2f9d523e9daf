"""The challenger's rollout, day by day: serve a day under the routing document, run
``rollout_guard``, read what it decided and why, until the stage changes.

Per stage (shadow → canary → guard) :func:`drive_rollout` takes the next day of the world,
writes its camera traffic sized so that the stage's paired share of it reaches the policy's
``min_frames`` with room to spare (:func:`frames_for`: a canary pairs only ``share`` of the
frames), serves it (:mod:`.serving`), then runs ``rollout_guard`` (:func:`guard_run`) and
reads its decision from the audit ledger — the stage's evidence with it. A ``hold`` (not enough
evidence yet: noise may leave a point estimate just outside its tolerance) serves another day
of the same stage, up to ``max_days`` a stage. It stops at the first stage that does not
move on as the story expects (a rejection, a rollback, or still holding), saying why.

The state is read from the stores after every run, never assumed: under the scheduler the
``driftloop_rollout`` / ``driftloop_champion`` Asset events start guard runs of their own, and
whichever run changes the stage, the routing document's history names it
(:func:`routing_timeline`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from driftloop_dev.demo.terminal import say

GUARD_DAG = "rollout_guard"
#: paired frames a served day aims at, as a multiple of the stage's min_frames
MARGIN = 1.4
MAX_FRAMES = 9999  # driftloop_dev.synth.traffic: frame ids D-0000 … D-9999
#: the stage a passing stage leads to, and the guard's action for it
NEXT_STAGE = {
    "shadow": ("canary", "to_canary"),
    "canary": ("guard", "promote"),
    "guard": ("serving", "end_guard"),
}
#: the checks the terminal shows (the guard's names), all cameras
SHOWN_CHECKS = (
    "latency_p95_ratio",
    "agreement_f1",
    "map50_95_delta",
    "detections_per_frame_ratio",
)


def frames_for(doc, rollout_policy, base: int) -> int:
    """Frames for a day served under ``doc`` (a routing document): enough that its paired
    share (``doc.shadow_share``: all frames in shadow, the canary share, the guard's share)
    reaches ``MARGIN`` × the stage's ``min_frames``; at least ``base``."""
    if doc is None or doc.stage not in NEXT_STAGE:
        return base
    need = getattr(rollout_policy, doc.stage).min_frames
    paired_share = float(doc.shadow_share) or 1.0
    return min(MAX_FRAMES, max(base, math.ceil(need * MARGIN / paired_share)))


def evidence_digest(comparison: Mapping[str, Any] | None) -> dict[str, Any]:
    """The numbers the terminal shows of a stage comparison: paired and labeled frames, hours
    of log time, and the all-camera checks of :data:`SHOWN_CHECKS`."""
    if not comparison:
        return {}
    checks = {
        c["name"]: {k: c.get(k) for k in ("estimate", "low", "high", "threshold", "status", "n")}
        for c in comparison.get("checks") or []
        if c.get("camera") == "all" and c.get("name") in SHOWN_CHECKS
    }
    return {
        "verdict": comparison.get("verdict"),
        "frames": comparison.get("frames"),
        "labeled_frames": comparison.get("labeled_frames"),
        "hours": comparison.get("hours"),
        "reasons": comparison.get("reasons") or [],
        "checks": checks,
    }


def guard_run(runner, book) -> dict[str, Any]:
    """One ``rollout_guard`` run (and, under the scheduler, the runs its Asset events
    started); its decision from the ledger (``hold`` … ``end_guard``, why, the evidence)."""
    run_id, seconds, _ = runner.run(GUARD_DAG, {})
    runner.settle(GUARD_DAG)
    decision = book.get(f"{GUARD_DAG}/{run_id}/decide")
    if decision is None:  # the run ended at its first task: stage serving, nothing to judge
        return {"run_id": run_id, "seconds": seconds, "action": None, "reason": "no rollout"}
    payload = decision.payload
    return {
        "run_id": run_id,
        "seconds": seconds,
        "stage": payload["doc"]["stage"],
        "sequence": payload["doc"]["sequence"],
        "action": payload["action"],
        "reason": payload["reason"],
        "evidence": evidence_digest(payload.get("comparison")),
    }


@dataclass
class RolloutWorld:
    """What the rollout needs from the demo: the stores, the world's remaining days, and how
    a day is written and served."""

    s3: Any
    bucket: str
    book: Any
    days: Iterator[str]  # the world's days not served yet, in order
    base_frames: int
    write_traffic: Callable[[str, int], int]  # (day, frames) -> frames written
    serve: Callable[[str], dict[str, Any]]  # day -> serve-batch summary

    def routing(self):
        from driftloop.promotion.routing import read_routing

        return read_routing(self.s3, self.bucket)


def drive_rollout(runner, world: RolloutWorld, policy, *, max_days: int = 3) -> dict[str, Any]:
    """Shadow → canary → guard → serving for the challenger in shadow now (see the module
    doc). Returns ``{"steps": [...], "stopped": None | why, "days": [...]}``."""
    steps: list[dict[str, Any]] = []
    served: list[str] = []
    doc = world.routing()
    if doc is None or doc.stage != "shadow":
        return _stopped(steps, served, f"no challenger in shadow ({_summary(doc)})")
    for stage in ("shadow", "canary", "guard"):
        target, action = NEXT_STAGE[stage]
        if doc is None or doc.stage != stage:
            return _stopped(steps, served, f"expected stage {stage}, found {_summary(doc)}")
        for attempt in range(1, max_days + 1):
            runner.settle(GUARD_DAG)  # no guard run changes the document while a day is served
            day = next(world.days, None)
            if day is None:
                return _stopped(steps, served, f"the world has no day left for stage {stage}")
            frames = world.write_traffic(day, frames_for(doc, policy.rollout, world.base_frames))
            say(
                f"  {day}: serving {frames} frames under #{doc.sequence} {stage} "
                f"(day {attempt} of the stage), then rollout_guard ..."
            )
            summary = world.serve(day)
            served.append(day)
            decision = guard_run(runner, world.book)
            after = world.routing()
            steps.append({"day": day, "frames": frames, "served": summary, **decision})
            say(
                f"    rollout_guard {decision['run_id']}: {decision['action']} ({decision['reason']})"
            )
            if after is None or after.sequence != doc.sequence:
                break
        else:
            return _stopped(
                steps, served, f"stage {stage} still holds after {max_days} days ({_summary(doc)})"
            )
        doc = after
        if doc is None or doc.stage != target:
            return _stopped(steps, served, f"stage {stage} did not {action}: now {_summary(doc)}")
    return {"steps": steps, "stopped": None, "days": served}


def _stopped(steps: list, served: list, why: str) -> dict[str, Any]:
    say(f"  the rollout stopped: {why}")
    return {"steps": steps, "stopped": why, "days": served}


def _summary(doc) -> str:
    return "no routing document" if doc is None else doc.summary()


def routing_timeline(s3, bucket: str) -> list[dict[str, Any]]:
    """Every routing document so far, oldest first (``rollout/history/``)."""
    from driftloop.promotion.routing import read_routing

    current = read_routing(s3, bucket)
    if current is None:
        return []
    from driftloop.promotion.routing import read_history

    docs = []
    for sequence in range(1, current.sequence + 1):
        doc = read_history(s3, bucket, sequence)
        if doc is not None:
            docs.append(doc.to_dict())
    return docs


def rollout_outcomes(
    timeline: list[Mapping[str, Any]], challenger: str | None, champion: str | None
) -> dict[str, bool]:
    """Did ``challenger`` go shadow → canary → guard against ``champion``, in that order? From
    the routing history (each stage's first document naming it as the subject)."""

    def first(stage: str) -> int | None:
        for doc in timeline:
            if (
                challenger is not None
                and doc["stage"] == stage
                and str(doc.get("subject")) == str(challenger)
                and str(doc.get("baseline")) == str(champion)
            ):
                return int(doc["sequence"])
        return None

    shadow, canary, guard = first("shadow"), first("canary"), first("guard")
    return {
        "challenger_in_shadow": shadow is not None,
        "shadow_to_canary": shadow is not None and canary is not None and shadow < canary,
        "canary_to_champion": canary is not None and guard is not None and canary < guard,
    }
