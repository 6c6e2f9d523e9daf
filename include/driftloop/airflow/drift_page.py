"""The operator's drift page: a FastAPI app the ``driftloop_drift_page`` plugin mounts on
Airflow's API server at ``/driftloop`` (nav entry "Drift").

``GET /driftloop/drift``
    the HTML page (:mod:`driftloop.airflow.drift_page_html`): drift events with their status
    (``NEEDS_REVIEW`` / ``ACTIONED`` / ``RETRAINING_FAILED`` / ``IGNORED`` / ``ACCEPTED`` /
    ``RESOLVED``), kind, window, top features and links to the check's run and report;
    filters (``status``, ``kind``) and paging (``limit``, ``offset``); a chart of the drift
    scores per daily check (each feature's effect over its warn effect, the top features as
    lines, :mod:`driftloop.airflow.drift_charts`) and one of measured and estimated mAP per
    day. Open events
    have **Retrain** (triggers ``retrain_detector`` with ``drift_event_id``) and **Ignore**
    (triggers ``drift_ignore_event``) buttons: the browser calls Airflow's REST API
    (``POST /api/v2/dags/{dag_id}/dagRuns``, ``logical_date: null``) with the signed-in
    user's own session, so the trigger is authorised (the user must be allowed to trigger
    that DAG) and recorded like any other.
``GET /driftloop/drift/data``
    the same data as JSON: ``{"events": {...}, "scores": [...], "performance": {...}}``;
    each point of ``scores`` carries every feature's score (``scores``, None on checks
    recorded before scores were kept) and the counts at warn / critical.

Both require a signed-in Airflow user allowed to read the ``drift_monitor`` DAG, through
Airflow's own dependencies (:func:`airflow.api_fastapi.core_api.security.requires_access_dag`):
the JWT comes from the ``Authorization: Bearer`` header or the UI's ``_token`` cookie; none
is 401, a user without access 403. The database is ``DRIFTLOOP_DATABASE_URL`` (the API
server needs it); the queries only read.

No ``from __future__ import annotations``: FastAPI reads the handlers' annotations
(``Request``, imported in :func:`create_app`) as objects.

Imported when the plugin is loaded (every Airflow process): FastAPI, SQLAlchemy and the views
are imported in :func:`create_app` and the handlers, never at module level.
"""

from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa
    from fastapi import FastAPI

#: where the plugin mounts the app; the page is ``{URL_PREFIX}/drift``
URL_PREFIX = "/driftloop"
#: the DAG whose read permission the page requires
ACCESS_DAG = "drift_monitor"


@lru_cache(maxsize=4)
def _engine(url: str) -> "sa.Engine":
    from driftloop.drift.history import engine_for

    return engine_for(url)


def database_url() -> str:
    """The drift history's URL from the API server's environment (Settings)."""
    from driftloop.config.settings import Settings

    return Settings.from_env().database_url


def page_data(
    engine: "sa.Engine",
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> dict[str, Any]:
    """What the page shows: the events page, the per-check scores, the performance series."""
    from driftloop.drift import history_views as views

    return {
        "events": views.events_page(engine, status=status, kind=kind, limit=limit, offset=offset),
        "scores": views.check_scores(engine),
        "performance": views.performance_series(engine),
    }


def airflow_base(root_path: str) -> str:
    """Airflow's root path as seen from the mounted app (``root_path`` ends in the prefix)."""
    root = root_path.rstrip("/")
    return root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else root


def create_app(engine_factory=None) -> "FastAPI":
    """The app. ``engine_factory`` (tests): a callable returning the engine to read; default
    the ``DRIFTLOOP_DATABASE_URL`` database."""
    from airflow.api_fastapi.core_api.security import requires_access_dag
    from fastapi import Depends, FastAPI, HTTPException, Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    from driftloop.airflow import drift_page_html as html
    from driftloop.drift.history import EVENT_KINDS, EVENT_STATUSES

    def engine() -> "sa.Engine":
        return engine_factory() if engine_factory is not None else _engine(database_url())

    app = FastAPI(
        title="driftloop drift page",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    can_read = [Depends(requires_access_dag("GET", param_dag_id=ACCESS_DAG))]

    def read(status, kind, limit, offset) -> dict[str, Any]:
        try:
            return page_data(engine(), status=status or None, kind=kind or None, limit=limit,
                             offset=offset)  # fmt: skip
        except ValueError as err:  # a bad filter or page: named
            raise HTTPException(status_code=400, detail=str(err)) from err

    @app.get("/drift", response_class=HTMLResponse, dependencies=can_read)
    def drift_page(
        request: Request,
        status: str | None = Query(None),
        kind: str | None = Query(None),
        limit: int = Query(20),
        offset: int = Query(0),
    ) -> HTMLResponse:
        data = read(status, kind, limit, offset)
        body = html.render_page(
            page=data["events"],
            scores=data["scores"],
            performance=data["performance"],
            airflow_base=airflow_base(request.scope.get("root_path", "")),
            statuses=EVENT_STATUSES,
            kinds=EVENT_KINDS,
            status=status or None,
            kind=kind or None,
        )
        # the page runs its own inline script only and talks to this origin only
        csp = (
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
            "frame-ancestors 'self'; base-uri 'none'"
        )
        return HTMLResponse(body, headers={"Content-Security-Policy": csp})

    @app.get("/drift/data", dependencies=can_read)
    def drift_data(
        status: str | None = Query(None),
        kind: str | None = Query(None),
        limit: int = Query(20),
        offset: int = Query(0),
    ) -> JSONResponse:
        return JSONResponse(read(status, kind, limit, offset))

    @app.exception_handler(HTTPException)
    async def explain(request: Request, exc: HTTPException):
        # the page asked without a session (or an expired one): say where to sign in
        if exc.status_code == 401 and request.url.path.endswith("/drift"):
            login = airflow_base(request.scope.get("root_path", "")) + "/auth/login/"
            return HTMLResponse(
                f'<!doctype html><p>Not signed in to Airflow: <a href="{login}">sign in</a>, '
                "then open the Drift page again.</p>",
                status_code=401,
                headers=getattr(exc, "headers", None),
            )
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    return app
