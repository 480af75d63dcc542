#!/usr/bin/env bash
# Checks the dependency rule: joint-core knows no cloud and does no I/O, joint-shim knows no
# concrete cloud, backends never depend on each other (except on the shared signing code in
# joint-shim-aliyun), the provider-compatible endpoints live in joint-serve, and a local-only
# embedder (joint-shim-local, default features) compiles no HTTP client, TLS, protobuf, XML or
# cloud SDK.
set -euo pipefail
cd "$(dirname "$0")/.."
meta=$(cargo metadata --format-version 1 --no-deps)
python3 - "$meta" <<'PY'
import json, sys
meta = json.loads(sys.argv[1])
deps = {p["name"]: {d["name"] for d in p["dependencies"] if d.get("kind") in (None, "normal")}
        for p in meta["packages"]}
rules = {
    "joint-core": {"allowed": {"serde", "serde_json", "serde_yaml_ng", "sha2", "hex", "hmac", "subtle", "thiserror"}},
    "joint-shim": {"forbidden_prefix": ["joint-shim-", "joint-store", "aws-", "reqwest", "rusqlite", "joint-examples", "joint-cli"]},
    "joint-store": {"forbidden": {"joint-shim-aws", "joint-shim-local", "joint-examples", "joint-cli"}},
    "joint-shim-aws": {"forbidden": {"joint-shim-aliyun", "joint-shim-local", "joint-examples", "joint-cli"}},
    "joint-shim-aliyun": {"forbidden": {"joint-shim-aws", "joint-store", "joint-shim-local", "joint-examples", "joint-cli"}},
    "joint-shim-local": {"forbidden": {"joint-shim-aws", "joint-shim-aliyun", "joint-store", "joint-serve", "joint-examples", "joint-cli", "axum", "reqwest", "prost"}},
    "joint-serve": {"forbidden": {"joint-shim-aws", "joint-store", "joint-examples", "joint-cli"}},
}
bad = []
for crate, rule in rules.items():
    if crate not in deps:
        continue
    d = deps[crate]
    if "allowed" in rule:
        extra = sorted(d - rule["allowed"])
        if extra:
            bad.append(f"{crate} may depend only on {sorted(rule['allowed'])}, but depends on {extra}")
    for f in sorted(d & rule.get("forbidden", set())):
        bad.append(f"{crate} must not depend on {f}")
    for p in rule.get("forbidden_prefix", []):
        for f in sorted(x for x in d if x.startswith(p)):
            bad.append(f"{crate} must not depend on {f}")
if bad:
    print("dependency rule violated:\n  " + "\n  ".join(bad))
    sys.exit(1)
print("dependency rule ok: " + ", ".join(sorted(c for c in rules if c in deps)))
PY

# What a local-only embedder compiles, all the way down.
heavy=$(cargo tree -e normal -p joint-shim-local --prefix none 2>/dev/null \
  | grep -E '^(reqwest|rustls|prost|quick-xml|aws-[a-z-]+|hyper) ' | sort -u || true)
if [ -n "$heavy" ]; then
  echo "joint-shim-local (default features) must not pull in: $(echo "$heavy" | tr '\n' ' ')"
  exit 1
fi
echo "joint-shim-local compiles no HTTP client, TLS, protobuf, XML or cloud SDK"
