#!/usr/bin/env bash
# One-shot `airflow-init` service of docker-compose.yaml (runs through the image's /entrypoint,
# which waits for the metadata database first):
#   1. migrate the Airflow metadata database;
#   2. create the `gpu` pool retrain_detector's training runs in (DRIFTLOOP_GPU_POOL_SLOTS, default
#      1: a task in a missing pool is never scheduled);
#   3. write the SimpleAuthManager password file, so the admin user configured in
#      AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS logs in with AIRFLOW_ADMIN_PASSWORD from .env
#      instead of a random password printed to the logs.
# Idempotent: safe to run on every `docker compose up`.
set -euo pipefail

: "${AIRFLOW_ADMIN_USERNAME:?AIRFLOW_ADMIN_USERNAME is required}"
: "${AIRFLOW_ADMIN_PASSWORD:?AIRFLOW_ADMIN_PASSWORD is required}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?the password file location is required}"

airflow version
airflow db migrate
airflow pools set gpu "${DRIFTLOOP_GPU_POOL_SLOTS:-1}" "GPU trainings of retrain_detector (one per GPU)"

python - <<'PY'
import json
import os

path = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
os.makedirs(os.path.dirname(path), exist_ok=True)
tmp = f"{path}.tmp"
# Group-readable only: the Airflow containers run as ${AIRFLOW_UID}:0.
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o660)
with os.fdopen(fd, "w") as fh:
    json.dump({os.environ["AIRFLOW_ADMIN_USERNAME"]: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, fh)
    fh.write("\n")
os.replace(tmp, path)
print(f"SimpleAuthManager password file written for user {os.environ['AIRFLOW_ADMIN_USERNAME']!r}")
PY
