"""The human-readable drift report: Evidently (0.7 API) showing the check's own verdict.

The verdict (:mod:`driftloop.drift.decision`) rests on full-data statistics (PSI on
reference-quantile bins of every row, MMD for the embedding), the policy's per-feature
thresholds, Benjamini–Hochberg and k-of-n hysteresis. Evidently renders its report on a
bounded sample, and its own tests on that sample (other methods, a 50 % dataset rule, no
history) would name other columns than the verdict: the report would contradict the alert it
explains. So every column of the report carries the verdict's result instead:

* each feature that ``decide`` judged (the contract's numeric and categorical features, the
  embedding's PCA components, the embedding) is in the report;
* a tabular column's drift method is a stattest registered for this report
  (:func:`register_verdict_stattest`): its score is the verdict's effect on the full window,
  its threshold the policy's warn threshold, and it reports the column drifted exactly when
  the verdict alerts on it (after FDR and hysteresis); Evidently still draws the sample's
  distributions;
* the embedding is an ``EmbeddingsDrift`` metric whose method returns the verdict's MMD;
* the dataset drift share is set so that Evidently's headline ("Dataset Drift is detected")
  is the verdict's severity: any alerting feature is dataset drift, as in the policy.

Evidently and pandas are imported inside the functions so that importing this module is
cheap (Airflow tasks import it; DAG files must not).

HTML: ``Snapshot.get_html_str(as_iframe=False)`` inlines Evidently's JS bundle (React +
Plotly) and its icon font (``data:`` URI); it has no ``<script src>``/``<link>`` to a CDN, so
the file opens offline from S3 or the MLflow UI.
"""

from __future__ import annotations

import hashlib
import html as _html
import json
import math
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from driftloop.contracts import schema

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from driftloop.config.drift_policy import Policy
    from driftloop.drift.sketch import Binning

#: prefix of the stattests that carry a verdict (one per column and verdict)
VERDICT_STATTEST_PREFIX = "driftloop_verdict"


@dataclass(frozen=True)
class ColumnVerdict:
    """What ``decide`` concluded about one feature, as the report shows it."""

    feature: str
    kind: str  # numeric | categorical | embedding
    method: str  # the policy's statistic for it (psi, mmd, ...)
    effect: float  # that statistic on the full windows
    warn: float  # the policy's warn threshold
    level_now: str  # this check alone
    alert_level: str  # after FDR and hysteresis: what the verdict names

    @property
    def drifted(self) -> bool:
        return self.alert_level != "none"

    @property
    def display_name(self) -> str:
        return f"{self.method} on the full window, policy verdict {self.alert_level}"


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


def column_verdicts(decision: Mapping[str, Any], policy: Policy) -> list[ColumnVerdict]:
    """The verdict of every feature of a decision document (``decision.json``)."""
    out = []
    for feature in decision["features"]:
        threshold = policy.threshold(feature["feature"], feature["kind"])
        out.append(
            ColumnVerdict(
                feature=feature["feature"],
                kind=feature["kind"],
                method=feature["method"],
                effect=float(feature["effect"]),
                warn=threshold.warn,
                level_now=feature["level_now"],
                alert_level=feature["alert_level"],
            )
        )
    return out


def headline_drift_share(verdicts: Sequence[ColumnVerdict]) -> float:
    """Evidently's dataset drift share that makes its headline the verdict's severity.

    Evidently calls the dataset drifted when the share of drifted tabular columns is at least
    this. The policy alerts on any one feature, so half a column's share suffices; when only
    the embedding alerts (no tabular column drifted) the share is 0, so that the headline
    still says drift."""
    tabular = [v for v in verdicts if v.kind != "embedding"]
    if not tabular:
        raise ValueError("the report needs at least one tabular feature")
    if any(v.drifted for v in verdicts) and not any(v.drifted for v in tabular):
        return 0.0
    return 0.5 / len(tabular)


def with_embedding_components(frame: pd.DataFrame, binning: Binning) -> pd.DataFrame:
    """``frame`` plus the embedding's PCA components (``embedding_pc1`` …) in the basis the
    profiles used, so the report shows the same derived features the verdict judged."""
    import numpy as np

    from driftloop.drift.sketch import pca_feature_names

    matrix = np.asarray(frame[schema.EMBEDDING_COLUMN].tolist(), dtype="float64")
    projected = binning.project(matrix)
    out = frame.copy()
    for i, name in enumerate(pca_feature_names(projected.shape[1])):
        out[name] = projected[:, i]
    return out


def _token(verdicts: Sequence[ColumnVerdict]) -> str:
    """Names the stattests of one set of verdicts: same verdicts, same names (deterministic
    output), other verdicts never reuse a registered name."""
    text = json.dumps([asdict(v) for v in verdicts], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def register_verdict_stattest(verdict: ColumnVerdict, token: str) -> str:
    """Register a stattest that reports ``verdict`` for its column; returns its name.

    Evidently names a column's method by a registered name (``ValueDrift.method`` is a
    string), so each column gets its own. It ignores the sample it is given on purpose: the
    verdict is the full-data result, the sample only draws the distributions."""
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    name = f"{VERDICT_STATTEST_PREFIX}_{token}_{verdict.feature}"
    column_type = ColumnType.Categorical if verdict.kind == "categorical" else ColumnType.Numerical

    def verdict_of_full_window(reference_data, current_data, feature_type, threshold):
        return verdict.effect, verdict.drifted

    register_stattest(
        StatTest(
            name=name,
            display_name=verdict.display_name,
            allowed_feature_types=[column_type],
            default_threshold=verdict.warn,
        ),
        default_impl=verdict_of_full_window,
    )
    return name


_EMBEDDING_METHOD: type | None = None


def _embedding_method_class() -> type:
    """Evidently's embedding drift method that returns the verdict's MMD (defined once)."""
    global _EMBEDDING_METHOD
    if _EMBEDDING_METHOD is None:
        from evidently.legacy.metrics.data_drift.embedding_drift_methods import DriftMethod

        class VerdictEmbeddingDrift(DriftMethod):
            """The embedding's verdict: the full-data statistic and whether it alerts."""

            class Config:
                type_alias = "driftloop:drift_method:VerdictEmbeddingDrift"

            method: str
            score: float
            drifted: bool

            def __call__(self, current_emb, reference_emb):
                return self.score, self.drifted, self.method

        _EMBEDDING_METHOD = VerdictEmbeddingDrift
    return _EMBEDDING_METHOD


def _check_columns(frame: pd.DataFrame, name: str, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} frame is missing column(s) {', '.join(missing)} required by the drift report"
        )
    if len(frame) == 0:
        raise ValueError(f"{name} frame is empty; the drift report needs rows on both sides")


def _embedding_columns() -> list[str]:
    return [f"{schema.EMBEDDING_COLUMN}_{i}" for i in range(schema.EMBEDDING_DIM)]


def _prepare(
    frame: pd.DataFrame,
    numerical: Sequence[str],
    categorical: Sequence[str],
    embedding: bool,
):
    """Only the report's columns, with plain dtypes; the embedding as one column per value."""
    import numpy as np
    import pandas as pd

    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for col in numerical:
        out[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64").to_numpy()
    for col in categorical:
        values = frame[col].astype("object").to_numpy()
        out[col] = pd.Series(values, dtype="object").where(pd.notna(values), None).to_numpy()
    if embedding:
        matrix = np.asarray(frame[schema.EMBEDDING_COLUMN].tolist(), dtype="float64")
        embedded = pd.DataFrame(matrix, columns=_embedding_columns())
        out = pd.concat([out, embedded], axis=1)
    return out


def _clean_float(value: Any) -> float | None:
    """A JSON-safe float: NaN/inf become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def summarize_snapshot(
    snapshot_dict: dict[str, Any],
    verdicts: Sequence[ColumnVerdict],
    *,
    drift_share: float,
) -> dict[str, Any]:
    """Per-column drift, as Evidently recorded it, and its dataset-drift headline.

    A tabular column's drifted flag is Evidently's own per-column test (status FAIL =
    drifted); the embedding's score is its ``EmbeddingsDrift`` value (that metric has no
    test: its flag is the verdict's).
    """
    by_feature = {v.feature: v for v in verdicts}
    status_by_metric: dict[str, str] = {}
    for test in snapshot_dict.get("tests", []):
        metric_id = (test.get("metric_config") or {}).get("metric_id")
        if metric_id and test.get("id") == "drift":
            status = test.get("status", "")
            # TestStatus in Snapshot.dict(), its value in the JSON export
            status_by_metric[metric_id] = str(getattr(status, "value", status))

    columns: dict[str, dict[str, Any]] = {}
    for metric in snapshot_dict.get("metrics", []):
        config = metric.get("config") or {}
        kind = str(config.get("type", ""))
        if kind.endswith(":EmbeddingsDrift"):
            name = config["embeddings_name"]
            verdict = by_feature[name]
            columns[name] = {
                "column_type": "embedding",
                "stattest": verdict.method,
                "drift_score": _clean_float(metric.get("value")),
                "threshold": verdict.warn,
                "drifted": verdict.drifted,
            }
            continue
        if not kind.endswith(":ValueDrift"):
            continue
        column = config["column"]
        status = status_by_metric.get(metric.get("id", ""))
        if status not in ("FAIL", "SUCCESS"):
            raise RuntimeError(f"Evidently recorded no drift test for column {column!r}")
        verdict = by_feature[column]
        columns[column] = {
            "column_type": "categorical" if verdict.kind == "categorical" else "numerical",
            "stattest": verdict.method,
            "drift_score": _clean_float(metric.get("value")),
            "threshold": _clean_float(config.get("threshold")),
            "drifted": status == "FAIL",
        }

    absent = [v.feature for v in verdicts if v.feature not in columns]
    if absent:
        raise RuntimeError(f"Evidently snapshot has no drift result for {', '.join(absent)}")
    ordered = {v.feature: columns[v.feature] for v in verdicts}
    tabular = [c for c in ordered.values() if c["column_type"] != "embedding"]
    n_drifted_tabular = sum(1 for c in tabular if c["drifted"])
    share = n_drifted_tabular / len(tabular)
    return {
        "n_columns": len(ordered),
        "n_drifted_columns": sum(1 for c in ordered.values() if c["drifted"]),
        "share_of_drifted_columns": share,
        "drift_share_threshold": float(drift_share),
        # Evidently's headline rule (DatasetDriftMetric): share of tabular columns >= threshold
        "dataset_drift": bool(share >= drift_share),
        "drifted_columns": [name for name, c in ordered.items() if c["drifted"]],
        "columns": ordered,
    }


def evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    verdicts: Sequence[ColumnVerdict],
    title: str,
) -> EvidentlyReport:
    """Render Evidently's data-drift report of ``current`` against ``reference`` (bounded
    samples) showing ``verdicts`` (see the module docstring).

    Both frames need a column for every tabular verdict and, when the embedding has a
    verdict, the embedding column (list of ``schema.EMBEDDING_DIM`` floats); a missing column
    raises ``ValueError`` naming it.

    ``summary``::

        {
          "title": str, "evidently_version": str,
          "n_reference": int, "n_current": int,
          "n_columns": int, "n_drifted_columns": int,
          "share_of_drifted_columns": float, "drift_share_threshold": float,
          "dataset_drift": bool, "drifted_columns": [str, ...],
          "columns": {name: {"column_type": "numerical" | "categorical" | "embedding",
                             "stattest": str, "drift_score": float | None,
                             "threshold": float | None, "drifted": bool}},
        }
    """
    import evidently
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift
    from evidently.presets import DataDriftPreset

    verdicts = list(verdicts)
    numerical = [v.feature for v in verdicts if v.kind == "numeric"]
    categorical = [v.feature for v in verdicts if v.kind == "categorical"]
    embeddings = [v for v in verdicts if v.kind == "embedding"]
    unknown = [v.feature for v in embeddings if v.feature != schema.EMBEDDING_COLUMN]
    if unknown:
        raise ValueError(f"unknown embedding feature(s) {', '.join(unknown)}")
    required = [*numerical, *categorical, *(schema.EMBEDDING_COLUMN for _ in embeddings)]
    _check_columns(reference, "reference", required)
    _check_columns(current, "current", required)

    definition = DataDefinition(
        numerical_columns=list(numerical),
        categorical_columns=list(categorical),
        embeddings={schema.EMBEDDING_COLUMN: _embedding_columns()} if embeddings else None,
    )
    datasets = [
        Dataset.from_pandas(
            _prepare(frame, numerical, categorical, bool(embeddings)), data_definition=definition
        )
        for frame in (current, reference)
    ]
    token = _token(verdicts)
    tabular = [v for v in verdicts if v.kind != "embedding"]
    drift_share = headline_drift_share(verdicts)
    metrics: list = [
        DataDriftPreset(
            columns=[v.feature for v in tabular],
            drift_share=drift_share,
            per_column_method={v.feature: register_verdict_stattest(v, token) for v in tabular},
            per_column_threshold={v.feature: v.warn for v in tabular},
        )
    ]
    method = _embedding_method_class()
    metrics += [
        EmbeddingsDrift(
            embeddings_name=v.feature,
            drift_method=method(method=v.method, score=v.effect, drifted=v.drifted),
        )
        for v in embeddings
    ]
    # the per-column tests carry the drifted verdicts into the snapshot
    with _embedding_plot_rows(EMBEDDING_PLOT_ROWS):
        snapshot = Report(metrics, include_tests=True).run(*datasets, name=title)

    summary = {
        "title": title,
        "evidently_version": str(evidently.__version__),
        "n_reference": len(reference),
        "n_current": len(current),
        **summarize_snapshot(snapshot.dict(), verdicts, drift_share=drift_share),
    }
    html = _with_title(snapshot.get_html_str(as_iframe=False), title)
    return EvidentlyReport(html=html, summary=summary, raw_json=snapshot.json())


#: rows per side of the embedding plot's t-SNE. Evidently projects up to 2,500 per side
#: (its ``SAMPLE_CONSTANT``) with as many OpenMP threads as cores: on this project's 2-core
#: machine, busy with other tasks as an Airflow worker is, that t-SNE took 77 s of an 81 s
#: report; 300 per side on one thread draw the same two clouds in a few seconds. The plot only
#: shows where the embeddings lie: the verdict's MMD comes from its own sample
#: (``mmd_sample_size``), on every row it was given.
EMBEDDING_PLOT_ROWS = 300


@contextmanager
def _embedding_plot_rows(rows: int):
    """Evidently 0.7's embedding plot with at most ``rows`` per side (its module constant, read
    when the metric is calculated, set for this call and restored after it) and its t-SNE on
    one OpenMP thread (threads beyond the free cores only contend)."""
    from evidently.legacy.metrics.data_drift import embeddings_drift
    from threadpoolctl import threadpool_limits

    if not isinstance(getattr(embeddings_drift, "SAMPLE_CONSTANT", None), int):
        raise RuntimeError(
            "evidently.legacy.metrics.data_drift.embeddings_drift.SAMPLE_CONSTANT is gone: "
            "this Evidently is not the pinned 0.7; update driftloop.drift.report"
        )
    saved = embeddings_drift.SAMPLE_CONSTANT
    embeddings_drift.SAMPLE_CONSTANT = min(rows, saved)
    try:
        with threadpool_limits(limits=1, user_api="openmp"):
            yield
    finally:
        embeddings_drift.SAMPLE_CONSTANT = saved


def _with_title(document: str, title: str) -> str:
    """Evidently's standalone HTML has no <title>; give the browser tab the report's title."""
    head = document.find("<head>")
    if head < 0:
        return document
    head_end = head + len("<head>")
    return f"{document[:head_end]}\n<title>{_html.escape(title)}</title>{document[head_end:]}"
