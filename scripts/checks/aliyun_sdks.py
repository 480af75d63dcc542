"""Official SDKs (oss2, tablestore, alibabacloud-openapi-util) against joint serve.

Each check fails loudly. A tampered signature must be refused by every endpoint, and every
refusal — replays, names that would leave the store, conditions nested too deep, what joint
serve does not implement — must reach the official client in the service's own error format
(the SDK parses it into its own exception with the service's code).
"""
import base64
import hashlib
import os
import sys
import time
import uuid
from datetime import datetime, timezone

import oss2
import requests
import tablestore as ts
from alibabacloud_openapi_util.client import Client as OpenApiUtil
from Tea.request import TeaRequest

AK = os.environ["JOINT_TEST_ALIYUN_AK"]
SK = os.environ["JOINT_TEST_ALIYUN_SK"]
FC = os.environ["JOINT_TEST_ALIYUN_FC_URL"]
OSS = os.environ["JOINT_TEST_ALIYUN_OSS_URL"]
OTS = os.environ["JOINT_TEST_ALIYUN_OTS_URL"]
STATE = os.environ["JOINT_TEST_ALIYUN_STATE_DIR"]
run = uuid.uuid4().hex[:8]


def check(cond, msg):
    if not cond:
        print("FAIL:", msg)
        sys.exit(1)
    print("ok:", msg)


# --- OSS: put / get / delete with oss2 (V1 and V4), tampered signature refused ---
for auth, name in ((oss2.Auth(AK, SK), "v1"), (oss2.AuthV4(AK, SK), "v4")):
    bucket = oss2.Bucket(auth, OSS, "joint", region="cn-hangzhou")
    key = f"check-{run}/{name}/hello.txt"
    bucket.put_object(key, b"hello from oss2", headers={"x-oss-forbid-overwrite": "true"})
    check(bucket.get_object(key).read() == b"hello from oss2", f"oss2 {name} put/get round trip")
    try:
        bucket.put_object(key, b"again", headers={"x-oss-forbid-overwrite": "true"})
        check(False, "second create-only put must fail")
    except oss2.exceptions.ServerError as e:
        check(e.status == 409 and e.code == "FileAlreadyExists", f"oss2 {name} create-only put refused: {e.code}")
    bucket.delete_object(key)
    try:
        bucket.get_object(key)
        check(False, "deleted object must be gone")
    except oss2.exceptions.NoSuchKey:
        check(True, f"oss2 {name} delete")
bad = oss2.Bucket(oss2.Auth(AK, "tampered"), OSS, "joint")
try:
    bad.put_object(f"check-{run}/bad", b"x")
    check(False, "tampered OSS signature must be refused")
except oss2.exceptions.ServerError as e:
    check(e.status == 403 and e.code == "SignatureDoesNotMatch", f"oss2 tampered signature refused: {e.code}")


def expect_oss_error(fn, status, code, what):
    try:
        fn()
    except oss2.exceptions.ServerError as e:
        check(e.status == status and e.code == code, f"{what}: {e.status} {e.code}")
        return e
    check(False, f"{what}: expected {status} {code}, got success")


def oss_raw(method, path, bucket, key, params=None, headers=None, data=b""):
    """A request oss2 would not send (it validates names first), signed by oss2's own V1 signer
    and sent by its HTTP session; the answer is parsed by oss2's error parser."""
    req = oss2.http.Request(method, OSS + path, data=data, params=params or {}, headers=headers or {})
    oss2.Auth(AK, SK)._sign_request(req, bucket, key)
    resp = oss2.http.Session().do_request(req, timeout=30)
    if resp.status // 100 == 2:
        return resp
    raise oss2.exceptions.make_exception(resp)


# --- OSS: names never leave the store ---
cloud_dir = os.path.join(STATE, "aliyun")
victim = os.path.join(cloud_dir, f"victim-{run}.txt")
os.makedirs(cloud_dir, exist_ok=True)
with open(victim, "w") as f:
    f.write("outside the store")
expect_oss_error(lambda: oss_raw("GET", "/%2E%2E/", "..", "", params={"list-type": "2"}),
                 400, "InvalidBucketName", "listing bucket %2E%2E refused")
doc = f"<Delete><Quiet>false</Quiet><Object><Key>victim-{run}.txt</Key></Object></Delete>".encode()
expect_oss_error(lambda: oss_raw("POST", "/%2E%2E/", "..", "", params={"delete": ""},
                                 headers={"Content-MD5": oss2.utils.content_md5(doc)}, data=doc),
                 400, "InvalidBucketName", "batch delete in bucket %2E%2E refused")
check(os.path.exists(victim), "the file outside the store survived")
expect_oss_error(lambda: oss_raw("PUT", f"/joint/%2E%2E/%2E%2E/victim-{run}.txt", "joint", f"../../victim-{run}.txt", data=b"x"),
                 501, "NotImplemented", "a key climbing out of the store is refused")
bucket = oss2.Bucket(oss2.AuthV4(AK, SK), OSS, "joint", region="cn-hangzhou")
res = bucket.batch_delete_objects([f"../victim-{run}.txt", f"a/../../victim-{run}.txt"])
check(os.path.exists(victim) and open(victim).read() == "outside the store",
      f"batch delete of climbing keys touches nothing outside ({res.deleted_keys})")
try:
    oss2.Bucket(oss2.Auth(AK, SK), OSS, "Bad_Name")
    bad_name_refused_by_client = False
except oss2.exceptions.ClientError:
    bad_name_refused_by_client = True
expect_oss_error(lambda: oss_raw("GET", "/Bad_Name/k", "Bad_Name", "k"), 400, "InvalidBucketName",
                 f"bucket name rules (oss2 itself refuses it too: {bad_name_refused_by_client})")

# --- OSS: metadata, Last-Modified, Range, conditional reads ---
key = f"check-{run}/meta/a.txt"
bucket.put_object(key, b"0123456789", headers={
    "Content-Type": "text/plain", "Cache-Control": "no-cache", "x-oss-meta-author": "Ada",
    "x-oss-forbid-overwrite": "true"})
for what, h in (("get", bucket.get_object(key).headers), ("head", bucket.head_object(key).headers)):
    check(h.get("Content-Type") == "text/plain" and h.get("Cache-Control") == "no-cache"
          and h.get("x-oss-meta-author") == "Ada", f"oss2 {what} returns Content-Type, Cache-Control and x-oss-meta-*")
meta = bucket.get_object_meta(key)
check(meta.content_length == 10 and meta.etag, "get_object_meta")
old_key = f"check-{run}/meta/old"
old_path = os.path.join(cloud_dir, "blobs", "joint", old_key)
os.makedirs(os.path.dirname(old_path), exist_ok=True)
with open(old_path, "wb") as f:
    f.write(b"old")
os.utime(old_path, (1_000_000_000, 1_000_000_000))
check(bucket.head_object(old_key).last_modified == 1_000_000_000, "Last-Modified is the write time")
r = bucket.get_object(key, byte_range=(2, 4))
check(r.status == 206 and r.read() == b"234", "Range bytes=2-4 -> 206")
r = bucket.get_object(key, byte_range=(None, 3))
check(r.status == 206 and r.read() == b"789", "Range bytes=-3 -> 206")
r = bucket.get_object(key, byte_range=(20, 30))
check(r.status == 200 and r.read() == b"0123456789", "an unsatisfiable Range returns the whole object (OSS default)")
expect_oss_error(lambda: bucket.get_object(key, byte_range=(20, 30), headers={"x-oss-range-behavior": "standard"}),
                 416, "InvalidRange", "x-oss-range-behavior: standard")
try:
    bucket.get_object(key, headers={"If-None-Match": meta.etag if meta.etag.startswith('"') else f'"{meta.etag}"'})
    check(False, "If-None-Match with the ETag must be 304")
except oss2.exceptions.NotModified:
    check(True, "If-None-Match -> 304 NotModified")
expect_oss_error(lambda: bucket.put_object(f"check-{run}/meta/bad", b"x", headers={"x-oss-meta-bad_name": "v"}),
                 400, "InvalidArgument", "bad user metadata names are refused")

# --- OSS: ListObjectsV2 with a delimiter, full <Contents> ---
base = f"check-{run}/list/"
for k in ("a/1", "a/2", "b", "c/x/1", "d e+f"):
    bucket.put_object(base + k, k.encode())
r = bucket.list_objects_v2(prefix=base, delimiter="/")
names = sorted(o.key for o in r.object_list)
check(names == [base + "b", base + "d e+f"] and sorted(r.prefix_list) == [base + "a/", base + "c/"],
      f"list_objects_v2 with delimiter: {names} {r.prefix_list}")
o = r.object_list[0]
check(o.last_modified > 0 and o.etag and o.type == "Normal" and o.size == 1 and o.storage_class == "Standard",
      f"<Contents> has LastModified, ETag, Type, Size, StorageClass ({o.last_modified}, {o.etag}, {o.type})")
seen = [x.key for x in oss2.ObjectIteratorV2(bucket, prefix=base, delimiter="/", max_keys=1)]
check(seen == [base + "a/", base + "b", base + "c/", base + "d e+f"], f"paging over objects and prefixes: {seen}")
deleted = bucket.batch_delete_objects([base + "d e+f", base + "b"]).deleted_keys
check(sorted(deleted) == [base + "b", base + "d e+f"], f"batch delete with encoding-type=url: {deleted}")

# --- OSS: what joint serve does not implement is refused in OSS's format ---
for what, fn in (
    ("GetObjectAcl", lambda: bucket.get_object_acl(key)),
    ("server-side encryption", lambda: bucket.put_object(f"check-{run}/sse", b"x", headers={"x-oss-server-side-encryption": "AES256"})),
    ("an Archive storage class", lambda: bucket.put_object(f"check-{run}/arch", b"x", headers={"x-oss-storage-class": "Archive"})),
    ("object tagging", lambda: bucket.put_object_tagging(key, oss2.models.Tagging())),
    ("AppendObject", lambda: bucket.append_object(f"check-{run}/app", 0, b"x")),
    ("overwriting an object", lambda: bucket.put_object(key, b"again")),
    ("ListObjects v1", lambda: bucket.list_objects(prefix=base)),
    ("GetBucketInfo", lambda: bucket.get_bucket_info()),
    ("CreateBucket", lambda: oss2.Bucket(oss2.AuthV4(AK, SK), OSS, f"new-{run}", region="cn-hangzhou").create_bucket()),
    ("a directory-marker key", lambda: bucket.put_object(f"check-{run}/dir/", b"")),
):
    e = expect_oss_error(fn, 501, "NotImplemented", f"{what} -> 501 NotImplemented")
    check("joint serve does not implement" in (e.message or ""), f"{what}: the message says what ({e.message})")
check(bucket.get_object(key).read() == b"0123456789", "the refused requests changed nothing")

# --- Tablestore: PutRow EXPECT_NOT_EXIST twice, UpdateRow, GetRow ---
client = ts.OTSClient(OTS, AK, SK, "joint-check")
table = "sdk_check"
try:
    client.create_table(ts.TableMeta(table, [("p", "STRING"), ("k", "STRING")]), ts.TableOptions(), ts.ReservedThroughput(ts.CapacityUnit(0, 0)))
except ts.OTSServiceError as e:
    check(e.get_error_code() == "OTSObjectAlreadyExist", "table exists")
pk = [("p", run), ("k", f"{run}/A_0")]
cond = ts.Condition(ts.RowExistenceExpectation.EXPECT_NOT_EXIST)
client.put_row(table, ts.Row(pk, [("v", bytearray(b"first"))]), cond)
check(True, "tablestore PutRow EXPECT_NOT_EXIST creates")
try:
    client.put_row(table, ts.Row(pk, [("v", bytearray(b"second"))]), cond)
    check(False, "second PutRow EXPECT_NOT_EXIST must fail")
except ts.OTSServiceError as e:
    check(e.get_error_code() == "OTSConditionCheckFail", f"second PutRow refused with {e.get_error_code()}")
client.update_row(table, ts.Row(pk, {"put": [("i_42", True)], "increment": [("n", 2)]}), ts.Condition(ts.RowExistenceExpectation.EXPECT_EXIST))
_, row, _ = client.get_row(table, pk, max_version=1)
cols = {c[0]: c[1] for c in row.attribute_columns}
check(bytes(cols["v"]) == b"first" and cols["i_42"] is True and cols["n"] == 2, f"tablestore UpdateRow + GetRow: {sorted(cols)}")
# The fan-in join's UpdateRow as the official SDK encodes it: put the member's column and
# increment n, if that column is missing (it equals both b"" and b"\0" only while missing) and
# n is below the capacity.
jpk = [("p", run), ("k", f"{run}/D-join@0")]


def join(member, value, capacity):
    col = "m_" + member.encode().hex()
    c = ts.CompositeColumnCondition(ts.LogicalOperator.AND)
    for absent in (b"", b"\0"):
        c.add_sub_condition(ts.SingleColumnCondition(col, bytearray(absent), ts.ComparatorType.EQUAL, pass_if_missing=True))
    c.add_sub_condition(ts.SingleColumnCondition("n", capacity, ts.ComparatorType.LESS_THAN, pass_if_missing=True))
    row = ts.Row(jpk, {"put": [(col, bytearray(value))], "increment": [("n", 1)]})
    try:
        client.update_row(table, row, ts.Condition(ts.RowExistenceExpectation.IGNORE, c))
        return True
    except ts.OTSServiceError as e:
        check(e.get_error_code() == "OTSConditionCheckFail", f"a refused join fails its condition: {e.get_error_code()}")
        return False


check(join("0", b"a", 2), "tablestore join: a new member is added")
check(not join("0", b"b", 2), "tablestore join: a duplicate is refused")
check(join("1", b"", 2), "tablestore join: a member with an empty value is added")
check(not join("1", b"x", 2), "tablestore join: a duplicate of an empty-valued member is refused")
check(not join("2", b"c", 2), "tablestore join: a full join refuses a new member")
_, row, _ = client.get_row(table, jpk, max_version=1, start_column="m_", end_column="m`")
cols = {c[0]: bytes(c[1]) for c in row.attribute_columns}
check(cols == {"m_30": b"a", "m_31": b""}, f"tablestore join: the member columns, read by column range: {cols}")
_, row, _ = client.get_row(table, jpk, columns_to_get=["n"], max_version=1)
check(row.attribute_columns[0][1] == 2, "tablestore join: n counts each member once")
try:
    ts.OTSClient(OTS, AK, "tampered", "joint-check", retry_policy=ts.NoRetryPolicy()).get_row(table, pk, max_version=1)
    check(False, "tampered OTS signature must be refused")
except ts.OTSServiceError as e:
    check(e.get_error_code() == "OTSAuthFailed", f"tablestore tampered signature refused: {e.get_error_code()}")


def expect_ots_error(fn, code, what):
    try:
        fn()
    except ts.OTSServiceError as e:
        check(e.get_error_code() == code, f"{what}: {e.get_http_status()} {e.get_error_code()}")
        return e
    check(False, f"{what}: expected {code}, got success")


# --- Tablestore: SignV4 (the SDK's signer when a region is configured) ---
v4 = ts.OTSClient(OTS, AK, SK, "joint-check", region="cn-hangzhou", retry_policy=ts.NoRetryPolicy())
check(type(v4._signer).__name__ == "SignV4", "the SDK configured with a region signs with SignV4")
v4_pk = [("p", run), ("k", f"{run}/v4")]
v4.put_row(table, ts.Row(v4_pk, [("v", 1)]), ts.Condition(ts.RowExistenceExpectation.EXPECT_NOT_EXIST))
_, row, _ = v4.get_row(table, v4_pk, max_version=1)
check(dict((c[0], c[1]) for c in row.attribute_columns) == {"v": 1},
      "SignV4 PutRow/GetRow (the SDK verified the answers' V4-keyed Authorization)")
expect_ots_error(lambda: ts.OTSClient(OTS, AK, "tampered", "joint-check", region="cn-hangzhou",
                                      retry_policy=ts.NoRetryPolicy()).get_row(table, v4_pk, max_version=1),
                 "OTSAuthFailed", "tampered SignV4 signature refused")
expect_ots_error(lambda: ts.OTSClient(OTS, AK, SK, "joint-check", region="cn-beijing",
                                      retry_policy=ts.NoRetryPolicy()).get_row(table, v4_pk, max_version=1),
                 "OTSAuthFailed", "SignV4 for another region than the instance's refused")

# --- Tablestore: bounded conditions; the server survives ---
nq = ts.NoRetryPolicy()
strict = ts.OTSClient(OTS, AK, SK, "joint-check", retry_policy=nq)
deep = ts.SingleColumnCondition("n", 2, ts.ComparatorType.EQUAL)
for _ in range(200):
    outer = ts.CompositeColumnCondition(ts.LogicalOperator.NOT)
    outer.add_sub_condition(deep)
    deep = outer
expect_ots_error(lambda: strict.update_row(table, ts.Row(pk, {"put": [("m", 1)]}),
                                           ts.Condition(ts.RowExistenceExpectation.IGNORE, deep)),
                 "OTSParameterInvalid", "a column condition nested 200 deep is refused")
wide = ts.CompositeColumnCondition(ts.LogicalOperator.AND)
for i in range(11):
    wide.add_sub_condition(ts.SingleColumnCondition("n", i, ts.ComparatorType.EQUAL))
expect_ots_error(lambda: strict.get_row(table, pk, max_version=1, column_filter=wide),
                 "OTSParameterInvalid", "a filter of 11 conditions is refused")
_, row, _ = strict.get_row(table, pk, max_version=1)
check(row is not None and "m" not in dict((c[0], c[1]) for c in row.attribute_columns),
      "the server is alive and the row unchanged")

# --- Tablestore: filters on GetRow and GetRange ---
for i in range(3):
    strict.put_row(table, ts.Row([("p", f"{run}-f"), ("k", f"{i}")], [("n", i), ("s", f"v{i}")]))
fpk = [("p", f"{run}-f"), ("k", "1")]
_, row, _ = strict.get_row(table, fpk, max_version=1, column_filter=ts.SingleColumnCondition("n", 0, ts.ComparatorType.EQUAL))
check(row is None, "GetRow: a row the filter drops is not returned")
_, row, _ = strict.get_row(table, fpk, max_version=1, column_filter=ts.SingleColumnCondition("n", 1, ts.ComparatorType.EQUAL))
check(row is not None, "GetRow: a row the filter keeps is returned")
_, row, _ = strict.get_row(table, fpk, columns_to_get=["s"], max_version=1,
                           column_filter=ts.SingleColumnCondition("n", 1, ts.ComparatorType.EQUAL, pass_if_missing=False))
check(row is None, "GetRow: the filter sees only the columns read")
_, _, rows, _ = strict.get_range(table, ts.Direction.FORWARD,
                                 [("p", f"{run}-f"), ("k", ts.INF_MIN)], [("p", f"{run}-f"), ("k", ts.INF_MAX)],
                                 max_version=1,
                                 column_filter=ts.SingleColumnCondition("n", 1, ts.ComparatorType.GREATER_EQUAL))
check([r.primary_key[1][1] for r in rows] == ["1", "2"], f"GetRange applies the filter: {[r.primary_key for r in rows]}")

# --- Tablestore: versions, time ranges, what is not implemented ---
expect_ots_error(lambda: strict.create_table(ts.TableMeta(f"v_{run}", [("k", "STRING")]), ts.TableOptions(max_version=3),
                                             ts.ReservedThroughput(ts.CapacityUnit(0, 0))),
                 "OTSUnsupportOperation", "a table of 3 versions is refused (one version is kept)")
now_ms = int(time.time() * 1000)
tpk = [("p", run), ("k", f"{run}/ts")]
strict.put_row(table, ts.Row(tpk, [("v", 1, now_ms - 2000)]))
strict.update_row(table, ts.Row(tpk, {"put": [("v", 0, now_ms - 5000)]}), ts.Condition(ts.RowExistenceExpectation.IGNORE))
_, row, _ = strict.get_row(table, tpk, max_version=3)
check([c[1] for c in row.attribute_columns] == [1], "the newest version wins; max_version 3 reads the one kept")
_, row, _ = strict.get_row(table, tpk, max_version=None, time_range=(now_ms - 1000, now_ms + 1000))
check(row is None or not row.attribute_columns, "time_range outside the version")
_, row, _ = strict.get_row(table, tpk, max_version=None, time_range=now_ms - 2000)
check(row is not None and [c[1] for c in row.attribute_columns] == [1], "time_range at the version")
expect_ots_error(lambda: strict.put_row(table, ts.Row([("p", run), ("k", "tx")], [("v", 1)]), transaction_id="tx-1"),
                 "OTSParameterInvalid", "a transaction_id is refused (no local transactions)")
expect_ots_error(lambda: strict.get_range(table, ts.Direction.BACKWARD, [("p", run), ("k", ts.INF_MAX)],
                                          [("p", run), ("k", ts.INF_MIN)], max_version=1),
                 "OTSUnsupportOperation", "BACKWARD GetRange is refused")
expect_ots_error(lambda: strict.start_local_transaction(table, [("p", run)]),
                 "OTSUnsupportOperation", "StartLocalTransaction is refused")

# --- FC 3.0 InvokeFunction signed with the official openapi util ---
def fc_request(secret, function="no-such-function", body=b'{"x":1}', kind="Sync", query=None, nonce=None):
    host = FC.split("://", 1)[1]
    req = TeaRequest()
    req.method = "POST"
    req.pathname = f"/2023-03-30/functions/{function}/invocations"
    req.query = query or {}
    req.headers = {
        "host": host,
        "content-type": "application/octet-stream",
        "x-acs-action": "InvokeFunction",
        "x-acs-version": "2023-03-30",
        "x-acs-date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "x-fc-invocation-type": kind,
    }
    req.headers["Authorization"] = OpenApiUtil.get_authorization(req, "ACS3-HMAC-SHA256", req.headers["x-acs-content-sha256"], AK, secret)
    return req, body


def fc_send(req, body):
    return requests.post(FC + req.pathname, params=req.query, data=body, headers=req.headers)


def fc_invoke(secret, **kw):
    return fc_send(*fc_request(secret, **kw))


r = fc_invoke(SK)
check(r.status_code == 404 and r.json()["Code"] == "FunctionNotFound", f"FC invoke signed by the official util is accepted (then {r.json()['Code']})")
r = fc_invoke("tampered")
check(r.status_code == 403 and r.json()["Code"] == "SignatureNotMatch", "FC tampered signature refused")
# A replay of the very same signed request.
req, body = fc_request(SK, function="first", body=b'{"not":"an envelope"}')
first = fc_send(req, body)
check(first.status_code == 200, f"FC signed invoke of a hosted function answers ({first.status_code})")
again = fc_send(req, body)
check(again.status_code == 400 and again.json()["Code"] == "SignatureNonceUsed",
      f"FC replayed nonce refused: {again.status_code} {again.json().get('Code')}")
# An envelope for `third` delivered to `first` does not run `third`.
r = fc_invoke(SK, function="first", body=b'{"v":1,"function":"third"}')
check(r.status_code == 200 and r.headers.get("x-fc-error-type") == "UnhandledInvocationError"
      and "for function 'third' but was delivered to function 'first'" in r.json()["errorMessage"],
      f"FC refuses an envelope for another function: {r.text[:200]}")
r = fc_invoke(SK, function="first", body=b'"' + b"x" * (128 * 1024) + b'"', kind="Async")
check(r.status_code == 400 and r.json()["Code"] == "EntityTooLarge", "FC's 128 KB async limit")
r = fc_invoke(SK, function="first", query={"qualifier": "prod"})
check(r.status_code == 404 and r.json()["Code"] == "AliasNotFound", "FC alias other than LATEST -> AliasNotFound")
print("all Aliyun SDK checks passed")
