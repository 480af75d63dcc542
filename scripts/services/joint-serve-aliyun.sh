#!/usr/bin/env bash
# joint serve with the Aliyun-compatible endpoints (FC 3.0, OSS, Tablestore) for the official-SDK
# cross-checks. `start STATE_DIR` prints export lines; `stop STATE_DIR` stops it.
set -euo pipefail
cd "$(dirname "$0")/../.."
state=$2
pidfile="$state/joint-serve-aliyun.pid"
case "$1" in
  start)
    cargo build --workspace --bins --quiet >&2
    ak=joint-check-ak
    sk=joint-check-secret
    out="$state/joint-serve-aliyun.out"
    # examples/chain.yaml is hosted so that FC invokes real functions (its cloud local-a);
    # OSS and Tablestore serve the cloud `aliyun`, Tablestore in region cn-hangzhou (SignV4).
    target/debug/joint serve examples/chain.yaml --cloud aliyun --state-dir "$state/aliyun-serve" \
      --listen fc=127.0.0.1:0 --listen oss=127.0.0.1:0 --listen ots=127.0.0.1:0 \
      --set aliyun.access_key_id=$ak --set aliyun.access_key_secret=$sk \
      --set fc.cloud=local-a --set oss.cloud=aliyun --set ots.region=cn-hangzhou \
      >"$out" 2>"$state/joint-serve-aliyun.err" &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
      [ -s "$out" ] && break
      sleep 0.1
    done
    line=$(head -n1 "$out")
    [ -n "$line" ] || { cat "$state/joint-serve-aliyun.err" >&2; exit 1; }
    python3 - "$line" <<'PY'
import json, sys
urls = json.loads(sys.argv[1])["listening"]
for name, var in (("fc", "FC"), ("oss", "OSS"), ("ots", "OTS")):
    print(f"export JOINT_TEST_ALIYUN_{var}_URL={urls[name]}")
PY
    echo "export JOINT_TEST_ALIYUN_STATE_DIR=$state/aliyun-serve"
    echo "export JOINT_TEST_ALIYUN_AK=$ak"
    echo "export JOINT_TEST_ALIYUN_SK=$sk"
    ;;
  stop)
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    ;;
esac
