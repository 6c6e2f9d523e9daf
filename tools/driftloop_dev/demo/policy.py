"""The promotion policy of the demo's runs: production's file with the demo's changes.

:data:`DEMO_CHANGES` (``promotion_policy.yaml`` next to this module) holds only what the demo
changes — ``promote_to: challenger`` and rollout stages that one served day reaches — so the
floors, tolerances and SLOs are always production's. :func:`write_demo_policy` merges it into
the production file and writes ``<root>/demo/promotion_policy.yaml`` (version
``<version>+demo``), which the ``dag.test()`` runs read through
``DRIFTLOOP_PROMOTION_POLICY_PATH``.

Under the scheduler the Airflow processes read the file they were started with. The demo learns
it from its first run's plan (:func:`effective_policy`): that policy sizes the rollout days,
and when it promotes straight to champion the demo asks for the challenger with the run-scoped
Param (:func:`challenger_params`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEMO_CHANGES = Path(__file__).with_name("promotion_policy.yaml")
DEMO_POLICY_NAME = "demo/promotion_policy.yaml"
CHALLENGER = "challenger"
_HEADER = (
    "# Written by `make demo` (driftloop_dev.demo.policy): the production promotion policy\n"
    "# with the demo's changes ({changes}). Do not edit: it is rewritten on every demo.\n"
)


def demo_policy_document(
    production: Mapping[str, Any], changes: Mapping[str, Any]
) -> dict[str, Any]:
    """``production`` with ``changes`` merged in, its version marked ``+demo``."""
    from driftloop.config.policies import deep_merge

    merged = deep_merge(dict(production), changes)
    merged["version"] = f"{production.get('version')}+demo"
    return merged


def write_demo_policy(root: Path) -> Path:
    """Write (and validate) the demo's policy under ``root``; its path."""
    import yaml

    from driftloop.config.promotion_policy import (
        DEFAULT_PROMOTION_POLICY_PATH,
        parse_promotion_policy,
    )

    production = yaml.safe_load(DEFAULT_PROMOTION_POLICY_PATH.read_text())
    changes = yaml.safe_load(DEMO_CHANGES.read_text())
    document = demo_policy_document(production, changes)
    path = root / DEMO_POLICY_NAME
    parse_promotion_policy(document, source=str(path))  # a bad change fails before any run
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        _HEADER.format(changes=DEMO_CHANGES.name)
        + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    )
    return path


def effective_policy(plan: Mapping[str, Any] | None):
    """The policy file a ``retrain_detector`` run decided under (its plan's
    ``promotion_policy.source``), without the run's Params."""
    from driftloop.config.promotion_policy import load_promotion_policy

    source = ((plan or {}).get("promotion_policy") or {}).get("source")
    if not source:
        raise SystemExit(f"retrain_detector's plan names no promotion policy: {plan!r}")
    return load_promotion_policy(source)


def is_demo_policy(policy) -> bool:
    return str(policy.version).endswith("+demo")


def challenger_params(policy) -> dict[str, str]:
    """The Param that makes a passing candidate ``challenger`` under ``policy``: none when the
    policy does already (a stricter target than champion needs no approval)."""
    return {} if policy.promote_to == CHALLENGER else {"promote_to": CHALLENGER}


def stage_minimums(policy) -> dict[str, str]:
    """The rollout's stage lengths in words, for the terminal and the summary."""
    rollout = policy.rollout
    return {
        "shadow": f"{rollout.shadow.min_frames} paired frames, {rollout.shadow.min_hours:g} h",
        "canary": (
            f"{rollout.canary.share:.0%} of frames, {rollout.canary.min_frames} paired frames, "
            f"{rollout.canary.min_hours:g} h"
        ),
        "guard": (
            f"{rollout.guard.hours:g} h, {rollout.guard.shadow_share:.0%} shadowed, "
            f"{rollout.guard.min_frames} paired frames"
        ),
    }
