"""The Great Expectations suite of an inference-log partition, and its results as reasons.

The suite is derived from :mod:`driftloop.contracts.schema` (the data contract): the
contract's column set (additive columns are dropped before, see :mod:`.partition_read`), type
family per column, not-null on non-nullable columns, value ranges, allowed categories, the
camera-id pattern, the embedding length and at least one row. A GE result becomes a
time-independent JSON document and one human-readable reason per failure.

great_expectations is imported inside the functions (slow, and DAG files must not load it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from driftloop.contracts import schema

if TYPE_CHECKING:  # pragma: no cover
    import great_expectations as gx

# GE reads this when a context is created; nothing of ours should phone home.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


SUITE_NAME = "driftloop_inference_partition"
#: derived column holding the embedding's per-row length (GE has no list-length expectation);
#: -1 where the embedding column is not a list type, null where the embedding is null
EMBEDDING_LEN_COLUMN = "_embedding_len"

_DATASOURCE_NAME = "driftloop_validation"
_ASSET_NAME = "inference_partition"
_BATCH_DEFINITION_NAME = "whole_partition"
# result format: enough for auditors (counts + a few examples), bounded in size
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 10}
_EXAMPLES_IN_REASON = 3

# pandas type names GE accepts per family of the contract's pyarrow type strings
_FLOAT_TYPES = ["float16", "float32", "float64", "Float32Dtype", "Float64Dtype", "float"]
_INT_TYPES = [
    *(f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)),
    *(f"{sign}Int{bits}Dtype" for sign in ("", "U") for bits in (8, 16, 32, 64)),
    "int",
]
_STRING_TYPES = ["str", "StringDtype"]
_BOOL_TYPES = ["bool", "BooleanDtype"]


# --------------------------------------------------------------------------------------
# the suite: declared as GE expectation types and kwargs (no GE import needed to read it)


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of the suite in GE's own terms: its type and kwargs, as GE normalises
    them (defaults left out, range bounds as floats), so GE's configuration equals them."""

    type: str
    kwargs: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "kwargs": dict(self.kwargs)}


def _type_spec(column: schema.Column) -> ExpectationSpec | None:
    dtype = column.dtype
    if dtype.startswith("timestamp"):
        # pandas reports tz-aware datetimes as Timestamp, tz-naive ones as datetime64
        return ExpectationSpec(
            "expect_column_values_to_be_of_type", {"column": column.name, "type_": "Timestamp"}
        )
    if dtype in ("double", "float", "halffloat") or dtype.startswith("float"):
        type_list = _FLOAT_TYPES
    elif dtype.startswith(("int", "uint")):
        type_list = _INT_TYPES
    elif dtype in ("string", "large_string", "utf8", "large_utf8"):
        type_list = _STRING_TYPES
    elif dtype == "bool":
        type_list = _BOOL_TYPES
    elif "list" in dtype:
        return None  # checked through the derived length column
    else:
        raise ValueError(f"no type expectation for column {column.name!r} of type {dtype!r}")
    return ExpectationSpec(
        "expect_column_values_to_be_in_type_list",
        {"column": column.name, "type_list": list(type_list)},
    )


def _bound(value: float | None) -> float | None:
    """A range bound as GE keeps it (its kwargs hold floats): the reasons quote it."""
    return None if value is None else float(value)


def suite_spec() -> tuple[ExpectationSpec, ...]:
    """The expectations of one inference-log partition, derived from schema.COLUMNS: what
    :func:`build_suite` gives GE and what :mod:`.arrow_validation` evaluates."""
    specs: list[ExpectationSpec] = []
    has_embedding = any(c.name == schema.EMBEDDING_COLUMN for c in schema.COLUMNS)
    column_set = [c.name for c in schema.COLUMNS] + (
        [EMBEDDING_LEN_COLUMN] if has_embedding else []
    )
    specs.append(ExpectationSpec("expect_table_columns_to_match_set", {"column_set": column_set}))
    specs.append(ExpectationSpec("expect_table_row_count_to_be_between", {"min_value": 1}))
    for col in schema.COLUMNS:
        type_spec = _type_spec(col)
        if type_spec is not None:
            specs.append(type_spec)
        if not col.nullable:
            specs.append(
                ExpectationSpec("expect_column_values_to_not_be_null", {"column": col.name})
            )
        if col.min_value is not None or col.max_value is not None:
            specs.append(
                ExpectationSpec(
                    "expect_column_values_to_be_between",
                    {
                        "column": col.name,
                        "min_value": _bound(col.min_value),
                        "max_value": _bound(col.max_value),
                    },
                )
            )
        if col.name in schema.ALLOWED_CATEGORIES:
            specs.append(
                ExpectationSpec(
                    "expect_column_values_to_be_in_set",
                    {"column": col.name, "value_set": list(schema.ALLOWED_CATEGORIES[col.name])},
                )
            )
        if col.name == "camera_id":
            specs.append(
                ExpectationSpec(
                    "expect_column_values_to_match_regex",
                    {"column": col.name, "regex": schema.CAMERA_ID_REGEX},
                )
            )
    if has_embedding:
        specs.append(
            ExpectationSpec(
                "expect_column_values_to_be_between",
                {
                    "column": EMBEDDING_LEN_COLUMN,
                    "min_value": _bound(schema.EMBEDDING_DIM),
                    "max_value": _bound(schema.EMBEDDING_DIM),
                },
            )
        )
    return tuple(specs)


def build_suite(specs: tuple[ExpectationSpec, ...] | None = None) -> gx.ExpectationSuite:
    """The GE expectation suite of one inference-log partition (:func:`suite_spec`)."""
    import great_expectations as gx
    from great_expectations.expectations.registry import get_expectation_impl

    specs = suite_spec() if specs is None else specs
    expectations = [get_expectation_impl(s.type)(**s.kwargs) for s in specs]
    # built in one go: adding expectations one by one needs an active context
    suite = gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations)
    if len(suite.expectations) != len(expectations):  # GE drops invalid ones with a log line
        raise RuntimeError("some expectations of the inference suite were rejected by GE")
    return suite


# --------------------------------------------------------------------------------------
# the GE context (slow to import and set up: make one and reuse it)


@dataclass
class ValidationContext:
    """A GE ephemeral context with the pandas batch definition and the suite, reusable."""

    gx_context: Any = field(repr=False)
    batch_definition: Any = field(repr=False)
    suite: Any = field(repr=False)


def make_context(gx_context: Any = None) -> ValidationContext:
    """The GE ephemeral context (analytics and progress bars off), our pandas datasource and
    the suite. Slow-ish (GE import): make one per task and pass it to every validation.
    ``gx_context``: an existing GE context to register the datasource on instead."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx_context if gx_context is not None else gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    datasource = context.data_sources.add_or_update_pandas(_DATASOURCE_NAME)
    asset = datasource.add_dataframe_asset(_ASSET_NAME)
    batch_definition = asset.add_batch_definition_whole_dataframe(_BATCH_DEFINITION_NAME)
    return ValidationContext(context, batch_definition, build_suite())


# --------------------------------------------------------------------------------------
# GE result -> reasons, and a time-independent JSON result


def _strip_tracebacks(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_tracebacks(v) for k, v in obj.items() if k != "exception_traceback"}
    if isinstance(obj, list):
        return [_strip_tracebacks(v) for v in obj]
    return obj


def _exception_messages(info: Any) -> list[str]:
    if not isinstance(info, dict):
        return []
    if info.get("raised_exception"):
        return [str(info.get("exception_message"))]
    out: list[str] = []
    for value in info.values():
        if isinstance(value, dict):
            out.extend(_exception_messages(value))
    return out


def _suite_order(suite) -> dict[tuple[str, str], int]:
    order = {}
    for i, exp in enumerate(suite.expectations):
        cfg = exp.configuration
        order[(cfg.type, str(cfg.kwargs.get("column", "")))] = i
    return order


def stable_result(result_dict: dict[str, Any], suite) -> dict[str, Any]:
    """GE's result without ids, timestamps and tracebacks, results in suite order."""
    order = _suite_order(suite)
    results = []
    for r in result_dict.get("results", []):
        r = _strip_tracebacks(dict(r))
        cfg = dict(r.get("expectation_config") or {})
        cfg.pop("id", None)
        kwargs = dict(cfg.get("kwargs") or {})
        kwargs.pop("batch_id", None)
        cfg["kwargs"] = kwargs
        r["expectation_config"] = cfg
        results.append(r)
    results.sort(
        key=lambda r: order.get(
            (
                r["expectation_config"].get("type", ""),
                str(r["expectation_config"]["kwargs"].get("column", "")),
            ),
            len(order),
        )
    )
    meta = result_dict.get("meta") or {}
    return {
        "success": bool(result_dict.get("success")),
        "suite_name": result_dict.get("suite_name"),
        "statistics": result_dict.get("statistics"),
        "results": results,
        "meta": {"great_expectations_version": meta.get("great_expectations_version")},
    }


def _examples(result: dict[str, Any]) -> str:
    values = result.get("partial_unexpected_list") or []
    if not values:
        return ""
    shown = ", ".join(repr(v) for v in values[:_EXAMPLES_IN_REASON])
    return f" (e.g. {shown})"


def reasons_of(stable: dict[str, Any], nan_counts: Mapping[str, int] | None = None) -> list[str]:
    """Human-readable reasons from a stable GE result, one per failed expectation.

    ``nan_counts``: rows holding NaN per column (:func:`~.partition_read.nan_counts`). GE sees
    a pandas frame, where NaN and null look alike, so its null counts include the NaNs; those
    are taken out here and reported as NaN by the caller."""
    nan_counts = nan_counts or {}
    failed = [r for r in stable["results"] if not r.get("success")]
    missing: set[str] = set()
    mistyped: set[str] = set()
    reasons: list[str] = []
    # structural failures first: they explain (and silence) follow-on errors on a column
    for r in failed:
        cfg = r["expectation_config"]
        if cfg["type"] == "expect_table_columns_to_match_set":
            mismatched = ((r.get("result") or {}).get("details") or {}).get("mismatched") or {}
            for name in mismatched.get("missing", []):
                if name == EMBEDDING_LEN_COLUMN:
                    continue
                reasons.append(f"column {name!r} missing")
                missing.add(name)
            for name in mismatched.get("unexpected", []):
                reasons.append(f"unexpected column {name!r}")
    for r in failed:
        cfg, res = r["expectation_config"], r.get("result") or {}
        kind, kwargs = cfg["type"], cfg["kwargs"]
        column = kwargs.get("column")
        errors = _exception_messages(r.get("exception_info"))
        if kind == "expect_table_columns_to_match_set":
            continue
        if column == EMBEDDING_LEN_COLUMN:
            column = schema.EMBEDDING_COLUMN
        if column in missing:
            continue  # already explained; GE raised "column not found" for these
        if column in mistyped and kind != "expect_column_values_to_not_be_null":
            continue  # value checks on a column of the wrong type only repeat the type error
        if kind == "expect_table_row_count_to_be_between":
            reasons.append(f"table has {res.get('observed_value', 0)} rows (at least 1 expected)")
            continue
        if errors:
            reasons.append(f"column {column!r}: {kind} failed with an error: {errors[0]}")
            continue
        count = res.get("unexpected_count")
        if kind in (
            "expect_column_values_to_be_in_type_list",
            "expect_column_values_to_be_of_type",
        ):
            contract = schema.BY_NAME[column].dtype if column in schema.BY_NAME else "?"
            if "observed_value" in res:
                got = f"dtype {res['observed_value']}"
            else:
                got = f"{count} values of another type{_examples(res)}"
            reasons.append(f"column {column!r}: wrong type, expected {contract}, got {got}")
            mistyped.add(column)
        elif kind == "expect_column_values_to_not_be_null":
            nulls = (count or 0) - nan_counts.get(column, 0)
            if nulls > 0:
                reasons.append(f"column {column!r}: {nulls} nulls")
        elif (
            kind == "expect_column_values_to_be_between"
            and cfg["kwargs"].get("column") == EMBEDDING_LEN_COLUMN
        ):
            lens = res.get("partial_unexpected_list") or []
            if lens and all(v == -1 for v in lens):
                reasons.append(f"column {column!r}: not a list column")
            else:
                reasons.append(
                    f"column {column!r}: {count} rows with length != {schema.EMBEDDING_DIM}"
                    f"{_examples(res)}"
                )
        elif kind == "expect_column_values_to_be_between":
            reasons.append(
                f"column {column!r}: {count} values outside "
                f"[{kwargs.get('min_value')}, {kwargs.get('max_value')}]{_examples(res)}"
            )
        elif kind == "expect_column_values_to_be_in_set":
            reasons.append(
                f"column {column!r}: {count} values not in {list(kwargs.get('value_set', []))}"
                f"{_examples(res)}"
            )
        elif kind == "expect_column_values_to_match_regex":
            reasons.append(
                f"column {column!r}: {count} values do not match {kwargs.get('regex')}"
                f"{_examples(res)}"
            )
        else:  # an expectation added to the suite without a dedicated message
            reasons.append(f"column {column!r}: {kind} failed ({count} unexpected)")
    return reasons
