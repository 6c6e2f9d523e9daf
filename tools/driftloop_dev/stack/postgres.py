"""PostgreSQL for Airflow's metadata DB: ``initdb`` once, run as the ``postgres`` user when the
stack runs as root (with a POSIX ACL so that user can reach the folder), role and database
``airflow``."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import stat as stat_mode
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftloop_dev.stack.airflow_db import _libpq_url
from driftloop_dev.stack.constants import HOST, PG_CREDENTIALS_FILE, StackError
from driftloop_dev.stack.net import free_port
from driftloop_dev.stack.prerequisites import postgres_bindir
from driftloop_dev.stack.processes import _child_env, _tail

log = logging.getLogger(__name__)


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


class PostgresMixin:
    """The PostgreSQL part of :class:`~driftloop_dev.stack.EmbeddedStack`."""

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
