"""``driftloop drift compare``: the drift engine (:mod:`driftloop.drift.engine`) on local
Parquet files, from the command line. Heavy imports happen inside the handler."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from driftloop.cli import emit, fail


def _day_sources(paths: Sequence[str]) -> list[str]:
    """Each path is one day; a single directory holding ``dt=…`` partitions is its days."""
    from pathlib import Path

    if len(paths) == 1 and Path(paths[0]).is_dir():
        partitions = sorted(p for p in Path(paths[0]).iterdir() if p.name.startswith("dt="))
        if partitions:
            return [str(p) for p in partitions]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"no such file or directory: {', '.join(missing)}")
    return list(paths)


def _drift_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from driftloop.config.drift_policy import load_policy
    from driftloop.config.policies import PolicyError
    from driftloop.config.settings import DEFAULT_POLICY_PATH
    from driftloop.contracts.columns import ContractError, inference_contract, load_contract
    from driftloop.drift.engine import DriftEngine, format_table

    try:
        contract = load_contract(args.columns) if args.columns else inference_contract()
        policy = load_policy(args.policy or DEFAULT_POLICY_PATH)
        history = json.loads(Path(args.history).read_text()) if args.history else []
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise ValueError(
                f"--history {args.history}: expected a JSON list of {{feature: level}} objects, newest first"
            )
        engine = DriftEngine(contract=contract, policy=policy)
        reference = engine.reference(_day_sources(args.reference))
        current = [engine.sketch_day(p, reference=reference) for p in _day_sources(args.current)]
        decision = engine.check(reference, current, history)
    except (ContractError, PolicyError, ValueError, FileNotFoundError, OSError) as err:
        return fail(f"drift compare: {err}")
    document = {
        **decision.to_dict(),
        "feature_levels": decision.feature_levels,
        "contract": contract.to_dict(),
        "reference": {"rows": reference.profile.rows, "units": reference.days.days},
        "current": {"days": [d.day for d in current], "rows": sum(d.profile.rows for d in current)},
    }
    emit(
        args,
        document,
        [
            format_table(decision),
            f"reference: {reference.profile.rows} rows in {len(reference.days.days)} unit(s); "
            f"current: {document['current']['rows']} rows in {len(current)} day(s); "
            f"{decision.history_checks} earlier check(s) (k={policy.k} of n={policy.n}: a level "
            "alerts once k checks reached it; a break alerts at once)",
        ],
    )
    return 0


def register_drift(sub, parents: list[argparse.ArgumentParser]) -> None:
    drift = sub.add_parser(
        "drift",
        parents=parents,
        help="the drift engine on local Parquet files",
        description="The drift engine (driftloop.drift.engine) on any table.",
    )
    actions = drift.add_subparsers(dest="drift_command", required=True, metavar="ACTION")
    compare = actions.add_parser(
        "compare",
        parents=parents,
        help="compare current days with a reference: the decision as a table (or --json)",
        description="Each PATH is one day (a Parquet file or a directory of them); a single "
        "directory of dt=… partitions is its days. A single reference PATH is cut into "
        "contiguous chunks to calibrate on its own variation.",
    )
    compare.add_argument("--reference", nargs="+", required=True, metavar="PATH")
    compare.add_argument("--current", nargs="+", required=True, metavar="PATH")
    compare.add_argument(
        "--columns",
        default=None,
        metavar="SPEC.yaml",
        help="column roles (numeric, categorical, embedding, prediction); default: the "
        "inference-log contract",
    )
    compare.add_argument(
        "--policy", default=None, help="drift policy YAML (default: the project's)"
    )
    compare.add_argument(
        "--history",
        default=None,
        metavar="LEVELS.json",
        help="earlier checks' feature_levels, newest first, for the k-of-n rule",
    )
    compare.set_defaults(handler=_drift_compare)
