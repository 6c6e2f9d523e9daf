-- Databases and roles next to Airflow's metadata database (docker-compose.yaml, `postgres`).
--
-- Run once, on the first start of an empty data volume, by include/compose/postgres-init.sh,
-- which passes the passwords as psql variables (they never appear in this file):
--   psql -v driftloop_password=... -v mlflow_password=... -f init-databases.sql
--
-- driftloop : drift history, hysteresis state and the audit ledger (DRIFTLOOP_DATABASE_URL)
-- mlflow    : MLflow tracking + model registry backend store (mlflow server --backend-store-uri)
-- Each application gets its own login role that owns its own database and nothing else.

\set ON_ERROR_STOP on

CREATE ROLE driftloop WITH LOGIN PASSWORD :'driftloop_password';
CREATE DATABASE driftloop WITH OWNER driftloop ENCODING 'UTF8';
REVOKE ALL ON DATABASE driftloop FROM PUBLIC;

CREATE ROLE mlflow WITH LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow WITH OWNER mlflow ENCODING 'UTF8';
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
