"""What must hold after every fault case, whatever the fault did.

Each check returns a list of problems (empty: it holds). They read the stores directly (not
through the fault proxies), after the proxies are healed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

CHAMPION = "champion"
#: ledger kinds that move the champion alias when complete
CHAMPION_MOVES = ("promotion", "rollback")
#: prefixes of the input data that no fault may lose
INPUT_PREFIXES = ("inference/", "labeled/")
QUARANTINE_PREFIX = "quarantine/"


def champion_per_ledger(entries: Iterable, model: str) -> str | None:
    """The champion the ledger says: the target of the last complete promotion or rollback
    of ``model`` (its ``aliases.after.champion``); None when there is none."""
    champion = None
    for entry in entries:
        if entry.kind in CHAMPION_MOVES and entry.subject.startswith(f"model:{model}/v"):
            after = ((entry.payload or {}).get("aliases") or {}).get("after") or {}
            if CHAMPION in after:
                champion = str(after[CHAMPION])
    return champion


def champion_matches_ledger(aliases: Mapping[str, str], entries: list, model: str) -> list[str]:
    """The champion changes only through a complete promotion (or rollback) recorded in the
    ledger: the registry's ``champion`` alias is the ledger's last completed move's target,
    and without such a row there is no champion."""
    in_registry = aliases.get(CHAMPION)
    in_ledger = champion_per_ledger(entries, model)
    if in_registry == in_ledger:
        return []
    return [f"registry champion of {model} is v{in_registry}, the ledger says v{in_ledger}"]


def ledger_verifies(book) -> list[str]:
    """The hash chain recomputes (``Ledger.verify``)."""
    result = book.verify()
    return [] if result.ok else [f"ledger does not verify: {result}"]


def one_version_per_run(versions: Iterable, run_tag: str = "airflow.run_id") -> list[str]:
    """No Airflow run registered two model versions (tag ``airflow.run_id``)."""
    counts = Counter(v.tags.get(run_tag) for v in versions if v.tags.get(run_tag))
    return [f"run {run} registered {n} versions" for run, n in counts.items() if n > 1]


def one_row_per_step(entries: Iterable) -> list[str]:
    """No step of one run wrote the same kind of ledger row twice under different keys
    (the database makes each idempotency key unique; this checks the keys themselves: a
    key is ``<dag>/<run>/<task>[/...]``, and one task of one run records one row per kind)."""
    groups: dict[tuple[str, str], set[str]] = {}
    for entry in entries:
        key = entry.idempotency_key or ""
        step = "/".join(key.split("/")[:3])
        if key.count("/") >= 2:
            groups.setdefault((entry.kind, step), set()).add(key)
    return [
        f"{kind} rows of {step} under {len(keys)} keys: {sorted(keys)}"
        for (kind, step), keys in groups.items()
        if len(keys) > 1 and not _mapped_keys(keys)
    ]


def _mapped_keys(keys: set[str]) -> bool:
    # task_key of a mapped task instance adds its map index: one row per index is right
    return all(k.split("/")[3:4] and k.split("/")[3].isdigit() for k in keys)


def event_status_is_true(
    event: Mapping | None, run_failed: bool, promoted: bool = False
) -> list[str]:
    """The drift event a retraining ran for says what happened: ``RESOLVED`` when the run
    made its candidate champion (even if a later task failed), else ``RETRAINING_FAILED``
    when the run (or one of its tasks) failed, ``ACTIONED`` when it finished (not left
    pending, not failed)."""
    if event is None:
        return ["the drift event of the case is gone"]
    expected = "RESOLVED" if promoted else "RETRAINING_FAILED" if run_failed else "ACTIONED"
    if event["status"] != expected:
        state = "failed" if run_failed else "succeeded"
        return [f"drift event {event['id']} is {event['status']}, the run {state}: {expected}"]
    return []


def inputs_kept(before: set[str], after: set[str]) -> list[str]:
    """No input object is lost: every ``inference/`` and ``labeled/`` key listed before the
    case is still there, or (moved by quarantine) has a copy under ``quarantine/``."""
    quarantined = [key for key in after if key.startswith(QUARANTINE_PREFIX)]
    lost = [
        key
        for key in sorted(before - after)
        if not any(q.endswith(key) or q.endswith(key.split("/", 1)[-1]) for q in quarantined)
    ]
    return [f"{len(lost)} input objects lost, e.g. {lost[:3]}"] if lost else []


def compared_with_the_champion(evaluation: Mapping | None, champion_before: str | None):
    """The candidate was evaluated against the champion the registry held (a champion
    that a fault hid must not make the floors alone decide)."""
    if not evaluation or champion_before is None:
        return []
    compared = (evaluation.get("champion") or {}).get("version")
    if compared is None and str(evaluation.get("candidate", {}).get("version")) != champion_before:
        return [f"evaluate compared with no champion while v{champion_before} was champion"]
    return []


def reference_is_the_champions(reference: Mapping | None, champion: str | None) -> list[str]:
    """Drift is measured against the champion's training window whenever the registry has a
    champion (with its stored reference): a fault must not turn it into the sliding fallback."""
    if not reference or champion is None:
        return []
    if reference.get("kind") != "champion" or str(reference.get("model_version")) != champion:
        return [
            f"drift reference is {reference.get('kind')} v{reference.get('model_version')} "
            f"while v{champion} is champion"
        ]
    return []


def input_keys(s3, bucket: str) -> set[str]:
    """Every key under the input prefixes and under ``quarantine/``."""
    keys: set[str] = set()
    for prefix in (*INPUT_PREFIXES, QUARANTINE_PREFIX):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.update(obj["Key"] for obj in page.get("Contents", []))
    return keys
