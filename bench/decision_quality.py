"""Decision quality of the drift monitor: how many days until it warns and goes critical on
known drifts, how often it alarms on stable data, and the same for Evidently's defaults on
the same windows.

Every world comes from the synthetic generator (``driftloop_dev.synth``), seeded, with the
drift's onset and size known:

* drifts: ``abrupt``, ``gradual``, ``class-mix``, ``confidence-decay`` and ``brightness-shift``
  of 0.1, 0.2, 0.3 and 0.5 sd. The reference is fixed: the 14 days before the onset (the
  champion's training window). Check day ``j`` (``j = 1`` on the first drifted day) compares
  the 14 days ending on that day with it, once a day up to ``--horizon`` days; so on day ``j``
  the current window holds ``j`` drifted days. The checks stop once the answer is known
  (critical reached for driftloop, a first column flagged for Evidently);
* stable: ``--stable-checks`` daily checks spread over the seeds. The reference is the first
  14 days of the world, and the current window slides one day per check from the 14 days
  right after it (the windows never share a day; a champion trained some weeks ago).

driftloop's checker is the drift engine (``driftloop.drift.engine.DriftEngine`` on the
project's contract and policy, default ``drift_policy.yaml``): the reference's days fitted
once, each day sketched once on its bins (drift_monitor caches per partition), and each check
given the 14 day sketches of its window and the per-feature levels of the world's earlier
checks, newest first, ``n - 1`` of them: the k-of-n hysteresis drift_monitor keeps in its
history database. Everything lives in memory; nothing is cached on disk. (The numbers before
the engine came from this file at d241bf5, whose checker called Binning.fit,
sketch_partition, compare_windows and decide, run on ``include/`` of 9b4d6e2.)

Evidently's defaults (0.7): each tabular column through the drift test ``DataDriftPreset``
picks for it when given no method (``get_stattest(..., None)``: at more than 1,000 reference
rows the normed Wasserstein distance for numeric columns and the Jensen-Shannon distance for
categorical ones, threshold 0.1) on the full windows, with the preset's NaN handling; the
embedding through the default method of Evidently's embedding drift metric (``model()``: a
domain classifier's ROC AUC > 0.55, no bootstrap at this size), called directly because the
metric's own t-SNE plot would cost a minute a check, on a uniform sample of
``--evidently-embedding-rows`` rows of each window (default 5,000, the size of the sample
drift_monitor gives Evidently; its classifier on all 2 x 28,000 rows takes 1.7 s a check).
``--verify-evidently K`` runs the complete ``Report([DataDriftPreset()])`` on the first K checks of the first seed of every
case and stops if any column's score or flag differs from the direct calls. A check
"flags" when any column is flagged; Evidently keeps no history.

    .venv/bin/python bench/decision_quality.py                      # the full table (2 jobs)
    .venv/bin/python bench/decision_quality.py --seeds 2 --stable-checks 40 --horizon 7

Output: per-case days to warn / critical (median over seeds, range), Evidently's first
flagged day, false alarms per stable check, then one line ``summary: key=value ...``. A full
default run (45 worlds; about 680 driftloop and 620 Evidently checks, the drifts' stopping
early) takes about 700 CPU-seconds: some 6 minutes on 2 idle cores (23 minutes on a 2-core
machine shared at load 8).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

WINDOW_DAYS = 14
END_DATE = date(2026, 6, 30)  # the dates only label the days; the data depend on the seed
DEFAULT_SEEDS = 5
DEFAULT_ROWS_PER_DAY = 2000
DEFAULT_STABLE_CHECKS = 400
DEFAULT_HORIZON = 14
DEFAULT_VERIFY_EVIDENTLY = 1
#: rows per side for Evidently's embedding classifier: its default SGD classifier on 2 x 28,000
#: rows takes 1.7 s a check; drift_monitor gives Evidently a bounded sample of this size too
DEFAULT_EVIDENTLY_EMBEDDING_ROWS = 5000


@dataclass(frozen=True)
class Case:
    label: str  # the table's row
    key: str  # the summary keys' suffix
    scenario: str
    magnitude: float | None = None


DRIFT_CASES: tuple[Case, ...] = (
    Case("abrupt (large)", "abrupt", "abrupt"),
    Case("gradual", "gradual", "gradual"),
    Case("class mix", "class_mix", "class-mix"),
    Case("confidence decay", "confidence_decay", "confidence-decay"),
    Case("brightness +0.1 sd", "0.1sd", "brightness-shift", 0.1),
    Case("brightness +0.2 sd", "0.2sd", "brightness-shift", 0.2),
    Case("brightness +0.3 sd", "0.3sd", "brightness-shift", 0.3),
    Case("brightness +0.5 sd", "0.5sd", "brightness-shift", 0.5),
)
STABLE = Case("stable", "stable", "stable")
CASES_BY_KEY = {c.key: c for c in (*DRIFT_CASES, STABLE)}


@dataclass(frozen=True)
class Task:
    """One world: a case and a seed, and the day indices of its reference and its checks."""

    case: Case
    seed: int
    rows_per_day: int
    reference_days: tuple[int, ...]
    check_days: tuple[int, ...]
    drift_day: int | None  # index of the first drifted day (check day 1), None when stable
    verify_evidently: int  # checks of this world to run through Evidently's full Report too

    def spec(self):
        from driftloop_dev.synth import world_spec

        return world_spec(
            self.case.scenario,
            days=self.check_days[-1] + 1,
            drift_day=self.drift_day,
            end_date=END_DATE,
            rows_per_day=self.rows_per_day,
            labeled_per_day=0,
            seed=self.seed,
            magnitude=self.case.magnitude,
        )


def drift_task(case: Case, seed: int, *, rows_per_day: int, horizon: int, verify: int) -> Task:
    """Reference = the 14 days before the onset; check ``j`` on the onset's ``j``-th day."""
    onset = WINDOW_DAYS
    return Task(
        case,
        seed,
        rows_per_day,
        tuple(range(onset)),
        tuple(range(onset, onset + horizon)),
        onset,
        verify,
    )


def stable_task(seed: int, *, rows_per_day: int, checks: int, verify: int) -> Task:
    """Reference = days 0..13; the first current window is days 14..27, then it slides."""
    first = 2 * WINDOW_DAYS - 1
    return Task(
        STABLE,
        seed,
        rows_per_day,
        tuple(range(WINDOW_DAYS)),
        tuple(range(first, first + checks)),
        None,
        verify,
    )


def plan_tasks(
    seeds: Sequence[int], *, rows_per_day: int, horizon: int, stable_checks: int, verify: int
) -> list[Task]:
    per_seed = math.ceil(stable_checks / len(seeds))
    tasks = [
        stable_task(s, rows_per_day=rows_per_day, checks=per_seed, verify=verify if i == 0 else 0)
        for i, s in enumerate(seeds)
    ]
    tasks += [
        drift_task(c, s, rows_per_day=rows_per_day, horizon=horizon, verify=verify if i == 0 else 0)
        for c in DRIFT_CASES
        for i, s in enumerate(seeds)
    ]
    return tasks


# ---------------------------------------------------------------------------------------------
# driftloop's checker: the drift engine (the functions drift_monitor runs)
# ---------------------------------------------------------------------------------------------


def driftloop_engine(policy):
    """The engine on the project's inference-log contract under ``policy``."""
    from driftloop.contracts.columns import inference_contract
    from driftloop.drift.engine import DriftEngine

    return DriftEngine(contract=inference_contract(), policy=policy)


def driftloop_reference(engine, tables, days: Sequence[str]):
    """The reference as drift_monitor builds it: bins fitted on the window's bounded sample,
    every day sketched on them (its days also feed the calibration's day-to-day variation)."""
    return engine.reference(tables, days=list(days))


def driftloop_sketch_day(engine, table, day: str, reference):
    """One day's profile on the reference's bins and its bottom-k sample (drift_monitor
    caches it per partition)."""
    return engine.sketch_day(table, day=day, reference=reference)


def driftloop_check(engine, reference, current, previous_levels: Sequence[dict[str, str]]):
    """One daily check: the window's day sketches against the reference, decided with the
    policy and the earlier checks' per-feature levels (newest first). -> Decision."""
    return engine.check(reference, current, previous_levels)


# ---------------------------------------------------------------------------------------------
# Evidently's defaults
# ---------------------------------------------------------------------------------------------


def _tabular_columns() -> tuple[list[str], list[str]]:
    from driftloop.contracts import schema

    return list(schema.NUMERIC_FEATURES), list(schema.CATEGORICAL_FEATURES)


def evidently_frame(table):
    """The tabular columns as Evidently's ``Dataset.from_pandas`` would get them."""
    numeric, categorical = _tabular_columns()
    frame = table.select(numeric + categorical).to_pandas()
    for column in categorical:
        frame[column] = frame[column].astype("object")
    return frame


def embedding_matrix(table):
    from driftloop.contracts import schema
    from driftloop.drift.sketch import embedding_matrix as matrix

    return matrix(table) if schema.EMBEDDING_COLUMN in table.column_names else None


def evidently_defaults(reference_frame, current_frame, reference_emb, current_emb) -> dict:
    """``{column: {"method", "score", "threshold", "drifted"}}`` from Evidently's default
    drift test of every column (the calls ``ValueDrift`` makes) and its default embedding
    drift method (the call ``EmbeddingsDriftMetric`` makes)."""
    import numpy as np
    import pandas as pd
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import model

    numeric, categorical = _tabular_columns()
    out: dict[str, dict[str, Any]] = {}
    for column in numeric + categorical:
        kind = ColumnType.Numerical if column in numeric else ColumnType.Categorical
        # get_one_column_drift's cleaning: infinities are missing, missing values dropped
        ref = reference_frame[column].replace([-np.inf, np.inf], np.nan).dropna()
        cur = current_frame[column].replace([-np.inf, np.inf], np.nan).dropna()
        test = get_stattest(ref, cur, kind, None)
        result = test(ref, cur, kind, None)
        out[column] = {
            "method": test.display_name,
            "score": float(result.drift_score),
            "threshold": float(result.actual_threshold),
            "drifted": bool(result.drifted),
        }
    if reference_emb is not None:
        names = [f"embedding_{i}" for i in range(reference_emb.shape[1])]
        method = model(bootstrap=reference_emb.shape[0] < 1000)  # the metric's default
        score, drifted, name = method(
            pd.DataFrame(current_emb, columns=names), pd.DataFrame(reference_emb, columns=names)
        )
        out["embedding"] = {
            "method": f"{name} (ROC AUC)",
            "score": float(score),
            "threshold": float(method.threshold),
            "drifted": bool(drifted),
        }
    return out


def evidently_report_columns(reference_frame, current_frame) -> dict[str, dict[str, Any]]:
    """The per-column drift of a complete ``Report([DataDriftPreset()])`` run (defaults)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric, categorical = _tabular_columns()
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    # include_tests records each column's drift test (FAIL = drifted); it changes no result
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(current_frame, data_definition=definition),
        Dataset.from_pandas(reference_frame, data_definition=definition),
    )
    data = snapshot.dict()
    status = {
        (t.get("metric_config") or {}).get("metric_id"): str(
            getattr(t.get("status"), "value", t.get("status"))
        )
        for t in data["tests"]
        if t.get("id") == "drift"
    }
    out = {}
    for metric in data["metrics"]:
        config = metric.get("config") or {}
        if str(config.get("type", "")).endswith(":ValueDrift"):
            out[config["column"]] = {
                "score": float(metric["value"]),
                "drifted": status[metric["id"]] == "FAIL",
            }
    return out


def verify_against_report(direct: dict, reference_frame, current_frame, where: str) -> None:
    report = evidently_report_columns(reference_frame, current_frame)
    for column, result in report.items():
        mine = direct[column]
        if mine["drifted"] != result["drifted"] or not math.isclose(
            mine["score"], result["score"], rel_tol=1e-9, abs_tol=1e-12
        ):
            raise RuntimeError(
                f"{where}: Evidently's Report says {column} score {result['score']} drifted "
                f"{result['drifted']}, the direct default test {mine['score']} {mine['drifted']}"
            )
    missing = set(direct) - set(report) - {"embedding"}
    if missing:
        raise RuntimeError(f"{where}: Evidently's Report has no drift for {sorted(missing)}")


# ---------------------------------------------------------------------------------------------
# One world
# ---------------------------------------------------------------------------------------------


def _concat_frames(frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def _vstack(matrices):
    import numpy as np

    return None if matrices[0] is None else np.vstack(matrices)


def sample_rows(matrix, rows: int, seed_key: str):
    """A uniform sample of ``rows`` rows (all of them when ``rows`` is 0 or enough)."""
    import numpy as np

    from driftloop.drift.samples import seeded_rng

    if matrix is None or rows == 0 or len(matrix) <= rows:
        return matrix
    keep = np.sort(seeded_rng(seed_key).choice(len(matrix), size=rows, replace=False))
    return matrix[keep]


def run_task(
    task: Task,
    *,
    policy_path: str,
    evidently: bool,
    embedding_rows: int = DEFAULT_EVIDENTLY_EMBEDDING_ROWS,
    early_stop: bool = True,
) -> dict[str, Any]:
    """Every check of one world, through driftloop's checker and Evidently's defaults."""
    from driftloop.config.drift_policy import load_policy
    from driftloop_dev.synth import inference_table

    started, cpu_started = time.perf_counter(), time.process_time()
    policy = load_policy(policy_path)
    spec = task.spec()
    world = f"{task.case.key}/seed={task.seed}"
    timings = Counter()

    def day_name(index: int) -> str:
        return spec.date_of(index).isoformat()

    tables: dict[int, Any] = {}

    def table(index: int):
        if index not in tables:
            t0 = time.perf_counter()
            tables[index] = inference_table(spec, index)
            timings["generate_s"] += time.perf_counter() - t0
        return tables[index]

    t0 = time.perf_counter()
    engine = driftloop_engine(policy)
    reference = driftloop_reference(
        engine, [table(i) for i in task.reference_days], [day_name(i) for i in task.reference_days]
    )
    timings["driftloop_s"] += time.perf_counter() - t0
    sketches: dict[int, Any] = {}
    frames: dict[int, Any] = {}
    embeddings: dict[int, Any] = {}

    def sketch(index: int):
        if index not in sketches:
            sketches[index] = driftloop_sketch_day(engine, table(index), day_name(index), reference)
        return sketches[index]

    def frame(index: int):
        if index not in frames:
            frames[index] = evidently_frame(table(index))
            embeddings[index] = embedding_matrix(table(index))
        return frames[index]

    if evidently:
        t0 = time.perf_counter()
        reference_frame = _concat_frames([frame(i) for i in task.reference_days])
        reference_emb = sample_rows(
            _vstack([embeddings[i] for i in task.reference_days]),
            embedding_rows,
            f"{world}/evidently/reference",
        )
        timings["evidently_s"] += time.perf_counter() - t0

    history: list[dict[str, str]] = []  # per-feature levels of earlier checks, newest first
    checks: list[dict[str, Any]] = []
    evidently_checks: list[dict[str, Any]] = []
    # early stops are for the drifts' first days only: a stable world runs every check
    stops = early_stop and task.drift_day is not None
    driftloop_done = evidently_done = False
    for number, index in enumerate(task.check_days, start=1):
        window = range(index - WINDOW_DAYS + 1, index + 1)
        if not driftloop_done:
            t0 = time.perf_counter()
            decision = driftloop_check(
                engine, reference, [sketch(i) for i in window], history[: policy.n - 1]
            )
            timings["driftloop_s"] += time.perf_counter() - t0
            history.insert(0, dict(decision.feature_levels))
            checks.append(
                {
                    "check": number,
                    "day": day_name(index),
                    "severity": decision.severity,
                    "drifted_features": list(decision.drifted_features),
                    "levels_now": {
                        f: lvl for f, lvl in decision.feature_levels.items() if lvl != "none"
                    },
                    "effects": {
                        f.feature: round(float(f.effect), 6)
                        for f in getattr(decision, "features", ())
                    },
                }
            )
            driftloop_done = stops and decision.severity == "critical"
        if evidently and not evidently_done:
            t0 = time.perf_counter()
            current_frame = _concat_frames([frame(i) for i in window])
            current_emb = sample_rows(
                _vstack([embeddings[i] for i in window]),
                embedding_rows,
                f"{world}/evidently/{day_name(index)}",
            )
            columns = evidently_defaults(reference_frame, current_frame, reference_emb, current_emb)
            timings["evidently_s"] += time.perf_counter() - t0
            if number <= task.verify_evidently:
                t0 = time.perf_counter()
                verify_against_report(
                    columns, reference_frame, current_frame, f"{world} check {number}"
                )
                timings["verify_s"] += time.perf_counter() - t0
            flagged = [c for c, r in columns.items() if r["drifted"]]
            evidently_checks.append(
                {
                    "check": number,
                    "day": day_name(index),
                    "flagged": flagged,
                    "scores": {c: round(r["score"], 6) for c, r in columns.items()},
                }
            )
            evidently_done = stops and bool(flagged)
        if driftloop_done and (evidently_done or not evidently):
            break
    return {
        "case": task.case.key,
        "label": task.case.label,
        "scenario": task.case.scenario,
        "magnitude": task.case.magnitude,
        "seed": task.seed,
        "rows_per_day": task.rows_per_day,
        "reference_days": [day_name(i) for i in task.reference_days],
        "drift_start": None if task.drift_day is None else day_name(task.drift_day),
        "planned_checks": len(task.check_days),
        "policy_version": policy.version,
        "driftloop": checks,
        "evidently": evidently_checks if evidently else None,
        "seconds": {k: round(v, 3) for k, v in timings.items()}
        | {
            "total_s": round(time.perf_counter() - started, 3),
            # the worker's CPU time (all its threads): wall seconds stretch on a busy machine
            "cpu_s": round(time.process_time() - cpu_started, 3),
        },
    }


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

RANK = {"none": 0, "warn": 1, "critical": 2}


def first_check(checks: Sequence[dict], hit: Callable[[dict], bool]) -> int | None:
    return next((c["check"] for c in checks if hit(c)), None)


def days_to(result: dict, level: str) -> int | None:
    return first_check(result["driftloop"], lambda c: RANK[c["severity"]] >= RANK[level])


def evidently_first(result: dict) -> int | None:
    return first_check(result["evidently"] or [], lambda c: bool(c["flagged"]))


def median(values: Sequence[int | None]) -> float | None:
    """Median over seeds; ``None`` (never within the horizon) counts as later than any day."""
    ordered = sorted(math.inf if v is None else v for v in values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    value = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return None if math.isinf(value) else value


def fmt_day(value: float | None) -> str:
    if value is None:
        return "never"
    return f"{value:g}"


def fmt_days(values: Sequence[int | None]) -> str:
    """``median (min–max)`` over seeds."""
    if not values:
        return "-"
    low = min(values, key=lambda v: math.inf if v is None else v)
    high = max(values, key=lambda v: math.inf if v is None else v)
    spread = fmt_day(low) if low == high else f"{fmt_day(low)}–{fmt_day(high)}"
    return f"{fmt_day(median(values))} ({spread})"


def summarize(results: Sequence[dict], *, evidently: bool) -> dict[str, Any]:
    by_case: dict[str, list[dict]] = {}
    for r in results:
        by_case.setdefault(r["case"], []).append(r)
    rows = []
    for case in DRIFT_CASES:
        rs = sorted(by_case.get(case.key, []), key=lambda r: r["seed"])
        if not rs:
            continue
        warn = [days_to(r, "warn") for r in rs]
        critical = [days_to(r, "critical") for r in rs]
        first = [evidently_first(r) for r in rs] if evidently else []
        first_columns = Counter()
        for r in rs:  # which column Evidently flagged first, per seed
            hit = next((c for c in (r["evidently"] or []) if c["flagged"]), None)
            if hit:
                first_columns.update(hit["flagged"])
        rows.append(
            {
                "case": case.key,
                "label": case.label,
                "seeds": [r["seed"] for r in rs],
                "days_to_warn": warn,
                "days_to_critical": critical,
                "evidently_first_flag": first,
                "evidently_first_columns": dict(first_columns.most_common()),
                "horizon": rs[0]["planned_checks"],
            }
        )
    stable = by_case.get(STABLE.key, [])
    stable_checks = [c for r in stable for c in r["driftloop"]]
    warn_alarms = sum(RANK[c["severity"]] >= 1 for c in stable_checks)
    critical_alarms = sum(RANK[c["severity"]] >= 2 for c in stable_checks)
    alarm_features = Counter(f for c in stable_checks for f in c["drifted_features"])
    out: dict[str, Any] = {
        "drifts": rows,
        "stable": {
            "seeds": sorted(r["seed"] for r in stable),
            "checks": len(stable_checks),
            "warn_or_critical": warn_alarms,
            "critical": critical_alarms,
            "false_alarm_rate": warn_alarms / len(stable_checks) if stable_checks else None,
            "false_alarm_rate_critical": critical_alarms / len(stable_checks)
            if stable_checks
            else None,
            "alarm_features": dict(alarm_features.most_common()),
        },
    }
    if evidently:
        ev_checks = [c for r in stable for c in r["evidently"]]
        flagged = sum(bool(c["flagged"]) for c in ev_checks)
        out["stable"]["evidently"] = {
            "checks": len(ev_checks),
            "any_column_flagged": flagged,
            "false_alarm_rate": flagged / len(ev_checks) if ev_checks else None,
            "flagged_columns": dict(
                Counter(col for c in ev_checks for col in c["flagged"]).most_common()
            ),
        }
    return out


def print_table(summary: dict[str, Any], *, evidently: bool, out=sys.stdout) -> None:
    head = ["drift", "days to warn", "days to critical"]
    if evidently:
        head += ["Evidently's defaults, first column flagged", "first flagged (seeds)"]
    lines = [head]
    for row in summary["drifts"]:
        line = [row["label"], fmt_days(row["days_to_warn"]), fmt_days(row["days_to_critical"])]
        if evidently:
            columns = ", ".join(f"{c} {n}" for c, n in row["evidently_first_columns"].items())
            line += [fmt_days(row["evidently_first_flag"]), columns or "-"]
        lines.append(line)
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |", file=out)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=out)
    for line in lines[1:]:
        print(
            "| " + " | ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)) + " |",
            file=out,
        )
    if summary["drifts"]:
        horizon = summary["drifts"][0]["horizon"]
        print(
            f"days: check day j compares the 14 days ending on the j-th drifted day with the 14 "
            f"days before the onset; median (min–max) over seeds; never = not within {horizon} "
            "days",
            file=out,
        )
    stable = summary["stable"]
    if stable["checks"]:
        print(
            f"stable: {stable['checks']} daily checks over seeds {stable['seeds']}: "
            f"warn or critical {stable['warn_or_critical']} "
            f"({stable['false_alarm_rate']:.4f} per check), critical {stable['critical']} "
            f"({stable['false_alarm_rate_critical']:.4f}); "
            f"alarming features {stable['alarm_features'] or '-'}",
            file=out,
        )
        if evidently:
            ev = stable["evidently"]
            print(
                f"stable, Evidently's defaults: any column flagged in {ev['any_column_flagged']} "
                f"of {ev['checks']} checks ({ev['false_alarm_rate']:.4f}); "
                f"columns {ev['flagged_columns'] or '-'}",
                file=out,
            )


SUMMARY_CASES = ("0.2sd", "gradual", "class_mix", "confidence_decay")


def summary_line(summary: dict[str, Any], *, evidently: bool, wall_s: float, cpu_s: float) -> str:
    rows = {r["case"]: r for r in summary["drifts"]}

    def med(case: str, field: str) -> str:
        row = rows.get(case)
        return "n/a" if row is None else fmt_day(median(row[field]))

    def rate(value) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    stable = summary["stable"]
    parts = [
        f"false_alarm_rate={rate(stable['false_alarm_rate'])}",
        f"false_alarm_rate_critical={rate(stable['false_alarm_rate_critical'])}",
    ]
    parts += [f"days_to_warn_{c}={med(c, 'days_to_warn')}" for c in SUMMARY_CASES]
    parts.append(f"days_to_critical_abrupt={med('abrupt', 'days_to_critical')}")
    if evidently:
        parts.append(f"evidently_false_alarm_rate={rate(stable['evidently']['false_alarm_rate'])}")
        parts += [
            f"evidently_days_to_warn_{c}={med(c, 'evidently_first_flag')}" for c in SUMMARY_CASES
        ]
    parts += [f"stable_checks={stable['checks']}", f"wall_s={wall_s:.0f}", f"cpu_s={cpu_s:.0f}"]
    return "summary: " + " ".join(parts)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _worker_init() -> None:
    # one BLAS/OpenMP thread per worker process: --jobs processes share the cores
    from threadpoolctl import threadpool_limits

    global _THREAD_LIMIT
    _THREAD_LIMIT = threadpool_limits(limits=1)
    _quiet()


_THREAD_LIMIT = None


def _quiet() -> None:
    # Evidently and pandas warn about deprecations on every call; the numbers are the output
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", module="evidently")


def parse_seeds(text: str) -> list[int]:
    """``5`` -> seeds 0..4; ``3,7,11`` -> those seeds."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--seeds: a count or a comma list, got {text!r}") from err
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds: distinct seeds >= 0, got {text!r}")
    return seeds


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from driftloop.config.settings import DEFAULT_POLICY_PATH

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seeds",
        type=parse_seeds,
        default=list(range(DEFAULT_SEEDS)),
        help=f"a count (seeds 0..N-1) or a comma list (default {DEFAULT_SEEDS})",
    )
    parser.add_argument("--rows-per-day", type=positive_int, default=DEFAULT_ROWS_PER_DAY)
    parser.add_argument(
        "--stable-checks",
        type=int,
        default=DEFAULT_STABLE_CHECKS,
        help="daily checks of stable worlds in total, spread over the seeds (0: none)",
    )
    parser.add_argument(
        "--horizon",
        type=positive_int,
        default=DEFAULT_HORIZON,
        help="checks per drift, from its first day",
    )
    parser.add_argument(
        "--cases",
        default=",".join(c.key for c in DRIFT_CASES),
        help="drift cases to run, comma list of "
        + ", ".join(c.key for c in DRIFT_CASES)
        + " (default all)",
    )
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument(
        "--verify-evidently",
        type=int,
        default=DEFAULT_VERIFY_EVIDENTLY,
        help="checks of each case's first seed to run through Evidently's full Report too",
    )
    parser.add_argument(
        "--evidently-embedding-rows",
        type=int,
        default=DEFAULT_EVIDENTLY_EMBEDDING_ROWS,
        help="rows per window for Evidently's embedding classifier, a uniform sample "
        "(0: every row of the windows)",
    )
    parser.add_argument("--policy", default=str(DEFAULT_POLICY_PATH), help="drift policy YAML")
    parser.add_argument(
        "--jobs", type=positive_int, default=min(2, os.cpu_count() or 1), help="worker processes"
    )
    parser.add_argument("--json", type=Path, default=None, help="write every check's result here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.cases.split(",") if k.strip()]
    unknown = [k for k in keys if k not in CASES_BY_KEY or k == STABLE.key]
    if unknown:
        parser.error(f"--cases: unknown {unknown}; choose from {[c.key for c in DRIFT_CASES]}")
    if args.stable_checks < 0:
        parser.error("--stable-checks must be >= 0")
    evidently = not args.skip_evidently
    verify = args.verify_evidently if evidently else 0
    tasks = [
        t
        for t in plan_tasks(
            args.seeds,
            rows_per_day=args.rows_per_day,
            horizon=args.horizon,
            stable_checks=max(args.stable_checks, 1),
            verify=verify,
        )
        if (t.case.key in keys) or (t.case is STABLE and args.stable_checks > 0)
    ]
    # long worlds first, so that the last ones to finish are short
    tasks.sort(key=lambda t: -len(t.check_days))
    print(
        f"decision quality: {len(tasks)} worlds, seeds {args.seeds}, {args.rows_per_day} rows/day, "
        f"window {WINDOW_DAYS} days, horizon {args.horizon}, stable checks "
        f"{sum(len(t.check_days) for t in tasks if t.case is STABLE)}, policy {args.policy}, "
        f"Evidently {'off' if not evidently else 'on'}, {args.jobs} job(s)",
        flush=True,
    )
    started = time.perf_counter()
    results: list[dict] = []
    run = {
        "policy_path": args.policy,
        "evidently": evidently,
        "embedding_rows": args.evidently_embedding_rows,
    }

    def done(result: dict) -> None:
        results.append(result)
        warn, critical = days_to(result, "warn"), days_to(result, "critical")
        ev = evidently_first(result) if evidently else None
        print(
            f"  {result['case']:<17} seed {result['seed']}: "
            + (
                f"{len(result['driftloop'])} checks, alarms "
                f"{sum(c['severity'] != 'none' for c in result['driftloop'])}"
                if result["case"] == STABLE.key
                else f"warn {fmt_day(warn)} critical {fmt_day(critical)}"
                + (f" evidently {fmt_day(ev)}" if evidently else "")
            )
            + f"  ({result['seconds']['total_s']:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    if args.jobs == 1:
        _quiet()
        for task in tasks:
            done(run_task(task, **run))
    else:
        with ProcessPoolExecutor(max_workers=args.jobs, initializer=_worker_init) as pool:
            futures = [pool.submit(run_task, task, **run) for task in tasks]
            for future in as_completed(futures):
                done(future.result())
    wall = time.perf_counter() - started
    summary = summarize(results, evidently=evidently)
    print()
    print_table(summary, evidently=evidently)
    seconds = Counter()
    for r in results:
        seconds.update(r["seconds"])
    print(
        f"time: {wall:.0f} s wall on {args.jobs} job(s), {seconds['cpu_s']:.0f} CPU-s in the "
        "workers; summed over worlds (wall): "
        + ", ".join(f"{k} {v:.0f}" for k, v in sorted(seconds.items()) if k != "cpu_s")
    )
    if args.json is not None:
        import driftloop

        document = {
            "arguments": {
                "seeds": args.seeds,
                "rows_per_day": args.rows_per_day,
                "stable_checks": args.stable_checks,
                "horizon": args.horizon,
                "cases": keys,
                "policy": args.policy,
                "evidently": evidently,
                "evidently_embedding_rows": args.evidently_embedding_rows,
                "jobs": args.jobs,
            },
            "driftloop_package": str(Path(driftloop.__file__).parent),
            "summary": summary,
            "results": sorted(results, key=lambda r: (r["case"], r["seed"])),
            "wall_s": wall,
        }
        args.json.write_text(json.dumps(document, indent=1, sort_keys=True))
        print(f"raw results: {args.json}")
    print(summary_line(summary, evidently=evidently, wall_s=wall, cpu_s=seconds["cpu_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
