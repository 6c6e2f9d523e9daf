"""A real S3 API for the anchor tests: moto's server on a free loopback port (HTTP, the same
server the embedded stack runs), one per module; a fresh bucket per test."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(scope="module")
def s3_endpoint(moto_endpoint):
    return moto_endpoint


@pytest.fixture
def s3_client(s3_endpoint):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture
def bucket(s3_client):
    name = f"anchors-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name
