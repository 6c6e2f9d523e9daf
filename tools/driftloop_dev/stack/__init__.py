"""The embedded stack: real services on 127.0.0.1 for tests, ``make demo`` and ``make up``.

Components (each a child process in its own session, on a free port, logging to
``<root>/logs/<name>.log``):

- ``s3``: moto server (the real S3 API over HTTP), with the buckets ``driftloop`` and
  ``driftloop-mlflow``;
- ``mlflow``: ``mlflow server``, SQLite backend, artifacts proxied to
  ``s3://driftloop-mlflow/artifacts``;
- ``pushgateway``: ``prometheus-pushgateway`` without persistence, when the binary is installed
  (otherwise skipped, recorded in the state, and ``DRIFTLOOP_PUSHGATEWAY_URL`` stays unset);

and with ``with_airflow_ui=True`` (``up --ui``) Airflow as in production, one process each:

- ``postgres``: PostgreSQL (the Debian server binaries), its cluster initialised once in
  ``<root>/postgres/data`` (password auth; the passwords in ``<root>/postgres/credentials.json``,
  0600), run as the ``postgres`` user when the stack runs as root; database and role ``airflow``;
- ``airflow`` (the api-server: UI, REST API, execution API), ``airflow-scheduler``,
  ``airflow-dag-processor``, ``airflow-triggerer``; LocalExecutor, parallelism 4, DAGs unpaused
  at creation;
- with ``executor="celery"`` (``up --celery``): ``redis`` (``redis-server`` without persistence,
  the broker), CeleryExecutor with the result backend in PostgreSQL, and two workers
  ``airflow-worker1`` / ``airflow-worker2`` (``--concurrency 2``, node names ``workerN@<host>``),
  each with its own log server port and reporting the hostname ``127.0.0.<N+1>``, a loopback
  address of its own, as two hosts would.

The Airflow *environment* (``AIRFLOW_HOME``, metadata DB, connections as ``AIRFLOW_CONN_*``)
is always part of :attr:`EmbeddedStack.env`: SQLite for ``dag.test()`` without the Airflow
processes (:func:`migrate_airflow_db` creates the DB), the stack's PostgreSQL with them.

Python API::

    with EmbeddedStack(tmp_path, repo) as stack:   # start() … stop()
        stack.env["MLFLOW_TRACKING_URI"], stack.urls["s3"], stack.pids
    with EmbeddedStack(root, repo, with_airflow_ui=True, executor="celery") as stack:
        stack.airflow_client().post("dags/my_dag/dagRuns", {"logical_date": None})

Command line (the processes outlive it; ``down`` stops them by the PIDs in
``<root>/stack.json`` after checking that each PID still runs the command it started)::

    python -m driftloop_dev.stack up [--root .stack] [--ui] [--celery] [--dags-folder DIR]
    python -m driftloop_dev.stack status | env | down
    eval "$(python -m driftloop_dev.stack env)"
    driftloop stack up|status|env|down [--root .stack] …   (the same, as a driftloop subcommand)

Modules: :mod:`.constants` (the stack's shape), :mod:`.net`, :mod:`.processes` (/proc,
:class:`Component`), :mod:`.health`, :mod:`.prerequisites`, :mod:`.airflow_db` (migrations,
pools), :mod:`.postgres`, :mod:`.airflow`, :mod:`.environment`, :mod:`.supervisor` (spawn, wait,
stop), :mod:`.embedded` (:class:`EmbeddedStack`), :mod:`.cli`.
"""

from driftloop_dev.stack.airflow_db import POOLS, Migration, ensure_pools, migrate_airflow_db
from driftloop_dev.stack.constants import (
    ADMIN_USER,
    AIRFLOW_COMPONENTS,
    AIRFLOW_JOBS,
    AIRFLOW_PROCESSES,
    AWS_ACCESS_KEY_ID,
    AWS_REGION,
    AWS_SECRET_ACCESS_KEY,
    CELERY_WORKERS,
    CORE,
    DATA_BUCKET,
    DEFAULT_REPO,
    EXECUTORS,
    HOST,
    MLFLOW_ARTIFACTS,
    MLFLOW_BUCKET,
    STATE_FILE,
    StackError,
)
from driftloop_dev.stack.embedded import EmbeddedStack
from driftloop_dev.stack.net import free_port, port_open
from driftloop_dev.stack.prerequisites import (
    airflow_celery_missing,
    airflow_postgres_missing,
    postgres_bindir,
    pushgateway_binary,
    redis_binary,
)
from driftloop_dev.stack.processes import Component, _session_members, _stat

__all__ = [
    "ADMIN_USER",
    "AIRFLOW_COMPONENTS",
    "AIRFLOW_JOBS",
    "AIRFLOW_PROCESSES",
    "AWS_ACCESS_KEY_ID",
    "AWS_REGION",
    "AWS_SECRET_ACCESS_KEY",
    "CELERY_WORKERS",
    "CORE",
    "DATA_BUCKET",
    "DEFAULT_REPO",
    "EXECUTORS",
    "HOST",
    "MLFLOW_ARTIFACTS",
    "MLFLOW_BUCKET",
    "POOLS",
    "STATE_FILE",
    "Component",
    "EmbeddedStack",
    "Migration",
    "StackError",
    "_session_members",
    "_stat",
    "airflow_celery_missing",
    "airflow_postgres_missing",
    "ensure_pools",
    "free_port",
    "migrate_airflow_db",
    "port_open",
    "postgres_bindir",
    "pushgateway_binary",
    "redis_binary",
]
