"""S3 versioning with boto3: version ids, delete markers, reads and deletes
by version, suspended buckets and their `null` version, ListObjectVersions."""

import pytest
from botocore.exceptions import ClientError

from conftest import error_of


def versions_of(s3, bucket, key=None):
    r = s3.list_object_versions(Bucket=bucket)
    vs = [(v["Key"], v["VersionId"], v["IsLatest"], "v") for v in r.get("Versions", [])]
    ms = [(m["Key"], m["VersionId"], m["IsLatest"], "m") for m in r.get("DeleteMarkers", [])]
    out = vs + ms
    return [x for x in out if key is None or x[0] == key]


def test_versioned_put_get_delete_cycle(s3, bucket):
    assert s3.get_bucket_versioning(Bucket=bucket).get("Status") is None
    s3.put_object(Bucket=bucket, Key="before", Body=b"pre-versioning")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"

    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    assert v1 != v2 and "null" not in (v1, v2)
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"two" and got["VersionId"] == v2
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"
    assert s3.head_object(Bucket=bucket, Key="k", VersionId=v1)["ContentLength"] == 3

    # A plain delete adds a delete marker; the data stays.
    d = s3.delete_object(Bucket=bucket, Key="k")
    assert d["DeleteMarker"] is True
    marker = d["VersionId"]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert error_of(e) == ("NoSuchKey", 404)
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v2)["Body"].read() == b"two"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k", VersionId=marker)
    assert error_of(e)[1] == 405
    listed = sorted(versions_of(s3, bucket, "k"), key=lambda x: x[1])
    assert {(vid, kind) for _, vid, _, kind in listed} == {(v1, "v"), (v2, "v"), (marker, "m")}
    assert [vid for _, vid, latest, _ in listed if latest] == [marker]
    # ListObjects does not show a key whose latest entry is a marker.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["before"]

    # Deleting the marker brings v2 back; deleting v2 by id makes v1 current.
    s3.delete_object(Bucket=bucket, Key="k", VersionId=marker)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v2)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"one"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", VersionId=v2)
    assert error_of(e) == ("NoSuchVersion", 404)

    # The object written before versioning is the `null` version.
    assert ("before", "null", True, "v") in versions_of(s3, bucket, "before")
    assert s3.get_object(Bucket=bucket, Key="before", VersionId="null")["Body"].read() == b"pre-versioning"


def test_suspended_bucket_overwrites_the_null_version(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    kept = s3.put_object(Bucket=bucket, Key="k", Body=b"kept")["VersionId"]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"n1").get("VersionId") == "null"
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"n2").get("VersionId") == "null"
    listed = versions_of(s3, bucket, "k")
    assert sorted(vid for _, vid, _, _ in listed) == sorted([kept, "null"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"n2"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=kept)["Body"].read() == b"kept"
    # A delete in a suspended bucket leaves a `null` delete marker.
    d = s3.delete_object(Bucket=bucket, Key="k")
    assert d["DeleteMarker"] is True and d["VersionId"] == "null"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=kept)["Body"].read() == b"kept"


def test_bucket_with_versions_is_not_empty_and_versions_can_be_removed(s3, make_bucket):
    b = make_bucket("ver")
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=b, Key="x", Body=b"x")
    s3.delete_object(Bucket=b, Key="x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=b)
    assert error_of(e) == ("BucketNotEmpty", 409)
    objs = [{"Key": k, "VersionId": v} for k, v, _, _ in versions_of(s3, b)]
    r = s3.delete_objects(Bucket=b, Delete={"Objects": objs})
    assert len(r.get("Deleted", [])) == 2 and not r.get("Errors")
    assert versions_of(s3, b) == []
    s3.delete_bucket(Bucket=b)


def test_list_object_versions_pages(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    ids = {}
    for k in ["a", "b", "c"]:
        ids[k] = [s3.put_object(Bucket=bucket, Key=k, Body=k.encode() * n)["VersionId"] for n in (1, 2)]
    seen = []
    kw = {}
    while True:
        r = s3.list_object_versions(Bucket=bucket, MaxKeys=2, **kw)
        seen += [(v["Key"], v["VersionId"]) for v in r.get("Versions", [])]
        if not r["IsTruncated"]:
            break
        kw = {"KeyMarker": r["NextKeyMarker"], "VersionIdMarker": r["NextVersionIdMarker"]}
    assert seen == [(k, vid) for k in ["a", "b", "c"] for vid in reversed(ids[k])]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="a", VersionId="0" * 32)
    assert error_of(e) == ("NoSuchVersion", 404)


def test_list_object_versions_with_delimiter(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for k in ["top", "d1/a", "d1/b", "d2/a"]:
        s3.put_object(Bucket=bucket, Key=k, Body=b"1")
        s3.put_object(Bucket=bucket, Key=k, Body=b"2")
    r = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in r.get("CommonPrefixes", [])] == ["d1/", "d2/"]
    assert sorted({v["Key"] for v in r["Versions"]}) == ["top"]
    assert len(r["Versions"]) == 2
    # Paged one item at a time: each prefix once, every version of "top".
    items, kw = [], {}
    while True:
        r = s3.list_object_versions(Bucket=bucket, Delimiter="/", MaxKeys=1, **kw)
        items += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        items += [v["Key"] for v in r.get("Versions", [])]
        if not r["IsTruncated"]:
            break
        kw = {"KeyMarker": r["NextKeyMarker"]}
        if r.get("NextVersionIdMarker"):
            kw["VersionIdMarker"] = r["NextVersionIdMarker"]
    assert items == ["d1/", "d2/", "top", "top"]
    r = s3.list_object_versions(Bucket=bucket, Prefix="d1/", Delimiter="/")
    assert sorted(v["Key"] for v in r["Versions"]) == ["d1/a", "d1/a", "d1/b", "d1/b"]


def test_version_ids_in_an_unversioned_bucket_leave_nothing_behind(s3, make_bucket):
    b = make_bucket("unv")
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    # Deleting an unknown version succeeds and changes nothing.
    s3.delete_object(Bucket=b, Key="k", VersionId="0" * 32)
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"x"
    # The object is the `null` version; deleting it by that id removes it.
    assert s3.get_object(Bucket=b, Key="k", VersionId="null")["Body"].read() == b"x"
    s3.delete_object(Bucket=b, Key="k", VersionId="null")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=b, Key="k")
    assert error_of(e) == ("NoSuchKey", 404)
    s3.put_object(Bucket=b, Key="k2", Body=b"y")
    s3.delete_object(Bucket=b, Key="k2", VersionId="1" * 32)
    s3.delete_object(Bucket=b, Key="k2")
    s3.list_object_versions(Bucket=b)
    assert s3.list_object_versions(Bucket=b).get("Versions", []) == []
    s3.delete_bucket(Bucket=b)
