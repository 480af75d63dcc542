#!/usr/bin/env bash
# Cross-checks `joint serve --listen lambda=…` with the official client (boto3): Lambda's error
# shapes must parse as botocore expects them, and both invocation types must answer as Lambda does.
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
target/debug/joint serve examples/chain.yaml --listen "lambda=127.0.0.1:$port" \
  --state-dir "$work/state" >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$port)))"; then break; fi
  sleep 0.1
done

python3 - "$port" <<'PY'
import json, sys
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
PY
echo "lambda endpoint cross-check passed"
