#!/bin/sh
# Mounted into /docker-entrypoint-initdb.d/ of the postgres image: runs once, on an empty
# data volume, after the Airflow metadata database ($POSTGRES_DB) has been created.
# Creates the driftloop and mlflow databases and roles; passwords come from the environment
# (docker-compose.yaml <- .env), never from the SQL file.
set -eu

: "${DRIFTLOOP_DB_PASSWORD:?DRIFTLOOP_DB_PASSWORD is required}"
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is required}"

psql --no-psqlrc --set ON_ERROR_STOP=1 \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set driftloop_password="$DRIFTLOOP_DB_PASSWORD" \
    --set mlflow_password="$MLFLOW_DB_PASSWORD" \
    --file "${DRIFTLOOP_INIT_SQL:-/opt/driftloop/init-databases.sql}"
