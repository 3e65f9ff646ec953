#!/usr/bin/env bash
# Optimizes a worker-build wasm in place, as it is shipped: used by
# scripts/build.sh for the worker and by bench/floor-rs.mjs for the floor in
# Rust, so both are built the same way. Needs WASM_OPT_BIN (.tools/env).
#
# The name section (function names, ~70 KB gzipped) is not shipped: less to
# download and compile at every isolate start; panics keep their message.
# -O3: binaryen inlines the small functions rustc left as calls; fewer calls
# in V8's baseline tier (each pays a frame setup) measured 0.24 and 0.30 ms
# of CPU less per generation (paired, A/A column), and 0.6 KB less gzipped.
#
# KEEP_NAMES=1 keeps the name section (-g), for profiles that name the wasm's
# functions (bench/worker-share.mjs); the code is otherwise the same (its
# instructions within 0.1% of the shipped build's, by binaryen's --metrics).
# Arguments after the file are more wasm-opt passes, run after these
# (bench/wasm-work.mjs adds --log-execution).
set -euo pipefail
wasm=${1:?usage: scripts/optimize-wasm.sh <file.wasm> [more wasm-opt arguments]}
names=--strip-debug
[ "${KEEP_NAMES:-}" = 1 ] && names=-g
"${WASM_OPT_BIN:?source .tools/env first}" "$wasm" -O3 "$names" --strip-producers \
  --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
  --enable-reference-types --enable-multivalue --enable-simd "${@:2}" -o "$wasm"
