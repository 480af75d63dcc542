#!/usr/bin/env bash
# Cross-checks `joint serve --listen lambda=…` with the official client (boto3): Lambda's error
# shapes must parse as botocore expects them into its modeled exceptions, both invocation types
# must answer as Lambda does, and so must its limits, name/ARN/qualifier parsing, DryRun,
# LogType=Tail, invalid JSON, unknown operations, envelopes sent to another function and, with
# JOINT_KEYS set, unsigned events.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d "${TMPDIR:-/tmp}/joint-lambda-check.XXXXXX")
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --workspace --all-targets --quiet
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
JOINT_KEYS=k1:000102030405060708090a0b0c0d0e0f \
  target/debug/joint serve examples/chain.yaml --listen "lambda=127.0.0.1:$port" \
  --state-dir "$work/state" >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$port)))"; then break; fi
  sleep 0.1
done

python3 - "$port" <<'PY'
import base64, json, sys
import boto3, botocore

port = sys.argv[1]
c = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test",
                 config=botocore.config.Config(retries={"max_attempts": 1}))

# Unknown function: Lambda's 404 shape, parsed by botocore into its modeled exception.
try:
    c.invoke(FunctionName="no-such-function", Payload=b"{}")
    sys.exit("unknown function was accepted")
except c.exceptions.ResourceNotFoundException as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response
    print("ok: unknown function -> ResourceNotFoundException (404)")

# Event invocation of a hosted function: 202, queued.
r = c.invoke(FunctionName="first", InvocationType="Event", Payload=b"{}")
assert r["StatusCode"] == 202, r
print("ok: Event -> 202")

# RequestResponse with a payload that is not a joint envelope: the function fails, and the
# failure comes back as Lambda reports function errors.
r = c.invoke(FunctionName="first", Payload=b'{"not":"an envelope"}')
assert r["StatusCode"] == 200, r
assert r.get("FunctionError") == "Unhandled", r
body = json.loads(r["Payload"].read())
assert set(body) == {"errorMessage", "errorType"}, body
print("ok: function error -> X-Amz-Function-Error: Unhandled,", body["errorType"])


def client_error(fn, code, status):
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        got = (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
        assert got == (code, status), (got, e.response)
        return e
    sys.exit(f"expected {code} ({status}), got success")


# Payload limits are Lambda's: 6 MB sync (3 MiB passes, past axum's old 2 MB), 1 MB Event.
big = json.dumps("x" * (3 * 1024 * 1024)).encode()
r = c.invoke(FunctionName="first", Payload=big)
assert r["StatusCode"] == 200, r
print("ok: a 3 MiB synchronous payload is accepted")
e = client_error(lambda: c.invoke(FunctionName="first", Payload=json.dumps("x" * (6 * 1024 * 1024)).encode()),
                 "RequestTooLargeException", 413)
assert isinstance(e, c.exceptions.RequestTooLargeException), type(e)
print("ok: over 6 MB -> RequestTooLargeException (413)")
client_error(lambda: c.invoke(FunctionName="first", InvocationType="Event",
                              Payload=json.dumps("x" * (1024 * 1024)).encode()),
             "RequestTooLargeException", 413)
print("ok: an Event over 1 MB -> RequestTooLargeException (413)")

# Function names, ARNs and qualifiers as Lambda parses them.
for name in ["first:$LATEST", "123456789012:function:first",
             "arn:aws:lambda:us-east-1:123456789012:function:first",
             "arn:aws:lambda:us-east-1:123456789012:function:first:$LATEST"]:
    r = c.invoke(FunctionName=name, InvocationType="DryRun")
    assert r["StatusCode"] == 204, (name, r)
print("ok: names, partial and full ARNs, qualified ARNs (DryRun -> 204)")
r = c.invoke(FunctionName="first", Qualifier="$LATEST", Payload=b"{}")
assert r["StatusCode"] == 200 and r["ExecutedVersion"] == "$LATEST", r
for kw in [{"FunctionName": "first:prod"}, {"FunctionName": "first", "Qualifier": "7"},
           {"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:first:live"}]:
    e = client_error(lambda: c.invoke(Payload=b"{}", **kw), "ResourceNotFoundException", 404)
    assert isinstance(e, c.exceptions.ResourceNotFoundException), type(e)
print("ok: a version or alias that does not exist -> ResourceNotFoundException (404)")
client_error(lambda: c.invoke(FunctionName="nope", InvocationType="DryRun"), "ResourceNotFoundException", 404)
print("ok: DryRun of a missing function -> ResourceNotFoundException")

# LogType=Tail: the base64 of the last 4 KB of the invocation's log.
r = c.invoke(FunctionName="first", Payload=b"{}", LogType="Tail")
log = base64.b64decode(r["LogResult"]).decode()
rid = r["ResponseMetadata"]["RequestId"]
assert log.startswith(f"START RequestId: {rid}") and f"END RequestId: {rid}" in log and "REPORT" in log, log
assert "ERROR" in log, log  # `first` fails on a payload that is not an envelope
print("ok: LogType=Tail -> LogResult with START/END/REPORT and the error")

# Invalid JSON, for both invocation types.
for kind in ["RequestResponse", "Event"]:
    e = client_error(lambda: c.invoke(FunctionName="first", InvocationType=kind, Payload=b"{not json"),
                     "InvalidRequestContentException", 400)
    assert isinstance(e, c.exceptions.InvalidRequestContentException), type(e)
print("ok: invalid JSON -> InvalidRequestContentException (400), Event included")

# Operations joint serve does not implement, in Lambda's error format.
client_error(lambda: c.get_function(FunctionName="first"), "UnknownOperationException", 404)
client_error(lambda: c.list_functions(), "UnknownOperationException", 404)
print("ok: other operations -> UnknownOperationException (404)")

# An envelope for `third` sent to `first` does not run `third`.
r = c.invoke(FunctionName="first", Payload=json.dumps({"v": 1, "function": "third"}).encode())
body = json.loads(r["Payload"].read())
assert r.get("FunctionError") == "Unhandled" and "for function 'third' but was delivered to function 'first'" in body["errorMessage"], body
print("ok: an envelope for another function is refused")

# JOINT_KEYS is set: an unsigned (structurally valid) envelope is refused before it runs.
env = {"v": 1, "workflow": "chain", "workflow_id": "unsigned-run", "function": "first", "step": 0,
       "input": {"inline": 3}, "home": "local-a", "def_hash": "0" * 64}
r = c.invoke(FunctionName="first", Payload=json.dumps(env).encode())
body = json.loads(r["Payload"].read())
assert r.get("FunctionError") == "Unhandled" and "not signed" in body["errorMessage"], body
print("ok: with JOINT_KEYS, an unsigned envelope is refused")
PY
# ... and committed nothing.
if target/debug/joint status unsigned-run --state-dir "$work/state" >/dev/null 2>&1; then
  echo "FAIL: the unsigned run committed something"; exit 1
fi
echo "ok: the unsigned run committed nothing"
echo "lambda endpoint cross-check passed"
