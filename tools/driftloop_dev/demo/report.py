"""The tables the demo prints: drift checks, trainings, gate decisions."""

from __future__ import annotations

from driftloop_dev.demo.terminal import say


def _print_checks(rows: list[dict], truth) -> None:
    say()
    say(
        f"ground truth: scenario {truth.scenario}, drift from {truth.drift_start_date} in {', '.join(truth.drifted_columns)}"
    )
    say()
    header = (
        f"{'window end':<12} {'expected':<44} {'severity':<9} {'top effects (now)':<46} {'time':>6}"
    )
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
            f"{decision['window']['end']:<12} {row['expected']:<44} {decision['severity']:<9} {effects:<46} {row['seconds']:5.0f}s"
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


def _print_retrain(title: str, run: dict) -> None:
    say()
    say(title)
    say(f"  candidate {_model_line(run)}; {run['seconds']:.0f} s")
    delta = (run["evaluation"] or {}).get("delta")
    if delta:
        say(
            f"  paired bootstrap delta of {delta['metric']} vs champion "
            f"v{run['evaluation']['champion']['version']}: {delta['point']:+.4f} "
            f"[{delta['low']:+.4f}, {delta['high']:+.4f}]"
        )
    say()
    say("\n".join("  " + line for line in run["decision"]["table"].splitlines()))


def _mlflow_model_url(tracking_uri: str, name: str, version: str) -> str:
    return f"{tracking_uri.rstrip('/')}/#/models/{name}/versions/{version}"
