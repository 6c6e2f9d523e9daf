"""A labeling batch written from a served day (driftloop.labeling.queue) and its labels
imported back (driftloop.labeling.imports), on a moto S3 server."""

from __future__ import annotations

import copy
import json
import uuid

import pytest

from driftloop.config.labeling_policy import Labeling
from driftloop.config.settings import Settings
from driftloop.contracts import storage
from driftloop.contracts.labeled import read_frames_index
from driftloop.drift.reference import load_sample
from driftloop.drift.sketch import embedding_matrix
from driftloop.labeling import imports, sources
from driftloop.labeling.queue import queue_day
from driftloop_dev.synth import S3Sink, world_spec
from driftloop_dev.synth.traffic import write_traffic
from tests.unit.conftest import s3_client_for
from tests.unit.labeling.served import CHALLENGER, CHAMPION, build_reference, serve_by_hand

REFERENCE_DAY, DAY = "2031-03-01", "2031-03-02"
FRAMES = 40
POLICY = Labeling(budget_per_day=10)


@pytest.fixture(scope="module")
def world(moto_endpoint, tmp_path_factory):
    s3 = s3_client_for(moto_endpoint)
    bucket = f"labeling-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    database = tmp_path_factory.mktemp("labeling") / "history.db"
    settings = Settings(bucket=bucket, database_url=f"sqlite:///{database}")
    spec = world_spec(
        "abrupt", days=2, drift_day=1, end_date=DAY, rows_per_day=600, labeled_per_day=2,
        files_per_day=1,
    )  # fmt: skip
    reference_uri = build_reference(s3, bucket, spec, settings.database_url)
    reference = embedding_matrix(load_sample(s3, reference_uri + "sample.parquet"))
    write_traffic(S3Sink(s3, bucket), spec, [DAY], FRAMES)
    cameras = serve_by_hand(s3, bucket, DAY, reference)
    # one frame is labeled already (the synthetic world's feedback): never queued again
    storage.put_bytes(s3, bucket, f"labeled/dt={DAY}/images/{DAY}-0020.png", b"png")
    summary = queue_day(settings, DAY, "run-1", s3=s3, policy=POLICY)
    return {"s3": s3, "bucket": bucket, "settings": settings, "summary": summary,
            "cameras": cameras, "reference_uri": reference_uri}  # fmt: skip


def _get(world, key: str) -> bytes:
    return storage.get_bytes(world["s3"], world["bucket"], key)


def _manifest(world) -> dict:
    return json.loads(_get(world, f"labeling/{DAY}/manifest.json"))


def test_the_batch_holds_the_frames_worth_a_label(world):
    summary, cameras = world["summary"], world["cameras"]
    assert summary["queued"] == POLICY.budget_per_day
    assert summary["frames_served"] == FRAMES
    assert summary["excluded"] == 1
    assert summary["reference"] == "sliding"
    assert summary["new_cameras"] == ["cam-05"]
    manifest = _manifest(world)
    assert manifest["reference"]["uri"] == world["reference_uri"]
    assert "cam-05" not in manifest["reference"]["cameras"]
    picked = {f["frame_id"]: f for f in manifest["frames"]}
    assert f"{DAY}-0020" not in picked
    by = summary["picked_by"]
    assert (by["quota:new_camera"], by["quota:disagreement"]) == (2, 2)
    for frame in manifest["frames"]:
        if frame["picked_by"] == "quota:new_camera":
            assert cameras[frame["frame_id"]] == "cam-05"
            assert frame["signals"]["novelty"] == 1.0
            assert "camera cam-05 is not in the reference" in frame["reasons"]
        if frame["picked_by"] == "quota:disagreement":
            assert frame["signals"]["disagreement"] == 1.0  # the challenger found other boxes
            assert frame["predictions"] == [CHAMPION, CHALLENGER]
        assert frame["image"] == f"s3://{world['bucket']}/frames/dt={DAY}/{frame['frame_id']}.png"
    # least confident: the frames' confidence rises with their number
    unsure = [f for f in manifest["frames"] if f["picked_by"] == "quota:uncertainty"]
    assert all(f["signals"]["uncertainty"] > 0.8 for f in unsure)


def test_the_tasks_and_yolo_files_are_pre_annotated(world):
    tasks = json.loads(_get(world, f"labeling/{DAY}/tasks.json"))
    manifest = _manifest(world)
    assert [t["data"]["frame_id"] for t in tasks] == [f["frame_id"] for f in manifest["frames"]]
    first = tasks[0]
    assert first["data"]["batch"] == f"labeling/{DAY}/"
    served = first["predictions"][0]
    assert served["model_version"] == CHAMPION
    result = served["result"][0]
    assert result["type"] == "rectanglelabels"
    assert (result["original_width"], result["original_height"]) == (
        manifest["frames"][0]["width"],
        manifest["frames"][0]["height"],
    )
    label = _get(world, f"labeling/{DAY}/yolo/labels/{first['data']['frame_id']}.txt").decode()
    assert label.startswith("0 ")
    assert len(label.splitlines()) == 1
    assert _get(world, f"labeling/{DAY}/yolo/classes.txt").decode() == "ball\nplayer\n"
    images = _get(world, f"labeling/{DAY}/images.txt").decode().splitlines()
    assert images == [f["image"] for f in manifest["frames"]]
    assert "RectangleLabels" in _get(world, f"labeling/{DAY}/label_config.xml").decode()


def test_a_queued_day_is_done_and_its_frames_are_never_queued_again(world):
    again = queue_day(world["settings"], DAY, "run-2", s3=world["s3"], policy=POLICY)
    assert again == {**world["summary"], "already_queued": True}
    picked = {f["frame_id"] for f in _manifest(world)["frames"]}
    taken = sources.already_taken(world["s3"], world["bucket"], "2031-03-03")
    assert picked | {f"{DAY}-0020"} <= taken
    assert not picked & sources.queued_frames(world["s3"], world["bucket"], other_than=DAY)


def _export(world, annotate: int | None = None) -> list[dict]:
    """A Label Studio export of the batch: every task annotated with the served model's
    boxes (the annotator accepted them), the last ``annotate``-th left open."""
    tasks = json.loads(_get(world, f"labeling/{DAY}/tasks.json"))
    out = []
    for n, task in enumerate(tasks, 1):
        result = copy.deepcopy(task["predictions"][0]["result"])
        annotations = [{"id": 100 + n, "result": result, "was_cancelled": False}]
        out.append(
            {"id": n, "data": task["data"], "annotations": [] if n == annotate else annotations}
        )
    return out


@pytest.fixture(scope="module")
def imported(world):
    export = json.dumps(_export(world, annotate=3)).encode()
    return export, imports.import_export(world["s3"], world["bucket"], export, DAY)


def test_an_export_lands_a_labeled_day_with_the_queues_provenance(world, imported):
    _, summary = imported
    n = POLICY.budget_per_day - 1
    assert (summary["frames"], summary["skipped_tasks"], summary["day"]) == (n, [3], DAY)
    index = read_frames_index(world["s3"], world["bucket"], DAY)
    assert len(index) == n
    for stem, info in index.items():
        assert (info.source, info.batch, info.frame_id) == ("queue", f"labeling/{DAY}/", stem)
        assert info.camera_id == world["cameras"][stem]
        # accepted pre-annotations come back as the same YOLO label
        label = _get(world, f"labeled/dt={DAY}/labels/{stem}.txt")
        assert label == _get(world, f"labeling/{DAY}/yolo/labels/{stem}.txt")
        image = _get(world, f"labeled/dt={DAY}/images/{stem}.png")
        assert image == _get(world, f"frames/dt={DAY}/{stem}.png")
    done = json.loads(_get(world, f"labeled/dt={DAY}/_SUCCESS"))
    assert done["content_sha256"] == summary["content_sha256"]


def test_the_same_labels_again_are_idempotent_and_others_refused(world, imported):
    export, summary = imported
    again = imports.import_export(world["s3"], world["bucket"], export, DAY)
    assert again["already_imported"]
    assert again["content_sha256"] == summary["content_sha256"]
    changed = _export(world, annotate=3)
    changed[0]["annotations"][0]["result"][0]["value"]["x"] = 1.0
    with pytest.raises(imports.ImportRefused, match="already labeled from batch"):
        imports.import_export(world["s3"], world["bucket"], json.dumps(changed).encode(), DAY)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t["data"].update(frame_id="2031-01-01-0001"), "task 1: not a task of batch"),
        (lambda t: t["data"].update(batch="labeling/2031-01-01/"), "task 1: not a task of batch"),
        (lambda t: t["annotations"][0]["result"][0]["value"].update(rectanglelabels=["car"]),
         r"task 1 \(frame .*\): unknown label 'car'"),
        (lambda t: t["annotations"][0]["result"][0]["value"].update(x=99.0),
         r"task 1 \(frame .*\): box outside the image"),
        (lambda t: t["annotations"].append(dict(t["annotations"][0], id=7)),
         "task 1: 2 finished annotations and 0 marked ground truth"),
    ],
)  # fmt: skip
def test_a_bad_export_is_refused_naming_the_task(world, change, message):
    export = _export(world)
    change(export[0])
    with pytest.raises(imports.ExportError, match=message):
        imports.import_export(world["s3"], world["bucket"], json.dumps(export).encode(), DAY)


def test_an_export_of_no_batch_or_not_json_is_refused(world):
    with pytest.raises(imports.ExportError, match="no labeling batch for 2031-01-01"):
        imports.import_export(world["s3"], world["bucket"], b"[]", "2031-01-01")
    with pytest.raises(imports.ExportError, match="not JSON"):
        imports.import_export(world["s3"], world["bucket"], b"{nope", DAY)
    with pytest.raises(imports.ExportError, match="JSON list of tasks"):
        imports.import_export(world["s3"], world["bucket"], b"{}", DAY)
