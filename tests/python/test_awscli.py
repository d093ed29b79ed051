"""aws-cli against Weft: the everyday `aws s3` workflow. The binary is
WEFT_TEST_AWS (the test venv's aws) or `aws` on PATH. `aws s3 cp` s3→s3 needs
CopyObject and is in test_boto3_pending.py."""

import filecmp
import os
import random
import time
import urllib.request

import pytest

from conftest import MiB, empty_and_delete_bucket, unique_bucket_name


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def cli_bucket(s3, aws):
    """A bucket made with `aws s3 mb`, removed (with its contents) afterwards."""
    name = unique_bucket_name("cli")
    out = aws("s3", "mb", f"s3://{name}")
    assert f"make_bucket: {name}" in out.stdout
    yield name
    empty_and_delete_bucket(s3, name)


def listing(aws, url):
    """(size, key) of every line of `aws s3 ls --recursive URL`."""
    out = aws("s3", "ls", "--recursive", url).stdout
    rows = []
    for line in out.splitlines():
        # "2024-01-01 00:00:00       1234 path/to/key"
        parts = line.split(None, 3)
        assert len(parts) == 4, line
        rows.append((int(parts[2]), parts[3]))
    return rows


def test_cp_small_and_multipart(aws, s3, cli_bucket, tmp_path):
    small = tmp_path / "small.txt"
    big = tmp_path / "big.bin"
    write(small, b"hello from aws-cli\n")
    write(big, random.Random(20).randbytes(20 * MiB))
    aws("s3", "cp", "--no-progress", small, f"s3://{cli_bucket}/small.txt")
    # 20 MiB is above aws-cli's 8 MiB multipart threshold: 3 parts of 8 MiB.
    aws("s3", "cp", "--no-progress", big, f"s3://{cli_bucket}/dir/big.bin")
    assert listing(aws, f"s3://{cli_bucket}") == [(20 * MiB, "dir/big.bin"), (19, "small.txt")]
    h = s3.head_object(Bucket=cli_bucket, Key="dir/big.bin")
    assert h["ETag"].endswith('-3"')
    assert s3.head_object(Bucket=cli_bucket, Key="small.txt")["ContentType"] == "text/plain"
    down = tmp_path / "down"
    aws("s3", "cp", "--no-progress", f"s3://{cli_bucket}/dir/big.bin", down / "big.bin")
    aws("s3", "cp", "--no-progress", f"s3://{cli_bucket}/small.txt", down / "small.txt")
    assert (down / "big.bin").read_bytes() == big.read_bytes()
    assert (down / "small.txt").read_bytes() == small.read_bytes()
    # Streaming from and to stdin/stdout.
    p = aws("s3", "cp", f"s3://{cli_bucket}/small.txt", "-")
    assert p.stdout == "hello from aws-cli\n"
    # s3api: a lower-level call through the same endpoint.
    p = aws("s3api", "head-object", "--bucket", cli_bucket, "--key", "small.txt")
    assert '"ContentLength": 19' in p.stdout


def test_sync_tree_of_200_files(aws, cli_bucket, tmp_path):
    rng = random.Random(200)
    up = tmp_path / "up"
    for i in range(200):
        depth = rng.randint(0, 3)
        dirs = [f"d{rng.randint(0, 4)}" for _ in range(depth)]
        name = f"file {i:03}{rng.choice(['.txt', '.bin', '+x', ''])}"
        write(up.joinpath(*dirs, name), rng.randbytes(rng.randint(1, 3000)))
    files = sorted(p.relative_to(up).as_posix() for p in up.rglob("*") if p.is_file())
    assert len(files) == 200

    aws("s3", "sync", "--no-progress", up, f"s3://{cli_bucket}/tree")
    rows = listing(aws, f"s3://{cli_bucket}/tree/")
    assert len(rows) == 200
    assert sorted(k for _, k in rows) == [f"tree/{f}" for f in files]
    for size, key in rows:
        assert size == (up / key[len("tree/") :]).stat().st_size

    # A second sync finds nothing to do.
    again = aws("s3", "sync", "--no-progress", up, f"s3://{cli_bucket}/tree")
    assert again.stdout.strip() == ""

    down = tmp_path / "down"
    aws("s3", "sync", "--no-progress", f"s3://{cli_bucket}/tree", down)
    got = sorted(p.relative_to(down).as_posix() for p in down.rglob("*") if p.is_file())
    assert got == files
    for f in files:
        assert filecmp.cmp(up / f, down / f, shallow=False), f

    # sync --delete removes remote files that are gone locally.
    for f in files[:10]:
        os.remove(up / f)
    aws("s3", "sync", "--no-progress", "--delete", up, f"s3://{cli_bucket}/tree")
    assert len(listing(aws, f"s3://{cli_bucket}/tree/")) == 190


def test_empty_files_do_not_stall(aws, cli_bucket, tmp_path):
    """Empty files among others, uploaded over reused connections. aws-cli v1
    sends `Expect: 100-continue` even for an empty body; if the server answers
    such a request with its final response and no `100 Continue`, aws-cli's
    botocore (awscli/botocore/awsrequest.py keeps the stale response class on
    the connection) misreads the next response on that connection and waits
    for its read timeout (60 s) before retrying. With the read timeout at 10 s
    and no retries, a stall fails the copy instead of slowing it down."""
    for i in range(12):
        write(tmp_path / "t" / f"sub{i % 3}" / f"f{i:02}", b"" if i % 4 == 0 else b"x" * i)
    t0 = time.monotonic()
    aws(
        "s3", "cp", "--no-progress", "--recursive", "--cli-read-timeout", "10",
        tmp_path / "t", f"s3://{cli_bucket}/t",
        env={"AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"},
    )
    assert time.monotonic() - t0 < 10
    rows = listing(aws, f"s3://{cli_bucket}/t/")
    assert len(rows) == 12
    assert sorted(size for size, _ in rows) == sorted(0 if i % 4 == 0 else i for i in range(12))


def test_presign(aws, cli_bucket, tmp_path):
    f = tmp_path / "shared file.bin"
    data = random.Random(3).randbytes(50_000)
    write(f, data)
    aws("s3", "cp", "--no-progress", f, f"s3://{cli_bucket}/shared file.bin")
    url = aws("s3", "presign", f"s3://{cli_bucket}/shared file.bin", "--expires-in", "300").stdout.strip()
    assert url.startswith("http")
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        assert r.read() == data


def test_rm_recursive_and_rb(aws, tmp_path):
    name = unique_bucket_name("cli")
    aws("s3", "mb", f"s3://{name}")
    for i in range(12):
        write(tmp_path / "t" / f"sub{i % 3}" / f"f{i}", b"x" * (i + 1))
    aws("s3", "cp", "--no-progress", "--recursive", tmp_path / "t", f"s3://{name}/t")
    assert len(listing(aws, f"s3://{name}")) == 12
    # rb refuses a non-empty bucket.
    p = aws("s3", "rb", f"s3://{name}", check=False)
    assert p.returncode != 0 and "BucketNotEmpty" in p.stderr
    aws("s3", "rm", "--recursive", f"s3://{name}/t/sub1")
    assert len(listing(aws, f"s3://{name}")) == 8
    aws("s3", "rm", "--recursive", f"s3://{name}")
    assert listing(aws, f"s3://{name}") == []
    aws("s3", "rb", f"s3://{name}")
    assert name not in aws("s3", "ls").stdout
    p = aws("s3", "rb", f"s3://{name}", check=False)
    assert p.returncode != 0 and "NoSuchBucket" in p.stderr
    p = aws("s3", "ls", f"s3://{name}", check=False)
    assert p.returncode != 0 and "NoSuchBucket" in p.stderr


def test_wrong_credentials(aws_env, tmp_path):
    import subprocess

    from conftest import ENDPOINT

    env = dict(aws_env, AWS_SECRET_ACCESS_KEY="not-the-secret-key-at-all-0000000000000")
    binary = os.environ.get("WEFT_TEST_AWS") or "aws"
    p = subprocess.run(
        [binary, "--endpoint-url", ENDPOINT, "s3", "ls"], env=env, capture_output=True, text=True
    )
    assert p.returncode != 0
    assert "SignatureDoesNotMatch" in p.stderr
