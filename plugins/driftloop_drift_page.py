"""Airflow plugin: the operator's drift page, "Drift" in the UI's navigation.

Mounts :mod:`driftloop.airflow.drift_page` on the API server at ``/driftloop`` (the page is
``/driftloop/drift``, its JSON ``/driftloop/drift/data``) and adds a nav entry that opens it
inside the Airflow UI. The page requires a signed-in user allowed to read ``drift_monitor``;
its Retrain / Ignore buttons trigger DAG runs through Airflow's REST API as that user.

Every Airflow process loads plugins: this file imports only ``airflow.plugins_manager``. The
app itself (FastAPI, SQLAlchemy, Airflow's security dependencies) is built on the first
request the API server routes to it (:class:`LazyASGIApp`).
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/driftloop"  # driftloop.airflow.drift_page.URL_PREFIX


class LazyASGIApp:
    """An ASGI app that builds the real one (``factory()``) on its first request."""

    def __init__(self, factory):
        self._factory = factory
        self._app = None
        self._lock = threading.Lock()

    def get(self):
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._factory()
        return self._app

    async def __call__(self, scope, receive, send) -> None:
        await self.get()(scope, receive, send)


def _create_app():
    from driftloop.airflow.drift_page import create_app

    return create_app()


drift_page_app = LazyASGIApp(_create_app)


class DriftloopDriftPagePlugin(AirflowPlugin):
    """The drift page (FastAPI app) and its "Drift" nav entry."""

    name = "driftloop_drift_page"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": drift_page_app, "url_prefix": URL_PREFIX, "name": "driftloop drift page"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Drift",
            # relative to the UI's base URL (no leading slash): works under a path prefix
            "href": URL_PREFIX.lstrip("/") + "/drift",
            "destination": "nav",
            "category": "browse",
            "url_route": "driftloop-drift",
        }
    ]
