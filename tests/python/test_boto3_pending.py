"""boto3 tests for S3 operations being implemented now: CopyObject,
DeleteObjects, ListObjects (v1), conditional PutObject, ListParts,
ListMultipartUploads, UploadPartCopy, object and bucket tagging; plus
`aws s3 cp` s3→s3. Select them alone with

    python -m pytest tests/python/test_boto3_pending.py
"""

import hashlib
import threading

import pytest
from botocore.exceptions import ClientError

from conftest import MiB, error_of

NO_MATCH = '"0123456789abcdef0123456789abcdef"'


def rand(n, seed):
    import random

    return random.Random(seed).randbytes(n)


def md5_hex(b):
    return hashlib.md5(b).hexdigest()


def get_bytes(s3, bucket, key, **kw):
    return s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()


# ---------------------------------------------------------------- CopyObject


@pytest.fixture
def source(s3, bucket):
    body = rand(70_000, 1)
    s3.put_object(
        Bucket=bucket,
        Key="src/object ü+.bin",
        Body=body,
        Metadata={"origin": "source", "n": "1"},
        ContentType="application/x-source",
        CacheControl="max-age=60",
    )
    etag = s3.head_object(Bucket=bucket, Key="src/object ü+.bin")["ETag"]
    return {"bucket": bucket, "key": "src/object ü+.bin", "body": body, "etag": etag}


def test_copy_object_same_bucket_copies_metadata(s3, source):
    b = source["bucket"]
    r = s3.copy_object(Bucket=b, Key="dst/copy", CopySource={"Bucket": b, "Key": source["key"]})
    # A copy of a single-part object has the same MD5 ETag.
    assert r["CopyObjectResult"]["ETag"] == source["etag"]
    assert "LastModified" in r["CopyObjectResult"]
    g = s3.get_object(Bucket=b, Key="dst/copy")
    assert g["Body"].read() == source["body"]
    assert g["ETag"] == source["etag"]
    assert g["Metadata"] == {"origin": "source", "n": "1"}
    assert g["ContentType"] == "application/x-source"
    assert g["CacheControl"] == "max-age=60"
    # The source is untouched.
    assert get_bytes(s3, b, source["key"]) == source["body"]


def test_copy_object_replace_metadata(s3, source):
    b = source["bucket"]
    s3.copy_object(
        Bucket=b,
        Key="dst/replaced",
        CopySource={"Bucket": b, "Key": source["key"]},
        MetadataDirective="REPLACE",
        Metadata={"new": "yes"},
        ContentType="text/plain",
    )
    h = s3.head_object(Bucket=b, Key="dst/replaced")
    assert h["Metadata"] == {"new": "yes"}
    assert h["ContentType"] == "text/plain"
    assert "CacheControl" not in h
    assert get_bytes(s3, b, "dst/replaced") == source["body"]


def test_copy_object_copy_directive_ignores_new_metadata(s3, source):
    b = source["bucket"]
    s3.copy_object(
        Bucket=b,
        Key="dst/c",
        CopySource={"Bucket": b, "Key": source["key"]},
        MetadataDirective="COPY",
        Metadata={"ignored": "1"},
    )
    assert s3.head_object(Bucket=b, Key="dst/c")["Metadata"] == {"origin": "source", "n": "1"}


def test_copy_object_between_buckets(s3, source, make_bucket):
    other = make_bucket()
    s3.copy_object(
        Bucket=other, Key="copied", CopySource={"Bucket": source["bucket"], "Key": source["key"]}
    )
    assert get_bytes(s3, other, "copied") == source["body"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=other)["Contents"]] == ["copied"]


def test_copy_object_multipart_source(s3, bucket):
    parts = [rand(5 * MiB, 2), rand(1000, 3)]
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    done = [
        {"PartNumber": i, "ETag": s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=i, Body=p)["ETag"]}
        for i, p in enumerate(parts, 1)
    ]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": done})
    s3.copy_object(Bucket=bucket, Key="mp-copy", CopySource={"Bucket": bucket, "Key": "mp"})
    assert get_bytes(s3, bucket, "mp-copy") == b"".join(parts)


def test_copy_object_overwrites_destination(s3, source):
    b = source["bucket"]
    s3.put_object(Bucket=b, Key="dst/existing", Body=b"old", Metadata={"old": "1"})
    s3.copy_object(Bucket=b, Key="dst/existing", CopySource={"Bucket": b, "Key": source["key"]})
    g = s3.get_object(Bucket=b, Key="dst/existing")
    assert g["Body"].read() == source["body"]
    assert g["Metadata"] == {"origin": "source", "n": "1"}


def test_copy_object_conditions(s3, source):
    b, src = source["bucket"], {"Bucket": source["bucket"], "Key": source["key"]}
    s3.copy_object(Bucket=b, Key="ok", CopySource=src, CopySourceIfMatch=source["etag"])
    assert get_bytes(s3, b, "ok") == source["body"]
    s3.copy_object(Bucket=b, Key="ok2", CopySource=src, CopySourceIfNoneMatch=NO_MATCH)
    for kw in ({"CopySourceIfMatch": NO_MATCH}, {"CopySourceIfNoneMatch": source["etag"]}):
        with pytest.raises(ClientError) as e:
            s3.copy_object(Bucket=b, Key="never", CopySource=src, **kw)
        assert error_of(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=b, Key="never")
    assert error_of(e)[1] == 404


def test_copy_object_to_itself_needs_replace(s3, source):
    b, k = source["bucket"], source["key"]
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=b, Key=k, CopySource={"Bucket": b, "Key": k})
    assert error_of(e) == ("InvalidRequest", 400)
    s3.copy_object(
        Bucket=b, Key=k, CopySource={"Bucket": b, "Key": k}, MetadataDirective="REPLACE", Metadata={"v": "2"}
    )
    g = s3.get_object(Bucket=b, Key=k)
    assert g["Metadata"] == {"v": "2"}
    assert g["Body"].read() == source["body"]


def test_copy_object_missing_source(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="d", CopySource={"Bucket": bucket, "Key": "nope"})
    assert error_of(e) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="d", CopySource={"Bucket": "no-such-bucket-pyt-x", "Key": "k"})
    assert error_of(e) == ("NoSuchBucket", 404)


# ---------------------------------------------------------------- DeleteObjects


def test_delete_objects_verbose(s3, bucket):
    for k in ("a", "b", "c/d", "e f+"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    r = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "a"}, {"Key": "c/d"}, {"Key": "e f+"}, {"Key": "never-existed"}]},
    )
    # S3 reports keys that did not exist as deleted too.
    assert sorted(d["Key"] for d in r["Deleted"]) == ["a", "c/d", "e f+", "never-existed"]
    assert not r.get("Errors")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["b"]


def test_delete_objects_quiet(s3, bucket):
    for k in ("a", "b"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    r = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}], "Quiet": True}
    )
    assert not r.get("Deleted")
    assert not r.get("Errors")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_delete_objects_thousand(s3, bucket):
    from concurrent.futures import ThreadPoolExecutor

    keys = [f"many/{i:04}" for i in range(1000)]
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b""), keys))
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert len(r["Deleted"]) == 1000
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


# ---------------------------------------------------------------- ListObjects v1


V1_KEYS = ["a/1", "a/2", "a/b/3", "b", "c", "d/e", "f"]


@pytest.fixture
def v1(s3, bucket):
    for k in V1_KEYS:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    return bucket


def test_list_objects_v1(s3, v1):
    r = s3.list_objects(Bucket=v1)
    assert [o["Key"] for o in r["Contents"]] == V1_KEYS
    assert r["IsTruncated"] is False
    assert r["Contents"][0]["Size"] == 3
    assert r["Contents"][0]["ETag"] == f'"{md5_hex(b"a/1")}"'


def test_list_objects_v1_marker(s3, v1):
    seen, marker = [], ""
    for _ in range(10):
        r = s3.list_objects(Bucket=v1, MaxKeys=3, Marker=marker)
        keys = [o["Key"] for o in r.get("Contents", [])]
        assert len(keys) <= 3
        seen += keys
        if not r["IsTruncated"]:
            break
        # Without a delimiter S3 may omit NextMarker: the last key is the marker.
        marker = r.get("NextMarker") or keys[-1]
    assert seen == V1_KEYS
    r = s3.list_objects(Bucket=v1, Marker="b")
    assert [o["Key"] for o in r["Contents"]] == ["c", "d/e", "f"]
    assert r["Marker"] == "b"


def test_list_objects_v1_delimiter_next_marker(s3, v1):
    r = s3.list_objects(Bucket=v1, Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["b", "c", "f"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "d/"]
    r = s3.list_objects(Bucket=v1, Delimiter="/", MaxKeys=2)
    assert r["IsTruncated"] is True
    # With a delimiter, a truncated response carries NextMarker.
    assert r["NextMarker"] in ("a/", "b")
    keys, prefixes = [], []
    for page in s3.get_paginator("list_objects").paginate(
        Bucket=v1, Delimiter="/", PaginationConfig={"PageSize": 1}
    ):
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert keys == ["b", "c", "f"]
    assert prefixes == ["a/", "d/"]


def test_list_objects_v1_prefix_and_plus(s3, bucket):
    for k in ("p/x+y", "p/x y", "q"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"1")
    r = s3.list_objects(Bucket=bucket, Prefix="p/")
    assert [o["Key"] for o in r["Contents"]] == ["p/x y", "p/x+y"]


# ---------------------------------------------------------------- conditional PutObject


def test_put_if_none_match(s3, bucket):
    s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
    assert error_of(e) == ("PreconditionFailed", 412)
    assert get_bytes(s3, bucket, "once") == b"first"
    # After a delete the key may be created again.
    s3.delete_object(Bucket=bucket, Key="once")
    s3.put_object(Bucket=bucket, Key="once", Body=b"third", IfNoneMatch="*")
    assert get_bytes(s3, bucket, "once") == b"third"


def test_put_if_match(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    etag2 = s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch=etag)["ETag"]
    assert get_bytes(s3, bucket, "k") == b"v2"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"v3", IfMatch=etag)  # stale
    assert error_of(e) == ("PreconditionFailed", 412)
    assert get_bytes(s3, bucket, "k") == b"v2"
    s3.put_object(Bucket=bucket, Key="k", Body=b"v4", IfMatch=etag2)
    assert get_bytes(s3, bucket, "k") == b"v4"
    # If-Match on a key that does not exist: 404 NoSuchKey.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="absent", Body=b"x", IfMatch=etag)
    assert error_of(e) == ("NoSuchKey", 404)


def test_put_if_none_match_race(s3, bucket):
    """Writers race to create one key with If-None-Match: *: exactly one wins;
    the others get 412 (or 409 ConditionalRequestConflict, which S3 may send
    for a concurrent conditional write), and the stored body is the winner's."""
    n = 8
    barrier = threading.Barrier(n)
    results = [None] * n

    def put(i):
        barrier.wait()
        try:
            s3.put_object(Bucket=bucket, Key="race", Body=f"writer {i}".encode(), IfNoneMatch="*")
            results[i] = "ok"
        except ClientError as e:
            results[i] = error_of(e)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in enumerate(results) if r == "ok"]
    assert len(winners) == 1, results
    for r in results:
        assert r == "ok" or r in (("PreconditionFailed", 412), ("ConditionalRequestConflict", 409)), results
    assert get_bytes(s3, bucket, "race") == f"writer {winners[0]}".encode()


def test_complete_multipart_if_none_match(s3, bucket):
    s3.put_object(Bucket=bucket, Key="exists", Body=b"x")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="exists")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="exists", UploadId=uid, PartNumber=1, Body=b"y")["ETag"]
    try:
        with pytest.raises(ClientError) as e:
            s3.complete_multipart_upload(
                Bucket=bucket,
                Key="exists",
                UploadId=uid,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}]},
                IfNoneMatch="*",
            )
        assert error_of(e) == ("PreconditionFailed", 412)
    finally:
        try:
            s3.abort_multipart_upload(Bucket=bucket, Key="exists", UploadId=uid)
        except ClientError:
            pass
    assert get_bytes(s3, bucket, "exists") == b"x"


# ---------------------------------------------------------------- ListParts, ListMultipartUploads


def test_list_parts(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="lp")["UploadId"]
    try:
        parts = [rand(5 * MiB, 1), rand(100, 2), rand(200, 3)]
        etags = [
            s3.upload_part(Bucket=bucket, Key="lp", UploadId=uid, PartNumber=i, Body=p)["ETag"]
            for i, p in enumerate(parts, 1)
        ]
        r = s3.list_parts(Bucket=bucket, Key="lp", UploadId=uid)
        assert r["UploadId"] == uid
        assert r["Key"] == "lp"
        assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in r["Parts"]] == [
            (i, etags[i - 1], len(parts[i - 1])) for i in (1, 2, 3)
        ]
        assert r["IsTruncated"] is False
        r = s3.list_parts(Bucket=bucket, Key="lp", UploadId=uid, MaxParts=2)
        assert [p["PartNumber"] for p in r["Parts"]] == [1, 2]
        assert r["IsTruncated"] is True
        assert int(r["NextPartNumberMarker"]) == 2
        r = s3.list_parts(Bucket=bucket, Key="lp", UploadId=uid, PartNumberMarker=2)
        assert [p["PartNumber"] for p in r["Parts"]] == [3]
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="lp", UploadId=uid)
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="lp", UploadId=uid)
    assert error_of(e) == ("NoSuchUpload", 404)


def test_list_multipart_uploads(s3, bucket):
    a = s3.create_multipart_upload(Bucket=bucket, Key="x/one")["UploadId"]
    b = s3.create_multipart_upload(Bucket=bucket, Key="x/two")["UploadId"]
    c = s3.create_multipart_upload(Bucket=bucket, Key="y/three")["UploadId"]
    try:
        r = s3.list_multipart_uploads(Bucket=bucket)
        assert r["Bucket"] == bucket
        assert sorted((u["Key"], u["UploadId"]) for u in r["Uploads"]) == sorted(
            [("x/one", a), ("x/two", b), ("y/three", c)]
        )
        assert [u["Key"] for u in r["Uploads"]] == ["x/one", "x/two", "y/three"]
        r = s3.list_multipart_uploads(Bucket=bucket, Prefix="x/")
        assert [u["Key"] for u in r["Uploads"]] == ["x/one", "x/two"]
        r = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
        assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["x/", "y/"]
        seen = []
        for page in s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 1}
        ):
            seen += [u["UploadId"] for u in page.get("Uploads", [])]
        assert sorted(seen) == sorted([a, b, c])
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="x/one", UploadId=a)
    r = s3.list_multipart_uploads(Bucket=bucket)
    assert sorted(u["UploadId"] for u in r["Uploads"]) == sorted([b, c])
    s3.abort_multipart_upload(Bucket=bucket, Key="x/two", UploadId=b)
    s3.abort_multipart_upload(Bucket=bucket, Key="y/three", UploadId=c)
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


# ---------------------------------------------------------------- UploadPartCopy


def test_upload_part_copy_ranges(s3, bucket, make_bucket):
    src_bucket = make_bucket()
    body = rand(12 * MiB + 17, 5)
    s3.put_object(Bucket=src_bucket, Key="source", Body=body)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="assembled")["UploadId"]
    try:
        src = {"Bucket": src_bucket, "Key": "source"}
        r1 = s3.upload_part_copy(
            Bucket=bucket, Key="assembled", UploadId=uid, PartNumber=1,
            CopySource=src, CopySourceRange=f"bytes=0-{6 * MiB - 1}",
        )
        assert r1["CopyPartResult"]["ETag"] == f'"{md5_hex(body[: 6 * MiB])}"'
        r2 = s3.upload_part_copy(
            Bucket=bucket, Key="assembled", UploadId=uid, PartNumber=2,
            CopySource=src, CopySourceRange=f"bytes={6 * MiB}-{len(body) - 1}",
        )
        tail = b"an uploaded tail"
        r3 = s3.upload_part(Bucket=bucket, Key="assembled", UploadId=uid, PartNumber=3, Body=tail)
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="assembled",
            UploadId=uid,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": 1, "ETag": r1["CopyPartResult"]["ETag"]},
                    {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]},
                    {"PartNumber": 3, "ETag": r3["ETag"]},
                ]
            },
        )
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key="assembled", UploadId=uid)
        raise
    assert get_bytes(s3, bucket, "assembled") == body + tail


def test_upload_part_copy_whole_object_and_bad_range(s3, bucket):
    body = rand(5 * MiB, 6)
    s3.put_object(Bucket=bucket, Key="s", Body=body)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="d")["UploadId"]
    try:
        r = s3.upload_part_copy(
            Bucket=bucket, Key="d", UploadId=uid, PartNumber=1, CopySource={"Bucket": bucket, "Key": "s"}
        )
        assert r["CopyPartResult"]["ETag"] == f'"{md5_hex(body)}"'
        with pytest.raises(ClientError) as e:
            s3.upload_part_copy(
                Bucket=bucket, Key="d", UploadId=uid, PartNumber=2,
                CopySource={"Bucket": bucket, "Key": "s"}, CopySourceRange=f"bytes=0-{len(body)}",
            )
        assert error_of(e) == ("InvalidRange", 416)
        s3.complete_multipart_upload(
            Bucket=bucket, Key="d", UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["CopyPartResult"]["ETag"]}]},
        )
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key="d", UploadId=uid)
        raise
    assert get_bytes(s3, bucket, "d") == body


# ---------------------------------------------------------------- tagging


def test_object_tagging(s3, bucket):
    s3.put_object(Bucket=bucket, Key="t", Body=b"x")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    tags = [{"Key": "project", "Value": "weft"}, {"Key": "tier", "Value": "hot cold+"}]
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": tags})
    got = s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert sorted(got, key=lambda t: t["Key"]) == tags
    assert s3.get_object(Bucket=bucket, Key="t")["TagCount"] == 2
    # Replacing, not merging.
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "only", "Value": "1"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "only", "Value": "1"}]
    r = s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    # Tagging does not change the object.
    assert get_bytes(s3, bucket, "t") == b"x"


def test_put_object_with_tagging_header(s3, bucket):
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="a=1&b=two%20words")
    got = s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert sorted(got, key=lambda t: t["Key"]) == [
        {"Key": "a", "Value": "1"},
        {"Key": "b", "Value": "two words"},
    ]


def test_object_tagging_missing_key(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_object_tagging(Bucket=bucket, Key="absent")
    assert error_of(e) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=bucket, Key="absent", Tagging={"TagSet": []})
    assert error_of(e) == ("NoSuchKey", 404)


def test_object_tagging_limits(s3, bucket):
    s3.put_object(Bucket=bucket, Key="t", Body=b"x")
    eleven = [{"Key": f"k{i}", "Value": "v"} for i in range(11)]
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": eleven})
    assert error_of(e)[1] == 400
    dup = [{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}]
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": dup})
    assert error_of(e)[1] == 400


def test_bucket_tagging(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_of(e) == ("NoSuchTagSet", 404)
    tags = [{"Key": "cost-center", "Value": "42"}, {"Key": "env", "Value": "test"}]
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    got = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    assert sorted(got, key=lambda t: t["Key"]) == tags
    r = s3.delete_bucket_tagging(Bucket=bucket)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_of(e) == ("NoSuchTagSet", 404)


# ---------------------------------------------------------------- aws-cli s3→s3


def test_awscli_cp_s3_to_s3(s3, aws, make_bucket, tmp_path):
    a, b = make_bucket(), make_bucket()
    small = rand(10_000, 7)
    big = rand(20 * MiB, 8)
    s3.put_object(Bucket=a, Key="small.bin", Body=small)
    (tmp_path / "big.bin").write_bytes(big)
    aws("s3", "cp", "--no-progress", tmp_path / "big.bin", f"s3://{a}/big.bin")
    aws("s3", "cp", "--no-progress", f"s3://{a}/small.bin", f"s3://{b}/copy/small.bin")
    # Above the multipart threshold aws-cli copies with UploadPartCopy.
    aws("s3", "cp", "--no-progress", f"s3://{a}/big.bin", f"s3://{b}/copy/big.bin")
    aws("s3", "cp", "--no-progress", "--recursive", f"s3://{a}/", f"s3://{a}/again/")
    assert get_bytes(s3, b, "copy/small.bin") == small
    assert get_bytes(s3, b, "copy/big.bin") == big
    assert get_bytes(s3, a, "again/big.bin") == big
    # `aws s3 mv` = copy + delete.
    aws("s3", "mv", "--no-progress", f"s3://{b}/copy/small.bin", f"s3://{b}/moved.bin")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]]
    assert keys == ["copy/big.bin", "moved.bin"]
