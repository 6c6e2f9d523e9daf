"""Reference bundles are content-addressed and checked on every read (issue 9, item 4): the
bundle id is the SHA-256 of its manifest, the manifest holds each file's SHA-256, and a
rewritten profile, sample, binning or manifest is refused, naming the object and both hashes.
A moto S3 server over HTTP; partitions from the synthetic world."""

from __future__ import annotations

import hashlib

import pytest

from driftloop.contracts import storage
from driftloop.drift.reference import (
    BUNDLE_MANIFEST,
    ReferenceIntegrityError,
    build_reference_bundle,
    load_binning,
    load_profile,
    load_reference_days,
    load_sample,
    verify_reference_bundle,
)
from tests.unit.conftest import s3_client_for

synth = pytest.importorskip("driftloop_dev.synth")

BUCKET = "reference-tests"


@pytest.fixture(scope="module")
def s3(moto_endpoint):
    client = s3_client_for(moto_endpoint)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def bundle(s3):
    spec = synth.world_spec("stable", days=2, end_date="2031-01-02", rows_per_day=300)
    partitions = []
    for i in range(2):
        for key, data in synth.partition_files(spec, i):
            storage.put_bytes(s3, BUCKET, key, data)
        partitions.append(storage.list_partition(s3, BUCKET, spec.date_of(i)))
    return build_reference_bundle(s3, BUCKET, partitions, sample_size=200)


def _key(uri: str) -> str:
    return storage.split_s3_uri(uri)[1]


def test_the_bundle_id_is_the_hash_of_its_manifest_and_reads_are_checked(s3, bundle):
    manifest = storage.get_bytes(s3, BUCKET, _key(bundle.uri + BUNDLE_MANIFEST))
    assert hashlib.sha256(manifest).hexdigest() == bundle.reference_id
    assert verify_reference_bundle(s3, bundle.uri)["files"].keys() == {
        "binning.json",
        "profile.json",
        "sample.parquet",
        "day_counts.json",
    }
    days = load_reference_days(s3, bundle.uri)
    assert len(days.days) == 2  # one histogram per reference day, for the calibration
    assert (
        sum(sum(c) for c in days.numeric["brightness"])
        == load_profile(s3, bundle.profile_uri).numeric["brightness"].count
    )
    assert load_profile(s3, bundle.profile_uri).rows > 0
    assert load_sample(s3, bundle.sample_uri).num_rows > 0
    assert load_binning(s3, bundle.binning_uri).binning_id


@pytest.mark.parametrize(
    ("name", "load"),
    [
        ("profile.json", load_profile),
        ("sample.parquet", load_sample),
        ("binning.json", load_binning),
    ],
)
def test_a_rewritten_bundle_file_is_refused_naming_it_and_both_hashes(s3, bundle, name, load):
    key = _key(bundle.uri + name)
    original = storage.get_bytes(s3, BUCKET, key)
    forged = original.replace(b"1", b"2", 1) if name != "sample.parquet" else original + b"\0"
    assert forged != original
    s3.put_object(Bucket=BUCKET, Key=key, Body=forged)  # a writer of the bucket, not put_once
    try:
        with pytest.raises(ReferenceIntegrityError) as caught:
            load(s3, bundle.uri + name)
        message = str(caught.value)
        assert name in message
        assert hashlib.sha256(forged).hexdigest() in message
        assert hashlib.sha256(original).hexdigest() in message
        with pytest.raises(ReferenceIntegrityError, match=name):
            verify_reference_bundle(s3, bundle.uri)
    finally:
        s3.put_object(Bucket=BUCKET, Key=key, Body=original)
    load(s3, bundle.uri + name)


def test_a_rewritten_manifest_is_refused(s3, bundle):
    key = _key(bundle.uri + BUNDLE_MANIFEST)
    original = storage.get_bytes(s3, BUCKET, key)
    s3.put_object(Bucket=BUCKET, Key=key, Body=original.replace(b"{", b'{"x":1,', 1))
    try:
        with pytest.raises(ReferenceIntegrityError, match=f"recorded {bundle.reference_id}"):
            load_profile(s3, bundle.profile_uri)
    finally:
        s3.put_object(Bucket=BUCKET, Key=key, Body=original)


def test_a_bundle_without_a_content_address_or_manifest_is_refused(s3, bundle):
    legacy = f"s3://{BUCKET}/profiles/reference/0123456789abcdef01234567/"
    storage.put_bytes(s3, BUCKET, _key(legacy + "profile.json"), b"{}")
    with pytest.raises(ReferenceIntegrityError, match="not content-addressed"):
        load_profile(s3, legacy + "profile.json")
    missing = f"s3://{BUCKET}/profiles/reference/{'a' * 64}/profile.json"
    with pytest.raises(ReferenceIntegrityError, match=r"manifest .* is missing"):
        load_profile(s3, missing)
