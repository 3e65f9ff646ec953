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
# Two test files at a time, each in its own process with its own Miniflare and
# emulator: most of a file's time is spent waiting (predictions, timers, the
# browser), so two lanes take about 60% of one lane's time on 2 cores.
# FLUXGATE_TEST_CONCURRENCY=1 runs them one after another.
node --test --test-concurrency="${FLUXGATE_TEST_CONCURRENCY:-2}" --test-reporter=spec tests/*.test.mjs || status=1
exit $status
