#!/usr/bin/env bash
# One-shot `airflow-init` service of docker-compose.yaml (runs through the image's /entrypoint,
# which waits for the metadata database first):
#   0. refuse placeholder, well-known or short secrets (check-secrets.sh; every Airflow service
#      waits for this one to succeed, so none starts with a change-me value);
#   1. migrate the Airflow metadata database;
#   2. create/upgrade the driftloop history and ledger tables with the database OWNER role
#      (DRIFTLOOP_OWNER_DATABASE_URL, given to this service only): the workers connect as
#      driftloop_app, which may read and write rows but not change the schema;
#   3. create the `gpu` pool retrain_detector's training runs in (DRIFTLOOP_GPU_POOL_SLOTS, default
#      1: a task in a missing pool is never scheduled);
#   4. write the SimpleAuthManager password file: one account per person from .env
#      (airflow_users.py), instead of a shared admin with a random password printed to the logs.
# Idempotent: safe to run on every `docker compose up`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

sh "$here/check-secrets.sh" \
    AIRFLOW__CORE__FERNET_KEY AIRFLOW__API__SECRET_KEY AIRFLOW__API_AUTH__JWT_SECRET \
    AIRFLOW_DB_PASSWORD REDIS_PASSWORD DRIFTLOOP_DB_PASSWORD
: "${DRIFTLOOP_OWNER_DATABASE_URL:?DRIFTLOOP_OWNER_DATABASE_URL is required}"

airflow version
airflow db migrate

# The owner role migrates the tables (Alembic, driftloop/audit/migrations), then narrows the
# rows the default privileges of include/compose/init-databases.sql gave driftloop_app: the
# ledger INSERT and SELECT only (grant_app_role revokes UPDATE/DELETE/TRUNCATE on it).
DRIFTLOOP_DATABASE_URL="$DRIFTLOOP_OWNER_DATABASE_URL" python - <<'PY'
import os

from driftloop.audit import ledger
from driftloop.audit.schema import grant_app_role
from driftloop.drift import history

url = os.environ["DRIFTLOOP_DATABASE_URL"]
history.engine_for(url).dispose()
engine = ledger.engine_for(url)
if engine.dialect.name == "postgresql":  # roles exist only there (the tests use SQLite)
    grant_app_role(engine, os.environ.get("DRIFTLOOP_APP_DB_ROLE", "driftloop_app"))
engine.dispose()
print("driftloop database schema up to date (owner role); the app role may only append")
PY

airflow pools set gpu "${DRIFTLOOP_GPU_POOL_SLOTS:-1}" "GPU trainings of retrain_detector (one per GPU)"

python "$here/airflow_users.py"
