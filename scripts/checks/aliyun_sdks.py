"""Official SDKs (oss2, tablestore, alibabacloud-openapi-util) against joint serve.

Each check fails loudly; a tampered signature must be refused by every endpoint.
"""
import hashlib
import os
import sys
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

# --- FC 3.0 InvokeFunction signed with the official openapi util ---
def fc_invoke(secret):
    body = b'{"x":1}'
    host = FC.split("://", 1)[1]
    req = TeaRequest()
    req.method = "POST"
    req.pathname = "/2023-03-30/functions/no-such-function/invocations"
    req.query = {}
    req.headers = {
        "host": host,
        "content-type": "application/octet-stream",
        "x-acs-action": "InvokeFunction",
        "x-acs-version": "2023-03-30",
        "x-acs-date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": uuid.uuid4().hex,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "x-fc-invocation-type": "Sync",
    }
    req.headers["Authorization"] = OpenApiUtil.get_authorization(req, "ACS3-HMAC-SHA256", req.headers["x-acs-content-sha256"], AK, secret)
    return requests.post(FC + req.pathname, data=body, headers=req.headers)

r = fc_invoke(SK)
check(r.status_code == 404 and r.json()["Code"] == "FunctionNotFound", f"FC invoke signed by the official util is accepted (then {r.json()['Code']})")
r = fc_invoke("tampered")
check(r.status_code == 403 and r.json()["Code"] == "SignatureNotMatch", "FC tampered signature refused")
print("all Aliyun SDK checks passed")
