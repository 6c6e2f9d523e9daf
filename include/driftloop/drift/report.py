"""The human-readable drift report: Evidently (0.7 API) on a bounded sample.

``evidently_report`` renders Evidently's ``DataDriftPreset`` for the contract's numeric and
categorical drift columns (``schema.NUMERIC_FEATURES`` / ``schema.CATEGORICAL_FEATURES``,
declared explicitly through a ``DataDefinition``) on bounded reservoir samples of the
inference log. The embedding column is left out: embedding drift is measured by driftloop's
own statistics (see ``driftloop.drift``). The report is for people; verdicts rest on the
full-data statistics and the decision policy, not on this report.

Evidently and pandas are imported inside the functions so that importing this module is
cheap (Airflow tasks import it; DAG files must not).

Determinism: Evidently 0.7's ``DataDriftPreset`` takes no random state for tabular columns
(its stattests are deterministic; the permutation-based ones seed with 0 themselves), and
the summary holds no timestamps or generated ids, so the same inputs give the same summary.
The HTML holds generated widget ids and ``raw_json`` none, but the snapshot's own
timestamp is not part of either.

HTML: ``Snapshot.get_html_str(as_iframe=False)`` inlines Evidently's JS bundle (React +
Plotly) and its icon font (``data:`` URI); it has no ``<script src>``/``<link>`` to a CDN, so
the file opens offline from S3. The only CDN address in it is Plotly's default
``topojsonURL``, fetched only by geo maps, which the drift report does not draw.
"""

from __future__ import annotations

import html as _html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from driftloop.contracts import schema

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: share of drifted columns at or above which Evidently calls the whole dataset drifted
DEFAULT_DRIFT_SHARE = 0.5


@dataclass(frozen=True)
class EvidentlyReport:
    """A rendered drift report.

    ``html``: standalone Evidently HTML (JS inlined). ``summary``: a small JSON-serialisable
    dict (see ``evidently_report``). ``raw_json``: Evidently's JSON export of the snapshot
    (``Snapshot.json()``: every metric result and test result).
    """

    html: str
    summary: dict[str, Any]
    raw_json: str


def report_columns() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(numerical, categorical) columns the report covers, from the data contract."""
    return tuple(schema.NUMERIC_FEATURES), tuple(schema.CATEGORICAL_FEATURES)


def _check_columns(frame: pd.DataFrame, name: str, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} frame is missing column(s) {', '.join(missing)} required by the drift report"
        )
    if len(frame) == 0:
        raise ValueError(f"{name} frame is empty; the drift report needs rows on both sides")


def _prepare(frame: pd.DataFrame, numerical: Sequence[str], categorical: Sequence[str]):
    """Only the report's columns, with plain dtypes (float64 numbers, object categories)."""
    import pandas as pd

    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for col in numerical:
        out[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64").to_numpy()
    for col in categorical:
        values = frame[col].astype("object").to_numpy()
        out[col] = pd.Series(values, dtype="object").where(pd.notna(values), None).to_numpy()
    return out


def _clean_float(value: Any) -> float | None:
    """A JSON-safe float: NaN/inf become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _is_p_value_method(method: str) -> bool:
    return "p_value" in method.lower().replace("-", "_")


def summarize_snapshot(
    snapshot_dict: dict[str, Any],
    *,
    numerical: Sequence[str],
    categorical: Sequence[str],
    drift_share: float = DEFAULT_DRIFT_SHARE,
) -> dict[str, Any]:
    """Extract per-column drift and the share of drifted columns from ``Snapshot.dict()``.

    Per-column drift comes from the ``ValueDrift`` metrics (score, method, threshold) and
    the drifted flag from Evidently's own per-column test (status FAIL = drifted). Should
    a test be absent, the flag is derived the way Evidently's stattests decide: ``p < threshold``
    for p-value methods, ``score >= threshold`` for distances.
    """
    column_types = {c: "numerical" for c in numerical} | {c: "categorical" for c in categorical}

    status_by_metric: dict[str, str] = {}
    for test in snapshot_dict.get("tests", []):
        metric_id = (test.get("metric_config") or {}).get("metric_id")
        if metric_id and test.get("id") == "drift":
            status_by_metric[metric_id] = str(test.get("status", ""))

    columns: dict[str, dict[str, Any]] = {}
    evidently_count: dict[str, Any] | None = None
    for metric in snapshot_dict.get("metrics", []):
        config = metric.get("config") or {}
        kind = str(config.get("type", ""))
        if kind.endswith(":DriftedColumnsCount"):
            evidently_count = metric.get("value") or {}
            continue
        if not kind.endswith(":ValueDrift"):
            continue
        column = config["column"]
        method = str(config.get("method"))
        threshold = _clean_float(config.get("threshold"))
        score = _clean_float(metric.get("value"))
        status = status_by_metric.get(metric.get("id", ""))
        if status in ("FAIL", "SUCCESS"):
            drifted = status == "FAIL"
        elif score is None or threshold is None:
            drifted = False
        elif _is_p_value_method(method):
            drifted = score < threshold
        else:
            drifted = score >= threshold
        columns[column] = {
            "column_type": column_types.get(column, "unknown"),
            "stattest": method,
            "drift_score": score,
            "threshold": threshold,
            "drifted": bool(drifted),
        }

    expected = [*numerical, *categorical]
    absent = [c for c in expected if c not in columns]
    if absent:
        raise RuntimeError(f"Evidently snapshot has no ValueDrift result for {', '.join(absent)}")
    ordered = {c: columns[c] for c in expected}
    n_columns = len(ordered)
    n_drifted = sum(1 for c in ordered.values() if c["drifted"])
    share = n_drifted / n_columns if n_columns else 0.0
    if evidently_count is not None:
        # Evidently computes the same share itself; prefer its number when it is there.
        share = _clean_float(evidently_count.get("share"))
        share = n_drifted / n_columns if share is None else share
    return {
        "n_columns": n_columns,
        "n_drifted_columns": n_drifted,
        "share_of_drifted_columns": share,
        "drift_share_threshold": float(drift_share),
        "dataset_drift": bool(share >= drift_share),
        "drifted_columns": [c for c, v in ordered.items() if v["drifted"]],
        "columns": ordered,
    }


def evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    title: str,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    num_method: str | None = None,
    cat_method: str | None = None,
) -> EvidentlyReport:
    """Render Evidently's data-drift report of ``current`` against ``reference``.

    Both frames need every column of ``schema.NUMERIC_FEATURES`` and
    ``schema.CATEGORICAL_FEATURES`` (other columns, the embedding included, are ignored);
    a missing column raises ``ValueError`` naming it.

    ``num_method`` / ``cat_method`` pin Evidently's stattests (e.g. ``"wasserstein"``,
    ``"jensenshannon"``, ``"ks"``, ``"psi"``); ``None`` keeps Evidently's choice, which
    depends on the sample size (<= 1000 reference rows: KS / chi-square / Z p-values;
    more: normed Wasserstein / Jensen-Shannon distances). ``stattest`` in the summary is
    the name Evidently records: the display name of a method it chose ("Wasserstein
    distance (normed)"), the given name of a pinned one ("psi").

    ``summary``::

        {
          "title": str, "evidently_version": str,
          "n_reference": int, "n_current": int,
          "n_columns": int, "n_drifted_columns": int,
          "share_of_drifted_columns": float, "drift_share_threshold": float,
          "dataset_drift": bool, "drifted_columns": [str, ...],
          "columns": {name: {"column_type": "numerical" | "categorical",
                             "stattest": str, "drift_score": float | None,
                             "threshold": float | None, "drifted": bool}},
        }
    """
    import evidently
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numerical, categorical = report_columns()
    required = [*numerical, *categorical]
    _check_columns(reference, "reference", required)
    _check_columns(current, "current", required)

    definition = DataDefinition(
        numerical_columns=list(numerical), categorical_columns=list(categorical)
    )
    ref_ds = Dataset.from_pandas(
        _prepare(reference, numerical, categorical), data_definition=definition
    )
    cur_ds = Dataset.from_pandas(
        _prepare(current, numerical, categorical), data_definition=definition
    )

    report = Report(
        [
            DataDriftPreset(
                columns=required,
                drift_share=drift_share,
                num_method=num_method,
                cat_method=cat_method,
            )
        ],
        include_tests=True,  # the per-column tests carry Evidently's drifted verdicts
    )
    snapshot = report.run(cur_ds, ref_ds, name=title)

    raw_json = snapshot.json()
    summary = {
        "title": title,
        "evidently_version": str(evidently.__version__),
        "n_reference": len(reference),
        "n_current": len(current),
        **summarize_snapshot(
            snapshot.dict(), numerical=numerical, categorical=categorical, drift_share=drift_share
        ),
    }
    html = _with_title(snapshot.get_html_str(as_iframe=False), title)
    return EvidentlyReport(html=html, summary=summary, raw_json=raw_json)


def _with_title(document: str, title: str) -> str:
    """Evidently's standalone HTML has no <title>; give the browser tab the report's title."""
    head = document.find("<head>")
    if head < 0:
        return document
    head_end = head + len("<head>")
    return f"{document[:head_end]}\n<title>{_html.escape(title)}</title>{document[head_end:]}"
