"""Fixtures for the real-client tests: boto3 and aws-cli against a Weft cluster.

The cluster is given by the environment (cli/tests/python_clients.rs starts an
in-process one and sets these):

    WEFT_S3_ENDPOINT   http://127.0.0.1:PORT
    WEFT_ACCESS_KEY    root access key
    WEFT_SECRET_KEY    root secret key
    WEFT_REGION        region (default us-east-1)
    WEFT_TEST_AWS      aws-cli binary (default: `aws` on PATH)

To run by hand against `weft dev`:

    WEFT_S3_ENDPOINT=http://127.0.0.1:9000 \
    WEFT_ACCESS_KEY=$(jq -r .access_key weft-data/credentials.json) \
    WEFT_SECRET_KEY=$(jq -r .secret_key weft-data/credentials.json) \
    ~/.cache/weft-venv/bin/python -m pytest -q tests/python
"""

import os
import subprocess
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError


def _env(name, default=None):
    v = os.environ.get(name, default)
    if v is None:
        raise RuntimeError(
            f"{name} is not set: run through `cargo nextest run -p weft-cli --test python_clients` "
            "or set WEFT_S3_ENDPOINT, WEFT_ACCESS_KEY, WEFT_SECRET_KEY"
        )
    return v


ENDPOINT = _env("WEFT_S3_ENDPOINT")
ACCESS_KEY = _env("WEFT_ACCESS_KEY")
SECRET_KEY = _env("WEFT_SECRET_KEY")
REGION = os.environ.get("WEFT_REGION") or "us-east-1"

MiB = 1 << 20


def make_client(access_key=ACCESS_KEY, secret_key=SECRET_KEY, **config):
    """A boto3 S3 client for the cluster: path-style, SigV4, no retries (so
    every error surfaces as sent), and the installed botocore's default
    checksum settings."""
    settings = dict(
        region_name=REGION,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": 1},
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=20,
    )
    settings.update(config)
    cfg = Config(**settings)
    return boto3.session.Session().client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=REGION,
        config=cfg,
    )


def unique_bucket_name(tag="pyt"):
    return f"{tag}-{uuid.uuid4().hex[:20]}"


def create_bucket(client, name):
    kw = {}
    if REGION != "us-east-1":
        kw["CreateBucketConfiguration"] = {"LocationConstraint": REGION}
    return client.create_bucket(Bucket=name, **kw)


def empty_and_delete_bucket(client, name):
    """Best-effort cleanup with operations every version of the gateway has:
    abort uploads (if ListMultipartUploads works), delete keys one by one,
    delete the bucket. A bucket that is already gone is fine."""
    try:
        client.head_bucket(Bucket=name)
    except ClientError:
        return
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for u in page.get("Uploads", []):
                try:
                    client.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
                except ClientError:
                    pass
    except ClientError:
        pass
    versioned = client.get_bucket_versioning(Bucket=name).get("Status") is not None
    if versioned:
        # Every version and delete marker must go before the bucket can.
        for page in client.get_paginator("list_object_versions").paginate(Bucket=name):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                client.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"])
    raw = raw_listing_client()
    for page in raw.get_paginator("list_objects_v2").paginate(Bucket=name):
        for o in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=o["Key"])
    client.delete_bucket(Bucket=name)


_raw = None


def raw_listing_client():
    """A client whose ListObjects(V2) calls send no encoding-type and decode
    nothing (botocore otherwise asks for encoding-type=url and unquotes the
    keys it gets back), so keys come back exactly as the server sends them."""
    global _raw
    if _raw is None:
        from botocore.handlers import set_list_objects_encoding_type_url

        _raw = make_client()
        for op in ("ListObjects", "ListObjectsV2", "ListObjectVersions"):
            _raw.meta.events.unregister(
                f"before-parameter-build.s3.{op}", set_list_objects_encoding_type_url
            )
    return _raw


def error_of(excinfo):
    """(code, HTTP status) of a ClientError."""
    e = excinfo.value if hasattr(excinfo, "value") else excinfo
    return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture(scope="session")
def s3():
    return make_client()


@pytest.fixture
def make_bucket(s3):
    """Factory: make_bucket() creates a uniquely named bucket, removed (with
    everything in it) at the end of the test."""
    made = []

    def make(tag="pyt"):
        name = unique_bucket_name(tag)
        create_bucket(s3, name)
        made.append(name)
        return name

    yield make
    for name in made:
        empty_and_delete_bucket(s3, name)


@pytest.fixture
def bucket(make_bucket):
    return make_bucket()


@pytest.fixture(scope="session")
def aws_env():
    """Environment for aws-cli: the cluster's keys, nothing from ~/.aws."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_")
    }
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_PAGER="",
    )
    return env


@pytest.fixture(scope="session")
def aws(aws_env):
    """aws(*args, check=True, env=None) runs aws-cli against the cluster and
    returns the CompletedProcess (text mode). With check=True a failure fails
    the test with aws-cli's output; env adds environment variables."""
    binary = os.environ.get("WEFT_TEST_AWS") or "aws"

    def run(*args, check=True, timeout=600, env=None):
        cmd = [binary, "--endpoint-url", ENDPOINT, *map(str, args)]
        try:
            p = subprocess.run(
                cmd, env=dict(aws_env, **(env or {})), capture_output=True, text=True, timeout=timeout
            )
        except FileNotFoundError as e:
            pytest.fail(f"aws-cli not found ({binary}): install awscli or set WEFT_TEST_AWS: {e}")
        if check and p.returncode != 0:
            pytest.fail(
                f"{' '.join(cmd)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
            )
        return p

    return run
