#!/usr/bin/env python3
"""Generate golden fixtures for joint-shim-aliyun from Alibaba Cloud's official Python SDKs.

    python3 -m venv /tmp/aliyun-venv
    /tmp/aliyun-venv/bin/pip install -r scripts/requirements/aliyun.txt
    /tmp/aliyun-venv/bin/python scripts/gen-aliyun-fixtures.py

Every value is produced by the official PyPI packages on fixed inputs (fixed keys, clock and
nonce; the SDKs' clock functions are monkeypatched, their signing code is called as is):

- ``alibabacloud-openapi-util``: ACS3-HMAC-SHA256 ``Authorization`` of FC 3.0 InvokeFunction
  requests (sync, async with qualifier, STS token, a function name that needs encoding, and a
  request signing every header as the Python util does);
- ``oss2``: OSS V1 (``OSS ak:sig``) and V4 (``OSS4-HMAC-SHA256``) signatures of create-only put
  (``x-oss-forbid-overwrite``), get, DeleteMultipleObjects and ListObjectsV2, with and without
  an STS token;
- ``tablestore``: SignV2 ``x-ots-signature`` headers; SignV4 ``x-ots-signaturev4`` headers (the
  signer the SDK uses when a region is configured), its signing key and the response
  ``Authorization`` the SDK expects back; and PlainBuffer bytes of a PutRow row, an UpdateRow
  row change (PUT + INCREMENT, DELETE_ALL), a GetRow primary key and a DeleteRow primary key.

The fixtures land in crates/joint-shim-aliyun/tests/fixtures/*.json and are checked by
crates/joint-shim-aliyun/tests/golden.rs. Re-running the script must reproduce them byte for
byte; no SDK code is copied into the repository.
"""
import datetime as _dt
import hashlib
import importlib.metadata as md
import json
import os
import sys

import oss2
import oss2.auth
import oss2.http
import oss2.utils
import tablestore
import tablestore.auth as ots_auth
import tablestore.protocol as ots_protocol
import tablestore.utils as ots_utils
from alibabacloud_openapi_util.client import Client as OpenApiUtil
from tablestore.credentials import Credentials as OtsCredentials
from tablestore.plainbuffer.plain_buffer_builder import PlainBufferBuilder
from Tea.request import TeaRequest

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "joint-shim-aliyun", "tests", "fixtures")

# Fixed inputs.
AK = "LTAI5tJointGoldenKey"
SK = "JointGoldenSecret0123456789abcdef"
TOKEN = "CAIS-joint-golden-sts-token+/="
NOW = _dt.datetime(2026, 11, 30, 8, 9, 10, tzinfo=_dt.timezone.utc)
UNIX = int(NOW.timestamp())
NONCE = "7c1d4d0fb4f44c9cb8a6d6c1e2f3a4b5"
REGION = "cn-hangzhou"
ACCOUNT = "1234567890123456"


def versions():
    return {p: md.version(p) for p in ("alibabacloud-openapi-util", "oss2", "tablestore")}


def header_list(h):
    return [[k, v] for k, v in h.items() if v is not None]


# --------------------------------------------------------------------------------------------
# ACS3 (FC 3.0 InvokeFunction) via alibabacloud_openapi_util.Client.get_authorization


def acs3_case(name, function, body, qualifier=None, asynchronous=False, token=None, extra=None):
    host = f"{ACCOUNT}.{REGION}.fc.aliyuncs.com"
    payload = hashlib.sha256(body).hexdigest()
    req = TeaRequest()
    req.method = "POST"
    # The FC 3.0 client builds the path with the util's own encoder.
    req.pathname = f"/2023-03-30/functions/{OpenApiUtil.get_encode_param(function)}/invocations"
    req.query = {"qualifier": qualifier} if qualifier else {}
    headers = {
        "host": host,
        "content-type": "application/octet-stream",
        "x-acs-action": "InvokeFunction",
        "x-acs-version": "2023-03-30",
        "x-acs-date": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": NONCE,
        "x-acs-content-sha256": payload,
    }
    if token:
        headers["x-acs-security-token"] = token
    # The Python util signs every header it is given; headers outside joint's signed set
    # (`host`, `content-type`, `x-acs-*`) are only added in the `extra` cases.
    headers.update(extra or {})
    req.headers = headers
    auth = OpenApiUtil.get_authorization(req, "ACS3-HMAC-SHA256", payload, AK, SK)
    signed = auth.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
    return {
        "name": name,
        "function": function,
        "qualifier": qualifier,
        "asynchronous": asynchronous,
        "host": host,
        "method": req.method,
        "path": req.pathname,
        "query": [[k, v] for k, v in req.query.items()],
        "headers": header_list(headers),
        "signed_headers": signed,
        "body": body.decode(),
        "payload_sha256": payload,
        "security_token": token,
        "authorization": auth,
        # Whether joint's FcFaas sends exactly these signed headers (then its whole
        # Authorization must be identical).
        "joint_request": not extra,
    }


def acs3_fixtures():
    inv = {"x-fc-invocation-type": "Sync", "x-fc-log-type": "None"}
    cases = [
        acs3_case("sync", "joint-A", b'{"x":1}'),
        acs3_case("async-qualifier", "joint-B", b'{"wf":"run-1","step":2}', qualifier="LATEST", asynchronous=True),
        acs3_case("sts-token", "joint-A", b"hello", token=TOKEN),
        acs3_case("encoded-name", "my func*+~", b""),
        acs3_case(
            "all-headers-signed",
            "joint-A",
            b'{"x":1}',
            extra=dict(inv, **{"user-agent": "AlibabaCloud (Linux) Python/3 TeaDSL/1", "accept": "application/json"}),
        ),
    ]
    return {
        "generator": "scripts/gen-aliyun-fixtures.py",
        "sdk": {"alibabacloud-openapi-util": versions()["alibabacloud-openapi-util"]},
        "access_key_id": AK,
        "access_key_secret": SK,
        "unix": UNIX,
        "nonce": NONCE,
        "cases": cases,
    }


# --------------------------------------------------------------------------------------------
# OSS V1 / V4 via oss2's auth objects (their _sign_request is what Bucket calls)


class _FixedDatetime(_dt.datetime):
    @classmethod
    def utcnow(cls):
        return NOW.replace(tzinfo=None)

    @classmethod
    def now(cls, tz=None):
        return NOW if tz else NOW.replace(tzinfo=None)


def oss_case(name, version, token, method, bucket, key, params=None, headers=None, body=b""):
    creds = oss2.credentials.StaticCredentialsProvider(AK, SK, token or "")
    auth = oss2.auth.ProviderAuth(creds) if version == "v1" else oss2.auth.ProviderAuthV4(creds)
    host = f"{bucket}.oss-{REGION}.aliyuncs.com"
    given = dict(headers or {})
    req = oss2.http.Request(
        method,
        f"https://{host}/{key}",
        data=body,
        params=dict(params or {}),
        headers=dict(given),
        region=REGION,
        product="oss",
    )
    auth._sign_request(req, bucket, key)
    added = {k: v for k, v in req.headers.items() if k.lower() not in {g.lower() for g in given} and v is not None}
    added.pop("User-Agent", None)
    added.pop("Accept-Encoding", None)
    canon = None
    if version == "v1":
        sts = auth._ProviderAuth__get_bytes_to_sign(req, bucket, key).decode()
    else:
        canon_bytes = auth._ProviderAuthV4__get_canonical_request_bytes(req, bucket, key, None)
        canon = canon_bytes.decode()
        sts = auth._ProviderAuthV4__get_string_to_sign_bytes(req, canon_bytes, req.headers["x-oss-date"])
        sts = sts.decode() if isinstance(sts, bytes) else sts
    authz = req.headers["authorization"]
    sig = authz.split(":", 1)[1] if version == "v1" else authz.split("Signature=", 1)[1].split(",", 1)[0]
    return {
        "name": name,
        "version": version,
        "method": method,
        "bucket": bucket,
        "key": key,
        "region": REGION,
        "query": [[k, v] for k, v in (params or {}).items()],
        "headers": header_list(given),
        "added_headers": header_list(added),
        "body_md5": oss2.utils.content_md5(body) if body else None,
        "security_token": token,
        "canonical_request": canon,
        "string_to_sign": sts,
        "signature": sig,
        "authorization": authz,
    }


def oss_fixtures():
    saved_http_date = oss2.utils.http_date
    saved_datetime = oss2.auth.datetime
    oss2.utils.http_date = lambda timeval=None: "Mon, 30 Nov 2026 08:09:10 GMT"
    oss2.auth.datetime = _FixedDatetime
    try:
        put_body = b"joint output bytes"
        delete_doc = (
            b'<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>false</Quiet>'
            b"<Object><Key>run-1/A_0</Key></Object><Object><Key>run-1/B_1</Key></Object></Delete>"
        )
        cases = []
        for version in ("v1", "v4"):
            for token in (None, TOKEN):
                sfx = f"{version}{'-sts' if token else ''}"
                cases += [
                    oss_case(
                        f"put-create-only-{sfx}", version, token, "PUT", "joint-bucket", "run-1/A_0 out+x.bin",
                        headers={
                            "Content-MD5": oss2.utils.content_md5(put_body),
                            "Content-Type": "application/octet-stream",
                            "x-oss-forbid-overwrite": "true",
                        },
                        body=put_body,
                    ),
                    oss_case(f"get-{sfx}", version, token, "GET", "joint-bucket", "run-1/A_0"),
                    oss_case(
                        f"delete-multiple-{sfx}", version, token, "POST", "joint-bucket", "",
                        params={"delete": ""},
                        headers={"Content-MD5": oss2.utils.content_md5(delete_doc), "Content-Type": "application/xml"},
                        body=delete_doc,
                    ),
                    oss_case(
                        f"list-v2-{sfx}", version, token, "GET", "joint-bucket", "",
                        params={"list-type": "2", "prefix": "run-1/", "max-keys": "1000", "continuation-token": "tok/1"},
                    ),
                ]
    finally:
        oss2.utils.http_date = saved_http_date
        oss2.auth.datetime = saved_datetime
    return {
        "generator": "scripts/gen-aliyun-fixtures.py",
        "sdk": {"oss2": versions()["oss2"]},
        "access_key_id": AK,
        "access_key_secret": SK,
        "unix": UNIX,
        "http_date": "Mon, 30 Nov 2026 08:09:10 GMT",
        "cases": cases,
    }


# --------------------------------------------------------------------------------------------
# Tablestore SignV2 via OTSProtocol._make_request_headers + SignV2, PlainBuffer via
# PlainBufferBuilder


def ots_sign_case(name, action, body, token):
    proto = ots_protocol.OTSProtocol("joint-inst", "utf-8", None)
    signer = ots_auth.SignV2("utf-8")
    ctx = ots_auth.RequestContext(OtsCredentials(AK, SK, token))
    headers = proto._make_request_headers(body, f"/{action}", signer, ctx)
    headers.pop("User-Agent", None)
    return {
        "name": name,
        "action": action,
        "instance": "joint-inst",
        "body_hex": body.hex(),
        "security_token": token,
        # What SignV2 signed: the headers as they were before it added x-ots-signature.
        "string_to_sign": signer._get_request_signature_string(
            f"/{action}", {k: v for k, v in headers.items() if k != "x-ots-signature"}
        ),
        "headers": header_list(headers),
    }


def ots_sign_fixtures():
    saved = ots_utils.get_now_utc_datetime
    ots_utils.get_now_utc_datetime = lambda: NOW
    try:
        pk = [("p", "run-1"), ("k", "run-1/A_0")]
        get_body = PlainBufferBuilder.serialize_primary_key(pk)
        cases = [
            ots_sign_case("getrow", "GetRow", bytes(get_body), None),
            ots_sign_case("putrow-sts", "PutRow", b"\x0a\x05joint\x12\x00", TOKEN),
            ots_sign_case("empty-body", "ListTable", b"", None),
        ]
    finally:
        ots_utils.get_now_utc_datetime = saved
    return {
        "generator": "scripts/gen-aliyun-fixtures.py",
        "sdk": {"tablestore": versions()["tablestore"]},
        "access_key_id": AK,
        "access_key_secret": SK,
        "unix": UNIX,
        "cases": cases,
    }


def ots_sign_v4_case(name, action, body, token, region):
    proto = ots_protocol.OTSProtocol("joint-inst", "utf-8", None)
    signer = ots_auth.SignV4("utf-8", region=region)
    ctx = ots_auth.RequestContext(OtsCredentials(AK, SK, token))
    headers = proto._make_request_headers(body, f"/{action}", signer, ctx)
    headers.pop("User-Agent", None)
    key = signer.get_signing_key(ctx)
    # A response as a server sends it; the SDK checks its Authorization with the V4 key.
    response_headers = {
        "x-ots-contentmd5": "1B2M2Y8AsgTpgAmY7PhCfg==",
        "x-ots-requestid": "0005ba1e-1234-5678-9abc-0123456789ab",
        "x-ots-date": NOW.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "x-ots-contenttype": "protocol buffer",
    }
    return {
        "name": name,
        "action": action,
        "instance": "joint-inst",
        "region": region,
        "body_hex": body.hex(),
        "security_token": token,
        "sign_date": ctx.get_sign_date(),
        "signing_key": key.decode() if isinstance(key, bytes) else key,
        # What SignV4 signed (before its "ots" salt): the headers before x-ots-signaturev4.
        "string_to_sign": signer._get_request_signature_string(
            f"/{action}", {k: v for k, v in headers.items() if k != "x-ots-signaturev4"}
        ),
        "headers": header_list(headers),
        "response_headers": header_list(response_headers),
        "response_authorization": "OTS %s:%s" % (
            AK, signer.make_response_signature(f"/{action}", response_headers, key)
        ),
    }


def ots_sign_v4_fixtures():
    saved = ots_utils.get_now_utc_datetime
    ots_utils.get_now_utc_datetime = lambda: NOW
    try:
        pk = [("p", "run-1"), ("k", "run-1/A_0")]
        get_body = bytes(PlainBufferBuilder.serialize_primary_key(pk))
        cases = [
            ots_sign_v4_case("getrow", "GetRow", get_body, None, REGION),
            ots_sign_v4_case("putrow-sts", "PutRow", b"\x0a\x05joint\x12\x00", TOKEN, REGION),
            ots_sign_v4_case("empty-body-other-region", "ListTable", b"", None, "ap-southeast-1"),
        ]
    finally:
        ots_utils.get_now_utc_datetime = saved
    return {
        "generator": "scripts/gen-aliyun-fixtures.py",
        "sdk": {"tablestore": versions()["tablestore"]},
        "access_key_id": AK,
        "access_key_secret": SK,
        "unix": UNIX,
        "cases": cases,
    }


def hexcol(prefix, name):
    return prefix + name.encode().hex()


def val(v):
    if isinstance(v, bool):
        return {"type": "boolean", "value": v}
    if isinstance(v, int):
        return {"type": "integer", "value": v}
    if isinstance(v, float):
        return {"type": "double", "value": v}
    if isinstance(v, (bytes, bytearray)):
        return {"type": "blob", "value": bytes(v).hex()}
    return {"type": "string", "value": v}


def plainbuffer_fixtures():
    pk = [("p", "run-1"), ("k", "run-1/A_0")]
    join_pk = [("p", "run-1"), ("k", "run-1/D_3-bindex-0")]
    cases = []

    def add(name, kind, pk, cells, data):
        cases.append({
            "name": name,
            "kind": kind,
            "pk": [[n, val(v)] for n, v in pk],
            "cells": cells,
            "hex": bytes(data).hex(),
        })

    # PutRow: the create-if-absent checkpoint (output blob) plus a few value types.
    put_cols = [("v", bytearray(b"{\"out\":42}")), ("t", 1764489550000), ("ok", True), ("s", "hello"), ("d", 1.5)]
    add("put-row", "put", pk, [{"op": "put", "name": n, "value": val(v)} for n, v in put_cols],
        PlainBufferBuilder.serialize_for_put_row(pk, put_cols))
    # PutRow with a cell timestamp.
    add("put-row-timestamp", "put", pk,
        [{"op": "put", "name": "v", "value": val(bytearray(b"x")), "timestamp": 1764489550123}],
        PlainBufferBuilder.serialize_for_put_row(pk, [("v", bytearray(b"x"), 1764489550123)]))
    # UpdateRow: the fan-in join (PUT b_<hex branch>=true, PUT m_<hex branch>=output, INCREMENT n).
    b = hexcol("b_", "B_1-bindex-0+1")
    m = hexcol("m_", "B_1-bindex-0+1")
    upd = {"put": [(b, True), (m, bytearray(b"branch out"))], "increment": [("n", 1)]}
    add("update-row-join", "update", join_pk,
        [{"op": "put", "name": b, "value": val(True)},
         {"op": "put", "name": m, "value": val(bytearray(b"branch out"))},
         {"op": "increment", "name": "n", "value": val(1)}],
        PlainBufferBuilder.serialize_for_update_row(join_pk, upd))
    # UpdateRow: the invoked set (PUT i_<hex successor>=true) and a negative increment.
    i = hexcol("i_", "C_2")
    add("update-row-invoked", "update", pk,
        [{"op": "put", "name": i, "value": val(True)}, {"op": "increment", "name": "n", "value": val(-3)}],
        PlainBufferBuilder.serialize_for_update_row(pk, {"put": [(i, True)], "increment": [("n", -3)]}))
    # UpdateRow: DELETE_ALL.
    add("update-row-delete-all", "update", pk, [{"op": "delete_all", "name": "v"}],
        PlainBufferBuilder.serialize_for_update_row(pk, {"DELETE_ALL": ["v"]}))
    # GetRow primary key.
    add("get-row-pk", "pk", pk, [], PlainBufferBuilder.serialize_primary_key(pk))
    # Integer primary key, unicode string.
    add("get-row-pk-mixed", "pk", [("p", "ünï"), ("n", 7)], [], PlainBufferBuilder.serialize_primary_key([("p", "ünï"), ("n", 7)]))
    # DeleteRow primary key (carries the delete marker).
    add("delete-row-pk", "delete", pk, [], PlainBufferBuilder.serialize_for_delete_row(pk))
    return {
        "generator": "scripts/gen-aliyun-fixtures.py",
        "sdk": {"tablestore": versions()["tablestore"]},
        "cases": cases,
    }


def write(name, data):
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print("wrote", os.path.relpath(path), file=sys.stderr)


def main():
    os.makedirs(OUT, exist_ok=True)
    write("acs3.json", acs3_fixtures())
    write("oss.json", oss_fixtures())
    write("ots_sign.json", ots_sign_fixtures())
    write("ots_sign_v4.json", ots_sign_v4_fixtures())
    write("plainbuffer.json", plainbuffer_fixtures())


if __name__ == "__main__":
    main()
