"""The drift engine on any table (issue 10, items 1 and 3): column contracts, local Parquet
files and Arrow tables, the ``driftloop drift compare`` command, breaks and recent windows."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftloop.config.drift_policy import load_policy
from driftloop.config.settings import DEFAULT_POLICY_PATH
from driftloop.contracts.columns import (
    ColumnContract,
    ContractError,
    inference_contract,
    load_contract,
)
from driftloop.drift.bins import EdgeLookup, coarse_index
from driftloop.drift.engine import DriftEngine, chunked_batches, format_table
from driftloop.drift.samples import seeded_rng
from driftloop.drift.sketch import Binning, NumericSketch, category_counts, sketch_partition

SPEC = "name: shop\nnumeric: [age, spend]\ncategorical: [plan]\nprediction: [spend]\n"


def _day(rng, rows=3000, age_shift=0.0, plan_p=(0.5, 0.3, 0.2)):
    return pa.table(
        {
            "age": rng.normal(40 + 10 * age_shift, 10, rows),
            "spend": rng.gamma(2.0, 30.0, rows),
            "plan": rng.choice(["basic", "plus", "pro"], rows, p=list(plan_p)),
            "unused": np.arange(rows),
        }
    )


@pytest.fixture
def contract(tmp_path):
    path = tmp_path / "columns.yaml"
    path.write_text(SPEC)
    return load_contract(path)


def test_contract_errors_name_the_file_and_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("numeric: [a]\ncategorical: [a]\n")
    with pytest.raises(ContractError, match=r"bad\.yaml.*'a' is both numeric and categorical"):
        load_contract(bad)
    bad.write_text("numerics: [a]\n")
    with pytest.raises(ContractError, match=r"bad\.yaml: unknown keys \['numerics'\]"):
        load_contract(bad)
    bad.write_text("numeric: [a]\nembedding: {column: e, dim: two}\n")
    with pytest.raises(ContractError, match=r"embedding\.dim"):
        load_contract(bad)
    bad.write_text("numeric: [a]\nprediction: [score]\n")
    with pytest.raises(ContractError, match="prediction columns \\['score'\\]"):
        load_contract(bad)
    with pytest.raises(ContractError, match="not found"):
        load_contract(tmp_path / "missing.yaml")


def test_the_projects_schema_is_one_contract_and_its_binning_ids_do_not_change():
    contract = inference_contract()
    assert contract.embedding.column == "embedding"
    assert "top_class" in contract.categorical
    assert contract.kind_of("embedding_pc1") == "numeric"
    binning = Binning(
        fine_edges={"a": [1.0]}, coarse_edges={"a": [1.0]}, pca_mean=[], pca_components=[]
    )
    assert "contract" not in binning.to_dict()  # bundles written before contracts keep their ids
    other = ColumnContract(name="x", numeric=("a",))
    assert Binning.from_dict({**binning.to_dict(), "contract": other.to_dict()}).columns == other


def test_coarse_counts_from_fine_bins_equal_a_second_search():
    rng = np.random.default_rng(0)
    values = rng.normal(size=5000)
    binning = Binning.fit(
        pa.table({"a": values}), contract=ColumnContract(name="t", numeric=("a",))
    )
    fine, coarse = binning.fine_edges["a"], binning.coarse_edges["a"]
    mapping = coarse_index(fine, coarse)
    assert mapping is not None
    new = rng.normal(0.3, 1.2, size=7000)
    fast = NumericSketch.empty(fine, coarse)
    fast.add(new, fine, coarse, mapping)
    slow = NumericSketch.empty(fine, coarse)
    slow.add(new, fine, coarse)
    np.testing.assert_array_equal(fast.coarse_counts, slow.coarse_counts)


def test_category_counts_with_arrow_compute():
    column = pa.chunked_array([pa.array(["a", None, "b"]), pa.array(["a", "a"])])
    assert category_counts(column) == {"a": 3, "<null>": 1, "b": 1}
    assert category_counts(pa.array(["x", "y", "x"]).dictionary_encode()) == {"x": 2, "y": 1}
    assert category_counts(pa.array([3, 3, 4])) == {"3": 2, "4": 1}


def test_chunks_of_a_single_source_are_contiguous_and_complete():
    table = pa.table({"i": np.arange(1000)})
    chunks: dict[int, list[int]] = {}
    for index, batch in chunked_batches(iter(table.to_batches(max_chunksize=64)), 1000, 7):
        chunks.setdefault(index, []).extend(batch.column(0).to_pylist())
    assert sorted(chunks) == list(range(7))
    assert [x for i in range(7) for x in chunks[i]] == list(range(1000))
    assert max(len(c) for c in chunks.values()) - min(len(c) for c in chunks.values()) <= 1


def test_any_table_stable_is_quiet_and_a_shift_alerts(contract, tmp_path):
    rng = np.random.default_rng(11)
    paths = []
    for i in range(10):
        path = tmp_path / f"ref-{i:02d}.parquet"
        pq.write_table(_day(rng), path)
        paths.append(path)
    engine = DriftEngine(contract=contract)
    reference = engine.reference(paths)
    assert len(reference.days.days) == 10
    assert reference.profile.rows == 30_000
    stable = [engine.sketch_day(_day(rng), reference=reference, day=f"d{i}") for i in range(5)]
    quiet = engine.check(reference, stable)
    assert quiet.severity == "none"
    assert {f.feature for f in quiet.features} == {"age", "spend", "plan"}
    # a 0.3 sd shift of one column on the last day: that day's window breaches now
    shifted = [
        *stable[1:],
        engine.sketch_day(_day(rng, age_shift=0.3), reference=reference, day="d9"),
    ]
    first = engine.check(reference, shifted)
    age = next(f for f in first.features if f.feature == "age")
    assert age.level_now == "warn"
    assert age.window == "last_1d"
    assert age.windows["last_1d"]["q_value"] < 0.05
    assert first.severity == "none"  # k=2 of n=3: one check is not yet an alert
    assert engine.check(reference, shifted, [first.feature_levels]).severity == "warn"
    assert "age" in format_table(first)
    assert "last_1d" in format_table(first)


def test_a_large_break_is_critical_on_its_first_day(contract):
    rng = np.random.default_rng(12)
    engine = DriftEngine(contract=contract)
    reference = engine.reference([_day(rng) for _ in range(10)])
    days = [engine.sketch_day(_day(rng), reference=reference, day=f"d{i}") for i in range(9)]
    broken = engine.sketch_day(_day(rng, plan_p=(0.1, 0.2, 0.7)), reference=reference, day="d9")
    decision = engine.check(reference, [*days, broken])  # no history at all
    plan = next(f for f in decision.features if f.feature == "plan")
    assert plan.broke
    assert plan.alert_level == "critical"
    assert decision.severity == "critical"
    no_break = load_policy(DEFAULT_POLICY_PATH, {"hysteresis": {"break_skips_wait": False}})
    waiting = DriftEngine(contract=contract, policy=no_break)
    assert waiting.check(reference, [*days, broken]).severity == "none"


def test_a_single_reference_table_is_cut_into_chunks_for_the_calibration(contract):
    rng = np.random.default_rng(13)
    engine = DriftEngine(contract=contract)
    reference = engine.reference([pa.concat_tables([_day(rng) for _ in range(4)])])
    assert len(reference.days.days) == 10
    assert reference.profile.rows == 12_000


def test_a_missing_column_is_named(contract):
    engine = DriftEngine(contract=contract)
    with pytest.raises(ValueError, match=r"no column\(s\) \['plan'\]"):
        engine.reference([pa.table({"age": [1.0, 2.0], "spend": [1.0, 2.0]})])


def test_the_compare_command_prints_a_table_and_json(contract, tmp_path):
    rng = np.random.default_rng(14)
    (tmp_path / "ref").mkdir()
    for i in range(6):
        part = tmp_path / "ref" / f"dt=2026-01-{i + 1:02d}"
        part.mkdir()
        pq.write_table(_day(rng), part / "part-0.parquet")
    current = tmp_path / "today.parquet"
    pq.write_table(_day(rng, age_shift=1.0), current)
    spec = tmp_path / "columns.yaml"
    spec.write_text(SPEC)
    base = [
        sys.executable,
        "-m",
        "driftloop.cli",
        "drift",
        "compare",
        "--reference",
        str(tmp_path / "ref"),
        "--current",
        str(current),
        "--columns",
        str(spec),
    ]
    text = subprocess.run(base, capture_output=True, text=True, check=True).stdout
    assert text.startswith("severity: ")
    assert "age" in text
    assert "6 unit(s)" in text
    document = json.loads(
        subprocess.run([*base, "--json"], capture_output=True, text=True, check=True).stdout
    )
    assert document["feature_levels"]["age"] == "critical"
    assert document["reference"]["units"] == [f"2026-01-{i + 1:02d}" for i in range(6)]
    bad = subprocess.run([*base[:-1], str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "nope.yaml" in bad.stderr


@pytest.mark.parametrize("kind", ["normal", "lognormal", "rounded"])
def test_the_edge_lookup_bins_exactly_like_a_binary_search(kind):
    rng = np.random.default_rng(21)
    values = {
        "normal": rng.normal(size=50_000),
        "lognormal": rng.lognormal(0, 2, size=50_000),
        "rounded": np.round(rng.normal(size=50_000), 1),
    }[kind]
    edges = np.unique(np.quantile(values, np.linspace(0, 1, 201)[1:-1]))
    lookup = EdgeLookup.build(list(edges))
    assert lookup is not None
    probes = np.concatenate([values, edges, edges - 1e-12, edges + 1e-12, [-1e12, 1e12]])
    np.testing.assert_array_equal(
        lookup.index(probes), np.searchsorted(edges, probes, side="right")
    )


def test_the_filtered_bottom_k_sample_is_the_same_sample():
    table = pa.table({"a": np.arange(200_000.0)})
    batches = table.to_batches(max_chunksize=8_000)
    _, sample = sketch_partition(
        iter(batches), binning=None, day="d", seed_key="k", sample_size=300
    )
    rng = seeded_rng("k")
    keys = np.concatenate([rng.random(b.num_rows) for b in batches])
    expected = np.argsort(keys)[:300]
    np.testing.assert_array_equal(sample.column("a").to_numpy(), expected.astype(float))
