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
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import stat as stat_mode
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from driftloop.config.settings import Settings
from driftloop_dev.airflow_api import AirflowAPI

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
AWS_ACCESS_KEY_ID = "testing"
AWS_SECRET_ACCESS_KEY = "testing"
AWS_REGION = "us-east-1"
DATA_BUCKET = Settings().bucket
MLFLOW_BUCKET = "driftloop-mlflow"
MLFLOW_ARTIFACTS = f"s3://{MLFLOW_BUCKET}/artifacts"
ADMIN_USER = "admin"
STATE_FILE = "stack.json"
PASSWORDS_FILE = "airflow/simple_auth_manager_passwords.json"
FERNET_KEY_FILE = "airflow/fernet.key"
PG_CREDENTIALS_FILE = "postgres/credentials.json"
SIMPLE_AUTH_MANAGER = (
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
)
PUSHGATEWAY_CANDIDATES = ("prometheus-pushgateway", "/usr/bin/prometheus-pushgateway")
REDIS_CANDIDATES = ("redis-server", "/usr/bin/redis-server")
PG_BINDIR_GLOB = "/usr/lib/postgresql/*/bin"

#: the Airflow executors of the embedded stack: ``executor=`` → ``[core] executor``
EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
PARALLELISM = 4
CELERY_CONCURRENCY = 2
CORE = ("s3", "mlflow", "pushgateway")
AIRFLOW_JOBS = {  # component → its part of /api/v2/monitor/health
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag_processor",
    "airflow-triggerer": "triggerer",
}
CELERY_WORKERS = ("airflow-worker1", "airflow-worker2")
AIRFLOW_PROCESSES = ("airflow", *AIRFLOW_JOBS, *CELERY_WORKERS)
AIRFLOW_COMPONENTS = ("postgres", "redis", *AIRFLOW_PROCESSES)
START_ORDER = (*CORE, *AIRFLOW_COMPONENTS)
#: stopped tier by tier, each tier at once: what runs and schedules tasks first, then the
#: api-server (running tasks report to it until they end), then the databases, then the rest
STOP_TIERS = (
    (*CELERY_WORKERS, *AIRFLOW_JOBS),
    ("airflow",),
    ("redis", "postgres"),
    CORE,
)
STOP_SIGNAL = {"postgres": signal.SIGINT}  # PostgreSQL's "fast" shutdown; SIGTERM waits for clients
STOP_GRACE_S = {name: 30.0 for name in (*AIRFLOW_PROCESSES, "postgres")}  # default 10
STARTUP_TIMEOUT_S = {"s3": 60.0, "mlflow": 120.0, "pushgateway": 30.0, "postgres": 60.0}
AIRFLOW_STARTUP_TIMEOUT_S = 300.0
BIN_DIR = Path(sys.executable).parent
DEFAULT_REPO = Path(__file__).resolve().parents[2]

# Inherited variables that would point clients somewhere else than the stack.
_SCRUB = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AIRFLOW__CORE__UNIT_TEST_MODE")


class StackError(RuntimeError):
    """A component did not start, or the stack's state is unusable."""


def free_port(host: str = HOST) -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http(
    url: str,
    *,
    data: bytes | None = None,
    method: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 3.0,
) -> tuple[int, bytes]:
    """(status, body) of one request, never going through a proxy; (0, b"") when unreachable."""
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with _NO_PROXY.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ValueError):
        return 0, b""


# --------------------------------------------------------------------------- /proc helpers


@dataclass(frozen=True)
class _Stat:
    state: str
    session: int
    start_time: int  # clock ticks since boot; with the PID, identifies a process
    rss_bytes: int


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> _Stat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 of proc(5): state, ppid, pgrp, session, …, starttime (22), …, rss (24)
    return _Stat(fields[0], int(fields[3]), int(fields[19]), int(fields[21]) * _PAGE)


def _running(stat: _Stat | None) -> bool:
    return stat is not None and stat.state not in ("Z", "X")


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    parts = raw.split(b"\0")
    if parts and not parts[-1]:
        parts.pop()  # the terminator of the last argument; empty arguments ("") stay
    return [part.decode(errors="replace") for part in parts]


def _session_members(session: int, not_before: int) -> dict[int, _Stat]:
    """Live processes of a session that started no earlier than its leader did."""
    members = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if _running(stat) and stat.session == session and stat.start_time >= not_before:
                members[int(entry.name)] = stat
    return members


def _tail(path: str | Path, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- components


@dataclass
class Component:
    """One started process: what it runs and how to find it again from another process."""

    name: str
    argv: list[str]
    port: int  # 0: listens on no port of its own
    url: str
    log: str
    pid: int | None = None
    start_time: int | None = None
    startup_s: float | None = None
    #: a substring of its command line when the process rewrites it (setproctitle)
    title: str = ""
    #: what its health check talks to when that is not ``url`` (may hold a password: the
    #: state file is 0600)
    health_url: str = ""
    started_at: float | None = None  # wall clock (epoch seconds) of the spawn
    #: environment of this process on top of the stack's (a Celery worker's log server port)
    env: dict[str, str] = field(default_factory=dict)

    def owns_pid(self) -> bool:
        """The recorded PID is alive and still runs this component's command (not a reused PID)."""
        if self.pid is None:
            return False
        stat = _stat(self.pid)
        if not _running(stat) or stat.start_time != self.start_time:
            return False
        cmdline = _cmdline(self.pid)
        if not cmdline:
            return False
        # Console scripts run as ``python /path/script args``: compare everything after argv[0].
        tail = self.argv[1:]
        if not tail or cmdline[-len(tail) :] == tail:
            return True
        return bool(self.title) and self.title in " ".join(cmdline)

    def processes(self) -> dict[int, _Stat]:
        """The component's live processes: its session, unless its PID now belongs to another."""
        if self.pid is None or self.start_time is None:
            return {}
        leader = _stat(self.pid)
        if _running(leader) and not self.owns_pid():
            return {}
        return _session_members(self.pid, self.start_time)

    def rss_bytes(self) -> int:
        """Resident memory of all its processes (shared pages counted once per process)."""
        return sum(stat.rss_bytes for stat in self.processes().values())

    def pss_bytes(self) -> int:
        """Proportional set size: shared pages split between processes, so forks add up fairly."""
        return sum(_pss(pid) for pid in self.processes())

    def healthy(self) -> bool:
        return _healthy(self)


def _healthy(comp: Component) -> bool:
    name, url = comp.name, comp.url
    if name == "s3":
        return _http(f"{url}/moto-api/")[0] == 200
    if name == "mlflow":
        return _http(f"{url}/health")[0] == 200
    if name == "pushgateway":
        return _http(f"{url}/-/ready")[0] == 200
    if name == "postgres":
        return _pg_column(comp.health_url, "SELECT 1") == {1}
    if name == "redis":
        return _redis_ping(comp.port)
    if name == "airflow":
        health = _airflow_health(url)
        return (health.get("metadatabase") or {}).get("status") == "healthy"
    if name in AIRFLOW_JOBS:
        # This component's own job: healthy, and heartbeating since it was spawned (a job row
        # of a stack stopped a moment ago still looks healthy for a while).
        part = _airflow_health(comp.health_url).get(AIRFLOW_JOBS[name]) or {}
        beat = next((v for k, v in part.items() if k.endswith("heartbeat") and v), None)
        if part.get("status") != "healthy" or beat is None:
            return False
        return datetime.fromisoformat(beat).timestamp() >= (comp.started_at or 0.0) - 1.0
    if name in CELERY_WORKERS:
        # its log server is up and the Celery node answers a ping through the broker
        return port_open(comp.port) and _celery_ping(comp.health_url, comp.title)
    raise ValueError(f"unknown component {name!r}")


def _airflow_health(base_url: str) -> dict[str, Any]:
    status, body = _http(f"{base_url}/api/v2/monitor/health")
    if status != 200:
        return {}
    try:
        return json.loads(body)
    except ValueError:
        return {}


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _celery_ping(broker_url: str, node_prefix: str, timeout: float = 1.0) -> bool:
    """A Celery node whose name starts with ``node_prefix`` answers a broadcast ping."""
    try:
        from celery import Celery
    except ImportError:
        return False
    app = Celery("driftloop-stack-ping", broker=broker_url, set_as_current=False)
    try:
        replies = app.control.ping(timeout=timeout) or []
    except Exception:  # broker not reachable (yet)
        return False
    finally:
        app.close()
    return any(node.startswith(node_prefix) for reply in replies for node in reply)


def _first_binary(candidates: tuple[str, ...]) -> str | None:
    return next((found for c in candidates if (found := shutil.which(c))), None)


def pushgateway_binary() -> str | None:
    return _first_binary(PUSHGATEWAY_CANDIDATES)


def redis_binary() -> str | None:
    """``redis-server`` (Debian package ``redis-server``), or None."""
    return _first_binary(REDIS_CANDIDATES)


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))


def postgres_bindir() -> Path | None:
    """The PostgreSQL server binaries (``initdb``, ``postgres``): ``DRIFTLOOP_PG_BINDIR``, the
    newest ``/usr/lib/postgresql/*/bin`` (Debian), or the folder of ``postgres`` on PATH."""
    override = os.environ.get("DRIFTLOOP_PG_BINDIR")
    candidates = [Path(override)] if override else []
    candidates += sorted(Path("/").glob(PG_BINDIR_GLOB.lstrip("/")), key=_version_key, reverse=True)
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if (folder / "postgres").is_file() and (folder / "initdb").is_file():
            return folder
    return None


def airflow_postgres_missing() -> str | None:
    """Why Airflow cannot run on the stack's PostgreSQL here; None when it can."""
    if postgres_bindir() is None:
        return (
            "PostgreSQL server binaries not found (initdb, postgres: Debian postgresql-15 "
            f"in {PG_BINDIR_GLOB}; or set DRIFTLOOP_PG_BINDIR)"
        )
    for module, why in (
        ("psycopg2", "the sync driver"),
        # Airflow 3 opens an async engine on its metadata DB at import time
        ("asyncpg", "the async driver Airflow 3 needs for PostgreSQL"),
    ):
        if find_spec(module) is None:
            return f"Python package {module} ({why}) is not installed in {sys.prefix}"
    return None


def airflow_celery_missing() -> str | None:
    """Why the Celery shape cannot run here (beyond :func:`airflow_postgres_missing`); None
    when it can."""
    if redis_binary() is None:
        return "redis-server not found (Debian package redis-server: `make system-deps` as root)"
    try:
        import celery
        from celery.backends import database
    except ImportError as exc:
        return f"celery is not importable: {exc}"
    # what apache-airflow-providers-celery imports from it (celery 5.7 dropped ``retry``)
    absent = [
        n for n in ("DatabaseBackend", "retry", "session_cleanup") if not hasattr(database, n)
    ]
    if absent:
        return (
            f"celery {celery.__version__} lacks celery.backends.database.{', '.join(absent)}, "
            "which the Airflow Celery provider imports: pin celery<5.7"
        )
    return None


@dataclass(frozen=True)
class _RunAs:
    """The Unix user the PostgreSQL processes run as (it refuses to run as root)."""

    uid: int
    gid: int
    name: str

    @staticmethod
    def for_postgres() -> _RunAs | None:
        """None unless this process is root; then the Debian ``postgres`` user."""
        if os.geteuid() != 0:
            return None
        import pwd

        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            raise StackError(
                "PostgreSQL refuses to run as root and there is no `postgres` user "
                "(Debian: apt-get install postgresql); or run the stack as another user"
            ) from None
        return _RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)

    def popen_kwargs(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown(self, path: Path) -> None:
        os.chown(path, self.uid, self.gid)

    def check_reachable(self, path: Path) -> None:
        """Every folder above ``path`` lets the user through (search permission)."""
        for folder in reversed([path, *path.parents]):
            info = folder.stat()
            if info.st_uid == self.uid:
                bit = stat_mode.S_IXUSR
            elif info.st_gid == self.gid:
                bit = stat_mode.S_IXGRP
            else:
                bit = stat_mode.S_IXOTH
            if info.st_mode & bit:
                continue
            if _grant_search(folder, self.uid):
                log.warning(
                    "granted the `%s` user search permission (--x, POSIX ACL) on %s",
                    self.name,
                    folder,
                )
                continue
            raise StackError(
                f"PostgreSQL runs as the `{self.name}` user, which cannot enter {folder} "
                f"(mode {stat_mode.filemode(info.st_mode)}): `chmod o+x {folder}` or use a "
                "--root it can reach"
            )


_ACL_XATTR = "system.posix_acl_access"
_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER = (
    0x01,
    0x02,
    0x04,
    0x08,
    0x10,
    0x20,
)
_ACL_NO_ID = 0xFFFFFFFF


def _grant_search(folder: Path, uid: int) -> bool:
    """Add ``user:<uid>:--x`` to the POSIX ACL of ``folder`` (search only, that user only:
    what ``setfacl -m u:postgres:x`` does); False when the file system has no ACLs."""
    try:
        raw = os.getxattr(folder, _ACL_XATTR)
    except OSError:
        raw = b""
    mode = folder.stat().st_mode
    if raw:
        entries = {
            (tag, ident): perm
            for tag, perm, ident in (
                struct.unpack_from("<HHI", raw, offset) for offset in range(4, len(raw), 8)
            )
        }
    else:
        entries = {
            (_ACL_USER_OBJ, _ACL_NO_ID): (mode >> 6) & 7,
            (_ACL_GROUP_OBJ, _ACL_NO_ID): (mode >> 3) & 7,
            (_ACL_OTHER, _ACL_NO_ID): mode & 7,
        }
    entries[(_ACL_USER, uid)] = entries.get((_ACL_USER, uid), 0) | 1
    mask = entries.get((_ACL_MASK, _ACL_NO_ID), entries[(_ACL_GROUP_OBJ, _ACL_NO_ID)])
    entries[(_ACL_MASK, _ACL_NO_ID)] = mask | 1
    blob = struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", tag, perm, ident) for (tag, ident), perm in sorted(entries.items())
    )
    try:
        os.setxattr(folder, _ACL_XATTR, blob)
    except OSError as exc:
        log.debug("no POSIX ACL on %s: %s", folder, exc)
        return False
    return True


# --------------------------------------------------------------------------- Airflow DB


@dataclass(frozen=True)
class Migration:
    ran: bool
    seconds: float
    revision: str


def _airflow_heads() -> set[str]:
    """Head revision(s) of the installed Airflow's migrations, read from the files (no import)."""
    spec = find_spec("airflow")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("apache-airflow is not installed")
    versions = Path(next(iter(spec.submodule_search_locations))) / "migrations" / "versions"
    revisions, parents = set(), set()
    for path in versions.glob("*.py"):
        text = path.read_text()
        if match := re.search(r'^revision\s*=\s*"(\w+)"', text, re.M):
            revisions.add(match.group(1))
        if match := re.search(r"^down_revision\s*=\s*(.+)$", text, re.M):
            parents.update(re.findall(r'"(\w+)"', match.group(1)))
    return revisions - parents


def _sqlite_column(sqlite_path: Path, query: str) -> set[str] | None:
    """The first column of ``query`` on a SQLite file opened read-only; None when the file,
    or the table, is not there (yet)."""
    if not sqlite_path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        return {row[0] for row in conn.execute(query)}
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _libpq_url(url: str) -> str:
    """``postgresql+psycopg2://…`` (SQLAlchemy) → ``postgresql://…`` (libpq)."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


def _pg_column(url: str, query: str) -> set[Any] | None:
    """The first column of ``query`` on PostgreSQL; None when unreachable or the table is not
    there (yet)."""
    if not url:
        return None
    import psycopg2

    try:
        conn = psycopg2.connect(_libpq_url(url), connect_timeout=3)
    except psycopg2.Error:
        return None
    try:
        with conn.cursor() as cursor:
            cursor.execute(query)
            return {row[0] for row in cursor.fetchall()}
    except psycopg2.Error:
        return None
    finally:
        conn.close()


def _db_column(conn_url: str, query: str) -> set[Any] | None:
    if conn_url.startswith("sqlite:///"):
        return _sqlite_column(Path(conn_url.removeprefix("sqlite:///")), query)
    if conn_url.startswith("postgresql"):
        return _pg_column(conn_url, query)
    return None


def migrate_airflow_db(env: Mapping[str, str], *, timeout: float = 600.0) -> Migration:
    """Run ``airflow db migrate`` in ``env`` unless its metadata DB (SQLite or PostgreSQL) is
    already at the head revision; then create the missing :data:`POOLS`."""
    conn = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    heads = _airflow_heads()
    if (_db_column(conn, "SELECT version_num FROM alembic_version") or set()) == heads:
        log.info("Airflow DB already at %s", ",".join(sorted(heads)))
        ensure_pools(env)
        return Migration(False, 0.0, ",".join(sorted(heads)))
    logs = Path(env["AIRFLOW_HOME"]).parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "airflow-db-migrate.log"
    began = time.monotonic()
    with open(log_path, "ab") as out:
        done = subprocess.run(
            [str(BIN_DIR / "airflow"), "db", "migrate"],
            env=_child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    seconds = time.monotonic() - began
    if done.returncode != 0:
        raise StackError(
            f"airflow db migrate failed (exit {done.returncode}); last lines of {log_path}:\n"
            + _tail(log_path)
        )
    log.info("airflow db migrate took %.1f s", seconds)
    ensure_pools(env)
    return Migration(True, seconds, ",".join(sorted(heads)))


#: Airflow pools the DAGs use: name → (slots, description). A task in a pool that does not
#: exist is never scheduled, so the stack creates them (compose: airflow-init.sh).
POOLS = {"gpu": (1, "GPU trainings of retrain_detector: one at a time on this machine")}


def ensure_pools(env: Mapping[str, str], sqlite_path: Path | None = None) -> list[str]:
    """Create the missing :data:`POOLS` (``airflow pools set``); returns those created. The
    pools present are read from the metadata DB of ``env`` (or ``sqlite_path``) directly."""
    query = "SELECT pool FROM slot_pool"
    if sqlite_path is not None:
        present = _sqlite_column(sqlite_path, query)
    else:
        present = _db_column(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], query)
    created = []
    for name, (slots, description) in POOLS.items():
        if present is not None and name in present:
            continue
        done = subprocess.run(
            [str(BIN_DIR / "airflow"), "pools", "set", name, str(slots), description],
            env=_child_env(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(f"airflow pools set {name} failed: {done.stderr[-2000:]}")
        created.append(name)
    return created


def _child_env(env: Mapping[str, str]) -> dict[str, str]:
    merged = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    merged.update(env)
    merged["PATH"] = os.pathsep.join([str(BIN_DIR), merged.get("PATH", os.defpath)])
    return merged


# --------------------------------------------------------------------------- the stack


class EmbeddedStack:
    """Starts, finds again and stops the embedded services under ``root``.

    ``with_airflow_ui=True`` adds Airflow as separate processes on PostgreSQL (LocalExecutor);
    ``executor="celery"`` (which implies it) the Celery shape: Redis and two workers.
    ``dags_folder`` defaults to ``<repo>/dags``; ``extra_env`` is added to the environment of
    the Airflow processes (not to :attr:`env`, which is what clients of the stack use).
    """

    def __init__(
        self,
        root: Path | str,
        repo: Path | str,
        *,
        with_airflow_ui: bool = False,
        executor: str = "local",
        dags_folder: Path | str | None = None,
        extra_env: Mapping[str, str] | None = None,
    ):
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {sorted(EXECUTORS)}, not {executor!r}")
        self.root = Path(root).resolve()
        self.repo = Path(repo).resolve()
        self.executor = executor
        self.with_airflow_ui = with_airflow_ui or executor == "celery"
        self.dags_folder = Path(dags_folder).resolve() if dags_folder else self.repo / "dags"
        #: on top of :attr:`env` for the Airflow processes (and ``airflow db migrate``) only
        self.extra_env: dict[str, str] = dict(extra_env or {})
        self.components: dict[str, Component] = {}
        self.skipped: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.reused = False
        self.airflow_executor: str | None = None  # the shape of the running Airflow, if any
        self._procs: dict[str, subprocess.Popen] = {}
        self._spawned: dict[str, float] = {}
        self._atexit = False
        self._clients: dict[str, AirflowAPI] = {}

    # -- public -----------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def urls(self) -> dict[str, str]:
        return {name: comp.url for name, comp in self.components.items()}

    @property
    def pids(self) -> dict[str, int]:
        return {name: comp.pid for name, comp in self.components.items() if comp.pid}

    @property
    def passwords_file(self) -> Path:
        return self.root / PASSWORDS_FILE

    @property
    def admin_password(self) -> str:
        return json.loads(self.passwords_file.read_text())[ADMIN_USER]

    @property
    def runs_airflow(self) -> bool:
        """The stack runs the Airflow processes (``up --ui``)."""
        return "airflow" in self.components

    def password(self, username: str = ADMIN_USER) -> str:
        """The simple auth manager's password of ``username`` (the api-server generates those
        of the users in ``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS`` into the passwords file)."""
        return json.loads(self.passwords_file.read_text())[username]

    def airflow_client(self, username: str = ADMIN_USER) -> AirflowAPI:
        """A REST client for this stack's Airflow, logged in as ``username``."""
        if not self.runs_airflow:
            raise StackError(f"no Airflow in the stack under {self.root}: start it with --ui")
        url = self.components["airflow"].url
        client = self._clients.get(username)
        if client is None or client.base_url != url:
            client = self._clients[username] = AirflowAPI(url, username, self.password(username))
        return client

    def start(self) -> EmbeddedStack:
        """Start what is not running yet; reuse a healthy stack recorded under ``root``."""
        for folder in (self.root, self.log_dir, self.root / "airflow", self.root / "mlflow"):
            folder.mkdir(parents=True, exist_ok=True)
        if self.load():
            core = [name for name in CORE if name not in self.skipped]
            if all(n in self.components and self._alive_and_healthy(n) for n in core):
                self.reused = True
                if self.with_airflow_ui and not self._airflow_ready():
                    self._stop([n for n in AIRFLOW_COMPONENTS if n in self.components])
                    try:
                        self._start_airflow()
                    except BaseException:
                        # leave the reused services as they were, without a half-started Airflow
                        self._stop([n for n in AIRFLOW_COMPONENTS if n in self.components])
                        for name in AIRFLOW_COMPONENTS:
                            self.components.pop(name, None)
                        self.airflow_executor = None
                        self.env = self._build_env()
                        self.save()
                        raise
                self.save()
                return self
            log.info(
                "stale stack state in %s: stopping what is left and starting afresh", self.root
            )
            self.stop()
        try:
            self._start_fresh()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every component by its own PID (see ``_stop``) and delete ``stack.json``."""
        self._stop(list(self.components))
        self.components.clear()
        self.airflow_executor = None
        self.state_path.unlink(missing_ok=True)

    def restart_component(self, name: str) -> None:
        """Stop one component by its PID and start it again with the same command, port and
        environment; returns once it is healthy (a scheduler: once its new job heartbeats)."""
        if name not in self.components:
            raise StackError(f"no component {name!r} in the stack under {self.root}")
        self._stop([name])
        self._spawn(name)
        self.save()
        self._wait_healthy(name)
        self.save()

    def load(self) -> bool:
        """Read ``<root>/stack.json``; False when there is none."""
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return False
        self.components = {name: Component(**c) for name, c in state["components"].items()}
        self.skipped = state.get("skipped", {})
        self.env = state.get("env", {})
        self.airflow_executor = state.get("airflow_executor")
        if not self.extra_env:
            self.extra_env = state.get("extra_env", {})
        return True

    def save(self) -> None:
        state = {
            "root": str(self.root),
            "repo": str(self.repo),
            "airflow_executor": self.airflow_executor,
            "components": {name: asdict(comp) for name, comp in self.components.items()},
            "skipped": self.skipped,
            "urls": self.urls,
            "pids": self.pids,
            "ports": {name: comp.port for name, comp in self.components.items() if comp.port},
            "login": {"user": ADMIN_USER, "passwords_file": str(self.passwords_file)},
            "env": self.env,
            "extra_env": self.extra_env,
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.chmod(0o600)
        os.replace(tmp, self.state_path)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per component: pid, url, running, healthy, rss_mb, pss_mb, startup_s."""
        report = {}
        for name, comp in self.components.items():
            running = comp.owns_pid()
            report[name] = {
                "pid": comp.pid,
                "url": comp.url,
                "running": running,
                "healthy": running and comp.healthy(),
                "rss_mb": round(comp.rss_bytes() / 2**20, 1),
                "pss_mb": round(comp.pss_bytes() / 2**20, 1),
                "startup_s": comp.startup_s,
            }
        for name, reason in self.skipped.items():
            report[name] = {"skipped": reason}
        return report

    def __enter__(self) -> EmbeddedStack:
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
        if self._atexit:
            atexit.unregister(self.stop)
            self._atexit = False

    # -- starting ---------------------------------------------------------------------------

    def _start_fresh(self) -> None:
        self.components.clear()
        self.skipped.clear()
        self.env = {}
        self.reused = False
        self.airflow_executor = None
        self._reset_stores_pointing_into_s3()
        py = sys.executable
        s3_port, mlflow_port = free_port(), free_port()
        self._define("s3", s3_port, [py, "-m", "moto.server", "-H", HOST, "-p", str(s3_port)])
        self._define(
            "mlflow",
            mlflow_port,
            [
                str(BIN_DIR / "mlflow"),
                "server",
                "--host",
                HOST,
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{self.root / 'mlflow' / 'mlflow.db'}",
                "--serve-artifacts",
                "--artifacts-destination",
                MLFLOW_ARTIFACTS,
            ],
        )
        binary = pushgateway_binary()
        if binary:
            port = free_port()
            self._define(
                "pushgateway",
                port,
                [
                    binary,
                    f"--web.listen-address={HOST}:{port}",
                    "--persistence.file=",
                    "--log.level=warn",
                ],
            )
        else:
            self.skipped["pushgateway"] = "prometheus-pushgateway not found on PATH or in /usr/bin"
        self.components["mlflow"].env = {
            "MLFLOW_S3_ENDPOINT_URL": self.components["s3"].url,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        self.env = self._build_env()
        # Nothing needs another component to be up before it starts: spawn all, then wait.
        for name in list(self.components):
            self._spawn(name)
        self.save()
        self._wait_healthy(*self.components, then=self._on_healthy)
        if self.with_airflow_ui:
            self._start_airflow()
        self.save()

    def _reset_stores_pointing_into_s3(self) -> None:
        """moto keeps its buckets in memory: a fresh stack starts with empty S3. The MLflow
        store (runs, registered models, artifact URIs) and driftloop's history and ledger
        point into those buckets, so they start afresh with it: a registry whose champion's
        weights are gone would be worse than none. Airflow's run history is kept."""
        stale = [self.root / "mlflow" / "mlflow.db", self.root / "driftloop.db"]
        for path in stale:
            if path.exists():
                log.info("fresh S3, so a fresh %s (was %d bytes)", path.name, path.stat().st_size)
                path.unlink()

    def _airflow_names(self, executor: str) -> list[str]:
        celery = executor == "celery"
        return [
            "postgres",
            *(["redis"] if celery else []),
            "airflow",
            *AIRFLOW_JOBS,
            *(CELERY_WORKERS if celery else []),
        ]

    def _airflow_ready(self) -> bool:
        """The recorded Airflow has the requested shape and every process of it is healthy."""
        if self.airflow_executor != self.executor:
            return False
        if self.env.get("AIRFLOW__CORE__DAGS_FOLDER") != str(self.dags_folder):
            return False
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        if state.get("extra_env", {}) != self.extra_env:
            return False
        return all(
            name in self.components and self._alive_and_healthy(name)
            for name in self._airflow_names(self.executor)
        )

    def _start_airflow(self) -> None:
        """PostgreSQL (+ Redis), ``airflow db migrate``, then the Airflow processes."""
        celery = self.executor == "celery"
        for name in AIRFLOW_COMPONENTS:
            self.components.pop(name, None)
        missing = airflow_postgres_missing() or (airflow_celery_missing() if celery else None)
        if missing:
            raise StackError(missing)
        redis = redis_binary() if celery else None
        self._prepare_postgres()
        self.airflow_executor = self.executor
        self._clients.clear()
        if redis is not None:
            port = free_port()
            (self.root / "redis").mkdir(exist_ok=True)
            self._define(
                "redis",
                port,
                [
                    redis,
                    "--bind",
                    HOST,
                    "--port",
                    str(port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.root / "redis"),
                    "--loglevel",
                    "warning",
                ],
                url=f"redis://{HOST}:{port}/0",
                title=f"{HOST}:{port}",
            )
            self._spawn("redis")
        self._spawn("postgres")
        self.save()
        databases = [name for name in ("postgres", "redis") if name in self.components]
        self._wait_healthy(*databases, then=self._on_healthy)

        airflow = str(BIN_DIR / "airflow")
        api_port, log_port, trigger_port = free_port(), free_port(), free_port()
        self._define(
            "airflow",
            api_port,
            [airflow, "api-server", "--host", HOST, "--port", str(api_port), "--workers", "1"],
            title=f"api_server -- host:{HOST} port:{api_port}",
        )
        api = self.components["airflow"].url
        # With the LocalExecutor the scheduler serves the task logs; with Celery, the workers.
        self._define(
            "airflow-scheduler", 0 if celery else log_port, [airflow, "scheduler"], health_url=api
        )
        self._define("airflow-dag-processor", 0, [airflow, "dag-processor"], health_url=api)
        self._define("airflow-triggerer", trigger_port, [airflow, "triggerer"], health_url=api)
        if celery:
            broker = self.components["redis"].url
            for number, name in enumerate(CELERY_WORKERS, start=1):
                port = log_port if number == 1 else free_port()
                self._define(
                    name,
                    port,
                    [
                        airflow,
                        "celery",
                        "worker",
                        "--concurrency",
                        str(CELERY_CONCURRENCY),
                        "--celery-hostname",
                        f"worker{number}@%h",
                    ],
                    title=f"worker{number}@",
                    health_url=broker,
                )
                self.components[name].env = {
                    # each worker's log server on its own port, and a hostname of its own
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port),
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "driftloop_dev.airflow_api.hostname",
                    "DRIFTLOOP_HOSTNAME": f"127.0.0.{number + 1}",
                }
        self.env = self._build_env()
        migrate_airflow_db({**self.env, **self.extra_env})
        names = [name for name in AIRFLOW_PROCESSES if name in self.components]
        for name in names:
            self._spawn(name)
        self.save()
        self._wait_healthy(*names)
        self.save()

    # -- PostgreSQL -------------------------------------------------------------------------

    @property
    def postgres_dir(self) -> Path:
        return self.root / "postgres"

    def _pg_credentials(self) -> dict[str, str]:
        path = self.root / PG_CREDENTIALS_FILE
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            if (self.postgres_dir / "data" / "PG_VERSION").exists():
                raise StackError(
                    f"{path} is missing but the cluster in {self.postgres_dir / 'data'} exists: "
                    "delete that folder to start with a fresh Airflow DB"
                ) from None
        credentials = {
            "superuser": "postgres",
            "superuser_password": secrets.token_hex(16),
            "user": "airflow",
            "password": secrets.token_hex(16),
            "database": "airflow",
        }
        path.write_text(json.dumps(credentials, indent=2) + "\n")
        path.chmod(0o600)
        return credentials

    def _prepare_postgres(self) -> None:
        """``initdb`` once (as the ``postgres`` user when root), and define the component."""
        bindir = postgres_bindir()
        run_as = _RunAs.for_postgres()
        pgdir, data, sockets = (
            self.postgres_dir,
            self.postgres_dir / "data",
            self.postgres_dir / "run",
        )
        pgdir.mkdir(exist_ok=True)
        pgdir.chmod(0o700)
        if run_as is not None:
            run_as.chown(pgdir)
            run_as.check_reachable(pgdir)
        credentials = self._pg_credentials()
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)  # what a failed initdb left
            pwfile = pgdir / "initdb.pw"
            pwfile.write_text(credentials["superuser_password"] + "\n")
            pwfile.chmod(0o600)
            if run_as is not None:
                run_as.chown(pwfile)
            argv = [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                credentials["superuser"],
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ]
            initdb_log = self.log_dir / "postgres-initdb.log"
            began = time.monotonic()
            try:
                with open(initdb_log, "ab") as out:
                    done = subprocess.run(
                        argv,
                        cwd=pgdir,
                        env=_child_env({"LC_ALL": "C"}),
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        timeout=300,
                        check=False,
                        **(run_as.popen_kwargs() if run_as else {}),
                    )
            finally:
                pwfile.unlink(missing_ok=True)
            if done.returncode != 0:
                raise StackError(
                    f"initdb failed (exit {done.returncode}); last lines of {initdb_log}:\n"
                    + _tail(initdb_log)
                )
            log.info("initdb %s took %.1f s", data, time.monotonic() - began)
        sockets.mkdir(exist_ok=True)
        if run_as is not None:
            run_as.chown(sockets)
        # the socket path must fit in sun_path (107 bytes); TCP on 127.0.0.1 is what clients use
        socket_dir = str(sockets) if len(str(sockets)) < 90 else ""
        port = free_port()
        superuser = (
            f"postgresql://{credentials['superuser']}:{credentials['superuser_password']}"
            f"@{HOST}:{port}/postgres"
        )
        self._define(
            "postgres",
            port,
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-h",
                HOST,
                "-p",
                str(port),
                "-k",
                socket_dir,
                "-c",
                "max_connections=200",
                "-c",
                "synchronous_commit=off",
            ],
            url=f"postgresql://{HOST}:{port}/{credentials['database']}",
            health_url=superuser,
        )

    def _sqlalchemy_url(self, driver: str = "postgresql+psycopg2") -> str:
        credentials = self._pg_credentials()
        port = self.components["postgres"].port
        return (
            f"{driver}://{credentials['user']}:{credentials['password']}"
            f"@{HOST}:{port}/{credentials['database']}"
        )

    def _ensure_airflow_database(self) -> None:
        """Role and database ``airflow`` (owner of its database), created once."""
        import psycopg2
        from psycopg2 import sql

        credentials = self._pg_credentials()
        conn = psycopg2.connect(
            _libpq_url(self.components["postgres"].health_url), connect_timeout=10
        )
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                role, database = credentials["user"], credentials["database"]
                cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if cursor.fetchone() is None:
                    cursor.execute(
                        sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)),
                        (credentials["password"],),
                    )
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if cursor.fetchone() is None:
                    cursor.execute(
                        sql.SQL(
                            "CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0"
                        ).format(sql.Identifier(database), sql.Identifier(role))
                    )
                    log.info("created the PostgreSQL database %s", database)
        finally:
            conn.close()

    # -- processes --------------------------------------------------------------------------

    def _define(
        self,
        name: str,
        port: int,
        argv: list[str],
        *,
        url: str | None = None,
        title: str = "",
        health_url: str = "",
    ) -> None:
        self.components[name] = Component(
            name=name,
            argv=argv,
            port=port,
            url=url if url is not None else (f"http://{HOST}:{port}" if port else ""),
            log=str(self.log_dir / f"{name}.log"),
            title=title,
            health_url=health_url,
        )

    def _spawn(self, name: str, extra_env: Mapping[str, str] | None = None) -> None:
        comp = self.components[name]
        env = {**self.env, **(self.extra_env if name in AIRFLOW_PROCESSES else {}), **comp.env}
        run_as, cwd = None, self.root
        if name == "postgres":
            run_as, cwd = _RunAs.for_postgres(), self.postgres_dir
        Path(comp.log).parent.mkdir(parents=True, exist_ok=True)
        with open(comp.log, "ab") as out:
            out.write(
                f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {shlex.join(comp.argv)}\n".encode()
            )
            out.flush()
            proc = subprocess.Popen(
                comp.argv,
                cwd=cwd,
                env=_child_env({**env, **(extra_env or {})}),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session and process group; outlives this process
                **(run_as.popen_kwargs() if run_as else {}),
            )
        self._procs[name] = proc
        comp.pid = proc.pid
        comp.startup_s = None
        comp.started_at = time.time()
        stat = _stat(proc.pid)
        comp.start_time = stat.start_time if stat else None
        self._spawned[name] = time.monotonic()

    def _wait_healthy(self, *names: str, then=None) -> None:
        """Poll the components until each answers its health check; ``then(name)`` once healthy."""
        pending = list(names)
        while pending:
            for name in list(pending):
                comp = self.components[name]
                began = self._spawned.get(name, time.monotonic())
                if comp.healthy():
                    comp.startup_s = round(time.monotonic() - began, 2)
                    log.info("%s healthy at %s after %.1f s", name, comp.url, comp.startup_s)
                    pending.remove(name)
                    if then is not None:
                        then(name)
                    continue
                proc = self._procs.get(name)
                exited = proc.poll() if proc is not None else (None if comp.owns_pid() else "?")
                if exited is not None:
                    raise StackError(
                        f"{name} exited (code {exited}) before becoming healthy at {comp.url}; "
                        f"last lines of {comp.log}:\n{_tail(comp.log)}"
                    )
                timeout = STARTUP_TIMEOUT_S.get(name, AIRFLOW_STARTUP_TIMEOUT_S)
                if time.monotonic() - began > timeout:
                    raise StackError(
                        f"{name} not healthy at {comp.url} after {timeout:.0f} s; "
                        f"last lines of {comp.log}:\n{_tail(comp.log)}"
                    )
            time.sleep(0.2)

    def _on_healthy(self, name: str) -> None:
        if name == "s3":
            self._create_buckets()
        elif name == "postgres":
            self._ensure_airflow_database()

    def _alive_and_healthy(self, name: str) -> bool:
        comp = self.components.get(name)
        return comp is not None and comp.owns_pid() and comp.healthy()

    def _create_buckets(self) -> None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.components["s3"].url,
            aws_access_key_id=AWS_ACCESS_KEY_ID,
            aws_secret_access_key=AWS_SECRET_ACCESS_KEY,
            region_name=AWS_REGION,
        )
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for bucket in (DATA_BUCKET, MLFLOW_BUCKET):
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)

    def _ensure_password(self) -> None:
        path = self.passwords_file
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if ADMIN_USER in json.loads(path.read_text()):
                return
        except (OSError, ValueError):
            pass
        path.write_text(json.dumps({ADMIN_USER: secrets.token_urlsafe(12)}) + "\n")
        path.chmod(0o600)

    def _fernet_key(self) -> str:
        """Airflow's Fernet key, kept with the metadata DB (which outlives a stack)."""
        path = self.root / FERNET_KEY_FILE
        with contextlib.suppress(OSError):
            key = path.read_text().strip()
            if key:
                return key
        path.parent.mkdir(parents=True, exist_ok=True)
        key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        path.write_text(key + "\n")
        path.chmod(0o600)
        return key

    def _build_env(self) -> dict[str, str]:
        s3 = self.components["s3"].url
        mlflow = self.components["mlflow"].url
        airflow_home = self.root / "airflow"
        self._ensure_password()
        previous = self.env
        env = {
            # plain clients (boto3, mlflow, great_expectations)
            "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": AWS_REGION,
            "AWS_ENDPOINT_URL_S3": s3,
            "AWS_EC2_METADATA_DISABLED": "true",
            "MLFLOW_TRACKING_URI": mlflow,
            "MLFLOW_S3_ENDPOINT_URL": s3,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "GX_ANALYTICS_ENABLED": "False",
            "NO_PROXY": f"{HOST},localhost",
            "no_proxy": f"{HOST},localhost",
            # driftloop.config.settings
            "DRIFTLOOP_BUCKET": DATA_BUCKET,
            "DRIFTLOOP_MLFLOW_TRACKING_URI": mlflow,
            "DRIFTLOOP_DATABASE_URL": f"sqlite:///{self.root / 'driftloop.db'}",
            # Airflow
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.repo / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": EXECUTORS["local"],
            "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            "AIRFLOW__API_AUTH__JWT_SECRET": previous.get("AIRFLOW__API_AUTH__JWT_SECRET")
            or secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": previous.get("AIRFLOW__API__SECRET_KEY")
            or secrets.token_urlsafe(32),
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                {
                    "conn_type": "aws",
                    "login": AWS_ACCESS_KEY_ID,
                    "password": AWS_SECRET_ACCESS_KEY,
                    "extra": {"endpoint_url": s3, "region_name": AWS_REGION},
                }
            ),
        }
        if "pushgateway" in self.components:
            env["DRIFTLOOP_PUSHGATEWAY_URL"] = self.components["pushgateway"].url
        if "airflow" in self.components:
            api = self.components["airflow"]
            log_server = self.components.get(
                "airflow-worker1", self.components["airflow-scheduler"]
            )
            env.update(
                {
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self._sqlalchemy_url(),
                    "AIRFLOW__CORE__EXECUTOR": EXECUTORS[self.airflow_executor or "local"],
                    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                    # the daily check that the scheduler starts at once waits for yesterday's
                    # data: on this stack the data comes from a person, so look every 30 s
                    # (production: every 5 minutes)
                    "DRIFTLOOP_SENSOR_POKE_S": "30",
                    "AIRFLOW__CORE__FERNET_KEY": self._fernet_key(),
                    "AIRFLOW__API__HOST": HOST,
                    "AIRFLOW__API__PORT": str(api.port),
                    "AIRFLOW__API__WORKERS": "1",
                    "AIRFLOW__API__BASE_URL": api.url,
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api.url}/execution/",
                    # the log servers of the scheduler (LocalExecutor) or of the first Celery
                    # worker (each worker gets its own port), and of the triggerer
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_server.port),
                    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(
                        self.components["airflow-triggerer"].port
                    ),
                }
            )
            if "redis" in self.components:
                env.update(
                    {
                        "AIRFLOW__CELERY__BROKER_URL": self.components["redis"].url,
                        "AIRFLOW__CELERY__RESULT_BACKEND": self._sqlalchemy_url(
                            "db+postgresql+psycopg2"
                        ),
                        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(CELERY_CONCURRENCY),
                    }
                )
        return env

    # -- stopping ---------------------------------------------------------------------------

    def _stop(self, names: list[str]) -> None:
        """Stop components by their own PIDs, tier by tier (:data:`STOP_TIERS`: the Airflow
        processes before the api-server, before PostgreSQL and Redis, before the rest), each
        tier's components at once, in three stages:

        1. the component's PID gets its stop signal, which it forwards to its children
           (``mlflow server`` to uvicorn, the scheduler to its executor, PostgreSQL to its
           backends); a component whose own process is gone has what is left of its session
           signalled;
        2. after the grace period, every process left in its session gets SIGTERM;
        3. five seconds later, SIGKILL.
        """
        tiered = {name for tier in STOP_TIERS for name in tier}
        tiers = [*STOP_TIERS, tuple(name for name in names if name not in tiered)]
        for tier in tiers:
            comps = [self.components[n] for n in tier if n in names and n in self.components]
            if comps:
                self._stop_tier(comps)
        for name in names:
            self._procs.pop(name, None)

    def _stop_tier(self, comps: list[Component]) -> None:
        first: dict[int, signal.Signals] = {}
        for comp in comps:
            if comp.owns_pid():
                first[comp.pid] = STOP_SIGNAL.get(comp.name, signal.SIGTERM)
            else:
                first.update(dict.fromkeys(comp.processes(), signal.SIGTERM))
        grace = max([STOP_GRACE_S.get(comp.name, 10.0) for comp in comps], default=0.0)
        began = time.monotonic()
        live = self._live(comps)
        for targets, seconds in ((first, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if not live:
                break
            if isinstance(targets, dict):
                pids = {pid: sig for pid, sig in targets.items() if pid in live}
            else:
                log.warning("still running, sending %s to %s", targets.name, sorted(live))
                pids = dict.fromkeys(live, targets)
            for pid, sig in pids.items():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + seconds
            while live and time.monotonic() < deadline:
                time.sleep(0.1)
                live = self._live(comps)
        if live:
            log.error("could not stop %s", sorted(live))
        else:
            names = ", ".join(comp.name for comp in comps)
            log.info("stopped %s in %.1f s", names, time.monotonic() - began)

    def _live(self, comps: list[Component]) -> set[int]:
        self._reap()
        return {pid for comp in comps for pid in comp.processes()}

    def _reap(self) -> None:
        for proc in self._procs.values():
            proc.poll()


# --------------------------------------------------------------------------- CLI


def _print_summary(stack: EmbeddedStack, out=sys.stdout) -> None:
    for name, info in stack.status().items():
        if "skipped" in info:
            print(f"{name:22} skipped: {info['skipped']}", file=out)
            continue
        state = "healthy" if info["healthy"] else ("running" if info["running"] else "DOWN")
        startup = f"{info['startup_s']:.1f}s" if info["startup_s"] is not None else "-"
        print(
            f"{name:22} {info['url'] or '-':34} {state:8} pid={info['pid']:<8} "
            f"rss={info['rss_mb']:.0f}MiB pss={info['pss_mb']:.0f}MiB startup={startup}",
            file=out,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m driftloop_dev.stack", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument(
        "--root", type=Path, default=None, help="state, logs and data (default <repo>/.stack)"
    )
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO, help="the DAG repository")
    parser.add_argument(
        "--ui",
        action="store_true",
        help="up: also run Airflow (PostgreSQL, api-server, scheduler, dag-processor, triggerer)",
    )
    parser.add_argument(
        "--celery",
        action="store_true",
        help="up: Airflow with the CeleryExecutor (Redis, two workers); implies --ui",
    )
    parser.add_argument(
        "--dags-folder", type=Path, default=None, help="up: the DAGs folder (default <repo>/dags)"
    )
    parser.add_argument(
        "--no-airflow-db", action="store_true", help="up: skip `airflow db migrate` (without --ui)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    root = args.root if args.root is not None else args.repo / ".stack"
    stack = EmbeddedStack(
        root,
        args.repo,
        with_airflow_ui=args.ui,
        executor="celery" if args.celery else "local",
        dags_folder=args.dags_folder,
    )

    if args.command == "up":
        began = time.monotonic()
        try:
            stack.start()
            migration = None if args.no_airflow_db else migrate_airflow_db(stack.env)
        except StackError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        verb = "already running" if stack.reused else f"started in {time.monotonic() - began:.1f} s"
        print(f"driftloop stack {verb} (root {stack.root})")
        if migration is not None and migration.ran:
            print(f"airflow db migrate: {migration.seconds:.1f} s")
        _print_summary(stack)
        if "airflow" in stack.components:
            url = stack.urls["airflow"]
            print(
                f"Airflow UI: {url}  login {ADMIN_USER} / {stack.admin_password}  "
                f"({stack.env['AIRFLOW__CORE__EXECUTOR']}, DAGs run unpaused)"
            )
            print(f"Airflow REST API: {url}/api/v2 (token: POST {url}/auth/token)")
        print(f"MLflow UI: {stack.urls['mlflow']}")
        print(f"login file: {stack.passwords_file}")
        print(
            f'environment: eval "$(python -m driftloop_dev.stack env --root {shlex.quote(str(stack.root))})"'
        )
        return 0

    if not stack.load():
        print(f"no stack recorded in {stack.root}", file=sys.stderr)
        return 0 if args.command == "down" else 3
    if args.command == "down":
        stack.stop()
        print(f"driftloop stack in {stack.root} stopped")
        return 0
    if args.command == "status":
        _print_summary(stack)
        report = stack.status().values()
        return 0 if all(r.get("healthy", True) for r in report) else 1
    for key, value in sorted(stack.env.items()):
        print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
