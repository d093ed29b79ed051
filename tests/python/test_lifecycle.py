"""Bucket lifecycle rules through boto3 and aws-cli, and what they do on a
cluster whose lifecycle day is one second (cli/tests/python_clients.rs runs
this file alone on such a cluster; the engine scans every 250 ms).

Every wait is bounded; a rule that should not fire is checked after the
ones that should have, when it would have been due too.
"""

import json
import time

import pytest
from botocore.exceptions import ClientError

from conftest import error_of

# Generous against a busy 2-core machine: due after ~2 s, scanned every 0.25 s.
DEADLINE_S = 60


def wait_for(what, check, state=lambda: None):
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"{what} did not happen within {DEADLINE_S} s; last state: {state()}")


def exists(s3, bucket, key):
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as e:
        if e.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
            return False
        raise


def rules_of(s3, bucket):
    return s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]


def test_aws_cli_puts_gets_and_deletes_a_configuration_from_a_json_file(aws, bucket, tmp_path):
    config = {
        "Rules": [
            {
                "ID": "logs",
                "Status": "Enabled",
                "Filter": {"Prefix": "logs/"},
                "Expiration": {"Days": 30},
                "NoncurrentVersionExpiration": {"NoncurrentDays": 7, "NewerNoncurrentVersions": 2},
            },
            {
                "ID": "big-scratch",
                "Status": "Disabled",
                "Filter": {
                    "And": {
                        "Prefix": "scratch/",
                        "Tags": [{"Key": "kind", "Value": "tmp"}],
                        "ObjectSizeGreaterThan": 1024,
                        "ObjectSizeLessThan": 1048576,
                    }
                },
                "Expiration": {"Date": "2030-01-01T00:00:00Z"},
            },
            {
                "ID": "uploads",
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3},
            },
            {
                "ID": "markers",
                "Status": "Enabled",
                "Filter": {"Prefix": "old/"},
                "Expiration": {"ExpiredObjectDeleteMarker": True},
            },
            {
                "ID": "archive",
                "Status": "Enabled",
                "Filter": {"Prefix": "archive/"},
                "Transitions": [
                    {"Days": 30, "StorageClass": "STANDARD_IA"},
                    {"Days": 90, "StorageClass": "GLACIER_IR"},
                ],
                "NoncurrentVersionTransitions": [
                    {"NoncurrentDays": 30, "NewerNoncurrentVersions": 1,
                     "StorageClass": "ONEZONE_IA"},
                ],
                "Expiration": {"Days": 365},
            },
        ]
    }
    f = tmp_path / "lifecycle.json"
    f.write_text(json.dumps(config))
    aws("s3api", "put-bucket-lifecycle-configuration", "--bucket", bucket,
        "--lifecycle-configuration", f"file://{f}")
    got = json.loads(aws("s3api", "get-bucket-lifecycle-configuration", "--bucket", bucket).stdout)
    by_id = {r["ID"]: r for r in got["Rules"]}
    assert set(by_id) == {"logs", "big-scratch", "uploads", "markers", "archive"}
    assert by_id["archive"]["Transitions"] == config["Rules"][4]["Transitions"]
    assert by_id["archive"]["NoncurrentVersionTransitions"] == \
        config["Rules"][4]["NoncurrentVersionTransitions"]
    assert by_id["logs"]["Expiration"] == {"Days": 30}
    assert by_id["logs"]["Filter"] == {"Prefix": "logs/"}
    assert by_id["logs"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": 7, "NewerNoncurrentVersions": 2}
    assert by_id["big-scratch"]["Status"] == "Disabled"
    assert by_id["big-scratch"]["Filter"]["And"] == config["Rules"][1]["Filter"]["And"]
    assert by_id["big-scratch"]["Expiration"]["Date"].startswith("2030-01-01T00:00:00")
    assert by_id["uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 3}
    assert by_id["markers"]["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    aws("s3api", "delete-bucket-lifecycle", "--bucket", bucket)
    p = aws("s3api", "get-bucket-lifecycle-configuration", "--bucket", bucket, check=False)
    assert p.returncode != 0 and "NoSuchLifecycleConfiguration" in p.stderr, p.stderr


@pytest.mark.parametrize(
    "rule,code",
    [
        ({"Expiration": {"Days": 0}}, "InvalidArgument"),
        ({"Expiration": {"Days": 1, "ExpiredObjectDeleteMarker": True}}, "InvalidArgument"),
        ({"Expiration": {"Date": "2030-01-01T12:00:00Z"}}, "InvalidArgument"),
        ({"Filter": {"Prefix": "a/", "Tag": {"Key": "k", "Value": "v"}},
          "Expiration": {"Days": 1}}, "MalformedXML"),
        ({"Filter": {"Tag": {"Key": "k", "Value": "v"}},
          "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}, "InvalidArgument"),
        ({"Filter": {"And": {"Prefix": "", "ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 10}},
          "Expiration": {"Days": 1}}, "InvalidArgument"),
        ({"NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 101}},
         "InvalidArgument"),
        ({}, "MalformedXML"),
        # AWS's minimum of 30 days before an infrequent-access class.
        ({"Transitions": [{"Days": 29, "StorageClass": "STANDARD_IA"}]}, "InvalidArgument"),
        ({"NoncurrentVersionTransitions": [{"NoncurrentDays": 5, "StorageClass": "ONEZONE_IA"}]},
         "InvalidArgument"),
        ({"Transitions": [{"Days": 30, "StorageClass": "STANDARD_IA"},
                          {"Date": "2030-01-01T00:00:00Z", "StorageClass": "GLACIER_IR"}]},
         "InvalidArgument"),
        ({"Transitions": [{"Days": 40, "StorageClass": "GLACIER_IR"},
                          {"Days": 50, "StorageClass": "GLACIER_IR"}]}, "InvalidArgument"),
        ({"Transitions": [{"Days": 30, "StorageClass": "GLACIER_IR"},
                          {"Days": 60, "StorageClass": "STANDARD_IA"}]}, "InvalidArgument"),
        ({"Transitions": [{"Days": 40, "StorageClass": "GLACIER_IR"}],
          "Expiration": {"Days": 40}}, "InvalidArgument"),
        ({"Transitions": [{"Days": 40, "StorageClass": "NO_SUCH_CLASS"}]}, "InvalidArgument"),
    ],
)
def test_invalid_configurations_are_refused_with_s3_codes(s3, bucket, rule, code):
    r = {"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""}}
    r.update(rule)
    with pytest.raises(ClientError) as e:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [r]})
    assert error_of(e)[0] == code, e.value.response
    # Nothing was stored.
    with pytest.raises(ClientError) as e:
        rules_of(s3, bucket)
    assert error_of(e) == ("NoSuchLifecycleConfiguration", 404)


def test_duplicate_rule_ids_are_refused(s3, bucket):
    r = {"ID": "same", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}
    with pytest.raises(ClientError) as e:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [r, r]})
    assert error_of(e) == ("InvalidArgument", 400)


def test_current_versions_expire_by_prefix_tag_and_size(s3, bucket):
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {"ID": "tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
                 "Expiration": {"Days": 1}},
                {"ID": "tagged-big", "Status": "Enabled",
                 "Filter": {"And": {"Prefix": "t/", "Tags": [{"Key": "drop", "Value": "yes"}],
                                    "ObjectSizeGreaterThan": 100}},
                 "Expiration": {"Days": 1}},
                {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": "keep/"},
                 "Expiration": {"Days": 1}},
            ]
        },
    )
    put = s3.put_object(Bucket=bucket, Key="tmp/a", Body=b"x" * 10)
    # S3 names the rule and the day the object expires.
    assert 'rule-id="tmp"' in put["Expiration"] and "expiry-date=" in put["Expiration"]
    s3.put_object(Bucket=bucket, Key="keep/a", Body=b"x" * 10)
    s3.put_object(Bucket=bucket, Key="t/big", Body=b"x" * 1000, Tagging="drop=yes")
    s3.put_object(Bucket=bucket, Key="t/small", Body=b"x" * 10, Tagging="drop=yes")
    s3.put_object(Bucket=bucket, Key="t/untagged", Body=b"x" * 1000)
    assert "Expiration" not in s3.head_object(Bucket=bucket, Key="keep/a")
    wait_for("tmp/a and t/big expiring",
             lambda: not exists(s3, bucket, "tmp/a") and not exists(s3, bucket, "t/big"))
    # Due at the same moment had their rules matched; two more scans.
    time.sleep(1)
    for key in ["keep/a", "t/small", "t/untagged"]:
        assert exists(s3, bucket, key), key


def test_versioned_buckets_get_delete_markers_and_lose_noncurrent_versions(s3, make_bucket):
    bucket = make_bucket()
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {"ID": "v", "Status": "Enabled", "Filter": {"Prefix": "v/"},
                 "Expiration": {"Days": 1},
                 "NoncurrentVersionExpiration": {"NoncurrentDays": 6}},
                {"ID": "markers", "Status": "Enabled", "Filter": {"Prefix": "m/"},
                 "Expiration": {"ExpiredObjectDeleteMarker": True}},
            ]
        },
    )
    s3.put_object(Bucket=bucket, Key="v/a", Body=b"one")
    s3.put_object(Bucket=bucket, Key="v/a", Body=b"two")
    # A key whose only version is deleted leaves a lone delete marker.
    v = s3.put_object(Bucket=bucket, Key="m/x", Body=b"x")["VersionId"]
    s3.delete_object(Bucket=bucket, Key="m/x")
    s3.delete_object(Bucket=bucket, Key="m/x", VersionId=v)

    def listing(prefix):
        r = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
        return r.get("Versions", []), r.get("DeleteMarkers", [])

    # The current version expires as S3 does in a versioned bucket: a
    # delete marker becomes current and both versions stay, noncurrent...
    wait_for("v/a's current version expiring into a delete marker",
             lambda: (lambda vs, ms: len(vs) == 2 and len(ms) == 1 and ms[0]["IsLatest"])(*listing("v/")),
             lambda: listing("v/"))
    # ...for six days; then they go, and so does the marker once it is
    # alone (a Days rule removes expired markers, as S3's does).
    wait_for("v/a's versions and marker removed", lambda: listing("v/") == ([], []),
             lambda: listing("v/"))
    wait_for("the lone marker of m/x removed", lambda: listing("m/") == ([], []),
             lambda: listing("m/"))


def test_incomplete_multipart_uploads_are_aborted_after_their_days(s3, bucket):
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [{"ID": "mpu", "Status": "Enabled", "Filter": {"Prefix": "mpu/"},
                       "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3}}]
        },
    )
    s3.create_multipart_upload(Bucket=bucket, Key="mpu/x")
    kept = s3.create_multipart_upload(Bucket=bucket, Key="keep/x")["UploadId"]

    def open_keys():
        return {u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}

    # Both open at first (due only after three days: 3-4 s).
    assert open_keys() == {"mpu/x", "keep/x"}

    wait_for("mpu/x aborted", lambda: "mpu/x" not in open_keys())
    time.sleep(1)
    assert "keep/x" in open_keys()
    s3.abort_multipart_upload(Bucket=bucket, Key="keep/x", UploadId=kept)


def test_a_transition_rule_moves_an_object_to_glacier_ir_with_its_bytes(s3, bucket):
    body = bytes(range(256)) * 800  # 200 KiB: above the 128 KiB minimum, erasure coded
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
        "ID": "cold", "Status": "Enabled", "Filter": {"Prefix": "cold/"},
        "Transitions": [{"Days": 0, "StorageClass": "GLACIER_IR"}],
    }]})
    s3.put_object(Bucket=bucket, Key="cold/a", Body=body, Metadata={"k": "v"})
    # Erasure coded, but under the 128 KiB transition minimum.
    s3.put_object(Bucket=bucket, Key="cold/tiny", Body=b"x" * (100 << 10))
    s3.put_object(Bucket=bucket, Key="warm/a", Body=body)
    etag = s3.head_object(Bucket=bucket, Key="cold/a")["ETag"]

    def moved():
        return s3.head_object(Bucket=bucket, Key="cold/a").get("StorageClass") == "GLACIER_IR"

    wait_for("cold/a moving to GLACIER_IR", moved,
             lambda: s3.head_object(Bucket=bucket, Key="cold/a"))
    got = s3.get_object(Bucket=bucket, Key="cold/a")
    assert got["Body"].read() == body
    assert got["ETag"] == etag and got["Metadata"] == {"k": "v"}
    assert got["StorageClass"] == "GLACIER_IR"
    listed = {o["Key"]: o["StorageClass"]
              for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    # Below the minimum, and outside the prefix: where they were.
    assert listed == {"cold/a": "GLACIER_IR", "cold/tiny": "STANDARD", "warm/a": "STANDARD"}


# ---- Intelligent-Tiering ------------------------------------------------------


def it_config(cid, tierings, status="Enabled", flt=None):
    c = {"Id": cid, "Status": status, "Tierings": tierings}
    if flt is not None:
        c["Filter"] = flt
    return c


def test_intelligent_tiering_configurations_put_get_list_and_delete(s3, bucket):
    a = it_config("archive", [{"Days": 90, "AccessTier": "ARCHIVE_ACCESS"}],
                  flt={"Prefix": "raw/"})
    b = it_config("deep", [{"Days": 120, "AccessTier": "ARCHIVE_ACCESS"},
                           {"Days": 200, "AccessTier": "DEEP_ARCHIVE_ACCESS"}],
                  status="Disabled",
                  flt={"And": {"Prefix": "logs/", "Tags": [{"Key": "team", "Value": "ml"}]}})
    for c in (a, b):
        s3.put_bucket_intelligent_tiering_configuration(
            Bucket=bucket, Id=c["Id"], IntelligentTieringConfiguration=c)
    got = s3.get_bucket_intelligent_tiering_configuration(Bucket=bucket, Id="deep")
    assert got["IntelligentTieringConfiguration"] == b
    listed = s3.list_bucket_intelligent_tiering_configurations(Bucket=bucket)
    assert listed["IntelligentTieringConfigurationList"] == [a, b]
    assert listed["IsTruncated"] is False
    s3.delete_bucket_intelligent_tiering_configuration(Bucket=bucket, Id="archive")
    with pytest.raises(ClientError) as e:
        s3.get_bucket_intelligent_tiering_configuration(Bucket=bucket, Id="archive")
    assert error_of(e) == ("NoSuchConfiguration", 404)
    with pytest.raises(ClientError) as e:
        s3.delete_bucket_intelligent_tiering_configuration(Bucket=bucket, Id="archive")
    assert error_of(e) == ("NoSuchConfiguration", 404)
    listed = s3.list_bucket_intelligent_tiering_configurations(Bucket=bucket)
    assert [c["Id"] for c in listed["IntelligentTieringConfigurationList"]] == ["deep"]


@pytest.mark.parametrize(
    "tierings,code",
    [
        ([{"Days": 89, "AccessTier": "ARCHIVE_ACCESS"}], "InvalidArgument"),
        ([{"Days": 731, "AccessTier": "ARCHIVE_ACCESS"}], "InvalidArgument"),
        ([{"Days": 179, "AccessTier": "DEEP_ARCHIVE_ACCESS"}], "InvalidArgument"),
        ([{"Days": 200, "AccessTier": "ARCHIVE_ACCESS"},
          {"Days": 200, "AccessTier": "DEEP_ARCHIVE_ACCESS"}], "InvalidArgument"),
        ([{"Days": 90, "AccessTier": "ARCHIVE_ACCESS"},
          {"Days": 95, "AccessTier": "ARCHIVE_ACCESS"}], "InvalidArgument"),
        ([], "MalformedXML"),
    ],
)
def test_invalid_intelligent_tiering_configurations_are_refused(s3, bucket, tierings, code):
    c = it_config("c", tierings)
    with pytest.raises(ClientError) as e:
        s3.put_bucket_intelligent_tiering_configuration(
            Bucket=bucket, Id="c", IntelligentTieringConfiguration=c)
    assert error_of(e)[0] == code, e.value.response
    listed = s3.list_bucket_intelligent_tiering_configurations(Bucket=bucket)
    assert listed.get("IntelligentTieringConfigurationList", []) == []


def test_intelligent_tiering_objects_report_their_class(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 1000, StorageClass="INTELLIGENT_TIERING")
    assert s3.head_object(Bucket=bucket, Key="k")["StorageClass"] == "INTELLIGENT_TIERING"
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["StorageClass"] for o in listed] == ["INTELLIGENT_TIERING"]
    # A lifecycle rule may move objects into it.
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={"Rules": [
            {"ID": "it", "Status": "Enabled", "Filter": {"Prefix": "auto/"},
             "Transitions": [{"Days": 40, "StorageClass": "INTELLIGENT_TIERING"}]}]},
    )
    assert rules_of(s3, bucket)[0]["Transitions"] == [
        {"Days": 40, "StorageClass": "INTELLIGENT_TIERING"}]
