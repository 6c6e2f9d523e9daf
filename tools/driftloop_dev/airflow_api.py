"""A small client for the running Airflow's REST API, as the simple auth manager's admin.

Standard library only (``urllib``), so scripts, tests and the demo can use it without pulling
Airflow in::

    from driftloop_dev.airflow_api import AirflowAPI

    api = AirflowAPI.from_env()        # after: eval "$(python -m driftloop_dev.stack env)"
    api = stack.airflow_client()       # or from an EmbeddedStack started with Airflow
    run = api.post("dags/drift_monitor/dagRuns", {"logical_date": None, "conf": {}})
    api.get(f"dags/drift_monitor/dagRuns/{run['dag_run_id']}")

A path without a leading ``/`` is relative to ``/api/v2/``. Errors raise
:class:`AirflowAPIError` with the status and the response body. The JWT access token comes
from ``POST /auth/token`` (``{"username", "password"}`` → ``{"access_token"}``) and is renewed
once when a request answers 401.

It also holds :func:`hostname`, the ``[core] hostname_callable`` of the embedded stack's
Celery workers: each reports a loopback address of its own, as separate hosts would.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

API_PREFIX = "/api/v2/"
TOKEN_PATH = "/auth/token"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class AirflowAPIError(RuntimeError):
    """An HTTP error from the Airflow API: ``status`` and the response ``body``."""

    def __init__(self, method: str, url: str, status: int, body: str):
        super().__init__(f"{method} {url} -> HTTP {status}: {body[:2000]}")
        self.method, self.url, self.status, self.body = method, url, status, body


class AirflowAPI:
    """The Airflow REST API at ``base_url`` (e.g. ``http://127.0.0.1:8080``) as ``username``."""

    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self._token: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, username: str = "admin") -> AirflowAPI:
        """From the stack's environment: ``AIRFLOW__API__BASE_URL`` and the password in
        ``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE``."""
        env = os.environ if env is None else env
        try:
            base_url = env["AIRFLOW__API__BASE_URL"]
            passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
        except KeyError as exc:
            raise AirflowAPIError("GET", "", 0, f"{exc.args[0]} is not set: no Airflow") from None
        return cls(base_url, username, json.loads(passwords.read_text())[username])

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        if path.startswith(("http://", "https://")):
            url = path
        elif path.startswith("/"):
            url = self.base_url + path
        else:
            url = self.base_url + API_PREFIX + path
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params, doseq=True)
        return url

    def token(self, *, refresh: bool = False) -> str:
        """A JWT access token for the user (cached; ``refresh`` asks for a new one)."""
        if self._token is None or refresh:
            body = json.dumps({"username": self.username, "password": self.password}).encode()
            status, raw = self._send(
                "POST", self.url(TOKEN_PATH), body, {"Content-Type": "application/json"}
            )
            if status >= 400:
                raise AirflowAPIError(
                    "POST", self.url(TOKEN_PATH), status, raw.decode(errors="replace")
                )
            self._token = json.loads(raw)["access_token"]
        return self._token

    def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        accept: str = "application/json",
    ) -> Any:
        """Parsed JSON of the response (its text when it is not JSON; None when empty)."""
        url = self.url(path, params)
        data = None if json_body is None else json.dumps(json_body).encode()
        for attempt in (0, 1):
            headers = {
                "Authorization": f"Bearer {self.token(refresh=attempt == 1)}",
                "Accept": accept,
            }
            if data is not None:
                headers["Content-Type"] = "application/json"
            status, raw = self._send(method.upper(), url, data, headers)
            if status != 401:
                break
        text = raw.decode(errors="replace")
        if status >= 400 or status == 0:
            raise AirflowAPIError(method.upper(), url, status, text)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return text

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, json_body: Any = None) -> Any:
        return self.request("POST", path, json_body if json_body is not None else {})

    def patch(self, path: str, json_body: Any, **params: Any) -> Any:
        return self.request("PATCH", path, json_body, params=params or None)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def _send(
        self, method: str, url: str, data: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(url, data=data, method=method, headers=dict(headers))
        try:
            with _NO_PROXY.open(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError as exc:
            raise AirflowAPIError(method, url, 0, f"unreachable: {exc}") from exc


def hostname() -> str:
    """``[core] hostname_callable`` for the embedded Celery workers: ``DRIFTLOOP_HOSTNAME``
    when set (a loopback address of the worker's own), else the FQDN as Airflow's default."""
    return os.environ.get("DRIFTLOOP_HOSTNAME") or socket.getfqdn()
