"""XCom keys and URL builders shared by tasks and the ``driftloop_links`` Airflow plugin.

A task that wants a button in the Airflow UI pushes a URL under one of these XCom keys; the
plugin's global operator extra links ("MLflow run", "Drift report", "Registered model") read
it back. This module is imported by the plugin, which the API server loads, so it must stay
dependency-free.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

MLFLOW_RUN_URL_KEY = "mlflow_run_url"
DRIFT_REPORT_URL_KEY = "drift_report_url"
REGISTERED_MODEL_URL_KEY = "registered_model_url"

#: URL schemes a link may carry: what a browser opens (the Airflow UI shows only these).
#: Anything else (``s3:``, ``javascript:``, ``file:`` …) is refused, so that a value in XCom
#: can never turn into a dead button or a script link in the UI.
LINK_SCHEMES = frozenset({"http", "https"})


def mlflow_run_url(tracking_uri: str, experiment_id: str | int, run_id: str) -> str:
    """The MLflow UI page of a run: ``{tracking_uri}/#/experiments/{experiment_id}/runs/{run_id}``.

    ``tracking_uri`` is the browser-facing base URL of the MLflow server (a path prefix such as
    ``https://host/mlflow`` is kept). Only an HTTP(S) server has a UI, so any other tracking
    URI (``sqlite:``, ``file:``, ``databricks``) raises ``ValueError``.
    """
    experiment = str(experiment_id).strip()
    run = str(run_id).strip()
    if not experiment or not run:
        raise ValueError("experiment_id and run_id must be non-empty")
    base = _mlflow_ui_base(tracking_uri)
    return f"{base}/#/experiments/{quote(experiment, safe='')}/runs/{quote(run, safe='')}"


def _mlflow_ui_base(tracking_uri: str) -> str:
    parts = urlsplit(str(tracking_uri).strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"MLflow tracking URI has no web UI: {tracking_uri!r}")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def mlflow_model_version_url(tracking_uri: str, name: str, version: str | int) -> str:
    """The MLflow UI page of a registered model version (its model, signature, aliases, tags):
    ``{tracking_uri}/#/models/{name}/versions/{version}``."""
    model, number = str(name).strip(), str(version).strip()
    if not model or not number:
        raise ValueError("name and version must be non-empty")
    base = _mlflow_ui_base(tracking_uri)
    return f"{base}/#/models/{quote(model, safe='')}/versions/{quote(number, safe='')}"


def mlflow_artifact_url(
    tracking_uri: str, experiment_id: str | int, run_id: str, artifact_path: str
) -> str:
    """The MLflow UI page that opens one artifact of a run (an HTML report is rendered there):
    ``{run page}/artifactPath/{artifact_path}``, the route of MLflow 3's run page.

    This is the browser link for a drift report: it works wherever the MLflow UI does, is
    authorised by MLflow, and, unlike a presigned S3 URL, does not expire.
    """
    path = "/".join(quote(part, safe="") for part in str(artifact_path).strip("/").split("/"))
    if not path:
        raise ValueError("artifact_path must be non-empty")
    return f"{mlflow_run_url(tracking_uri, experiment_id, run_id)}/artifactPath/{path}"


def is_safe_link(value: object) -> bool:
    """True for a string URL with a scheme in :data:`LINK_SCHEMES` and a host or bucket."""
    if not isinstance(value, str) or not value.strip():
        return False
    parts = urlsplit(value.strip())
    return parts.scheme.lower() in LINK_SCHEMES and bool(parts.netloc)
