#!/usr/bin/env bash
# Every test: the Rust unit tests, then the integration tests under Miniflare.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
source .tools/env
status=0
echo "== Rust unit tests (cargo test)"
cargo test --locked || status=1
echo "== Integration tests (node --test, Miniflare)"
node --test --experimental-test-isolation=none --test-reporter=spec tests/*.test.mjs || status=1
exit $status
