"""The partition suite evaluated with Arrow compute, one record batch at a time.

Great Expectations stays the suite's language and its result documents: the expectations are
:func:`.expectations.suite_spec` (GE types and kwargs; :func:`.expectations.build_suite` hands
the same to GE), and :meth:`SuiteEvaluation.result` is the document GE's pandas validator
writes with ``RESULT_FORMAT`` (SUMMARY), after :func:`.expectations.stable_result`: the same
keys (``success``, ``statistics``, per expectation ``result.unexpected_count``,
``partial_unexpected_list``, ``partial_unexpected_index_list`` ...), so
:func:`.expectations.reasons_of`, the quarantine documents and their readers do not change.

What differs is how it is computed. GE needs the whole partition as one pandas frame (at 1M
rows: 39 s and 2.8 GB); here every check is a pyarrow.compute kernel on one record batch and
the batch's counts and first examples are added up, so memory is one batch and no Python loop
runs over rows: null counts come from the Arrow validity bitmaps, ranges from ``min_max``
(masks only when a bound is crossed), categories and the camera-id pattern are checked on the
batch's distinct values (``unique``, then ``is_in`` / ``match_substring_regex`` on those), and
rows are located (``is_in``) only when some value fails.

The semantics are GE's on the frame :func:`.partition_read.to_validation_frame` builds, which
the equivalence tests check on every defect the synthetic world makes:

* a float NaN is missing, as pandas has it: counted by the not-null check (the reasons take it
  out again and report it as NaN), skipped by the range checks;
* the type checks look at the pandas dtype the column gets (integers and booleans become
  nullable extension dtypes; tz-aware timestamps ``Timestamp``, naive ones ``datetime64``);
  a column pandas holds as objects (strings, bytes, lists ...) is checked value by value;
* the embedding's length is the derived ``_embedding_len`` column: null for a null row, -1 for
  every row when the column is no list.

On a column of the wrong type the value checks (ranges, categories, pattern) may succeed or
fail differently from GE's (a range check on booleans, say): they never make a reason, since
:func:`.expectations.reasons_of` reports the type error alone; the verdict is the same.

One known difference: the camera-id pattern runs on RE2 (Arrow), GE runs Python's ``re``. For
the contract's pattern they agree except that Python's ``$`` also matches before a final
newline, so ``"cam-01\\n"`` passes GE and fails here (stricter: fail closed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from driftloop.contracts import schema
from driftloop.drift.expectations import (
    EMBEDDING_LEN_COLUMN,
    RESULT_FORMAT,
    SUITE_NAME,
    ExpectationSpec,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

#: bump when the evaluation (or the reasons it leads to) changes: cached verdicts made by an
#: earlier version are then not reused (it is part of the suite identity)
VALIDATOR_VERSION = "driftloop.arrow-validation/1"
PARTIAL_COUNT = int(RESULT_FORMAT["partial_unexpected_count"])

_NOT_SAME_TYPE = "Column values, min_value, and max_value must either be None or of the same type."


class _NotComparable(ValueError):
    """A check that cannot compare the column's values with its kwargs."""


def _no_column(name: str) -> str:
    return f'Error: The column "{name}" in BatchData does not exist.'


# --------------------------------------------------------------------------------------
# how pandas (and so GE) sees an Arrow type


def pandas_dtype_name(t: pa.DataType) -> str | None:
    """``dtype.type.__name__`` of the pandas column an Arrow column becomes in the validation
    frame (what GE reports as the observed type), or None for a column of Python objects."""
    import pyarrow as pa

    if pa.types.is_timestamp(t):
        return "Timestamp" if t.tz is not None else "datetime64"
    if pa.types.is_duration(t):
        return "timedelta64"
    if pa.types.is_floating(t):
        return str(t.to_pandas_dtype().__name__)  # float16 / float32 / float64
    if pa.types.is_integer(t):
        return str(t)  # nullable IntXDtype / UIntXDtype: dtype.type is numpy's intX
    if pa.types.is_boolean(t):
        return "bool"
    return None


def _dtype_token(t: pa.DataType) -> str:
    """The name a suite's type list uses for the pandas dtype of a typed column."""
    import pyarrow as pa

    if pa.types.is_integer(t):
        name = str(t)  # int32 -> Int32Dtype, uint8 -> UInt8Dtype (the nullable dtypes)
        return ("UInt" + name[4:] if name.startswith("uint") else "Int" + name[3:]) + "Dtype"
    if pa.types.is_boolean(t):
        return "BooleanDtype"
    return pandas_dtype_name(t) or "object"


def object_value_type(t: pa.DataType) -> str | None:
    """The Python type name of the values of a column pandas holds as objects (None: every
    value is missing)."""
    import pyarrow as pa

    if pa.types.is_null(t):
        return None
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "str"
    if (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_binary_view(t)
    ):
        return "bytes"
    if is_list_type(t):
        return "ndarray"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_decimal(t):
        return "Decimal"
    if pa.types.is_struct(t):
        return "dict"
    return "list" if pa.types.is_map(t) else type(t).__name__


def is_list_type(t: pa.DataType) -> bool:
    import pyarrow as pa

    return (
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_list_view(t)
        or pa.types.is_large_list_view(t)
    )


def _is_stringlike(t: pa.DataType) -> bool:
    import pyarrow as pa

    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_numeric(t: pa.DataType) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _accepted_types(spec: ExpectationSpec) -> list[str]:
    if spec.type == "expect_column_values_to_be_of_type":
        return [spec.kwargs["type_"]]
    return list(spec.kwargs["type_list"])


def type_check_is_per_value(t: pa.DataType) -> bool:
    """GE checks the dtype of a typed column, each value of an object column."""
    return pandas_dtype_name(t) is None


def type_accepted(t: pa.DataType, spec: ExpectationSpec) -> bool:
    """Whether the column's type passes a type expectation (dtype, or each value's type)."""
    accepted = _accepted_types(spec)
    if type_check_is_per_value(t):
        value_type = object_value_type(t)
        return value_type is None or value_type in accepted
    if spec.type == "expect_column_values_to_be_of_type":
        return pandas_dtype_name(t) in accepted
    return _dtype_token(t) in accepted


# --------------------------------------------------------------------------------------
# accumulating a column map expectation over batches


@dataclass
class _MapCounts:
    """Counts and first examples of one column map expectation, added up batch by batch."""

    #: False: the result carries no missing counts (GE's not-null check)
    with_missing: bool = True
    element_count: int = 0
    missing_count: int = 0
    unexpected_count: int = 0
    examples: list[Any] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    #: values whose identity pandas keeps apart (NaN): each counts on its own
    ungrouped: bool = False
    error: str | None = None

    def add(self, *, rows: int, missing: int, unexpected: int) -> None:
        self.element_count += rows
        self.missing_count += missing
        self.unexpected_count += unexpected

    @property
    def wants_examples(self) -> int:
        return PARTIAL_COUNT - len(self.examples)

    def add_examples(self, offset: int, indices: pa.Array, values: list[Any]) -> None:
        room = self.wants_examples
        self.indices += [offset + int(i) for i in indices.to_pylist()[:room]]
        self.examples += [json_value(v) for v in values[:room]]

    def result(self) -> dict[str, Any]:
        n, unexpected = self.element_count, self.unexpected_count
        nonmissing = n - self.missing_count
        total = unexpected / n * 100 if n else None
        if self.with_missing:
            percent = unexpected / nonmissing * 100 if n and nonmissing else None
        else:
            percent = total
        out: dict[str, Any] = {
            "element_count": n,
            "unexpected_count": unexpected,
            "unexpected_percent": percent,
            "partial_unexpected_list": list(self.examples),
        }
        if self.with_missing:
            out |= {
                "missing_count": self.missing_count,
                "missing_percent": self.missing_count / n * 100 if n else None,
                "unexpected_percent_total": total,
                "unexpected_percent_nonmissing": percent,
            }
        counts = _partial_counts(self.examples, ungrouped=self.ungrouped)
        if counts is not None:
            out["partial_unexpected_counts"] = counts
        out["partial_unexpected_index_list"] = list(self.indices)
        return out


def json_value(value: Any) -> Any:
    """An example value as GE's result document holds it (its JSON conversion): dates and
    times in ISO format, decimals as floats, bytes as their ``str``, lists as lists."""
    import datetime as dt
    from decimal import Decimal

    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return str(value)
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return str(value)


def _partial_counts(values: list[Any], *, ungrouped: bool) -> list[dict[str, Any]] | None:
    """GE's ``partial_unexpected_counts``: the examples counted, most common first, then by
    value; None where GE leaves it out (values that do not sort)."""
    if ungrouped:  # NaN != NaN: pandas' Counter keeps every missing float apart
        return [{"value": v, "count": 1} for v in values]
    try:
        ordered = sorted(Counter(values).most_common(PARTIAL_COUNT), key=lambda x: (-x[1], x[0]))
    except TypeError:
        return None
    return [{"value": value, "count": count} for value, count in ordered]


# --------------------------------------------------------------------------------------
# the evaluation of one partition

TYPE_CHECKS = ("expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type")


def _computable(column: pa.Array) -> pa.Array:
    """Half floats as floats: Arrow's comparison and min/max kernels have none for them
    (every half float is exactly a float, so counts and examples do not change)."""
    import pyarrow as pa

    return column.cast(pa.float32()) if pa.types.is_float16(column.type) else column


def _missing(column: pa.Array) -> tuple[int, pa.Array | None]:
    """Missing values as pandas has them (null, or NaN in a float column): their count, and
    a mask when NaN is among them (nulls alone are in the validity bitmap)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_floating(column.type):
        return column.null_count, None
    nans = int(pc.sum(pc.is_nan(column)).as_py() or 0)
    if not nans:
        return column.null_count, None
    return column.null_count + nans, pc.is_null(column, nan_is_null=True)


def _decode_dictionaries(batch: pa.RecordBatch) -> pa.RecordBatch:
    import pyarrow as pa

    if not any(pa.types.is_dictionary(f.type) for f in batch.schema):
        return batch
    arrays = [
        c.cast(f.type.value_type) if pa.types.is_dictionary(f.type) else c
        for f, c in zip(batch.schema, batch.columns, strict=True)
    ]
    fields = [
        pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f
        for f in batch.schema
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def value_type_of(t: pa.DataType) -> pa.DataType:
    """A dictionary type's value type (the frame GE sees holds values, not codes)."""
    import pyarrow as pa

    return t.value_type if pa.types.is_dictionary(t) else t


class SuiteEvaluation:
    """The suite's expectations evaluated over a partition's record batches.

    ``columns``: name -> Arrow type of the partition's contract columns (extra columns dropped,
    dictionaries decoded), known before the first batch so that a partition with no rows is
    still judged on its schema. Feed every batch to :meth:`add_batch`, then read
    :meth:`result`. Batches must carry exactly these columns.
    """

    def __init__(self, specs: Sequence[ExpectationSpec], columns: Mapping[str, pa.DataType]):
        self.specs = tuple(specs)
        self.columns = {name: value_type_of(t) for name, t in columns.items()}
        self.rows = 0
        self._maps: dict[int, _MapCounts] = {}
        for i, spec in enumerate(self.specs):
            if "column" in spec.kwargs:
                self._maps[i] = self._start(spec)

    # -- per expectation

    def _column_type(self, name: str) -> pa.DataType | None:
        if name == EMBEDDING_LEN_COLUMN:
            import pyarrow as pa

            return pa.int64()
        return self.columns.get(name)

    def _start(self, spec: ExpectationSpec) -> _MapCounts:
        import pyarrow as pa

        name = spec.kwargs["column"]
        counts = _MapCounts(with_missing=spec.type != "expect_column_values_to_not_be_null")
        t = self._column_type(name)
        if t is None:
            counts.error = _no_column(name)
        elif spec.type == "expect_column_values_to_not_be_null":
            counts.ungrouped = pa.types.is_floating(t)
        return counts

    def add_batch(self, batch: pa.RecordBatch) -> None:
        batch = _decode_dictionaries(batch)
        missing: dict[str, tuple[int, pa.Array | None]] = {}  # per column, once per batch
        for i, spec in enumerate(self.specs):
            counts = self._maps.get(i)
            if counts is None or counts.error is not None or self._judged_on_dtype(spec):
                continue
            name = spec.kwargs["column"]
            if name == EMBEDDING_LEN_COLUMN:
                column = self._embedding_lengths(batch)
            else:
                column = _computable(batch.column(name))
            if name not in missing:
                missing[name] = _missing(column)
            self._evaluate(spec, counts, column, *missing[name])
        self.rows += batch.num_rows

    def _judged_on_dtype(self, spec: ExpectationSpec) -> bool:
        """A type check of a typed column: decided by its dtype, no values to look at."""
        return spec.type in TYPE_CHECKS and not type_check_is_per_value(
            self._column_type(spec.kwargs["column"])
        )

    def _embedding_lengths(self, batch: pa.RecordBatch) -> pa.Array:
        """The derived length column: list lengths (null for a null row), -1 for every row of
        a column that is no list, nulls when the embedding column is missing."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if schema.EMBEDDING_COLUMN not in batch.schema.names:
            return pa.nulls(batch.num_rows, pa.int64())
        embedding = batch.column(schema.EMBEDDING_COLUMN)
        if is_list_type(embedding.type):
            return pc.list_value_length(embedding).cast(pa.int64())
        return pa.repeat(pa.scalar(-1, pa.int64()), batch.num_rows)

    def _evaluate(
        self,
        spec: ExpectationSpec,
        counts: _MapCounts,
        column: pa.Array,
        missing: int,
        missing_mask: pa.Array | None,
    ) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        rows = len(column)
        offset = counts.element_count
        if spec.type == "expect_column_values_to_not_be_null":
            counts.add(rows=rows, missing=0, unexpected=missing)
            if missing and counts.wants_examples:
                mask = missing_mask if missing_mask is not None else pc.is_null(column)
                found = pc.indices_nonzero(mask).slice(0, counts.wants_examples)
                counts.add_examples(offset, found, [None] * len(found))
            return
        try:
            unexpected = self._unexpected_mask(spec, column, missing)
        except (_NotComparable, pa.ArrowException) as err:
            # values this check cannot compare (GE raises too): the expectation fails with
            # the error, and stays failed for the rest of the partition
            counts.error = str(err) or type(err).__name__
            return
        if unexpected is None:
            counts.add(rows=rows, missing=missing, unexpected=0)
            return
        if missing_mask is not None:  # NaN is missing, never unexpected
            unexpected = pc.and_(unexpected, pc.invert(missing_mask))
        unexpected = pc.fill_null(unexpected, False)
        count = int(pc.sum(unexpected).as_py() or 0)
        counts.add(rows=rows, missing=missing, unexpected=count)
        if count and counts.wants_examples:
            found = pc.indices_nonzero(unexpected).slice(0, counts.wants_examples)
            counts.add_examples(offset, found, column.take(found).to_pylist())

    def _unexpected_mask(
        self, spec: ExpectationSpec, column: pa.Array, missing: int
    ) -> pa.Array | None:
        """The batch's unexpected rows (nulls: missing, not unexpected), or None for none.
        Cheap aggregates decide first; a mask is built only when something is out of place."""
        import pyarrow as pa
        import pyarrow.compute as pc

        kind, kwargs = spec.type, spec.kwargs
        if missing == len(column):
            return None  # nothing to check: every value is missing
        if kind in TYPE_CHECKS:  # an object column: every value has the same Python type
            if type_accepted(column.type, spec):
                return None
            return pc.is_valid(column)
        if kind == "expect_column_values_to_be_between":
            if not _is_numeric(column.type):
                raise _NotComparable(_NOT_SAME_TYPE)
            lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
            extremes = pc.min_max(column)
            low, high = extremes["min"].as_py(), extremes["max"].as_py()
            if (lo is None or low >= lo) and (hi is None or high <= hi):
                return None
            below = pc.less(column, pa.scalar(lo)) if lo is not None else None
            above = pc.greater(column, pa.scalar(hi)) if hi is not None else None
            if below is None or above is None:
                return below if above is None else above
            return pc.or_(below, above)
        if kind == "expect_column_values_to_be_in_set":
            allowed = pa.array(list(kwargs["value_set"]))
            if not _is_stringlike(column.type) or not pa.types.is_string(allowed.type):
                return pc.is_valid(column)  # e.g. numbers against a set of strings: none match
            allowed = allowed.cast(column.type)
            return self._distinct_values_failing(column, lambda v: pc.is_in(v, value_set=allowed))
        if kind == "expect_column_values_to_match_regex":
            text = column if _is_stringlike(column.type) else pc.cast(column, pa.string())
            regex = kwargs["regex"]
            return self._distinct_values_failing(
                text, lambda v: pc.match_substring_regex(v, pattern=regex)
            )
        raise ValueError(f"the Arrow validator cannot evaluate {kind!r} (column {kwargs})")

    @staticmethod
    def _distinct_values_failing(column: pa.Array, passes) -> pa.Array | None:
        """Rows whose value fails ``passes``, which runs on the batch's distinct values only."""
        import pyarrow.compute as pc

        distinct = pc.unique(column.drop_null() if column.null_count else column)
        failing = pc.filter(distinct, pc.invert(passes(distinct)))
        if len(failing) == 0:
            return None
        return pc.is_in(column, value_set=failing)

    # -- the document

    def result(self) -> dict[str, Any]:
        """The GE-shaped result of the partition (as :func:`.expectations.stable_result`)."""
        results = []
        for i, spec in enumerate(self.specs):
            success, result, error = self._outcome(i, spec)
            results.append(
                {
                    "success": success,
                    "expectation_config": {
                        "type": spec.type,
                        "kwargs": dict(spec.kwargs),
                        "meta": {},
                        "severity": "critical",
                    },
                    "result": result,
                    "meta": {},
                    "exception_info": {"raised_exception": error is not None}
                    | {"exception_message": error},
                }
            )
        passed = sum(r["success"] for r in results)
        return {
            "success": passed == len(results),
            "suite_name": SUITE_NAME,
            "statistics": {
                "evaluated_expectations": len(results),
                "successful_expectations": passed,
                "unsuccessful_expectations": len(results) - passed,
                "success_percent": passed / len(results) * 100 if results else None,
            },
            "results": results,
            "meta": {"validator": VALIDATOR_VERSION},
        }

    def _outcome(self, i: int, spec: ExpectationSpec) -> tuple[bool, dict[str, Any], str | None]:
        kind, kwargs = spec.type, spec.kwargs
        if kind == "expect_table_columns_to_match_set":
            return self._column_set(kwargs)
        if kind == "expect_table_row_count_to_be_between":
            lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
            ok = (lo is None or self.rows >= lo) and (hi is None or self.rows <= hi)
            return ok, {"observed_value": self.rows}, None
        counts = self._maps[i]
        if counts.error is not None:
            return False, {}, counts.error
        name = kwargs["column"]
        t = self._column_type(name)
        if kind in TYPE_CHECKS and not type_check_is_per_value(t):  # judged on the dtype
            return type_accepted(t, spec), {"observed_value": pandas_dtype_name(t)}, None
        return counts.unexpected_count == 0, counts.result(), None

    def _column_set(self, kwargs: Mapping[str, Any]) -> tuple[bool, dict[str, Any], None]:
        expected = list(kwargs["column_set"])
        observed = [*self.columns, EMBEDDING_LEN_COLUMN]  # the frame always has the length
        mismatched = {}
        missing = sorted(set(expected) - set(observed))
        unexpected = sorted(set(observed) - set(expected))
        if missing:
            mismatched["missing"] = missing
        if unexpected and kwargs.get("exact_match", True):
            mismatched["unexpected"] = unexpected
        result: dict[str, Any] = {"observed_value": sorted(observed)}
        if mismatched:
            result["details"] = {"mismatched": mismatched}
        return not mismatched, result, None
