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

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from driftloop.contracts import schema
from driftloop.drift.arrow_counts import _MapCounts
from driftloop.drift.arrow_types import (
    _is_numeric,
    _is_stringlike,
    is_list_type,
    pandas_dtype_name,
    type_accepted,
    type_check_is_per_value,
)
from driftloop.drift.expectations import (
    EMBEDDING_LEN_COLUMN,
    SUITE_NAME,
    ExpectationSpec,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

#: bump when the evaluation (or the reasons it leads to) changes: cached verdicts made by an
#: earlier version are then not reused (it is part of the suite identity)
VALIDATOR_VERSION = "driftloop.arrow-validation/1"

_NOT_SAME_TYPE = "Column values, min_value, and max_value must either be None or of the same type."


class _NotComparable(ValueError):
    """A check that cannot compare the column's values with its kwargs."""


def _no_column(name: str) -> str:
    return f'Error: The column "{name}" in BatchData does not exist.'


# --------------------------------------------------------------------------------------
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
