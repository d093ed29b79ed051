"""boto3 against Weft: S3 behaviour as AWS documents it, for the operations the
gateway implements today (see docs/s3-compatibility.md). Operations still
being built are tested in test_boto3_pending.py."""

import base64
import datetime as dt
import hashlib
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from conftest import (
    MiB,
    REGION,
    create_bucket,
    error_of,
    make_client,
    raw_listing_client,
    unique_bucket_name,
)


def rand(n, seed=None):
    return random.Random(seed if seed is not None else n).randbytes(n)


def md5_hex(b):
    return hashlib.md5(b).hexdigest()


def b64(b):
    return base64.b64encode(b).decode()


def crc32_b64(b):
    return b64(zlib.crc32(b).to_bytes(4, "big"))


def get_bytes(s3, bucket, key, **kw):
    return s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()


# ---------------------------------------------------------------- buckets


def test_bucket_lifecycle(s3):
    name = unique_bucket_name()
    r = create_bucket(s3, name)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    try:
        assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert name in names
        loc = s3.get_bucket_location(Bucket=name)["LocationConstraint"]
        # us-east-1 is reported as an empty (null) LocationConstraint.
        assert loc in (None, "") if REGION == "us-east-1" else loc == REGION
    finally:
        r = s3.delete_bucket(Bucket=name)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=name)
    # HEAD has no body: botocore reports the status as the code.
    assert error_of(e) == ("404", 404)


def test_list_buckets_pages_by_prefix_and_region(s3):
    stem = unique_bucket_name("lb")
    names = [f"{stem}-{i}" for i in range(5)]
    for n in names:
        create_bucket(s3, n)
    try:
        seen, token = [], None
        while True:
            kw = {"Prefix": stem, "MaxBuckets": 2}
            if token:
                kw["ContinuationToken"] = token
            r = s3.list_buckets(**kw)
            assert len(r["Buckets"]) <= 2
            assert r.get("Prefix") == stem
            assert all(b["BucketRegion"] == REGION for b in r["Buckets"])
            seen += [b["Name"] for b in r["Buckets"]]
            token = r.get("ContinuationToken")
            if not token:
                break
        assert seen == sorted(names)
        other = "eu-west-1" if REGION != "eu-west-1" else "us-west-2"
        assert s3.list_buckets(Prefix=stem, BucketRegion=other, MaxBuckets=10)["Buckets"] == []
        with pytest.raises(ClientError) as e:
            s3.list_buckets(MaxBuckets=10_001)
        assert error_of(e) == ("InvalidArgument", 400)
    finally:
        for n in names:
            s3.delete_bucket(Bucket=n)


def test_a_location_constraint_outside_the_region_is_refused(s3):
    name = unique_bucket_name("loc")
    other = "eu-west-1" if REGION != "eu-west-1" else "us-west-2"
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": other})
    assert error_of(e) == ("IllegalLocationConstraintException", 400)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert name not in names


def test_no_such_bucket(s3):
    name = unique_bucket_name("missing")
    for call in (
        lambda: s3.delete_bucket(Bucket=name),
        lambda: s3.list_objects_v2(Bucket=name),
        lambda: s3.put_object(Bucket=name, Key="k", Body=b"x"),
        lambda: s3.get_object(Bucket=name, Key="k"),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e) == ("NoSuchBucket", 404)


def test_bucket_already_owned_by_you(s3, bucket):
    # AWS answers 409 BucketAlreadyOwnedByYou in every region but (for legacy
    # reasons) us-east-1; Weft answers it everywhere, as MinIO does.
    with pytest.raises(ClientError) as e:
        create_bucket(s3, bucket)
    assert error_of(e) == ("BucketAlreadyOwnedByYou", 409)


def test_bucket_not_empty(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=bucket)
    assert error_of(e) == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)


@pytest.mark.parametrize(
    "name",
    [
        "ab",  # shorter than 3
        "a" * 64,  # longer than 63
        "UpperCase",
        "under_score",
        "-leading-hyphen",
        "trailing-hyphen-",
        "double..dots",
        "192.168.5.4",  # formatted as an IP address
        "xn--prefixed",
        "suffixed-s3alias",
    ],
)
def test_invalid_bucket_name(s3, name):
    try:
        s3.create_bucket(Bucket=name)
    except ClientError as e:
        assert error_of(e) == ("InvalidBucketName", 400)
    else:
        s3.delete_bucket(Bucket=name)
        pytest.fail(f"bucket {name!r} was created")


# ---------------------------------------------------------------- objects


def test_put_get_head_delete(s3, bucket):
    body = b"hello weft\n"
    r = s3.put_object(Bucket=bucket, Key="greeting.txt", Body=body)
    assert r["ETag"] == f'"{md5_hex(body)}"'
    g = s3.get_object(Bucket=bucket, Key="greeting.txt")
    assert g["Body"].read() == body
    assert g["ETag"] == r["ETag"]
    assert g["ContentLength"] == len(body)
    assert isinstance(g["LastModified"], dt.datetime)
    h = s3.head_object(Bucket=bucket, Key="greeting.txt")
    assert h["ContentLength"] == len(body)
    assert h["ETag"] == r["ETag"]
    assert h["LastModified"] == g["LastModified"]
    d = s3.delete_object(Bucket=bucket, Key="greeting.txt")
    assert d["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="greeting.txt")
    assert error_of(e) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="greeting.txt")
    assert error_of(e) == ("404", 404)
    # Deleting a key that does not exist succeeds.
    d = s3.delete_object(Bucket=bucket, Key="greeting.txt")
    assert d["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_overwrite_replaces_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"first", Metadata={"v": "1"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"second!")
    g = s3.get_object(Bucket=bucket, Key="k")
    assert g["Body"].read() == b"second!"
    assert g["Metadata"] == {}


def test_empty_object(s3, bucket):
    r = s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert r["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    g = s3.get_object(Bucket=bucket, Key="empty")
    assert g["ContentLength"] == 0
    assert g["Body"].read() == b""


def test_metadata_and_content_headers(s3, bucket):
    expires = dt.datetime(2031, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc)
    s3.put_object(
        Bucket=bucket,
        Key="doc.html",
        Body=b"<p>hi</p>",
        Metadata={"color": "blue", "Mixed-Case": "Value With Spaces"},
        ContentType="text/html; charset=utf-8",
        ContentEncoding="identity",
        ContentDisposition='attachment; filename="doc.html"',
        ContentLanguage="de-CH",
        CacheControl="max-age=3600, public",
        Expires=expires,
    )
    for r in (
        s3.head_object(Bucket=bucket, Key="doc.html"),
        s3.get_object(Bucket=bucket, Key="doc.html"),
    ):
        # Metadata names are case-insensitive HTTP headers: S3 returns them lower-cased.
        assert r["Metadata"] == {"color": "blue", "mixed-case": "Value With Spaces"}
        assert r["ContentType"] == "text/html; charset=utf-8"
        assert r["ContentEncoding"] == "identity"
        assert r["ContentDisposition"] == 'attachment; filename="doc.html"'
        assert r["ContentLanguage"] == "de-CH"
        assert r["CacheControl"] == "max-age=3600, public"
        assert r["Expires"] == expires


def test_default_content_type(s3, bucket):
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    h = s3.head_object(Bucket=bucket, Key="plain")
    # S3 stores binary/octet-stream when no Content-Type is given; SDKs may
    # send application/octet-stream themselves.
    assert h["ContentType"] in ("binary/octet-stream", "application/octet-stream")


def test_response_header_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"data", ContentType="text/plain")
    g = s3.get_object(
        Bucket=bucket,
        Key="o",
        ResponseContentType="application/json",
        ResponseContentDisposition="attachment; filename=x.json",
        ResponseContentLanguage="fr",
        ResponseContentEncoding="identity",
        ResponseCacheControl="no-cache",
        ResponseExpires=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc),
    )
    assert g["Body"].read() == b"data"
    assert g["ContentType"] == "application/json"
    assert g["ContentDisposition"] == "attachment; filename=x.json"
    assert g["ContentLanguage"] == "fr"
    assert g["ContentEncoding"] == "identity"
    assert g["CacheControl"] == "no-cache"
    assert g["Expires"] == dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    # The stored object is unchanged.
    assert s3.head_object(Bucket=bucket, Key="o")["ContentType"] == "text/plain"


def test_key_length_limit(s3, bucket):
    ok = "k" * 1024
    s3.put_object(Bucket=bucket, Key=ok, Body=b"x")
    assert get_bytes(s3, bucket, ok) == b"x"
    # 1024 bytes of UTF-8, not characters: 512 two-byte characters fit ...
    ok2 = "é" * 512
    s3.put_object(Bucket=bucket, Key=ok2, Body=b"y")
    assert get_bytes(s3, bucket, ok2) == b"y"
    # ... 1025 bytes do not.
    for bad in ("k" * 1025, "é" * 512 + "k"):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key=bad, Body=b"x")
        assert error_of(e) == ("KeyTooLongError", 400)


@pytest.mark.parametrize(
    "key",
    [
        "with space",
        "plus+sign",
        "percent%20literal",
        "ünïcödé/ключ/鍵.txt",
        "emoji-😀",
        "a/b//c/",
        "special !$&'()*,;=:@~",
        "query?and#hash",
    ],
)
def test_awkward_keys_round_trip(s3, bucket, key):
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    assert get_bytes(s3, bucket, key) == key.encode()
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(key.encode())
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


@pytest.mark.parametrize("size", [1, 65535, 65536, 65537, 5 * MiB + 3, 20 * MiB])
def test_sizes_round_trip(s3, bucket, size):
    body = rand(size)
    r = s3.put_object(Bucket=bucket, Key=f"obj-{size}", Body=body)
    assert r["ETag"] == f'"{md5_hex(body)}"'
    got = get_bytes(s3, bucket, f"obj-{size}")
    assert len(got) == size
    assert got == body
    assert s3.head_object(Bucket=bucket, Key=f"obj-{size}")["ContentLength"] == size


# ---------------------------------------------------------------- ranges


@pytest.fixture
def ranged(s3, bucket):
    body = rand(200_000, seed=7)
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    return bucket, body


@pytest.mark.parametrize(
    "spec,start,end",
    [
        ("bytes=0-0", 0, 0),
        ("bytes=0-99", 0, 99),
        ("bytes=65530-65545", 65530, 65545),  # across a 64 KiB boundary
        ("bytes=199999-199999", 199999, 199999),
        ("bytes=100-", 100, 199999),
        ("bytes=-1", 199999, 199999),
        ("bytes=-5000", 195000, 199999),
        ("bytes=150000-999999", 150000, 199999),  # end past the object: clamped
        ("bytes=-300000", 0, 199999),  # suffix longer than the object: all of it
    ],
)
def test_get_range(s3, ranged, spec, start, end):
    bucket, body = ranged
    g = s3.get_object(Bucket=bucket, Key="r", Range=spec)
    assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert g["ContentRange"] == f"bytes {start}-{end}/{len(body)}"
    assert g["ContentLength"] == end - start + 1
    assert g["Body"].read() == body[start : end + 1]
    assert g["AcceptRanges"] == "bytes"


def test_head_range(s3, ranged):
    bucket, body = ranged
    h = s3.head_object(Bucket=bucket, Key="r", Range="bytes=10-19")
    # AWS documents only that ContentLength is affected (S3 itself answers 206).
    assert h["ResponseMetadata"]["HTTPStatusCode"] in (200, 206)
    assert h["ContentLength"] == 10
    assert h["ContentRange"] == f"bytes 10-19/{len(body)}"


@pytest.mark.parametrize("spec", ["bytes=200000-", "bytes=200000-200010", "bytes=999999-"])
def test_unsatisfiable_range(s3, ranged, spec):
    bucket, _ = ranged
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", Range=spec)
    assert error_of(e) == ("InvalidRange", 416)


def test_range_on_empty_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="e", Body=b"")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="e", Range="bytes=0-0")
    assert error_of(e) == ("InvalidRange", 416)


# ---------------------------------------------------------------- conditional reads


@pytest.fixture
def cond(s3, bucket):
    s3.put_object(Bucket=bucket, Key="c", Body=b"conditional")
    h = s3.head_object(Bucket=bucket, Key="c")
    return bucket, h["ETag"], h["LastModified"]


def _status(fn):
    try:
        r = fn()
        return r["ResponseMetadata"]["HTTPStatusCode"], None
    except ClientError as e:
        return error_of(e)[1], error_of(e)[0]


def test_if_match(s3, cond):
    bucket, etag, _ = cond
    assert get_bytes(s3, bucket, "c", IfMatch=etag) == b"conditional"
    assert get_bytes(s3, bucket, "c", IfMatch="*") == b"conditional"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert error_of(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="c", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert error_of(e)[1] == 412


def test_if_none_match(s3, cond):
    bucket, etag, _ = cond
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert error_of(e)[1] == 304
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert error_of(e)[1] == 304
    assert (
        get_bytes(s3, bucket, "c", IfNoneMatch='"0123456789abcdef0123456789abcdef"')
        == b"conditional"
    )


def test_if_modified_since(s3, cond):
    bucket, _, lm = cond
    past = lm - dt.timedelta(days=1)
    future = lm + dt.timedelta(days=1)
    assert get_bytes(s3, bucket, "c", IfModifiedSince=past) == b"conditional"
    for when in (lm, future):
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=when)
        assert error_of(e)[1] == 304
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="c", IfModifiedSince=future)
    assert error_of(e)[1] == 304


def test_if_unmodified_since(s3, cond):
    bucket, _, lm = cond
    past = lm - dt.timedelta(days=1)
    future = lm + dt.timedelta(days=1)
    for when in (lm, future):
        assert get_bytes(s3, bucket, "c", IfUnmodifiedSince=when) == b"conditional"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=past)
    assert error_of(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="c", IfUnmodifiedSince=past)
    assert error_of(e)[1] == 412


def test_conditional_precedence(s3, cond):
    """AWS: If-Match true + If-Unmodified-Since false → 200; If-None-Match false
    + If-Modified-Since true → 304 (the ETag condition wins)."""
    bucket, etag, lm = cond
    past = lm - dt.timedelta(days=1)
    assert get_bytes(s3, bucket, "c", IfMatch=etag, IfUnmodifiedSince=past) == b"conditional"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag, IfModifiedSince=past)
    assert error_of(e)[1] == 304


def test_conditional_on_missing_key(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="nope", IfMatch='"abc"')
    assert error_of(e) == ("NoSuchKey", 404)


# ---------------------------------------------------------------- listing


LIST_KEYS = [
    "a/1",
    "a/2",
    "a/b/3",
    "b",
    "c d",
    "e+f",
    "g%h",
    "z",
    "ünïcödé/ключ",
]


@pytest.fixture
def listed(s3, bucket):
    for k in LIST_KEYS:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    return bucket


def utf8_sorted(keys):
    return sorted(keys, key=lambda k: k.encode())


def test_list_all(s3, listed):
    r = s3.list_objects_v2(Bucket=listed)
    assert [o["Key"] for o in r["Contents"]] == utf8_sorted(LIST_KEYS)
    assert r["KeyCount"] == len(LIST_KEYS)
    assert r["IsTruncated"] is False
    assert "NextContinuationToken" not in r
    for o in r["Contents"]:
        assert o["Size"] == len(o["Key"].encode())
        assert o["ETag"] == f'"{md5_hex(o["Key"].encode())}"'
        assert o["StorageClass"] == "STANDARD"


def test_list_without_encoding_type_returns_raw_keys(listed):
    raw = raw_listing_client()
    r = raw.list_objects_v2(Bucket=listed)
    assert "EncodingType" not in r
    assert [o["Key"] for o in r["Contents"]] == utf8_sorted(LIST_KEYS)


def test_list_encoding_type_url(listed):
    """With encoding-type=url S3 URL-encodes Key, Prefix, Delimiter,
    StartAfter in the response (botocore asks for it on every listing and
    decodes with unquote_plus, so an unencoded '+' would come back as ' ')."""
    raw = raw_listing_client()
    r = raw.list_objects_v2(Bucket=listed, EncodingType="url")
    assert r["EncodingType"] == "url"
    keys = [o["Key"] for o in r["Contents"]]
    assert [urllib.parse.unquote_plus(k) for k in keys] == utf8_sorted(LIST_KEYS)
    assert "e+f" not in keys and "g%h" not in keys
    r = raw.list_objects_v2(Bucket=listed, EncodingType="url", Delimiter="/")
    assert [urllib.parse.unquote_plus(p["Prefix"]) for p in r["CommonPrefixes"]] == ["a/", "ünïcödé/"]


def test_list_prefix(s3, listed):
    r = s3.list_objects_v2(Bucket=listed, Prefix="a/")
    assert [o["Key"] for o in r["Contents"]] == ["a/1", "a/2", "a/b/3"]
    r = s3.list_objects_v2(Bucket=listed, Prefix="ünïcödé/")
    assert [o["Key"] for o in r["Contents"]] == ["ünïcödé/ключ"]
    r = s3.list_objects_v2(Bucket=listed, Prefix="nothing-here")
    assert r["KeyCount"] == 0
    assert "Contents" not in r


def test_list_delimiter(s3, listed):
    r = s3.list_objects_v2(Bucket=listed, Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["b", "c d", "e+f", "g%h", "z"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "ünïcödé/"]
    assert r["KeyCount"] == 7
    r = s3.list_objects_v2(Bucket=listed, Delimiter="/", Prefix="a/")
    assert [o["Key"] for o in r["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/b/"]


def test_list_max_keys_and_continuation(s3, listed):
    seen, token, pages = [], None, 0
    while True:
        kw = {"ContinuationToken": token} if token else {}
        r = s3.list_objects_v2(Bucket=listed, MaxKeys=2, **kw)
        pages += 1
        assert r["MaxKeys"] == 2
        assert r["KeyCount"] == len(r.get("Contents", []))
        assert r["KeyCount"] <= 2
        seen += [o["Key"] for o in r.get("Contents", [])]
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
        assert pages < 20
    assert seen == utf8_sorted(LIST_KEYS)
    assert pages == 5


def test_list_paginator_with_delimiter(s3, listed):
    keys, prefixes = [], []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=listed, Delimiter="/", PaginationConfig={"PageSize": 1}
    ):
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert keys == ["b", "c d", "e+f", "g%h", "z"]
    assert prefixes == ["a/", "ünïcödé/"]


def test_list_start_after(s3, listed):
    r = s3.list_objects_v2(Bucket=listed, StartAfter="b")
    assert [o["Key"] for o in r["Contents"]] == utf8_sorted(LIST_KEYS)[4:]
    assert r["StartAfter"] == "b"
    r = s3.list_objects_v2(Bucket=listed, StartAfter="a/0")
    assert [o["Key"] for o in r["Contents"]][0] == "a/1"
    r = s3.list_objects_v2(Bucket=listed, StartAfter="zzzzzzzz", Prefix="a")
    assert r["KeyCount"] == 0


def test_list_max_keys_zero(s3, listed):
    r = s3.list_objects_v2(Bucket=listed, MaxKeys=0)
    assert r["KeyCount"] == 0
    assert "Contents" not in r


def test_list_buckets_shows_only_existing(s3, make_bucket):
    a, b = make_bucket(), make_bucket()
    names = [x["Name"] for x in s3.list_buckets()["Buckets"]]
    assert a in names and b in names
    assert names == sorted(names)


# ---------------------------------------------------------------- multipart


def multipart_etag(parts):
    return '"%s-%d"' % (hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest(), len(parts))


def upload_parts(s3, bucket, key, parts, **create_kw):
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **create_kw)
    uid = up["UploadId"]
    done = []
    for i, p in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=i, Body=p)
        assert r["ETag"] == f'"{md5_hex(p)}"'
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    return uid, done


def test_multipart_upload(s3, bucket):
    parts = [rand(5 * MiB, 1), rand(5 * MiB, 2), rand(1234, 3)]
    uid, done = upload_parts(
        s3, bucket, "mp", parts, ContentType="application/x-test", Metadata={"m": "v"}
    )
    r = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": done}
    )
    assert r["ETag"] == multipart_etag(parts)
    assert r["Key"] == "mp"
    assert r["Bucket"] == bucket
    body = b"".join(parts)
    g = s3.get_object(Bucket=bucket, Key="mp")
    assert g["ETag"] == r["ETag"]
    assert g["ContentLength"] == len(body)
    assert g["ContentType"] == "application/x-test"
    assert g["Metadata"] == {"m": "v"}
    assert g["Body"].read() == body
    # A range across the part boundary.
    a, b = 5 * MiB - 10, 5 * MiB + 10
    assert get_bytes(s3, bucket, "mp", Range=f"bytes={a}-{b}") == body[a : b + 1]
    h = s3.head_object(Bucket=bucket, Key="mp")
    assert h["ETag"] == r["ETag"]
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"]) for o in listed] == [("mp", len(body), r["ETag"])]


def test_multipart_single_small_part(s3, bucket):
    # The last (here: only) part may be smaller than 5 MiB.
    uid, done = upload_parts(s3, bucket, "one", [b"tiny"])
    r = s3.complete_multipart_upload(
        Bucket=bucket, Key="one", UploadId=uid, MultipartUpload={"Parts": done}
    )
    assert r["ETag"] == multipart_etag([b"tiny"])
    assert get_bytes(s3, bucket, "one") == b"tiny"


def test_multipart_complete_retried_after_success_answers_the_same(s3, bucket):
    # SDKs retry a Complete whose answer was lost; S3 answers the retry as
    # the completion. A different part list for the gone upload, or a key
    # overwritten since, is NoSuchUpload.
    parts = [rand(5 * MiB, 21), rand(300, 22)]
    uid, done = upload_parts(s3, bucket, "again", parts)
    first = s3.complete_multipart_upload(
        Bucket=bucket, Key="again", UploadId=uid, MultipartUpload={"Parts": done}
    )
    second = s3.complete_multipart_upload(
        Bucket=bucket, Key="again", UploadId=uid, MultipartUpload={"Parts": done}
    )
    assert second["ETag"] == first["ETag"] == multipart_etag(parts)
    assert get_bytes(s3, bucket, "again") == parts[0] + parts[1]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="again", UploadId=uid, MultipartUpload={"Parts": done[:1]}
        )
    assert error_of(e) == ("NoSuchUpload", 404)
    s3.put_object(Bucket=bucket, Key="again", Body=b"overwritten")
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="again", UploadId=uid, MultipartUpload={"Parts": done}
        )
    assert error_of(e) == ("NoSuchUpload", 404)


def test_multipart_part_reuploaded_and_sparse_numbers(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="sparse")
    uid = up["UploadId"]
    p1, p1b, p7 = rand(5 * MiB, 11), rand(5 * MiB, 12), rand(100, 13)
    s3.upload_part(Bucket=bucket, Key="sparse", UploadId=uid, PartNumber=1, Body=p1)
    e1 = s3.upload_part(Bucket=bucket, Key="sparse", UploadId=uid, PartNumber=1, Body=p1b)["ETag"]
    e7 = s3.upload_part(Bucket=bucket, Key="sparse", UploadId=uid, PartNumber=7, Body=p7)["ETag"]
    r = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="sparse",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 7, "ETag": e7}]},
    )
    assert r["ETag"] == multipart_etag([p1b, p7])
    assert get_bytes(s3, bucket, "sparse") == p1b + p7


def test_multipart_invalid_part_order(s3, bucket):
    uid, done = upload_parts(s3, bucket, "k", [rand(5 * MiB, 1), rand(10, 2)])
    try:
        with pytest.raises(ClientError) as e:
            s3.complete_multipart_upload(
                Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": done[::-1]}
            )
        assert error_of(e) == ("InvalidPartOrder", 400)
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)


def test_multipart_invalid_part(s3, bucket):
    uid, done = upload_parts(s3, bucket, "k", [rand(5 * MiB, 1), rand(10, 2)])
    try:
        wrong_etag = [done[0], {"PartNumber": 2, "ETag": '"%s"' % md5_hex(b"other")}]
        missing_part = [done[0], {"PartNumber": 3, "ETag": done[1]["ETag"]}]
        for parts in (wrong_etag, missing_part):
            with pytest.raises(ClientError) as e:
                s3.complete_multipart_upload(
                    Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": parts}
                )
            assert error_of(e) == ("InvalidPart", 400)
        # The upload survives a failed completion and can still be completed.
        r = s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": done}
        )
        assert r["ETag"].endswith('-2"')
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)
        raise


def test_multipart_entity_too_small(s3, bucket):
    uid, done = upload_parts(s3, bucket, "k", [rand(5 * MiB - 1, 1), rand(10, 2)])
    try:
        with pytest.raises(ClientError) as e:
            s3.complete_multipart_upload(
                Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": done}
            )
        assert error_of(e) == ("EntityTooSmall", 400)
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")


def test_multipart_no_such_upload(s3, bucket):
    bogus = "bm90LWFuLXVwbG9hZA"
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=bogus, PartNumber=1, Body=b"x")
    assert error_of(e) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=bogus,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"%s"' % md5_hex(b"x")}]},
        )
    assert error_of(e) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as e:
        s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=bogus)
    assert error_of(e) == ("NoSuchUpload", 404)


def test_multipart_abort(s3, bucket):
    uid, done = upload_parts(s3, bucket, "k", [rand(5 * MiB, 1)])
    r = s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=2, Body=b"x")
    assert error_of(e) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": done}
        )
    assert error_of(e) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k")
    assert error_of(e)[1] == 404


def test_multipart_completed_upload_is_gone(s3, bucket):
    uid, done = upload_parts(s3, bucket, "k", [b"abc"])
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={"Parts": done})
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=2, Body=b"x")
    assert error_of(e) == ("NoSuchUpload", 404)


@pytest.mark.parametrize("bad", [0, 10001])
def test_multipart_part_number_out_of_range(s3, bucket, bad):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    try:
        with pytest.raises(ClientError) as e:
            s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=bad, Body=b"x")
        assert error_of(e)[1] == 400
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)


def test_multipart_get_part_number(s3, bucket):
    parts = [rand(5 * MiB, 21), rand(3000, 22)]
    uid, done = upload_parts(s3, bucket, "pn", parts)
    s3.complete_multipart_upload(Bucket=bucket, Key="pn", UploadId=uid, MultipartUpload={"Parts": done})
    h = s3.head_object(Bucket=bucket, Key="pn")
    assert h["ContentLength"] == sum(map(len, parts))
    h = s3.head_object(Bucket=bucket, Key="pn", PartNumber=1)
    assert h["PartsCount"] == 2


def test_multipart_composite_sha256(s3, bucket):
    parts = [rand(5 * MiB, 31), rand(777, 32)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="cs", ChecksumAlgorithm="SHA256")
    uid = up["UploadId"]
    assert up.get("ChecksumAlgorithm") == "SHA256"
    done = []
    for i, p in enumerate(parts, 1):
        r = s3.upload_part(
            Bucket=bucket, Key="cs", UploadId=uid, PartNumber=i, Body=p, ChecksumAlgorithm="SHA256"
        )
        assert r["ChecksumSHA256"] == b64(hashlib.sha256(p).digest())
        done.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    r = s3.complete_multipart_upload(
        Bucket=bucket, Key="cs", UploadId=uid, MultipartUpload={"Parts": done}
    )
    composite = b64(hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest())
    assert r["ChecksumSHA256"] == f"{composite}-2"
    g = s3.get_object(Bucket=bucket, Key="cs", ChecksumMode="ENABLED")
    assert g["Body"].read() == b"".join(parts)
    assert g["ChecksumSHA256"] == f"{composite}-2"
    assert g.get("ChecksumType") == "COMPOSITE"


def test_multipart_full_object_crc32(s3, bucket):
    parts = [rand(5 * MiB, 41), rand(5 * MiB, 42), rand(999, 43)]
    body = b"".join(parts)
    up = s3.create_multipart_upload(
        Bucket=bucket, Key="fo", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
    )
    uid = up["UploadId"]
    done = []
    for i, p in enumerate(parts, 1):
        r = s3.upload_part(
            Bucket=bucket, Key="fo", UploadId=uid, PartNumber=i, Body=p, ChecksumAlgorithm="CRC32"
        )
        assert r["ChecksumCRC32"] == crc32_b64(p)
        done.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    r = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="fo",
        UploadId=uid,
        MultipartUpload={"Parts": done},
        ChecksumCRC32=crc32_b64(body),
        ChecksumType="FULL_OBJECT",
    )
    assert r["ChecksumCRC32"] == crc32_b64(body)
    assert r.get("ChecksumType") == "FULL_OBJECT"
    h = s3.head_object(Bucket=bucket, Key="fo", ChecksumMode="ENABLED")
    assert h["ChecksumCRC32"] == crc32_b64(body)


# ---------------------------------------------------------------- checksums


CHECKSUMS = {
    "CRC32": crc32_b64,
    "SHA1": lambda b: b64(hashlib.sha1(b).digest()),
    "SHA256": lambda b: b64(hashlib.sha256(b).digest()),
}


@pytest.mark.parametrize("alg", sorted(CHECKSUMS))
@pytest.mark.parametrize("size", [0, 1000, 3 * MiB + 5])
def test_put_checksum_stored_and_returned(s3, bucket, alg, size):
    body = rand(size, 99)
    expect = CHECKSUMS[alg](body)
    r = s3.put_object(Bucket=bucket, Key="ck", Body=body, ChecksumAlgorithm=alg)
    assert r[f"Checksum{alg}"] == expect
    # With ChecksumMode botocore also validates the body against the header.
    g = s3.get_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert g[f"Checksum{alg}"] == expect
    assert g["Body"].read() == body
    h = s3.head_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert h[f"Checksum{alg}"] == expect
    # Without ChecksumMode no checksum is returned. (botocore >= 1.36 sets
    # ChecksumMode itself unless response_checksum_validation=when_required.)
    plain = make_client(response_checksum_validation="when_required")
    g = plain.get_object(Bucket=bucket, Key="ck")
    assert f"Checksum{alg}" not in g
    assert g["Body"].read() == body


def test_put_default_checksum_is_crc32(s3, bucket):
    """botocore >= 1.36 sends a CRC32 with every PutObject by default
    (request_checksum_calculation=when_supported); S3 stores it."""
    body = b"default checksum"
    s3.put_object(Bucket=bucket, Key="d", Body=body)
    h = s3.head_object(Bucket=bucket, Key="d", ChecksumMode="ENABLED")
    assert h.get("ChecksumCRC32") == crc32_b64(body)


@pytest.mark.parametrize(
    "field,value",
    [
        ("ChecksumCRC32", crc32_b64(b"something else")),
        ("ChecksumSHA1", b64(hashlib.sha1(b"something else").digest())),
        ("ChecksumSHA256", b64(hashlib.sha256(b"something else").digest())),
    ],
)
def test_put_wrong_checksum_is_refused(s3, bucket, field, value):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"the real body", **{field: value})
    assert error_of(e) == ("BadDigest", 400)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="bad")
    assert error_of(e)[1] == 404
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_wrong_checksum_keeps_previous_version(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v1")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"v2", ChecksumCRC32=crc32_b64(b"nope"))
    assert error_of(e) == ("BadDigest", 400)
    assert get_bytes(s3, bucket, "k") == b"v1"


def test_content_md5(s3, bucket):
    body = b"md5 checked body"
    good = b64(hashlib.md5(body).digest())
    s3.put_object(Bucket=bucket, Key="ok", Body=body, ContentMD5=good)
    assert get_bytes(s3, bucket, "ok") == body
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=body, ContentMD5=b64(hashlib.md5(b"x").digest()))
    assert error_of(e) == ("BadDigest", 400)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=body, ContentMD5="not-base64-md5")
    assert error_of(e) == ("InvalidDigest", 400)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="bad")


def test_upload_part_wrong_checksum(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32")["UploadId"]
    try:
        with pytest.raises(ClientError) as e:
            s3.upload_part(
                Bucket=bucket,
                Key="k",
                UploadId=uid,
                PartNumber=1,
                Body=b"part",
                ChecksumCRC32=crc32_b64(b"other"),
            )
        assert error_of(e) == ("BadDigest", 400)
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)


# ---------------------------------------------------------------- presigned URLs and auth


def test_presigned_get(s3, bucket):
    body = rand(100_000, 5)
    s3.put_object(Bucket=bucket, Key="dir/pre signed+ü.bin", Body=body)
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "dir/pre signed+ü.bin"}, ExpiresIn=300
    )
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        assert r.read() == body


def test_presigned_get_with_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="p", Body=b"payload")
    url = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": "p", "ResponseContentDisposition": "attachment; filename=p.txt"},
        ExpiresIn=300,
    )
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.read() == b"payload"
        assert r.headers["Content-Disposition"] == "attachment; filename=p.txt"


def test_presigned_put(s3, bucket):
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "uploaded"}, ExpiresIn=300
    )
    req = urllib.request.Request(url, data=b"via presigned put", method="PUT")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
    assert get_bytes(s3, bucket, "uploaded") == b"via presigned put"


def test_presigned_expired(s3, bucket):
    s3.put_object(Bucket=bucket, Key="p", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=1)
    time.sleep(2.5)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=30)
    assert e.value.code == 403
    assert b"<Code>AccessDenied</Code>" in e.value.read()


def test_presigned_tampered(s3, bucket):
    s3.put_object(Bucket=bucket, Key="p", Body=b"x")
    s3.put_object(Bucket=bucket, Key="q", Body=b"y")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=300)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url.replace("/p?", "/q?"), timeout=30)
    assert e.value.code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in e.value.read()


def test_wrong_secret_signature_does_not_match(s3, bucket):
    bad = make_client(secret_key="wrong" + "x" * 35)
    for call in (
        lambda: bad.list_buckets(),
        lambda: bad.list_objects_v2(Bucket=bucket),
        lambda: bad.put_object(Bucket=bucket, Key="k", Body=b"x"),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e) == ("SignatureDoesNotMatch", 403)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_unknown_access_key(s3):
    bad = make_client(access_key="AKIAUNKNOWNUNKNOWN00", secret_key="x" * 40)
    with pytest.raises(ClientError) as e:
        bad.list_buckets()
    assert error_of(e) == ("InvalidAccessKeyId", 403)


def test_unsigned_request_refused(bucket):
    from conftest import ENDPOINT

    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{ENDPOINT}/{bucket}?list-type=2", timeout=30)
    assert e.value.code == 403
    assert b"<Code>AccessDenied</Code>" in e.value.read()


# ---------------------------------------------------------------- transfer manager


def test_upload_file_download_file_30_mib(s3, bucket, tmp_path):
    src = tmp_path / "src.bin"
    dst = tmp_path / "dst.bin"
    data = rand(30 * MiB, 2024)
    src.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=4)
    s3.upload_file(str(src), bucket, "big/30mib.bin", Config=cfg, ExtraArgs={"Metadata": {"k": "v"}})
    h = s3.head_object(Bucket=bucket, Key="big/30mib.bin")
    assert h["ContentLength"] == 30 * MiB
    chunks = [data[i : i + 8 * MiB] for i in range(0, len(data), 8 * MiB)]
    assert h["ETag"] == multipart_etag(chunks)
    assert h["Metadata"] == {"k": "v"}
    s3.download_file(bucket, "big/30mib.bin", str(dst), Config=cfg)
    assert dst.stat().st_size == 30 * MiB
    assert dst.read_bytes() == data
    # upload_fileobj/download_fileobj below the threshold: a single PutObject.
    small = rand(3 * MiB, 1)
    import io

    s3.upload_fileobj(io.BytesIO(small), bucket, "small.bin", Config=cfg)
    assert s3.head_object(Bucket=bucket, Key="small.bin")["ETag"] == f'"{md5_hex(small)}"'
    out = io.BytesIO()
    s3.download_fileobj(bucket, "small.bin", out, Config=cfg)
    assert out.getvalue() == small


def test_concurrent_puts_distinct_keys(s3, bucket):
    from concurrent.futures import ThreadPoolExecutor

    bodies = {f"c/{i:03}": rand(1000 + i, i) for i in range(40)}

    def put(kv):
        s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1])

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(put, bodies.items()))
    keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in p["Contents"]]
    assert keys == sorted(bodies)
    for k, v in list(bodies.items())[::7]:
        assert get_bytes(s3, bucket, k) == v


def test_get_and_head_by_part_number(s3, bucket):
    parts = [rand(5 * MiB, 21), rand(5 * MiB, 22), rand(777, 23)]
    uid, done = upload_parts(s3, bucket, "pn", parts)
    s3.complete_multipart_upload(Bucket=bucket, Key="pn", UploadId=uid, MultipartUpload={"Parts": done})
    total = sum(len(p) for p in parts)
    start = 0
    for n, p in enumerate(parts, 1):
        r = s3.get_object(Bucket=bucket, Key="pn", PartNumber=n)
        assert r["Body"].read() == p
        assert r["PartsCount"] == 3
        assert r["ContentRange"] == f"bytes {start}-{start + len(p) - 1}/{total}"
        h = s3.head_object(Bucket=bucket, Key="pn", PartNumber=n)
        assert h["ContentLength"] == len(p)
        start += len(p)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="pn", PartNumber=4)
    assert error_of(e)[1] == 416
    # A single-PUT object has exactly one part: the whole object.
    s3.put_object(Bucket=bucket, Key="single", Body=b"one part")
    r = s3.get_object(Bucket=bucket, Key="single", PartNumber=1)
    assert r["Body"].read() == b"one part"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="single", PartNumber=2)
    assert error_of(e)[1] == 416
