"""One-shot ``mlflow-init`` service of docker-compose.yaml: MLflow users and what each may do.

Runs in the MLflow image once the server (``--app-name basic-auth``) is healthy, as the admin
(``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``). Idempotent: a re-run resets every
password and grant to what .env says (so rotating a password is: edit .env, ``up`` again).

How MLflow 3.17's basic-auth decides (mlflow/server/auth/__init__.py): permissions are
READ < USE < EDIT < MANAGE, plus NO_PERMISSIONS (and DENY). ``SetRegisteredModelAlias`` needs
*update* on the registered model (EDIT or MANAGE) and read on its versions;
``DeleteRegisteredModelAlias`` needs *delete* (MANAGE). Creating runs and logging to them needs
EDIT on the experiment. Any authenticated user may create a new experiment or registered model
(and becomes its MANAGE owner), so the shared objects are created here, before anyone else can.

Grants (``default_permission = NO_PERMISSIONS`` in basic_auth.ini: nothing else is allowed):

* the Airflow user: MANAGE on the registered model (the only account that moves aliases, via
  the promotion and rollback tasks) and on the experiments of the tasks;
* the trainer: EDIT on the training experiment (create/log runs and artifacts), READ on the
  registered model (the champion's weights to fine-tune from). READ cannot set an alias.

Exit status non-zero, naming the variable or the object, on any problem; a store error other
than "does not exist" is never taken for absence.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

REQUIRED = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_AIRFLOW_PASSWORD",
    "MLFLOW_TRAINER_PASSWORD",
)
DEFAULTS = {
    "MLFLOW_AIRFLOW_USERNAME": "airflow",
    "MLFLOW_TRAINER_USERNAME": "trainer",
    "DRIFTLOOP_REGISTERED_MODEL": "driftloop-detector",
    "DRIFTLOOP_TRAINING_EXPERIMENT": "retrain-detector",
    "DRIFTLOOP_DRIFT_EXPERIMENT": "drift-monitor",
}


def _code(err: Exception) -> str | None:
    return getattr(err, "error_code", None)


def ensure_user(auth, username: str, password: str) -> str:
    """Create the user, or reset its password when it exists."""
    from mlflow.exceptions import MlflowException

    try:
        auth.create_user(username, password)
        return "created"
    except MlflowException as err:
        if _code(err) != "RESOURCE_ALREADY_EXISTS":
            raise
    auth.update_user_password(username, password)
    return "password reset"


def ensure_experiment(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)  # None only when it does not exist
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name)


def ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as err:
        if _code(err) != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(name)


def grant(auth, username: str, resource_type: str, resource_id: str, permission: str) -> None:
    """Set the user's permission on one resource to exactly ``permission``."""
    from mlflow.exceptions import MlflowException

    try:
        auth.grant_user_permission(username, resource_type, resource_id, permission)
    except MlflowException as err:
        if _code(err) != "RESOURCE_ALREADY_EXISTS":
            raise
        auth.revoke_user_permission(username, resource_type, resource_id)
        auth.grant_user_permission(username, resource_type, resource_id, permission)


def provision(env: Mapping[str, str]) -> list[str]:
    from mlflow.server.auth.client import AuthServiceClient
    from mlflow.tracking import MlflowClient

    uri = env["MLFLOW_TRACKING_URI"]
    auth = AuthServiceClient(uri)
    client = MlflowClient(tracking_uri=uri)
    airflow, trainer = env["MLFLOW_AIRFLOW_USERNAME"], env["MLFLOW_TRAINER_USERNAME"]
    if len({airflow, trainer, env["MLFLOW_TRACKING_USERNAME"]}) != 3:
        raise ValueError("the admin, Airflow and trainer MLflow users must be three accounts")
    done = [
        f"user {airflow}: {ensure_user(auth, airflow, env['MLFLOW_AIRFLOW_PASSWORD'])}",
        f"user {trainer}: {ensure_user(auth, trainer, env['MLFLOW_TRAINER_PASSWORD'])}",
    ]
    model = env["DRIFTLOOP_REGISTERED_MODEL"]
    ensure_registered_model(client, model)
    training = ensure_experiment(client, env["DRIFTLOOP_TRAINING_EXPERIMENT"])
    drift = ensure_experiment(client, env["DRIFTLOOP_DRIFT_EXPERIMENT"])
    grants = [
        (airflow, "registered_model", model, "MANAGE"),
        (airflow, "experiment", training, "MANAGE"),
        (airflow, "experiment", drift, "MANAGE"),
        (trainer, "experiment", training, "EDIT"),
        (trainer, "registered_model", model, "READ"),
    ]
    for username, resource_type, resource_id, permission in grants:
        grant(auth, username, resource_type, resource_id, permission)
        done.append(f"{username}: {permission} on {resource_type} {resource_id}")
    return done


def main(environ: Mapping[str, str] | None = None) -> int:
    env = dict(DEFAULTS)
    env.update({k: v for k, v in (os.environ if environ is None else environ).items() if v})
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        print(f"mlflow_init: {', '.join(missing)} not set (set them in .env)", file=sys.stderr)
        return 1
    # the client reads the admin credentials from the environment
    os.environ.update({k: env[k] for k in REQUIRED[:3]})
    for line in provision(env):
        print(f"mlflow_init: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
