"""The MLflow model registry: candidate versions, aliases, rejection tags, retention.

Promotion is an alias change, never a stage (stages are deprecated in MLflow): ``champion``
serves, ``previous-champion`` is the one-step rollback, ``challenger`` is a candidate that a
rollout guard still has to confirm. Aliases move only through
:mod:`driftloop.promotion.transactions` (intent, compare-and-set, completion in the ledger). A version is the training run's INT8 ONNX model, logged as
an MLflow model (``models:/m-…``), so ``mlflow.onnx.load_model("models:/<name>@champion")``
loads what serves; the FP32 model of the same run is named by the version's
``fp32_model_uri`` tag. Every function takes an ``MlflowClient`` so it works the
same against the embedded server and a production one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from driftloop.contracts.stores import absent_if_not_found

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"
PROTECTED_ALIASES = (CHAMPION, PREVIOUS_CHAMPION, CHALLENGER)
#: tag that makes registration idempotent: one version per retrain DAG run
RUN_TAG = "airflow.run_id"
ARCHIVED_TAG = "archived"
#: version tag naming the FP32 ONNX model (``models:/m-…``) logged with the registered INT8 one
FP32_MODEL_TAG = "fp32_model_uri"
_LOGGED_MODEL_URI = re.compile(r"models:/(m-[0-9a-f]+)")


def ensure_registered_model(client, name: str, description: str = "") -> None:
    """Create the registered model when MLflow says it does not exist (and only then)."""
    if absent_if_not_found(lambda: client.get_registered_model(name)) is None:
        client.create_registered_model(name, description=description or None)


def aliases(client, name: str) -> dict[str, str]:
    """``{alias: version}`` of a registered model; {} only when MLflow says the model does
    not exist. Any other error (a 500, a reset connection) is raised: an unreadable registry
    is not an empty one — "no champion" would let the floors alone promote, and an empty
    protected set would let retention archive the champion."""
    model = absent_if_not_found(lambda: client.get_registered_model(name))
    if model is None:
        return {}
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


def version_with_alias(client, name: str, alias: str):
    """The version holding ``alias``, or None when no version holds it (read from the
    registered model's aliases: ``get_model_version_by_alias`` answers a missing alias with
    INVALID_PARAMETER_VALUE, which cannot be told apart from a bad request)."""
    version = aliases(client, name).get(alias)
    return None if version is None else client.get_model_version(name, version)


def find_version(client, name: str, tag: str, value: str):
    found = client.search_model_versions(f"name='{name}' and tags.`{tag}` = '{value}'")
    return max(found, key=lambda v: int(v.version)) if found else None


def logged_model_id(model_uri: str) -> str:
    """The logged-model id of a ``models:/m-…`` URI (what ``mlflow.<flavor>.log_model``
    returns); anything else is refused: the registry registers MLflow models, not run
    folders."""
    match = _LOGGED_MODEL_URI.fullmatch(str(model_uri))
    if match is None:
        raise ValueError(
            f"model_uri {model_uri!r}: expected a logged MLflow model URI models:/m-<id> "
            "(the training run logs its ONNX models with mlflow.onnx)"
        )
    return match.group(1)


def register_candidate(
    client,
    name: str,
    *,
    model_uri: str,
    run_id: str,
    airflow_run_id: str,
    tags: Mapping[str, str],
    description: str,
) -> tuple[Any, bool]:
    """Register the training run's logged model ``model_uri`` (``models:/m-…``, the INT8 ONNX
    model) as a new version, once per retrain DAG run.

    Returns ``(version, created)``; a re-run of the same DAG run finds its version again.
    """
    model_id = logged_model_id(model_uri)
    ensure_registered_model(client, name, "YOLO detector (ball, player) kept healthy by driftloop")
    existing = find_version(client, name, RUN_TAG, airflow_run_id)
    if existing is not None:
        return existing, False
    version = client.create_model_version(
        name,
        source=model_uri,
        run_id=run_id,
        model_id=model_id,
        tags={**{k: str(v) for k, v in tags.items()}, RUN_TAG: airflow_run_id},
        description=description,
    )
    return version, True


def onnx_model_uris(version) -> dict[str, str]:
    """``{"int8": uri, "fp32": uri}`` of a registered version: its own source (the INT8 model)
    and the FP32 model named by its :data:`FP32_MODEL_TAG` tag. Versions registered before the
    ONNX files were MLflow models (source ``runs:/<id>``) point at the run's
    ``onnx/model_{kind}.onnx`` artifacts."""
    source = str(version.source or "")
    if _LOGGED_MODEL_URI.fullmatch(source):
        fp32 = (version.tags or {}).get(FP32_MODEL_TAG)
        if not fp32:
            raise LookupError(
                f"{version.name} v{version.version} has no {FP32_MODEL_TAG!r} tag: "
                "its FP32 model is unknown"
            )
        return {"int8": source, "fp32": fp32}
    return {kind: f"runs:/{version.run_id}/onnx/model_{kind}.onnx" for kind in ("int8", "fp32")}


def set_tags(client, name: str, version: str, tags: Mapping[str, Any]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def version_infos(client, name: str):
    """All versions as :class:`driftloop.promotion.retention.VersionInfo` (with their aliases)."""
    from driftloop.promotion.retention import VersionInfo

    by_version: dict[str, set[str]] = {}
    for alias, version in aliases(client, name).items():
        by_version.setdefault(version, set()).add(alias)
    return [
        VersionInfo(
            version=int(v.version),
            aliases=by_version.get(str(v.version), set()),
            created_ms=int(v.creation_timestamp or 0),
            archived=(v.tags or {}).get(ARCHIVED_TAG) == "true",
        )
        for v in client.search_model_versions(f"name='{name}'")
    ]


def apply_retention(client, name: str, plan, *, mode: str = "tag") -> list[int]:
    """Archive the plan's versions: tag them ``archived=true`` or delete them (policy ``mode``).

    Versions holding a protected alias are refused here too, whatever the plan says; the
    aliases are read again before each version (an alias may have moved since the plan), and
    an unreadable registry raises instead of looking unprotected. A version already gone
    (deleted by an earlier attempt) is skipped."""
    if mode not in ("tag", "delete"):
        raise ValueError(f"retention archive mode must be 'tag' or 'delete', got {mode!r}")
    done = []
    for version in plan.archive:
        protected = {int(v) for a, v in aliases(client, name).items() if a in PROTECTED_ALIASES}
        if int(version) in protected:
            raise ValueError(f"{name} v{version} holds a protected alias and cannot be archived")
        if absent_if_not_found(lambda v=version: client.get_model_version(name, str(v))) is None:
            continue
        if mode == "delete":
            client.delete_model_version(name, str(version))
        else:
            client.set_model_version_tag(name, str(version), ARCHIVED_TAG, "true")
        done.append(int(version))
    return done
