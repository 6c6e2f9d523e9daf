-- Databases and roles of docker-compose.yaml's `postgres`, one login role per use, none of them
-- a superuser (the superuser, POSTGRES_USER, stays inside the postgres container).
--
-- Run once, on the first start of an empty data volume, by include/compose/postgres-init.sh,
-- which passes the passwords as psql variables (they never appear in this file):
--   psql -v airflow_password=... -v driftloop_password=... -v driftloop_app_password=...
--        -v mlflow_password=... -f init-databases.sql
--
-- airflow       : owner of the Airflow metadata database (every Airflow service, Celery results)
-- driftloop     : owner of the driftloop database: schema changes (migrations), only from the
--                 one-shot airflow-init service (DRIFTLOOP_OWNER_DATABASE_URL)
-- driftloop_app : what the tasks use (DRIFTLOOP_DATABASE_URL on the workers only): rows of the
--                 drift history and the ledger, no DDL. The ledger's own migration narrows
--                 audit_ledger to INSERT and SELECT (and a trigger refuses UPDATE/DELETE).
-- mlflow        : owner of the MLflow backend store (the mlflow service only)

\set ON_ERROR_STOP on
-- TEMPLATE template0: UTF8 whatever the cluster's default encoding (a C-locale cluster has
-- SQL_ASCII, and template1 refuses another encoding).

CREATE ROLE airflow WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'airflow_password';
CREATE DATABASE airflow WITH OWNER airflow ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;

CREATE ROLE driftloop WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'driftloop_password';
CREATE ROLE driftloop_app WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'driftloop_app_password';
CREATE DATABASE driftloop WITH OWNER driftloop ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE driftloop FROM PUBLIC;
GRANT CONNECT ON DATABASE driftloop TO driftloop_app;

CREATE ROLE mlflow WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'mlflow_password';
CREATE DATABASE mlflow WITH OWNER mlflow ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;

-- Inside the driftloop database: only the owner creates objects; what the owner creates, the
-- application role may read and write (row level), never alter or drop.
\connect driftloop
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO driftloop_app;
ALTER DEFAULT PRIVILEGES FOR ROLE driftloop IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO driftloop_app;
ALTER DEFAULT PRIVILEGES FOR ROLE driftloop IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO driftloop_app;
