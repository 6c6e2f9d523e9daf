"""Processes on Linux, read from /proc (state, session, start time, memory, command line), and
:class:`Component`: one started process of the stack, found again from another process."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from driftloop_dev.stack.constants import BIN_DIR

_SCRUB = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AIRFLOW__CORE__UNIT_TEST_MODE")


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
        from driftloop_dev.stack.health import component_healthy

        return component_healthy(self)


def _child_env(env: Mapping[str, str]) -> dict[str, str]:
    merged = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    merged.update(env)
    merged["PATH"] = os.pathsep.join([str(BIN_DIR), merged.get("PATH", os.defpath)])
    return merged
