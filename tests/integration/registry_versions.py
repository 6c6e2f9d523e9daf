"""Cheap registered-model versions for tests of alias moves: a logged model per version, no
weights (the promotion and rollout transactions move aliases, they never load a model)."""

from __future__ import annotations

from driftloop.promotion import registry


def register_versions(
    client, model: str, n: int, experiment: str, tags: dict[str, str] | None = None
) -> list[str]:
    """``n`` new versions of ``model``, each from its own run in ``experiment`` (``tags`` on
    every version)."""
    found = client.get_experiment_by_name(experiment)
    exp_id = found.experiment_id if found else client.create_experiment(experiment)
    out = []
    for i in range(n):
        run_id = client.create_run(exp_id).info.run_id
        logged = client.create_logged_model(exp_id, name="detector-int8", source_run_id=run_id)
        version, _ = registry.register_candidate(
            client,
            model,
            model_uri=f"models:/{logged.model_id}",
            run_id=run_id,
            airflow_run_id=f"{model}-{i}",
            tags=dict(tags or {}),
            description="t",
        )
        out.append(str(version.version))
    return out
