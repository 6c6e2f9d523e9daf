"""Starting, watching and stopping the stack's processes: each in its own session, found again
by PID + start time, stopped tier by tier with a grace period."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from driftloop_dev.stack.constants import (
    AIRFLOW_PROCESSES,
    AIRFLOW_STARTUP_TIMEOUT_S,
    HOST,
    STARTUP_TIMEOUT_S,
    STOP_GRACE_S,
    STOP_SIGNAL,
    STOP_TIERS,
    StackError,
)
from driftloop_dev.stack.postgres import _RunAs
from driftloop_dev.stack.processes import Component, _child_env, _stat, _tail

log = logging.getLogger(__name__)


class ProcessSupervisor:
    """The process part of :class:`~driftloop_dev.stack.EmbeddedStack`."""

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
