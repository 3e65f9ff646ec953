#!/usr/bin/env bash
# Installs everything the build and the tests need, idempotently:
#   1. npm packages (wrangler, miniflare, Node 22, binaryen, sharp, ...)
#   2. Debian's chromium for the browser tests, when /usr/bin/chromium is missing
#   3. a Rust toolchain that can target wasm32-unknown-unknown
#   4. worker-build and wasm-bindgen-cli (pinned to Cargo.lock)
# A second run with nothing changed only checks and returns.
# Everything it decides is written to .tools/env, which the other scripts source.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=$ROOT/.tools
mkdir -p "$TOOLS/bin"

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: FAILED: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif have sudo; then sudo "$@"; else die "need root (or sudo) to run: $*"; fi; }

have npm || die "npm is not installed (install Node.js >= 20 with npm)"
have cargo || have /usr/bin/cargo || die "cargo is not installed (install Rust with rustup: https://rustup.rs)"

# ---------------------------------------------------------------- npm packages
stamp=node_modules/.fluxgate-installed
if [ ! -f "$stamp" ] || [ package.json -nt "$stamp" ] || { [ -f package-lock.json ] && [ package-lock.json -nt "$stamp" ]; }; then
  say "installing npm packages"
  # `npm install` follows package-lock.json; `npm ci` trips over the lock's
  # nested optional platform packages (workerd) on some npm versions.
  npm install --no-audit --no-fund --loglevel=error >&2 || die "npm install failed"
  touch "$stamp"
fi
[ -x node_modules/.bin/node ] || die "node_modules/.bin/node (Node 22) is missing after npm install"

# ---------------------------------------------------------------- Chromium (browser tests)
# tests/browser.test.mjs drives Debian's Chromium with playwright-core (which
# cannot download a browser of its own here). CHROMIUM_PATH may point at another.
if [ -z "${CHROMIUM_PATH:-}" ] && [ ! -x /usr/bin/chromium ]; then
  if have apt-get; then
    say "installing Debian's chromium and an emoji font (for the browser tests)"
    as_root apt-get update -qq >&2 || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium fonts-noto-color-emoji >&2 \
      || die "apt-get install chromium fonts-noto-color-emoji failed"
  else
    say "no /usr/bin/chromium and no apt-get: the browser tests will fail (install Chromium or set CHROMIUM_PATH)"
  fi
fi

# ---------------------------------------------------------------- wasm32 toolchain
has_wasm_std() { # $1 = rustc binary
  local sysroot
  sysroot=$("$1" --print sysroot 2>/dev/null) || return 1
  [ -d "$sysroot/lib/rustlib/wasm32-unknown-unknown/lib" ] && ls "$sysroot/lib/rustlib/wasm32-unknown-unknown/lib/"libstd-*.rlib >/dev/null 2>&1
}

# The toolchain is looked for outside our own links (a shell that sourced .tools/env has them first).
PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$TOOLS/bin" | paste -sd: -)
# FLUXGATE_RUST=debian skips rustup (to exercise the fallback on a machine where rustup works).
RUST_BIN=""
if [ "${FLUXGATE_RUST:-}" = debian ] && has_wasm_std /usr/bin/rustc 2>/dev/null; then
  RUST_BIN=/usr/bin
elif [ "${FLUXGATE_RUST:-}" != debian ] && have rustc && has_wasm_std "$(command -v rustc)"; then
  RUST_BIN=$(dirname "$(command -v rustc)")
elif have /usr/bin/rustc && has_wasm_std /usr/bin/rustc; then
  RUST_BIN=/usr/bin
elif [ "${FLUXGATE_RUST:-}" != debian ] && have rustup && timeout 25 rustup target add wasm32-unknown-unknown >/dev/null 2>&1 && has_wasm_std "$(command -v rustc)"; then
  RUST_BIN=$(dirname "$(command -v rustc)")
else
  say "rustup cannot fetch the wasm32 target; using Debian's rustc-web with a wasm32 std built from source"
  if ! { [ -x /usr/bin/rustc ] && /usr/bin/rustc --version 2>/dev/null | grep -q . && [ -d /usr/lib/rustlib/src/rust/library ] && [ -e /usr/bin/rust-lld ] && [ -x /usr/bin/lld-22 ]; }; then
    have apt-get || die "no wasm32 target: run 'rustup target add wasm32-unknown-unknown' (no apt-get for the fallback)"
    as_root apt-get update -qq >&2 || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq rustc-web cargo-web rust-web-src lld-22 >&2 \
      || die "apt-get install rustc-web cargo-web rust-web-src lld-22 failed"
  fi
  sysroot_lib="$(/usr/bin/rustc --print sysroot)/lib/rustlib/wasm32-unknown-unknown/lib"
  say "building the wasm32 std (about a minute, once)"
  tmp=$(mktemp -d)
  mkdir -p "$tmp/src"
  printf '[package]\nname = "wasm-sysroot"\nversion = "0.0.0"\nedition = "2021"\n[lib]\npath = "src/lib.rs"\n[profile.release]\npanic = "abort"\n' > "$tmp/Cargo.toml"
  : > "$tmp/src/lib.rs"
  ( cd "$tmp" && RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS=-Cembed-bitcode=yes \
      /usr/bin/cargo build -q --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort >&2 ) \
    || die "building the wasm32 std from /usr/lib/rustlib/src failed"
  as_root mkdir -p "$sysroot_lib"
  find "$tmp/target/wasm32-unknown-unknown/release/deps" -name '*.rlib' ! -name 'libwasm_sysroot-*' -exec cp {} "$sysroot_lib/" \; 2>/dev/null \
    || as_root find "$tmp/target/wasm32-unknown-unknown/release/deps" -name '*.rlib' ! -name 'libwasm_sysroot-*' -exec cp {} "$sysroot_lib/" \;
  rm -rf "$tmp"
  has_wasm_std /usr/bin/rustc || die "the wasm32 std did not land in $sysroot_lib"
  RUST_BIN=/usr/bin
fi
# The chosen toolchain goes first in PATH for every build step (worker-build calls `cargo`).
for t in cargo rustc rustdoc; do ln -sf "$RUST_BIN/$t" "$TOOLS/bin/$t"; done

export PATH="$TOOLS/bin:$HOME/.cargo/bin:$PATH"

# ---------------------------------------------------------------- worker-build, wasm-bindgen-cli
CARGO_BIN_DIR=${CARGO_HOME:-$HOME/.cargo}/bin
need_install() { # $1 binary, $2 expected version regex
  local bin=$CARGO_BIN_DIR/$1
  [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -Eq "$2" && return 1
  return 0
}
if need_install worker-build '(^| )0\.8\.'; then
  say "installing worker-build 0.8 (a few minutes, once)"
  cargo install -q worker-build --version '^0.8' --locked >&2 || die "cargo install worker-build failed"
fi
if [ ! -f Cargo.lock ]; then cargo generate-lockfile -q >&2 || die "cargo generate-lockfile failed"; fi
WBG_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)
[ -n "$WBG_VERSION" ] || die "wasm-bindgen is not in Cargo.lock"
if need_install wasm-bindgen " ${WBG_VERSION//./\\.}\$"; then
  say "installing wasm-bindgen-cli $WBG_VERSION (a few minutes, once)"
  cargo install -q wasm-bindgen-cli --version "=$WBG_VERSION" --locked >&2 || die "cargo install wasm-bindgen-cli $WBG_VERSION failed"
fi

[ -x node_modules/.bin/wasm-opt ] || die "node_modules/.bin/wasm-opt (npm package binaryen) is missing"
[ -x node_modules/.bin/esbuild ] || die "node_modules/.bin/esbuild (comes with wrangler) is missing"

cat > "$TOOLS/env" <<EOF
export PATH="$TOOLS/bin:$ROOT/node_modules/.bin:$CARGO_BIN_DIR:\$PATH"
export WASM_BINDGEN_BIN="$CARGO_BIN_DIR/wasm-bindgen"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
export RUSTC="$RUST_BIN/rustc"
export RUSTDOC="$RUST_BIN/rustdoc"
EOF
