"""Unit tests of the dataset snapshot step: golden set, validation, split, content hash,
write-once layout, download verification. In-process moto S3 (one for the module)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from driftloop.contracts import schema, storage
from driftloop.evaluation import golden
from driftloop.retrain.frames import SPLITS, NoFramesError, parse_label, split_of
from driftloop.retrain.snapshot import snapshot_dataset
from driftloop.retrain.snapshot_io import (
    DATA_YAML,
    MANIFEST,
    data_yaml_bytes,
    download_dataset,
    listing_sha256,
    load_manifest,
    safe_run_name,
)
from driftloop_dev import golden as golden_world
from driftloop_dev.synth import world_spec
from driftloop_dev.synth.frames import BALL, PLAYER, labeled_files, parse_yolo_labels

moto = pytest.importorskip("moto")
boto3 = pytest.importorskip("boto3")

DAYS = ["2024-06-01", "2024-06-02", "2024-06-03", "2024-06-04"]
PER_DAY = 8


@pytest.fixture(scope="module")
def aws_s3():
    """One in-process moto S3 for the module (starting moto per test is the slow part)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        mp.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        with moto.mock_aws():
            yield boto3.client("s3", region_name="us-east-1")


GOLDEN_N = 12  # a small golden set v1 for the snapshot tests (the default, 48, is tested once)


@pytest.fixture(scope="module")
def golden_v1():
    """A golden set v1 rendered once for the module: (files, manifest)."""
    return golden_world.golden_files(n=GOLDEN_N)


@pytest.fixture(scope="module")
def window_files() -> dict[str, bytes]:
    """key -> bytes of the labeled frames of DAYS (synth renderer, stable world)."""
    spec = world_spec("stable", days=len(DAYS), end_date=DAYS[-1], labeled_per_day=PER_DAY)
    return {key: data for i in range(len(DAYS)) for key, data, _ in labeled_files(spec, i)}


@pytest.fixture
def bucket(aws_s3) -> str:
    name = f"snap-{uuid.uuid4().hex[:12]}"
    aws_s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3(aws_s3):
    return aws_s3


def put_golden(s3, bucket: str, golden_v1) -> None:
    files, manifest = golden_v1
    for key, data, content_type in files:
        storage.put_bytes(s3, bucket, key, data, content_type)
    storage.put_json_once(s3, bucket, golden.golden_manifest_key(), manifest)


@pytest.fixture
def world(s3, bucket, golden_v1, window_files) -> str:
    """A bucket holding the golden set and the labeled frames of DAYS."""
    put_golden(s3, bucket, golden_v1)
    for key, data in window_files.items():
        storage.put_bytes(s3, bucket, key, data)
    return bucket


@contextmanager
def count_puts(s3):
    """Counts PutObject / CopyObject calls made through ``s3`` inside the block."""
    calls: list[str] = []

    def handler(params, **kwargs):
        calls.append(params.get("Key", "?"))

    for op in ("PutObject", "CopyObject"):
        s3.meta.events.register(f"before-parameter-build.s3.{op}", handler)
    try:
        yield calls
    finally:
        for op in ("PutObject", "CopyObject"):
            s3.meta.events.unregister(f"before-parameter-build.s3.{op}", handler)


def frame_keys(day: str, i: int) -> tuple[str, str]:
    stem = f"{day}-{i:04d}"
    prefix = storage.labeled_prefix(day)
    return f"{prefix}images/{stem}.png", f"{prefix}labels/{stem}.txt"


def stems_by_split(manifest) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {split: set() for split in SPLITS}
    for path in manifest["files"]:
        if path.startswith("images/"):
            _, split, name = path.split("/")
            out[split].add(Path(name).stem)
    return out


# ---------------------------------------------------------------------------------------------
# golden set
# ---------------------------------------------------------------------------------------------


def test_golden_set_is_deterministic_write_once_and_spread(s3, bucket):
    keys = golden_world.publish_golden_set(s3, bucket)
    assert len(keys) == 2 * golden_world.DEFAULT_N
    assert all(k.startswith("labeled/golden/v1/") for k in keys)
    images = [k for k in keys if "/images/" in k and k.endswith(".png")]
    labels = [k for k in keys if "/labels/" in k and k.endswith(".txt")]
    assert len(images) == len(labels) == golden_world.DEFAULT_N

    # the same bytes as an independent in-memory rendering: deterministic
    files, manifest = golden_world.golden_files()
    assert {k: storage.get_bytes(s3, bucket, k) for k in keys} == {k: d for k, d, _ in files}

    # second call: nothing written, same keys
    with count_puts(s3) as puts:
        assert golden_world.publish_golden_set(s3, bucket) == keys
    assert puts == []

    # spread of conditions: normal and darker lighting, both classes
    conditions = Counter(f["condition"] for f in manifest["frames"])
    assert {c.split("/")[0] for c in conditions} == {"normal", "dim", "dark"}
    assert len(set(conditions.values())) == 1  # balanced
    dark = [f["brightness"] for f in manifest["frames"] if f["condition"].startswith("dark")]
    normal = [f["brightness"] for f in manifest["frames"] if f["condition"].startswith("normal")]
    assert sum(dark) / len(dark) < sum(normal) / len(normal) - 20
    classes = Counter(
        cls
        for k in labels
        for cls, *_ in parse_yolo_labels(storage.get_bytes(s3, bucket, k).decode())
    )
    assert classes[BALL] >= 10
    assert classes[PLAYER] >= 10

    # a golden set never changes: other parameters for an existing version are an error
    with pytest.raises(ValueError, match="never changes"):
        golden_world.publish_golden_set(s3, bucket, n=12)


# ---------------------------------------------------------------------------------------------
# snapshot: idempotence and content hash
# ---------------------------------------------------------------------------------------------


def test_same_inputs_same_hash_and_no_writes_the_second_time(s3, world):
    first = snapshot_dataset(s3, world, days=DAYS, source_run="manual__2024-06-05T00:00:00+00:00")
    assert first.created
    assert first.uri == f"s3://{world}/datasets/{first.sha256}/"
    assert first.manifest["sha256"] == first.sha256
    assert listing_sha256(first.manifest["files"]) == first.sha256
    assert first.counts["eval"] == first.manifest["splits"]["eval"] >= GOLDEN_N
    assert first.counts["train"] + first.counts["val"] + first.counts["eval"] == (
        len(DAYS) * PER_DAY + GOLDEN_N
    )
    stored = {o["Key"]: o["ETag"] for o in storage.list_keys(s3, world, "datasets/")}
    expected = {f"datasets/{first.sha256}/{p}" for p in first.manifest["files"]}
    expected |= {f"datasets/{first.sha256}/{MANIFEST}", first.request_key}
    assert set(stored) == expected
    request = storage.get_json(s3, world, first.request_key)
    assert request["source_run"] == "manual__2024-06-05T00:00:00+00:00"
    assert "source_run" not in json.dumps(first.manifest)  # provenance is not content

    # the same request again (an Airflow retry), days in another order: no write at all
    with count_puts(s3) as puts:
        again = snapshot_dataset(
            s3, world, days=DAYS[::-1], source_run="manual__2024-06-05T00:00:00+00:00"
        )
    assert puts == []
    assert not again.created
    assert (again.sha256, again.uri, again.manifest) == (first.sha256, first.uri, first.manifest)
    assert {o["Key"]: o["ETag"] for o in storage.list_keys(s3, world, "datasets/")} == stored

    # another run asking for the same content: only its request record is written
    with count_puts(s3) as puts:
        third = snapshot_dataset(s3, world, days=DAYS, source_run="scheduled__x")
    assert third.sha256 == first.sha256
    assert puts == [third.request_key]
    assert third.request_key.endswith("/requests/scheduled__x.json")


def test_a_changed_label_byte_changes_the_hash(s3, world):
    before = snapshot_dataset(s3, world, days=DAYS)
    _, label_key = frame_keys(DAYS[1], 3)
    data = storage.get_bytes(s3, world, label_key)
    assert data, "frame needs a box"
    last = data.rstrip(b"\n")[-1:]
    changed = data.rstrip(b"\n")[:-1] + (b"1" if last != b"1" else b"2") + b"\n"
    storage.put_bytes(s3, world, label_key, changed)
    after = snapshot_dataset(s3, world, days=DAYS)
    assert after.created
    assert after.sha256 != before.sha256
    assert storage.exists(s3, world, f"datasets/{before.sha256}/{MANIFEST}")  # never overwritten
    diff = {
        p
        for p in before.manifest["files"]
        if before.manifest["files"][p] != after.manifest["files"].get(p)
    }
    assert len(diff) == 1
    assert diff.pop().endswith(f"/{DAYS[1]}-0003.txt")


# ---------------------------------------------------------------------------------------------
# split
# ---------------------------------------------------------------------------------------------


def test_split_is_deterministic_and_eval_is_disjoint(s3, world):
    result = snapshot_dataset(s3, world, days=DAYS, val_share=0.25, eval_share=0.25)
    by_split = stems_by_split(result.manifest)
    assert not (by_split["train"] & by_split["val"])
    assert not (by_split["train"] & by_split["eval"])
    assert not (by_split["val"] & by_split["eval"])
    golden_stems = {golden.golden_stem("v1", i) for i in range(GOLDEN_N)}
    assert golden_stems <= by_split["eval"]  # golden frames: eval only
    window_eval = by_split["eval"] - golden_stems
    assert window_eval
    assert by_split["val"]
    assert by_split["train"]
    for split, stems in by_split.items():
        for stem in stems - golden_stems:
            assert split_of(stem, val_share=0.25, eval_share=0.25) == split
    # labels follow their images
    label_stems = {
        split: {Path(p).stem for p in result.manifest["files"] if p.startswith(f"labels/{split}/")}
        for split in SPLITS
    }
    assert label_stems == by_split

    # a frame keeps its split in a narrower window: no eval frame of one snapshot is trained
    # on in another
    narrow = snapshot_dataset(s3, world, days=DAYS[:2], val_share=0.25, eval_share=0.25)
    for split, stems in stems_by_split(narrow.manifest).items():
        assert stems <= by_split[split]

    # the rule is a pure function of the stem: stable values, roughly the asked shares
    assert split_of("2024-06-01-0000", val_share=0.2, eval_share=0.2) == split_of(
        "2024-06-01-0000", val_share=0.2, eval_share=0.2
    )
    many = Counter(split_of(f"s{i}", val_share=0.2, eval_share=0.2) for i in range(5000))
    assert abs(many["eval"] / 5000 - 0.2) < 0.03
    assert abs(many["val"] / 5000 - 0.2) < 0.03


def test_a_window_copy_of_a_golden_frame_is_not_trained_on(s3, world, golden_v1):
    files, _ = golden_v1
    gold = {k: d for k, d, _ in files}
    stem = golden.golden_stem("v1", 5)
    day = DAYS[0]
    storage.put_bytes(
        s3, world, f"labeled/dt={day}/images/copy.png", gold[f"labeled/golden/v1/images/{stem}.png"]
    )
    storage.put_bytes(
        s3, world, f"labeled/dt={day}/labels/copy.txt", gold[f"labeled/golden/v1/labels/{stem}.txt"]
    )
    result = snapshot_dataset(s3, world, days=DAYS)
    reasons = {r["key"]: r["reason"] for r in result.manifest["rejected"]}
    assert reasons[f"labeled/dt={day}/images/copy.png"].startswith("duplicate: identical to golden")
    assert not any("/copy." in p for p in result.manifest["files"])


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


def test_malformed_frames_are_rejected_with_their_reason_and_the_rest_kept(s3, world):
    day = DAYS[2]
    broken = {
        0: ("label", b"7 0.5 0.5 0.1 0.1\n"),  # class id not in the schema
        1: ("label", b"0 1.2 0.5 0.1 0.1\n"),  # coordinate > 1
        2: ("label", b"1 0.5 0.5 0.1\n"),  # 4 fields
        3: ("label", None),  # missing label
        4: ("image", None),  # missing image
        5: ("image", b"\x89PNG\r\n\x1a\nthis is not a png"),  # garbage PNG
        6: ("label", b""),  # empty label: a valid background frame
    }
    for i, (what, data) in broken.items():
        image_key, label_key = frame_keys(day, i)
        key = image_key if what == "image" else label_key
        if data is None:
            s3.delete_object(Bucket=world, Key=key)
        else:
            storage.put_bytes(s3, world, key, data)

    result = snapshot_dataset(s3, world, days=DAYS)
    reasons = {r["key"]: r["reason"] for r in result.manifest["rejected"]}
    expected = {
        frame_keys(day, 0)[1]: ("malformed label: line 1: class id 7 not in schema classes",),
        frame_keys(day, 1)[1]: ("malformed label: line 1: cx = 1.2 outside [0, 1]",),
        frame_keys(day, 2)[1]: ("malformed label: line 1: expected 5 fields", "got 4"),
        frame_keys(day, 3)[0]: (
            "missing label: no labeled/dt=2024-06-03/labels/2024-06-03-0003.txt",
        ),
        frame_keys(day, 4)[1]: ("missing image: no labeled/dt=2024-06-03/images/2024-06-03-0004.",),
        frame_keys(day, 5)[0]: ("unreadable image: ",),
    }
    assert set(reasons) == set(expected), reasons
    for key, fragments in expected.items():
        for fragment in fragments:
            assert fragment in reasons[key], (key, reasons[key])
    assert result.counts["rejected"] == 6
    kept = set().union(*stems_by_split(result.manifest).values())
    assert len(kept) == len(DAYS) * PER_DAY - 6 + GOLDEN_N
    assert f"{day}-0006" in kept  # background frame kept
    assert sum(result.manifest["background_frames"].values()) >= 1
    assert not any(f"{day}-000{i}" in kept for i in range(6))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (b"0 0.5 0.5 0.1 0.1\n1 0.2 0.3 0.1 0.2\n", None),
        (b"\n  \n", None),
        (b"2 0.5 0.5 0.1 0.1\n", "class id 2 not in schema classes (0 ball, 1 player)"),
        (b"0.5 0.5 0.5 0.1 0.1\n", "class id 0.5"),
        (b"-1 0.5 0.5 0.1 0.1\n", "class id -1"),
        (b"0 0.5 -0.1 0.1 0.1\n", "cy = -0.1 outside [0, 1]"),
        (b"0 0.5 0.5 0 0.1\n", "width and height must be > 0"),
        (b"0 0.98 0.5 0.1 0.1\n", "extends outside the image"),
        (b"0 0.5 0.5 0.1 0.1 0.9\n", "expected 5 fields"),
        (b"0 0.5 nan 0.1 0.1\n", "non-finite"),
        (b"0 0.5 x 0.1 0.1\n", "not a number"),
        (b"\xff\xfe0", "not UTF-8"),
    ],
)
def test_label_rules(text, fragment):
    if fragment is None:
        assert len(parse_label(text)) == len([ln for ln in text.splitlines() if ln.strip()])
    else:
        with pytest.raises(ValueError, match=re.escape(fragment)):
            parse_label(text)


# ---------------------------------------------------------------------------------------------
# download, class counts, data.yaml
# ---------------------------------------------------------------------------------------------


def test_download_class_counts_and_data_yaml(s3, world, tmp_path):
    result = snapshot_dataset(s3, world, days=DAYS)
    root = download_dataset(s3, result.uri, tmp_path / "ds")
    assert root == (tmp_path / "ds").resolve()

    # manifest class counts equal a direct count of the label files
    counted = {split: dict.fromkeys(schema.CLASS_NAMES, 0) for split in SPLITS}
    for split in SPLITS:
        labels = sorted((root / "labels" / split).glob("*.txt"))
        images = sorted((root / "images" / split).glob("*.png"))
        assert [p.stem for p in labels] == [p.stem for p in images]
        assert len(images) == result.manifest["splits"][split]
        for path in labels:
            for cls, *_ in parse_yolo_labels(path.read_text()):
                counted[split][schema.CLASS_NAMES[cls]] += 1
    assert counted == result.manifest["class_counts"]
    assert result.counts["boxes"] == sum(sum(c.values()) for c in counted.values())

    # data.yaml: Ultralytics format, path made absolute, folders exist
    config = yaml.safe_load((root / DATA_YAML).read_text())
    assert config["path"] == str(root)
    assert (config["train"], config["val"], config["test"]) == (
        "images/train",
        "images/val",
        "images/eval",
    )
    assert config["names"] == {0: "ball", 1: "player"}
    for key in ("train", "val", "test"):
        folder = Path(config["path"]) / config[key]
        assert folder.is_dir()
        assert any(folder.glob("*.png"))
    assert yaml.safe_load(data_yaml_bytes())["path"] == "."
    assert json.loads((root / MANIFEST).read_text()) == result.manifest
    assert load_manifest(s3, result.uri) == result.manifest

    # downloading again into the same folder: verified, nothing stale
    assert download_dataset(s3, result.uri, root) == root


def test_download_verifies_every_file(s3, world, tmp_path):
    result = snapshot_dataset(s3, world, days=DAYS)
    victim = sorted(p for p in result.manifest["files"] if p.startswith("labels/train/"))[0]
    key = f"datasets/{result.sha256}/{victim}"
    s3.put_object(Bucket=world, Key=key, Body=storage.get_bytes(s3, world, key) + b"\n")
    with pytest.raises(ValueError, match=f"file {victim} failed verification: sha256"):
        download_dataset(s3, result.uri, tmp_path / "a")
    assert not (tmp_path / "a" / victim).exists()  # a bad file is never written

    s3.delete_object(Bucket=world, Key=key)
    with pytest.raises(ValueError, match=f"file {victim} failed verification: missing"):
        download_dataset(s3, result.uri, tmp_path / "b")

    # a folder with files of something else is refused (they would be trained on)
    other = tmp_path / "c" / "images" / "train"
    other.mkdir(parents=True)
    (other / "stale.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="not part of snapshot"):
        download_dataset(s3, result.uri, tmp_path / "c")

    # no manifest: not a (complete) snapshot
    with pytest.raises(ValueError, match="not a complete snapshot"):
        download_dataset(s3, f"s3://{world}/datasets/{'0' * 64}/", tmp_path / "d")
    with pytest.raises(ValueError, match="not a dataset snapshot URI"):
        download_dataset(s3, f"s3://{world}/labeled/", tmp_path / "e")


def test_a_tampered_golden_set_fails_the_snapshot(s3, world):
    key = f"labeled/golden/v1/labels/{golden.golden_stem('v1', 0)}.txt"
    storage.put_bytes(s3, world, key, b"")
    with pytest.raises(ValueError, match=f"golden set v1 .* not intact: {key}: file differs"):
        snapshot_dataset(s3, world, days=DAYS)


# ---------------------------------------------------------------------------------------------
# errors and environment
# ---------------------------------------------------------------------------------------------


def test_clear_errors(s3, world):
    with pytest.raises(ValueError, match="no days given"):
        snapshot_dataset(s3, world, days=[])
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        snapshot_dataset(s3, world, days=["2024-6-1"])
    with pytest.raises(ValueError, match="val_share"):
        snapshot_dataset(s3, world, days=DAYS, val_share=0.5, eval_share=0.5)
    with pytest.raises(ValueError, match=r"no labeled frames for days 2023-01-01"):
        snapshot_dataset(s3, world, days=["2023-01-01"])

    # a day whose frames are all broken: the error names the day, the count and the reasons
    day = "2023-02-01"
    for i in range(3):
        storage.put_bytes(s3, world, f"labeled/dt={day}/images/{day}-{i:04d}.png", b"nope")
        storage.put_bytes(s3, world, f"labeled/dt={day}/labels/{day}-{i:04d}.txt", b"")
    storage.put_bytes(s3, world, f"labeled/dt={day}/images/{day}-0009.png", b"nope")
    with pytest.raises(NoFramesError, match="no valid labeled frames") as err:
        snapshot_dataset(s3, world, days=[day])
    message = str(err.value)
    assert day in message
    assert "4 object(s) rejected" in message
    assert "unreadable image x3" in message
    assert "missing label x1" in message

    # the golden set is published, never made up at run time: its absence names the key
    empty = f"snap-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=empty)
    with pytest.raises(golden.GoldenSetMissing, match=f"s3://{empty}/labeled/golden/v1/manifest"):
        snapshot_dataset(s3, empty, days=DAYS)
    assert storage.list_keys(s3, empty, "") == []


def test_safe_run_name():
    assert safe_run_name("scheduled__x") == "scheduled__x"
    a = safe_run_name("manual__2024-06-30T12:00:00+00:00")
    b = safe_run_name("manual__2024-06-30T12_00_00_00_00")
    assert a != b
    assert a.startswith("manual__2024-06-30T12_00_00_00_00-")
    assert "/" not in safe_run_name("../../etc/passwd")


def test_no_heavy_imports():
    code = (
        "import sys, driftloop.retrain.snapshot, driftloop.retrain.snapshot_io, driftloop.evaluation.golden\n"
        "heavy = {'torch', 'ultralytics', 'PIL', 'numpy', 'moto'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_golden_set_that_is_not_the_published_one_is_refused(s3, world):
    """With the manifest's SHA-256 pinned (DRIFTLOOP_GOLDEN_MANIFEST_SHA256), a golden set
    rewritten in S3 is not evaluated on."""
    import hashlib

    from driftloop.evaluation.golden import GoldenSetIntegrityError, golden_manifest_bytes

    published = hashlib.sha256(golden_manifest_bytes(s3, world, "v1")).hexdigest()
    assert snapshot_dataset(s3, world, days=DAYS, golden_sha256=published).sha256
    with pytest.raises(GoldenSetIntegrityError, match="recorded " + "0" * 64):
        snapshot_dataset(s3, world, days=DAYS, golden_sha256="0" * 64)
