"""Quarantine keys and copy metadata S3 always accepts, whatever the source key holds."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from driftloop.contracts import storage
from driftloop.drift import quarantine

DAY = "2024-05-01"
CONTENT_ID = "0123456789abcdef0123456789abcdef"
SOURCE_PREFIX = storage.inference_prefix(DAY)
DEST_PREFIX = quarantine.quarantine_prefix(DAY, CONTENT_ID)
#: S3's limits: a key of 1,024 UTF-8 bytes, 2 KB of user metadata in all
KEY_LIMIT, METADATA_LIMIT = 1024, 2048


def source_key(name: str) -> str:
    return SOURCE_PREFIX + name


@pytest.mark.parametrize(
    "name",
    [
        "part-00000.parquet",
        "part-é-漢字.parquet",
        "x" * 960 + ".parquet",  # fits as a source key, not with the quarantine prefix
        "ü" * 496 + ".parquet",  # 1,024 bytes with the prefix: the longest legal source key
        "sub/dir/" + "🙂" * 240 + ".parquet",
    ],
    ids=["short", "non-ascii", "long-ascii", "long-2-byte", "emoji-subdir"],
)
def test_quarantine_key_fits_and_metadata_is_ascii(name):
    key = source_key(name)
    assert len(key.encode()) <= KEY_LIMIT
    dest = quarantine.quarantine_key(DEST_PREFIX, SOURCE_PREFIX, key)
    assert dest.startswith(DEST_PREFIX)
    assert len(dest.encode()) <= KEY_LIMIT
    assert dest == quarantine.quarantine_key(DEST_PREFIX, SOURCE_PREFIX, key)  # re-runs agree
    if len((DEST_PREFIX + name).encode()) <= KEY_LIMIT:
        assert dest == DEST_PREFIX + name  # readable whenever it fits
    else:
        assert dest.endswith(".parquet")

    metadata = quarantine.copy_metadata(key, "etag-1")
    assert all(k.isascii() and v.isascii() for k, v in metadata.items())
    assert sum(len(k) + len(v) for k, v in metadata.items()) <= METADATA_LIMIT
    if "source-key" in metadata:
        assert unquote(metadata["source-key"]) == key


def test_distinct_long_keys_get_distinct_quarantine_keys():
    a, b = source_key("a" * 990 + ".parquet"), source_key("b" * 990 + ".parquet")
    assert quarantine.quarantine_key(DEST_PREFIX, SOURCE_PREFIX, a) != quarantine.quarantine_key(
        DEST_PREFIX, SOURCE_PREFIX, b
    )
