"""The embedded stack: real services on 127.0.0.1 for tests, ``make demo`` and ``make up``.

Components (each a child process in its own session, on a free port, logging to
``<root>/logs/<name>.log``):

- ``s3``: moto server (the real S3 API over HTTP), with the buckets ``driftloop`` and
  ``driftloop-mlflow``;
- ``mlflow``: ``mlflow server``, SQLite backend, artifacts proxied to
  ``s3://driftloop-mlflow/artifacts``;
- ``pushgateway``: ``prometheus-pushgateway`` without persistence, when the binary is installed
  (otherwise skipped, recorded in the state, and ``DRIFTLOOP_PUSHGATEWAY_URL`` stays unset);
- ``airflow``: ``airflow standalone`` (only with ``with_airflow_ui=True`` / ``up --ui``).

The Airflow *environment* (``AIRFLOW_HOME``, SQLite DB, connections as ``AIRFLOW_CONN_*``)
is always part of :attr:`EmbeddedStack.env`; :func:`migrate_airflow_db` creates the DB.

Python API::

    with EmbeddedStack(tmp_path, repo) as stack:   # start() … stop()
        stack.env["MLFLOW_TRACKING_URI"], stack.urls["s3"], stack.pids

Command line (the processes outlive it; ``down`` stops them by the PIDs in
``<root>/stack.json`` after checking that each PID still runs the command it started)::

    python -m driftloop.stack up [--root .stack] [--ui]
    python -m driftloop.stack status | env | down
    eval "$(python -m driftloop.stack env)"
"""

from __future__ import annotations

import argparse
import atexit
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
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from driftloop.settings import Settings

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
SIMPLE_AUTH_MANAGER = (
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
)
PUSHGATEWAY_CANDIDATES = ("prometheus-pushgateway", "/usr/bin/prometheus-pushgateway")
STOP_SIGNAL = {"airflow": signal.SIGINT}  # `airflow standalone` shuts down cleanly on Ctrl-C only
STOP_GRACE_S = {"airflow": 30.0}  # seconds before the rest of a session gets SIGTERM; default 10
STARTUP_TIMEOUT_S = {"s3": 60.0, "mlflow": 120.0, "pushgateway": 30.0, "airflow": 300.0}
START_ORDER = ("s3", "mlflow", "pushgateway", "airflow")
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
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


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
    port: int
    url: str
    log: str
    pid: int | None = None
    start_time: int | None = None
    startup_s: float | None = None

    def owns_pid(self) -> bool:
        """The recorded PID is alive and still runs this component's command (not a reused PID)."""
        if self.pid is None:
            return False
        stat = _stat(self.pid)
        if not _running(stat) or stat.start_time != self.start_time:
            return False
        cmdline = _cmdline(self.pid)
        # Console scripts run as ``python /path/script args``: compare everything after argv[0].
        tail = self.argv[1:]
        return bool(cmdline) and (not tail or cmdline[-len(tail) :] == tail)

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
        return _healthy(self.name, self.url)


def _healthy(name: str, url: str) -> bool:
    if name == "s3":
        return _http(f"{url}/moto-api/")[0] == 200
    if name == "mlflow":
        return _http(f"{url}/health")[0] == 200
    if name == "pushgateway":
        return _http(f"{url}/-/ready")[0] == 200
    if name == "airflow":
        status, body = _http(f"{url}/api/v2/monitor/health")
        if status != 200:
            return False
        health = json.loads(body)
        return all(
            (health.get(part) or {}).get("status") == "healthy"
            for part in ("metadatabase", "scheduler", "dag_processor")
        )
    raise ValueError(f"unknown component {name!r}")


def pushgateway_binary() -> str | None:
    for candidate in PUSHGATEWAY_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


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


def _db_revisions(sqlite_path: Path) -> set[str]:
    return _sqlite_column(sqlite_path, "SELECT version_num FROM alembic_version") or set()


def migrate_airflow_db(env: Mapping[str, str], *, timeout: float = 600.0) -> Migration:
    """Run ``airflow db migrate`` in ``env`` unless its SQLite DB is already at the head revision."""
    conn = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    heads = _airflow_heads()
    sqlite_path = Path(conn.removeprefix("sqlite:///")) if conn.startswith("sqlite:///") else None
    if sqlite_path is not None and _db_revisions(sqlite_path) == heads:
        log.info("Airflow DB %s already at %s", sqlite_path, ",".join(sorted(heads)))
        ensure_pools(env, sqlite_path)
        return Migration(False, 0.0, ",".join(sorted(heads)))
    logs = Path(env["AIRFLOW_HOME"]).parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "airflow-db-migrate.log"
    began = time.monotonic()
    with open(log_path, "wb") as out:
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
    ensure_pools(env, sqlite_path)
    return Migration(True, seconds, ",".join(sorted(heads)))


#: Airflow pools the DAGs use: name → (slots, description). A task in a pool that does not
#: exist is never scheduled, so the stack creates them (compose: airflow-init.sh).
POOLS = {"gpu": (1, "GPU trainings of retrain_detector: one at a time on this machine")}


def ensure_pools(env: Mapping[str, str], sqlite_path: Path | None = None) -> list[str]:
    """Create the missing :data:`POOLS` (``airflow pools set``); returns those created."""
    present = _sqlite_column(sqlite_path, "SELECT pool FROM slot_pool") if sqlite_path else None
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
    """Starts, finds again and stops the embedded services under ``root``."""

    def __init__(self, root: Path | str, repo: Path | str, *, with_airflow_ui: bool = False):
        self.root = Path(root).resolve()
        self.repo = Path(repo).resolve()
        self.with_airflow_ui = with_airflow_ui
        self.components: dict[str, Component] = {}
        self.skipped: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.reused = False
        self._procs: dict[str, subprocess.Popen] = {}
        self._spawned: dict[str, float] = {}
        self._atexit = False

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

    def start(self) -> EmbeddedStack:
        """Start what is not running yet; reuse a healthy stack recorded under ``root``."""
        for folder in (self.root, self.log_dir, self.root / "airflow", self.root / "mlflow"):
            folder.mkdir(parents=True, exist_ok=True)
        if self.load():
            core = [name for name in START_ORDER[:3] if name not in self.skipped]
            if all(n in self.components and self._alive_and_healthy(n) for n in core):
                self.reused = True
                if self.with_airflow_ui and not self._alive_and_healthy("airflow"):
                    self._stop(["airflow"])
                    self._start_airflow()
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
        self.state_path.unlink(missing_ok=True)

    def load(self) -> bool:
        """Read ``<root>/stack.json``; False when there is none."""
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return False
        self.components = {name: Component(**c) for name, c in state["components"].items()}
        self.skipped = state.get("skipped", {})
        self.env = state.get("env", {})
        return True

    def save(self) -> None:
        state = {
            "root": str(self.root),
            "repo": str(self.repo),
            "components": {name: asdict(comp) for name, comp in self.components.items()},
            "skipped": self.skipped,
            "urls": self.urls,
            "pids": self.pids,
            "ports": {name: comp.port for name, comp in self.components.items()},
            "login": {"user": ADMIN_USER, "passwords_file": str(self.passwords_file)},
            "env": self.env,
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
        self.env = self._build_env()
        # Nothing needs another component to be up before it starts: spawn all, then wait.
        extra = {
            "mlflow": {
                "MLFLOW_S3_ENDPOINT_URL": self.components["s3"].url,
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            }
        }
        for name in list(self.components):
            self._spawn(name, extra.get(name, {}))
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

    def _start_airflow(self) -> None:
        self._define("airflow", free_port(), [str(BIN_DIR / "airflow"), "standalone"])
        for key in (
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
        ):
            self.env.pop(key, None)  # fresh free ports for the log servers too
        self.env = self._build_env()
        migrate_airflow_db(self.env)
        self._spawn("airflow", {})
        self.save()
        self._wait_healthy("airflow")
        self.save()

    def _define(self, name: str, port: int, argv: list[str]) -> None:
        self.components[name] = Component(
            name=name,
            argv=argv,
            port=port,
            url=f"http://{HOST}:{port}",
            log=str(self.log_dir / f"{name}.log"),
        )

    def _spawn(self, name: str, extra_env: Mapping[str, str]) -> None:
        comp = self.components[name]
        Path(comp.log).parent.mkdir(parents=True, exist_ok=True)
        with open(comp.log, "ab") as out:
            out.write(
                f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {shlex.join(comp.argv)}\n".encode()
            )
            out.flush()
            proc = subprocess.Popen(
                comp.argv,
                cwd=self.root,
                env=_child_env({**self.env, **extra_env}),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session and process group; outlives this process
            )
        self._procs[name] = proc
        comp.pid = proc.pid
        comp.startup_s = None
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
                timeout = STARTUP_TIMEOUT_S[name]
                if time.monotonic() - began > timeout:
                    raise StackError(
                        f"{name} not healthy at {comp.url} after {timeout:.0f} s; "
                        f"last lines of {comp.log}:\n{_tail(comp.log)}"
                    )
            time.sleep(0.2)

    def _on_healthy(self, name: str) -> None:
        if name == "s3":
            self._create_buckets()

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
            # driftloop.settings
            "DRIFTLOOP_BUCKET": DATA_BUCKET,
            "DRIFTLOOP_MLFLOW_TRACKING_URI": mlflow,
            "DRIFTLOOP_DATABASE_URL": f"sqlite:///{self.root / 'driftloop.db'}",
            # Airflow
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.repo / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.repo / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
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
            env.update(
                {
                    "AIRFLOW__API__HOST": HOST,
                    "AIRFLOW__API__PORT": str(api.port),
                    "AIRFLOW__API__BASE_URL": api.url,
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api.url}/execution/",
                    # the log servers of the scheduler/workers and the triggerer (8793/8794)
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": previous.get(
                        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"
                    )
                    or str(free_port()),
                    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": previous.get(
                        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"
                    )
                    or str(free_port()),
                }
            )
        return env

    # -- stopping ---------------------------------------------------------------------------

    def _stop(self, names: list[str]) -> None:
        """Stop components by their own PIDs, in three stages, all components at once.

        1. the component's PID gets its stop signal, which it forwards to its children
           (``mlflow server`` to uvicorn, ``airflow standalone`` on SIGINT to its components);
           a component whose own process is gone has what is left of its session signalled;
        2. after the grace period, every process left in its session gets SIGTERM;
        3. five seconds later, SIGKILL.
        """
        comps = [
            self.components[n] for n in reversed(START_ORDER) if n in names and n in self.components
        ]
        first: dict[int, signal.Signals] = {}
        for comp in comps:
            if comp.owns_pid():
                first[comp.pid] = STOP_SIGNAL.get(comp.name, signal.SIGTERM)
            else:
                first.update(dict.fromkeys(comp.processes(), signal.SIGTERM))
        grace = max([STOP_GRACE_S.get(comp.name, 10.0) for comp in comps], default=0.0)
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
        for comp in comps:
            self._procs.pop(comp.name, None)

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
            print(f"{name:12} skipped: {info['skipped']}", file=out)
            continue
        state = "healthy" if info["healthy"] else ("running" if info["running"] else "DOWN")
        startup = f"{info['startup_s']:.1f}s" if info["startup_s"] is not None else "-"
        print(
            f"{name:12} {info['url']:28} {state:8} pid={info['pid']:<8} "
            f"rss={info['rss_mb']:.0f}MiB pss={info['pss_mb']:.0f}MiB startup={startup}",
            file=out,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m driftloop.stack", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument(
        "--root", type=Path, default=None, help="state, logs and data (default <repo>/.stack)"
    )
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO, help="the DAG repository")
    parser.add_argument("--ui", action="store_true", help="up: also run `airflow standalone`")
    parser.add_argument(
        "--no-airflow-db", action="store_true", help="up: skip `airflow db migrate` (without --ui)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    root = args.root if args.root is not None else args.repo / ".stack"
    stack = EmbeddedStack(root, args.repo, with_airflow_ui=args.ui)

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
            print(
                f"Airflow UI: {stack.urls['airflow']}  login {ADMIN_USER} / {stack.admin_password}"
            )
        print(f"login file: {stack.passwords_file}")
        print(
            f'environment: eval "$(python -m driftloop.stack env --root {shlex.quote(str(stack.root))})"'
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
