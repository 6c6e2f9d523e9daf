"""``driftloop labels import``: exit statuses and messages (the import itself:
test_queue_and_import.py)."""

from __future__ import annotations

import uuid

import pytest

from driftloop.cli import main
from tests.unit.conftest import s3_client_for


def test_an_unreadable_export_is_bad_usage(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    status = main(["labels", "import", "--batch-day", "2031-01-01", "--export", str(missing)])
    assert status == 2
    assert f"cannot read {missing}" in capsys.readouterr().err


def test_an_export_of_a_batch_that_does_not_exist_is_refused(
    moto_endpoint, monkeypatch, tmp_path, capsys
):
    bucket = f"labels-cli-{uuid.uuid4().hex[:8]}"
    s3_client_for(moto_endpoint).create_bucket(Bucket=bucket)
    for name, value in {
        "AWS_ENDPOINT_URL_S3": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "DRIFTLOOP_BUCKET": bucket,
    }.items():
        monkeypatch.setenv(name, value)
    export = tmp_path / "export.json"
    export.write_text("[]")
    status = main(["labels", "import", "--batch-day", "2031-01-01", "--export", str(export)])
    assert status == 1
    err = capsys.readouterr().err
    assert (
        f"no labeling batch for 2031-01-01: s3://{bucket}/labeling/2031-01-01/manifest.json" in err
    )


def test_a_bad_day_is_bad_usage(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["labels", "import", "--batch-day", "yesterday", "--export", "x.json"])
    assert exit_.value.code == 2
    assert "not a YYYY-MM-DD date" in capsys.readouterr().err
