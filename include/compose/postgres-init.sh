#!/bin/sh
# Mounted into /docker-entrypoint-initdb.d/ of the postgres image: runs once, on an empty
# data volume, after the superuser's own database ($POSTGRES_DB) has been created.
# Creates the airflow, driftloop and mlflow databases and their roles (init-databases.sql);
# passwords come from the environment (docker-compose.yaml <- .env), never from the SQL file,
# and placeholder or short ones are refused first (check-secrets.sh).
set -eu

sh "${DRIFTLOOP_CHECK_SECRETS:-/opt/driftloop/check-secrets.sh}" \
    POSTGRES_PASSWORD AIRFLOW_DB_PASSWORD DRIFTLOOP_DB_PASSWORD DRIFTLOOP_APP_DB_PASSWORD \
    MLFLOW_DB_PASSWORD

psql --no-psqlrc --set ON_ERROR_STOP=1 \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set airflow_password="$AIRFLOW_DB_PASSWORD" \
    --set driftloop_password="$DRIFTLOOP_DB_PASSWORD" \
    --set driftloop_app_password="$DRIFTLOOP_APP_DB_PASSWORD" \
    --set mlflow_password="$MLFLOW_DB_PASSWORD" \
    --file "${DRIFTLOOP_INIT_SQL:-/opt/driftloop/init-databases.sql}"
