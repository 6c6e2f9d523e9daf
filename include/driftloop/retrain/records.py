"""Where ``retrain_detector`` writes down what it did: the audit ledger, its report keys in S3
and the code version recorded with a model.

Every step of the DAG that decides something appends to the ledger through :func:`ledger`,
with an idempotency key ``retrain_detector/<run id>/<step>``, so a re-run of the same DAG run
adds no row twice.
"""

from __future__ import annotations

import subprocess

from driftloop.config.settings import REPO_ROOT, Settings

RETRAIN_REPORTS_PREFIX = "reports/retrain"


def report_key(run_id: str, name: str) -> str:
    """``reports/retrain/<safe run id>/<name>``: one folder of reports per DAG run."""
    from driftloop.drift.run import safe_run_id

    return f"{RETRAIN_REPORTS_PREFIX}/{safe_run_id(run_id)}/{name}"


def ledger(settings: Settings):
    """The audit ledger of ``settings``: database, HMAC key and S3 anchors
    (:func:`driftloop.audit.wiring.ledger_for`; SQLAlchemy loads on use)."""
    from driftloop.audit.wiring import ledger_for

    return ledger_for(settings)


def code_version(settings: Settings) -> str:
    """The commit of this checkout, else ``DRIFTLOOP_GIT_SHA`` (an image built from one), else
    the package version."""
    try:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        from driftloop import __version__

        return (settings.git_sha or "").strip() or __version__
