"""What the demo prints: drift checks, trainings and gate decisions, the days served, the
rollout's stages with their evidence, the routing document's history, the aliases, the ledger
and the expected outcomes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from driftloop_dev.demo.summary import OUTCOME_TEXT
from driftloop_dev.demo.terminal import say


def print_checks(rows: list[dict], truth) -> None:
    say()
    say(
        f"ground truth: scenario {truth.scenario}, drift from {truth.drift_start_date} in {', '.join(truth.drifted_columns)}"
    )
    say()
    width = max(len("expected"), *(len(row["expected"]) for row in rows))
    header = f"{'window end':<12} {'expected':<{width}} {'severity':<9} {'top effects (now)':<46} {'time':>6}"
    say(header)
    say("-" * len(header))
    for row in rows:
        decision = row["decision"]
        breaches = sorted(
            (f for f in decision["features"] if f["level_now"] != "none"),
            key=lambda f: -f["effect"],
        )[:3]
        effects = (
            ", ".join(f"{f['feature']} {f['method']}={f['effect']:.2f}" for f in breaches) or "-"
        )
        say(
            f"{decision['window']['end']:<12} {row['expected']:<{width}} {decision['severity']:<9} {effects:<46} {row['seconds']:5.0f}s"
        )
    last = rows[-1]["decision"]
    say()
    reference = last.get("reference") or {}
    say(
        f"reference: the champion v{reference['model_version']}'s training window"
        if reference.get("kind") == "champion"
        else "reference: the 14 days before the window (no champion reference)"
    )
    say(f"drifted features (critical check): {', '.join(last['drifted_features']) or '-'}")
    say(f"Evidently report: {rows[-1]['report_url']}")
    say(f"MLflow run:       {rows[-1]['mlflow_url']}")


def _model_line(run: dict) -> str:
    cand = run["evaluation"]["candidate"]
    return (
        f"v{run['candidate']['version']}: mAP50 {cand['map50']:.3f}, mAP50-95 {cand['map50_95']:.3f} "
        f"(INT8 mAP50 {cand['map50_int8']:.3f}), INT8 p95 {cand['p95_latency_ms']:.1f} ms "
        f"on {cand['n_images']} evaluation images"
    )


def _reference_line(reference: Mapping[str, Any] | None) -> str | None:
    if not reference:
        return None
    frames = reference.get("frames_per_day") or {}
    total = sum(frames.values()) if isinstance(frames, Mapping) else None
    where = {
        "scored_frames": "its own outputs on the window's frames",
        "inference_logs": "the window's inference logs",
    }.get(reference.get("source"), str(reference.get("source")))
    count = f", {total} frames over {len(frames)} days" if total else ""
    return f"  drift reference: {where}{count}"


def print_retrain(title: str, run: dict) -> None:
    say()
    say(title)
    say(f"  candidate {_model_line(run)}; {run['seconds']:.0f} s")
    reference = _reference_line(run.get("reference"))
    if reference:
        say(reference)
    delta = (run["evaluation"] or {}).get("delta")
    if delta:
        say(
            f"  paired bootstrap delta of {delta['metric']} vs champion "
            f"v{run['evaluation']['champion']['version']}: {delta['point']:+.4f} "
            f"[{delta['low']:+.4f}, {delta['high']:+.4f}]"
        )
    say()
    say("\n".join("  " + line for line in run["decision"]["table"].splitlines()))
    decision = run["decision"]
    if decision["promote"]:
        say(f"  -> v{run['candidate']['version']} is {decision.get('target_alias') or 'promoted'}")


def print_serving(served: Sequence[Mapping[str, Any]], seconds: float, workers: int) -> None:
    """The days the champion served before the drift checks."""
    frames = sum(s["frames"] for s in served)
    rates = [s["frames_per_s"] for s in served if s.get("frames_per_s")]
    p95 = [s["latency_p95_ms"] for s in served if s.get("latency_p95_ms") is not None]
    versions = sorted({v for s in served for v in s["models"]})
    say(
        f"  {len(served)} days, {frames} frames served by v{', v'.join(versions)} (stage "
        f"{served[0]['stage']}) in {seconds:.0f} s with {workers} processes; "
        f"{min(rates):.0f}-{max(rates):.0f} frames/s a process, served p95 "
        f"{min(p95):.1f}-{max(p95):.1f} ms a day"
        if served and rates and p95
        else f"  {len(served)} days served in {seconds:.0f} s"
    )
    say("  each day: inference/dt=D/ (the drift monitor's input), serving/dt=D/ (the rollout's)")


def _number(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def check_text(check: Mapping[str, Any] | None, fmt: str = ".2f") -> str:
    """``1.02 [0.97, 1.08]`` and the check's status when it is not a pass."""
    if not check or check.get("estimate") is None:
        return "-"
    text = _number(check["estimate"], fmt)
    if check.get("low") is not None and check.get("high") is not None:
        text += f" [{_number(check['low'], fmt)}, {_number(check['high'], fmt)}]"
    status = check.get("status")
    if status and status != "pass":
        text += f" ({status.replace('_', ' ')})"
    return text


def evidence_line(evidence: Mapping[str, Any]) -> str:
    """One stage comparison: frames, hours, and the shown checks with their intervals."""
    if not evidence:
        return "no evidence"
    if not evidence.get("frames"):
        return "no paired frame yet"
    checks = evidence.get("checks") or {}
    hours = evidence.get("hours")
    return "; ".join(
        [
            f"{evidence.get('frames')} paired frames ({evidence.get('labeled_frames')} labeled) "
            f"over {_number(hours, '.1f')} h of log time",
            f"p95 ratio {check_text(checks.get('latency_p95_ratio'))}",
            f"agreement {check_text(checks.get('agreement_f1'))}",
            f"mAP50-95 delta {check_text(checks.get('map50_95_delta'), '+.3f')}",
            f"detections ratio {check_text(checks.get('detections_per_frame_ratio'))}",
        ]
    )


def print_rollout(rollout: Mapping[str, Any], policy) -> None:
    """Each served day of the rollout and the guard run after it."""
    from driftloop.config.promotion_policy import (
        DEFAULT_PROMOTION_POLICY_PATH,
        load_promotion_policy,
    )
    from driftloop_dev.demo.policy import is_demo_policy, stage_minimums

    say()
    stages = stage_minimums(policy)
    say(f"  rollout policy {policy.source} (version {policy.version}):")
    say("    " + "; ".join(f"{stage}: {text}" for stage, text in stages.items()))
    if is_demo_policy(policy):
        production = stage_minimums(load_promotion_policy(DEFAULT_PROMOTION_POLICY_PATH))
        say(
            "    shorter than production's, so that one served day ends a stage: "
            + "; ".join(f"{stage}: {text}" for stage, text in production.items())
        )
    for step in rollout["steps"]:
        served = step["served"]
        say(
            f"  {step['day']}  #{served['sequence']} {served['stage']:<7} {served['frames']} "
            f"frames, {served['paired']} paired, served p95 {_number(served['latency_p95_ms'], '.1f')} "
            f"ms  -> rollout_guard: {step['action']} ({step['reason']})"
        )
        say(f"      {evidence_line(step.get('evidence') or {})}")
    if rollout.get("stopped"):
        say(f"  stopped: {rollout['stopped']}")


def _version(value: Any) -> str:
    return "-" if value is None else f"v{value}"


def print_timeline(timeline: Sequence[Mapping[str, Any]], bucket: str | None = None) -> None:
    say()
    say(f"routing document s3://{bucket or '<bucket>'}/rollout/routing.json, every change:")
    header = f"  {'seq':>4}  {'stage':<8} {'champion':<9} {'subject':<8} {'baseline':<9} {'share':>6}  updated by"
    say(header)
    for doc in timeline:
        share = doc["share"] if doc["stage"] == "canary" else doc["shadow_share"]
        say(
            f"  {'#' + str(doc['sequence']):>4}  {doc['stage']:<8} {_version(doc['champion']):<9} "
            f"{_version(doc['subject']):<8} {_version(doc['baseline']):<9} "
            f"{(f'{share:.0%}' if doc['stage'] != 'serving' else '-'):>6}  {doc['updated_by']}"
        )


def print_ending(
    *,
    timeline,
    final_guard,
    aliases: Mapping[str, str],
    verified,
    agreement: tuple[bool, str],
    outcomes: Mapping[str, bool],
    phases: Mapping[str, float],
    settings,
    latest: Mapping[str, Any],
) -> None:
    print_timeline(timeline, settings.bucket)
    if final_guard is not None:
        say()
        say(
            f"last rollout_guard run {final_guard['run_id']}: {final_guard['action']} "
            f"({final_guard['reason']}): {evidence_line(final_guard.get('evidence') or {})}"
        )
        say(
            "  the new challenger waits in shadow: the next served day gives it evidence "
            "(hourly, and on every rollout change, rollout_guard looks again)"
        )
    say()
    say(
        f"registry {settings.registered_model}: "
        + ", ".join(f"{a} -> v{v}" for a, v in sorted(aliases.items()))
    )
    say(
        f"registry, routing document and ledger agree: {'yes' if agreement[0] else 'NO'} ({agreement[1]})"
    )
    say(
        f"MLflow model version: {_mlflow_model_url(settings.mlflow_tracking_uri, settings.registered_model, latest['candidate']['version'])}"
    )
    say(f"MLflow UI:            {settings.mlflow_tracking_uri}")
    rows = getattr(verified, "rows", "")
    say(
        f"audit ledger: {rows} rows, chain {'verified' if verified.ok else 'BROKEN'} (driftloop ledger verify)"
    )
    say()
    say("expected outcomes:")
    for name, ok in outcomes.items():
        say(f"  {'ok  ' if ok else 'MISS'}  {OUTCOME_TEXT.get(name, name)}")
    say("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()))


def _mlflow_model_url(tracking_uri: str, name: str, version: str) -> str:
    return f"{tracking_uri.rstrip('/')}/#/models/{name}/versions/{version}"
