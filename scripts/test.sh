#!/usr/bin/env bash
# Runs every test of joint on a fresh machine: installs what the tests need (Python SDKs and
# emulators from PyPI, into .venv-test), starts the emulators in the background, runs the Rust
# tests and the cross-checks with official clients, and stops everything on exit.
#
# Plug-ins, each optional:
#   scripts/requirements/*.txt   pip requirements, installed into .venv-test
#   scripts/services/NAME.sh     `start STATE_DIR` prints `export VAR=value` lines for the tests
#                                and leaves a PID file in STATE_DIR; `stop STATE_DIR` stops it
#   scripts/checks/NAME.sh       run after the Rust tests, with the services' variables exported
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
state=$(mktemp -d "${TMPDIR:-/tmp}/joint-test.XXXXXX")
services=()

cleanup() {
  local s
  for s in "${services[@]}"; do
    bash "scripts/services/$s.sh" stop "$state" || true
  done
  rm -rf "$state"
}
trap cleanup EXIT

step() { printf '\n==> %s\n' "$*"; }

shopt -s nullglob
reqs=(scripts/requirements/*.txt)
if [ ${#reqs[@]} -gt 0 ]; then
  step "installing Python test dependencies into .venv-test"
  if [ ! -x .venv-test/bin/python ]; then
    python3 -m venv .venv-test
  fi
  for r in "${reqs[@]}"; do
    .venv-test/bin/pip install --quiet -r "$r"
  done
  export PATH="$root/.venv-test/bin:$PATH"
fi

for f in scripts/services/*.sh; do
  name=$(basename "$f" .sh)
  step "starting $name"
  env_out=$(bash "$f" start "$state")
  services+=("$name")
  eval "$env_out"
  printf '%s\n' "$env_out" | sed 's/=.*/=…/'
done

step "cargo build --workspace --all-targets (the example Lambda binary the ministack tests deploy)"
cargo build --workspace --all-targets

step "cargo test --workspace"
# Every emulator test must run here: a missing emulator or binary fails instead of skipping.
export JOINT_TEST_STRICT=1
cargo test --workspace --all-targets

for f in scripts/checks/*.sh; do
  step "check: $(basename "$f" .sh)"
  bash "$f"
done

step "all tests passed"
