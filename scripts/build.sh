#!/usr/bin/env bash
# Builds the worker to build/ (index.js, index_bg.wasm) with worker-build.
#
# Skips the whole build when its inputs are unchanged since the last
# successful build and its output is intact: the inputs are src/, Cargo.toml,
# Cargo.lock, build.rs, .cargo/ and rust-toolchain(.toml) (when present), this
# script, the toolchain (.tools/env, rustc and worker-build versions) and the
# build-affecting environment (RUSTFLAGS, CARGO_PROFILE_*, ...). The
# fingerprint of the last successful build is in target/fluxgate-build.stamp.
# FLUXGATE_FORCE_BUILD=1 rebuilds regardless.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .tools/env ] || { echo "build: run 'npm run setup' first" >&2; exit 1; }
# shellcheck source=/dev/null
source .tools/env

STAMP=target/fluxgate-build.stamp

hash_stream() { sha256sum | cut -d' ' -f1; }

# Every input file's content hash with its path (sorted, so adding, removing
# or renaming a file changes the fingerprint), then the tool versions and the
# environment that can change the output.
INPUTS=(src Cargo.toml Cargo.lock build.rs .cargo rust-toolchain rust-toolchain.toml scripts/build.sh scripts/optimize-wasm.sh .tools/env)
inputs_fingerprint() {
  local present=() p
  for p in "${INPUTS[@]}"; do [ -e "$p" ] && present+=("$p"); done
  {
    find "${present[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    "$RUSTC" -vV
    worker-build --version
    env | LC_ALL=C sort | grep -E '^(RUSTFLAGS|RUSTC_[A-Z_]*|CARGO_ENCODED_RUSTFLAGS|CARGO_BUILD_[A-Z_]*|CARGO_PROFILE_[A-Z_]*|CARGO_TARGET_[A-Z0-9_]*|CARGO_FEATURE_[A-Z0-9_]*|WASM_BINDGEN_[A-Z_]*|WASM_OPT_[A-Z_]*)=' || true
  } | hash_stream
}

# The outputs as they are now (a missing or edited output does not match).
outputs_fingerprint() {
  [ -f build/index.js ] && [ -f build/index_bg.wasm ] || { echo missing; return; }
  find build -type f ! -path 'build/.tmp/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | hash_stream
}

inputs=$(inputs_fingerprint)
if [ "${FLUXGATE_FORCE_BUILD:-}" != 1 ] && [ -f "$STAMP" ] \
  && [ "$(cat "$STAMP")" = "$inputs $(outputs_fingerprint)" ]; then
  echo "build: no change since the last build (build/ is current)" >&2
  exit 0
fi

rm -f "$STAMP"
worker-build --release >&2
# Stripped of names and optimized as shipped (see scripts/optimize-wasm.sh).
scripts/optimize-wasm.sh build/index_bg.wasm >&2
mkdir -p target
echo "$inputs $(outputs_fingerprint)" > "$STAMP"
