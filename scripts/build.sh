#!/usr/bin/env bash
# Builds the worker to build/ (index.js, index_bg.wasm) with worker-build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .tools/env ] || { echo "build: run 'npm run setup' first" >&2; exit 1; }
# shellcheck source=/dev/null
source .tools/env
worker-build --release >&2
