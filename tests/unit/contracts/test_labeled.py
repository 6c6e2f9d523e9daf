"""The labeled day's frames.jsonl: parsing, errors that name the line, canonical bytes."""

from __future__ import annotations

import json

import pytest

from driftloop.contracts.labeled import (
    FramesIndexError,
    LabeledFrameInfo,
    frames_index_bytes,
    frames_index_key,
    info_of,
    parse_frames_index,
)

KEY = "labeled/dt=2026-11-30/frames.jsonl"


def _lines(*entries) -> bytes:
    return "\n".join(e if isinstance(e, str) else json.dumps(e) for e in entries).encode()


def test_key_is_in_the_days_partition():
    assert frames_index_key("2026-11-30") == KEY


def test_parses_cameras_sources_and_batches():
    index = parse_frames_index(
        _lines(
            {"stem": "a", "camera_id": "cam-01"},
            "",
            {"stem": "b", "camera_id": "cam-02", "source": "queue", "batch": "labeling/x/"},
        ),
        KEY,
    )
    assert index["a"] == LabeledFrameInfo("a", "cam-01", "feedback")
    assert index["b"].source == "queue"
    assert index["b"].batch == "labeling/x/"


def test_unlisted_frames_are_unknown_feedback():
    info = info_of({}, "zz")
    assert (info.camera_id, info.source) == ("unknown", "feedback")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not JSON"),
        ('["a"]', "line 2: expected an object"),
        ('{"stem": "b"}', "line 2: 'camera_id' must be a non-empty string"),
        ('{"stem": "b", "camera_id": "c", "source": "web"}', "line 2: source must be one of"),
        ('{"stem": "b", "camera_id": "c", "colour": 1}', "line 2: unknown field(s) ['colour']"),
        ('{"stem": "a", "camera_id": "c"}', "line 2: stem 'a' is listed twice"),
    ],
)
def test_bad_lines_name_the_key_and_line(line, message):
    with pytest.raises(FramesIndexError) as err:
        parse_frames_index(_lines({"stem": "a", "camera_id": "c"}, line), KEY)
    assert KEY in str(err.value)
    assert message in str(err.value)


def test_bytes_are_canonical_and_round_trip():
    frames = [LabeledFrameInfo("b", "cam-2", "queue", "f-9", "labeling/d/"), LabeledFrameInfo("a")]
    data = frames_index_bytes(frames)
    assert data == frames_index_bytes(list(reversed(frames)))
    assert parse_frames_index(data, KEY) == {f.stem: f for f in frames}
    assert frames_index_bytes([]) == b""
