"""The golden set is checked before use (issue 9, item 4): its manifest against the SHA-256
recorded for it and for being well formed, each file against the manifest; a difference names
the object and both hashes. A moto S3 server over HTTP; the embedded stack's rendered golden set."""

from __future__ import annotations

import hashlib
import json

import pytest

from driftloop.contracts import storage
from driftloop.evaluation import golden
from tests.unit.conftest import s3_client_for

golden_world = pytest.importorskip("driftloop_dev.golden")

BUCKET = "golden-tests"


@pytest.fixture(scope="module")
def s3(moto_endpoint):
    client = s3_client_for(moto_endpoint)
    client.create_bucket(Bucket=BUCKET)
    files, manifest = golden_world.golden_files(n=6)
    for key, data, content_type in files:
        storage.put_bytes(client, BUCKET, key, data, content_type)
    storage.put_json_once(client, BUCKET, golden.golden_manifest_key(), manifest)
    return client


def _manifest_sha(s3) -> str:
    data = storage.get_bytes(s3, BUCKET, golden.golden_manifest_key())
    return hashlib.sha256(data).hexdigest()


def test_the_recorded_manifest_hash_is_checked(s3):
    recorded = _manifest_sha(s3)
    manifest = golden.load_golden_set(s3, BUCKET, expected_sha256=recorded)
    assert golden.verify_golden_files(s3, BUCKET, manifest, golden.DEFAULT_VERSION) == 12
    with pytest.raises(golden.GoldenSetIntegrityError) as caught:
        golden.load_golden_set(s3, BUCKET, expected_sha256="0" * 64)
    assert recorded in str(caught.value)
    assert "0" * 64 in str(caught.value)
    assert golden.golden_manifest_key() in str(caught.value)


def test_a_rewritten_golden_file_is_refused_naming_it_and_both_hashes(s3):
    manifest = golden.load_golden_set(s3, BUCKET)
    key = sorted(k for k in manifest["files"] if k.endswith(".txt"))[0]
    original = storage.get_bytes(s3, BUCKET, key)
    s3.put_object(Bucket=BUCKET, Key=key, Body=original + b"0 0.5 0.5 0.1 0.1\n")
    try:
        with pytest.raises(golden.GoldenSetIntegrityError) as caught:
            golden.verify_golden_files(s3, BUCKET, manifest, golden.DEFAULT_VERSION)
        assert key in str(caught.value)
        assert manifest["files"][key] in str(caught.value)
    finally:
        s3.put_object(Bucket=BUCKET, Key=key, Body=original)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda m: m["files"].update({"labeled/dt=2031-01-01/x.txt": "a" * 64}), "lists"),
        (lambda m: m["files"].update({next(iter(m["files"])): "not-a-hash"}), "SHA-256"),
        (lambda m: m.update(version="v2"), "version"),
    ],
)
def test_a_malformed_manifest_is_refused(s3, change, fragment):
    key = golden.golden_manifest_key()
    original = storage.get_bytes(s3, BUCKET, key)
    manifest = json.loads(original)
    change(manifest)
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(manifest).encode())
    try:
        with pytest.raises(golden.GoldenSetIntegrityError, match=fragment):
            golden.load_golden_set(s3, BUCKET)
    finally:
        s3.put_object(Bucket=BUCKET, Key=key, Body=original)


def test_a_missing_golden_set_names_its_key(s3):
    with pytest.raises(golden.GoldenSetMissing, match=r"labeled/golden/v9/manifest\.json"):
        golden.load_golden_set(s3, BUCKET, "v9")
