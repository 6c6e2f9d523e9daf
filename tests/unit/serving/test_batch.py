"""One day of serving (driftloop.serving.batch) against a moto S3 server, with small real ONNX
models (tests/unit/serving/nets.py) in place of the registry: the frame manifest, what is
written (and that it validates), per-frame errors, and that a day is served once."""

from __future__ import annotations

import io
import json
import uuid

import pyarrow.parquet as pq
import pytest

from driftloop.contracts import storage
from driftloop.drift.validation import validate_partition
from driftloop.serving import batch, layout
from driftloop.serving.models import open_model
from driftloop_dev.synth import S3Sink, world_spec
from driftloop_dev.synth.traffic import write_traffic
from tests.unit.conftest import s3_client_for
from tests.unit.serving.docs import CHALLENGER, CHAMPION, aliases, doc
from tests.unit.serving.nets import backbone_net

DAY = "2031-01-05"
FRAMES = 24


class FakeStore:
    """The registry side of :class:`driftloop.serving.models.ModelStore`: aliases, and each
    version loaded (a tiny real ONNX model) by the alias the batch asks for."""

    name = "driftloop-detector"

    def __init__(self, held, tmp_path):
        self.held = dict(held)
        self.tmp_path = tmp_path
        self.asked: dict[str, str] = {}

    def aliases(self):
        return dict(self.held)

    def load(self, alias, version):
        assert self.held[alias] == version
        self.asked[version] = alias
        folder = self.tmp_path / f"v{version}"
        folder.mkdir(exist_ok=True)
        path = backbone_net(folder / "net.onnx", channels=8 + int(version))
        return open_model(path, name="detector", version=version, workdir=folder)


@pytest.fixture
def s3(moto_endpoint):
    return s3_client_for(moto_endpoint)


@pytest.fixture
def bucket(s3):
    name = f"serve-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    spec = world_spec(
        "stable", days=1, end_date=DAY, rows_per_day=10, labeled_per_day=4, files_per_day=1
    )
    write_traffic(S3Sink(s3, name), spec, [DAY], FRAMES)
    return name


def _routing(s3, bucket, routing_doc):
    s3.put_object(Bucket=bucket, Key="rollout/routing.json", Body=routing_doc.to_json())


def _read(s3, bucket, key):
    return pq.read_table(io.BytesIO(storage.get_bytes(s3, bucket, key)))


def test_shadow_day_writes_a_valid_log_and_a_subject_row_per_frame(s3, bucket, tmp_path):
    _routing(s3, bucket, doc("shadow"))
    store = FakeStore(aliases("shadow"), tmp_path)
    summary = batch.serve_day(s3, bucket, DAY, store)
    assert store.asked == {CHAMPION: "champion", CHALLENGER: "challenger"}
    assert (summary["frames"], summary["served"], summary["paired"]) == (FRAMES, FRAMES, FRAMES)
    assert summary["stage"] == "shadow"
    assert summary["models"][CHALLENGER]["served"] == 0
    assert summary["keys"]["inference"] == f"inference/dt={DAY}/part-serve-00000007.parquet"
    assert summary["keys"]["serving"].startswith(
        f"serving/dt={DAY}/part-rollout-4-20310105T000000Z-00000007-"
    )

    partition = storage.list_partition(s3, bucket, DAY)
    assert partition.has_success
    verdict = validate_partition(s3, bucket, partition)
    assert verdict.valid, verdict.reasons
    log = _read(s3, bucket, summary["keys"]["inference"])
    assert log.num_rows == FRAMES
    assert set(log.column("model_version").to_pylist()) == {CHAMPION}
    manifest = storage.get_bytes(s3, bucket, layout.manifest_key(DAY)).decode().splitlines()
    assert log.column("image_id").to_pylist() == [json.loads(line)["image_id"] for line in manifest]

    records = _read(s3, bucket, summary["keys"]["serving"]).to_pylist()
    subject = [r for r in records if r["role"] == "subject"]
    assert {r["image_id"] for r in subject} == set(log.column("image_id").to_pylist())
    assert all(r["model_version"] == CHALLENGER and not r["served"] for r in subject)
    assert all(r["served"] for r in records if r["role"] == "baseline")
    assert {(r["stage"], r["sequence"]) for r in records} == {("shadow", 7)}


def test_a_day_is_served_once(s3, bucket, tmp_path):
    store = FakeStore(aliases("serving"), tmp_path)
    first = batch.serve_day(s3, bucket, DAY, store)  # no routing document: stage serving
    assert first["stage"] == "serving"
    assert first["sequence"] == 0
    assert first["keys"]["serving"].startswith(f"serving/dt={DAY}/part-none-00000000-")
    with pytest.raises(batch.DayAlreadyServed, match="already served"):
        batch.serve_day(s3, bucket, DAY, store)


def test_leftovers_of_an_unfinished_run_are_refused(s3, bucket, tmp_path):
    s3.put_object(Bucket=bucket, Key=f"inference/dt={DAY}/part-serve-00000000.parquet", Body=b"x")
    with pytest.raises(batch.DayAlreadyServed, match="did not finish"):
        batch.serve_day(s3, bucket, DAY, FakeStore(aliases("serving"), tmp_path))


def test_a_missing_or_broken_frame_is_an_error_of_that_frame(s3, bucket, tmp_path):
    lines = storage.get_bytes(s3, bucket, layout.manifest_key(DAY)).decode().splitlines()
    gone, broken = json.loads(lines[0]), json.loads(lines[1])
    s3.delete_object(Bucket=bucket, Key=gone["key"])
    s3.put_object(Bucket=bucket, Key=broken["key"], Body=b"not a png")
    summary = batch.serve_day(s3, bucket, DAY, FakeStore(aliases("serving"), tmp_path))
    assert (summary["frames"], summary["served"], summary["errors"]) == (FRAMES, FRAMES - 2, 2)
    records = _read(s3, bucket, summary["keys"]["serving"]).to_pylist()
    errors = {r["image_id"]: r["error"] for r in records if r["error"]}
    assert errors[gone["image_id"]].startswith("FileNotFoundError")
    assert gone["image_id"] in errors
    assert broken["image_id"] in errors
    log = _read(s3, bucket, summary["keys"]["inference"])
    assert gone["image_id"] not in log.column("image_id").to_pylist()


def test_a_document_the_aliases_disagree_with_serves_the_champion_alone(s3, bucket, tmp_path):
    _routing(s3, bucket, doc("canary"))
    held = {"champion": CHAMPION}  # the challenger was rejected; the document not yet updated
    summary = batch.serve_day(s3, bucket, DAY, FakeStore(held, tmp_path))
    assert summary["stage"] == "serving"
    assert summary["paired"] == 0
    assert "serves alone" in summary["note"]
    assert summary["keys"]["serving"].startswith(f"serving/dt={DAY}/part-none-00000007-")


def test_no_frame_served_writes_nothing(s3, bucket, tmp_path):
    lines = storage.get_bytes(s3, bucket, layout.manifest_key(DAY)).decode().splitlines()
    for line in lines:
        s3.put_object(Bucket=bucket, Key=json.loads(line)["key"], Body=b"broken")
    with pytest.raises(RuntimeError, match="no frame of 2031-01-05 could be served"):
        batch.serve_day(s3, bucket, DAY, FakeStore(aliases("serving"), tmp_path))
    assert storage.list_keys(s3, bucket, f"inference/dt={DAY}/") == []
    assert storage.list_keys(s3, bucket, f"serving/dt={DAY}/") == []


def test_a_missing_manifest_is_named(s3, bucket, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"frames/dt=2031-01-06/_frames.jsonl"):
        batch.serve_day(s3, bucket, "2031-01-06", FakeStore(aliases("serving"), tmp_path))


GOOD = {"image_id": "a", "key": "frames/dt=2031-01-05/a.png", "ts": "2031-01-05T10:00:00Z",
        "camera_id": "cam-01"}  # fmt: skip


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ("{not json", "m.jsonl line 2: not a JSON object"),
        ("[1, 2]", "m.jsonl line 2: not a JSON object"),
        ("", "m.jsonl line 2: not a JSON object"),
        (json.dumps({**GOOD, "image_id": "b", "camera_id": None}), "line 2: 'camera_id' must be"),
        (json.dumps({"image_id": "b", "key": "k"}), r"line 2: missing \['ts', 'camera_id'\]"),
        (
            json.dumps({**GOOD, "image_id": "b", "ts": "2031-01-06T00:00:00Z"}),
            "is not on 2031-01-05",
        ),
        (json.dumps({**GOOD, "image_id": "b", "ts": "2031-01-05T10:00:00"}), "no time zone"),
        (json.dumps({**GOOD, "image_id": "b", "ts": "noon"}), "not an ISO 8601 timestamp"),
        (json.dumps(GOOD), "line 2: image_id 'a' already on line 1"),
    ],
)
def test_a_bad_manifest_line_fails_naming_the_line(second, message):
    text = json.dumps(GOOD) + "\n" + second + "\n" + json.dumps({**GOOD, "image_id": "c"})
    with pytest.raises(ValueError, match=message):
        batch.parse_manifest(text, DAY, "m.jsonl")


def test_manifest_timestamps_are_utc():
    text = json.dumps({**GOOD, "ts": "2031-01-05T12:00:00+02:00"})
    (frame,) = batch.parse_manifest(text, DAY, "m.jsonl")
    assert frame.ts.isoformat() == "2031-01-05T10:00:00+00:00"
    with pytest.raises(ValueError, match="lists no frames"):
        batch.parse_manifest("", DAY, "m.jsonl")


def test_a_routing_document_of_another_model_is_refused(s3, bucket, tmp_path):
    _routing(s3, bucket, doc("shadow", model="another-detector"))
    with pytest.raises(
        ValueError, match="routes model 'another-detector', not 'driftloop-detector'"
    ):
        batch.serve_day(s3, bucket, DAY, FakeStore(aliases("shadow"), tmp_path))
    assert storage.list_keys(s3, bucket, f"inference/dt={DAY}/") == []
