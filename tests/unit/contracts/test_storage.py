"""Write-once S3 objects (driftloop.contracts.storage.put_once) against a moto server over HTTP,
the server the embedded stack runs (``python -m moto.server``)."""

from __future__ import annotations

import hashlib
import re
import threading
import time

import pytest

from driftloop.contracts import storage
from tests.unit.conftest import s3_client_for

BUCKET = "write-once"


@pytest.fixture(scope="module")
def endpoint(moto_endpoint):
    return moto_endpoint


def _client(endpoint: str):
    return s3_client_for(endpoint)


@pytest.fixture(scope="module")
def s3(endpoint):
    client = _client(endpoint)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def key(request) -> str:
    return f"objects/{request.node.name}"


def test_first_write_creates_the_key(s3, key):
    uri = storage.put_once(s3, BUCKET, key, b"first", "text/plain")
    assert uri == f"s3://{BUCKET}/{key}"
    obj = s3.get_object(Bucket=BUCKET, Key=key)
    assert obj["Body"].read() == b"first"
    assert obj["ContentType"] == "text/plain"


def test_the_server_refuses_a_conditional_overwrite(s3, key):
    """What put_once relies on: moto (like S3) answers 412 to If-None-Match: * on a key."""
    from botocore.exceptions import ClientError

    s3.put_object(Bucket=BUCKET, Key=key, Body=b"a", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"b", IfNoneMatch="*")
    assert err.value.response["Error"]["Code"] == "PreconditionFailed"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert storage.get_bytes(s3, BUCKET, key) == b"a"


def test_rewriting_the_same_bytes_is_a_no_op(s3, key):
    storage.put_once(s3, BUCKET, key, b"same bytes")
    before = s3.head_object(Bucket=BUCKET, Key=key)
    time.sleep(1.1)  # LastModified has a resolution of one second
    puts: list[str] = []

    def count_put(params, **_):
        puts.append(params["Key"])

    s3.meta.events.register("before-parameter-build.s3.PutObject", count_put)
    try:
        assert storage.put_once(s3, BUCKET, key, b"same bytes") == f"s3://{BUCKET}/{key}"
    finally:
        s3.meta.events.unregister("before-parameter-build.s3.PutObject", count_put)
    assert puts == []  # a re-run uploads nothing
    after = s3.head_object(Bucket=BUCKET, Key=key)
    assert after["LastModified"] == before["LastModified"]  # not written again
    assert storage.put_json_once(s3, BUCKET, key + ".json", {"b": 1, "a": [1, 2]})
    assert storage.put_json_once(s3, BUCKET, key + ".json", {"a": [1, 2], "b": 1})


@pytest.mark.parametrize("other", [b"different", b"same lengtX", b""])
def test_different_bytes_raise_and_keep_the_first_object(s3, key, other):
    storage.put_once(s3, BUCKET, key, b"same length")
    with pytest.raises(storage.WriteOnceViolation, match=re.escape(key)):
        storage.put_once(s3, BUCKET, key, other)
    assert storage.get_bytes(s3, BUCKET, key) == b"same length"


def test_an_etag_that_is_not_an_md5_is_settled_by_the_bytes(s3, key):
    """A multipart upload's ETag is no MD5 of the content: equal bytes are still equal."""
    data = b"written as a multipart upload"
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)
    part = s3.upload_part(
        Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=data
    )
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    etag = s3.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')
    assert etag != hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert storage.put_once(s3, BUCKET, key, data) == f"s3://{BUCKET}/{key}"
    with pytest.raises(storage.WriteOnceViolation):
        storage.put_once(s3, BUCKET, key, data[:-1] + b"?")


def test_a_writer_that_loses_the_race_gets_a_violation(endpoint, s3, key):
    """The interleaving a check-then-write loses: writer A has seen the key absent and sent
    its PUT, which reaches the server only after writer B has created the key. With the
    conditional write A's PUT is refused, so B's object stays and A learns of the conflict."""
    writer_a, writer_b = _client(endpoint), _client(endpoint)
    b_done = threading.Event()
    a_sending = threading.Event()

    def hold_until_b_has_written(**_):
        a_sending.set()
        assert b_done.wait(30), "writer B never finished"

    writer_a.meta.events.register("before-send.s3.PutObject", hold_until_b_has_written)
    outcome: dict[str, object] = {}

    def run_a():
        try:
            outcome["a"] = storage.put_once(writer_a, BUCKET, key, b"from writer A")
        except storage.WriteOnceViolation as err:
            outcome["a"] = err

    thread = threading.Thread(target=run_a)
    thread.start()
    assert a_sending.wait(30)
    assert storage.exists(s3, BUCKET, key) is False  # A's PUT is in flight, not yet landed
    outcome["b"] = storage.put_once(writer_b, BUCKET, key, b"from writer B")
    b_done.set()
    thread.join(30)
    assert outcome["b"] == f"s3://{BUCKET}/{key}"
    assert isinstance(outcome["a"], storage.WriteOnceViolation)
    assert storage.get_bytes(s3, BUCKET, key) == b"from writer B"


def test_concurrent_writers_of_different_bytes_exactly_one_wins(endpoint, s3, key):
    """Six writers released at once. (moto checks the condition and stores the object in two
    steps of one request handler; 150 rounds of this race never let two writers through.)"""
    writers = [_client(endpoint) for _ in range(6)]
    start = threading.Barrier(len(writers))
    results: list[object] = [None] * len(writers)

    def write(i: int) -> None:
        start.wait(30)
        try:
            results[i] = storage.put_once(writers[i], BUCKET, key, f"writer {i}".encode())
        except storage.WriteOnceViolation as err:
            results[i] = err

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(writers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [i for i, r in enumerate(results) if isinstance(r, str)]
    losers = [r for r in results if isinstance(r, storage.WriteOnceViolation)]
    assert len(winners) == 1, results
    assert len(losers) == len(writers) - 1
    assert storage.get_bytes(s3, BUCKET, key) == f"writer {winners[0]}".encode()


def test_concurrent_writers_of_the_same_bytes_all_succeed(endpoint, s3, key):
    writers = [_client(endpoint) for _ in range(4)]
    start = threading.Barrier(len(writers))
    results: list[object] = [None] * len(writers)

    def write(i: int) -> None:
        start.wait(30)
        results[i] = storage.put_once(writers[i], BUCKET, key, b"one truth")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(writers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [f"s3://{BUCKET}/{key}"] * len(writers)
    assert storage.get_bytes(s3, BUCKET, key) == b"one truth"


def test_a_conditional_request_conflict_is_retried(s3, key):
    """S3 answers 409 ConditionalRequestConflict while another conditional write of the key
    is in flight (moto never does): put_once writes again rather than failing."""
    from botocore.stub import Stubber

    with Stubber(s3) as stub:
        stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
        stub.add_client_error(
            "put_object", service_error_code="ConditionalRequestConflict", http_status_code=409
        )
        stub.add_response("put_object", {"ETag": '"x"'})
        assert storage.put_once(s3, BUCKET, key, b"data") == f"s3://{BUCKET}/{key}"
        stub.assert_no_pending_responses()


def test_other_errors_propagate(s3):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as err:
        storage.put_once(s3, "no-such-bucket", "k", b"data")
    # HEAD of a key in a missing bucket is a plain 404 (absent), the PUT names the cause
    assert err.value.response["Error"]["Code"] == "NoSuchBucket"


def test_a_head_error_other_than_not_found_is_not_absent(s3, key):
    """Fail closed: only "not found" means absent; a denied HEAD is an error, not a write."""
    from botocore.exceptions import ClientError
    from botocore.stub import Stubber

    with Stubber(s3) as stub:
        stub.add_client_error("head_object", service_error_code="403", http_status_code=403)
        with pytest.raises(ClientError):
            storage.put_once(s3, BUCKET, key, b"data")
        stub.assert_no_pending_responses()
