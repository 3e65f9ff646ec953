// The floor in Rust (bench/floor-rs/): bench/floor-worker.mjs's calls made
// from Rust, in two variants: "stock", through the worker crate's own API;
// "lean" (cargo feature `lean`), through fluxgate's own paths to the runtime
// (its src/edge/{promise,kv,r2}.rs compiled in). Built as the worker is
// (worker-build --release with the repository's .cargo/config.toml, then
// scripts/optimize-wasm.sh), into target/floor-rs/<variant>/build/, and
// rebuilt only when its sources or the toolchain change; the same code with
// its names kept (KEEP_NAMES=1) beside it in named/, for the sampled share
// (bench/worker-share.mjs).
//
//   node bench/floor-rs.mjs [stock|lean]   builds one (or finds it) and prints where it is
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import { root } from "./services.mjs";

const SOURCE = "bench/floor-rs";
const INPUTS = [SOURCE, "src/edge/promise.rs", "src/edge/kv.rs", "src/edge/r2.rs", "scripts/optimize-wasm.sh", ".cargo", ".tools/env"];
/** Each variant's cargo features. */
export const VARIANTS = { stock: "", lean: "lean" };

/** Every input file's path and content, then the toolchain's versions, hashed. */
function fingerprint(variant) {
  const hash = createHash("sha256").update(`${variant}\0`);
  const add = (path) => {
    const full = join(root, path);
    if (!existsSync(full)) return;
    if (!statSync(full).isDirectory()) return hash.update(`${path}\0`).update(readFileSync(full));
    for (const name of readdirSync(full).sort()) if (!name.startsWith("build")) add(join(path, name));
  };
  for (const input of INPUTS) add(input);
  hash.update(toolchain("rustc -vV && worker-build --version"));
  return hash.digest("hex");
}

const sizes = (wasm) => {
  const bytes = readFileSync(wasm);
  return { wasmBytes: bytes.length, wasmGzipBytes: gzipSync(bytes, { level: 9 }).length };
};

const toolchain = (command) => execFileSync("bash", ["-c", `source .tools/env && ${command}`], { cwd: root, encoding: "utf8" });

/**
 * The floor in Rust's `variant`, built now unless current. Never throws:
 * returns { variant, script, namedScript, wasmBytes, wasmGzipBytes, cached,
 * buildSeconds } (scripts relative to the repository root, for startWorker;
 * namedScript the same build with its names) or { variant, error }.
 */
export function rustFloorBuild({ variant = "stock", log = (m) => process.stderr.write(`bench: ${m}\n`) } = {}) {
  const name = `floor in Rust (${variant})`;
  const out = join("target/floor-rs", variant);
  const build = join(out, "build");
  const script = join(build, "index.js");
  const named = join(out, "named");
  const namedScript = join(named, "index.js");
  const stamp = join(root, out, "stamp");
  const crateOut = `build-${variant}`;
  try {
    if (!Object.hasOwn(VARIANTS, variant)) throw new Error(`no variant ${variant} (${Object.keys(VARIANTS).join(", ")})`);
    if (!existsSync(join(root, ".tools/env"))) throw new Error(".tools/env is missing (run npm run setup)");
    const print = fingerprint(variant);
    const wasm = join(root, build, "index_bg.wasm");
    const current = [script, join(build, "index_bg.wasm"), namedScript, join(named, "index_bg.wasm")].every((f) => existsSync(join(root, f)));
    if (existsSync(stamp) && readFileSync(stamp, "utf8") === print && current) {
      log(`${name}: current build in ${build}`);
      return { variant, script, namedScript, ...sizes(wasm), cached: true, buildSeconds: null };
    }
    const started = performance.now();
    log(`${name}: building ${SOURCE} (the first build compiles its dependencies: a minute or more)`);
    rmSync(stamp, { force: true });
    const features = VARIANTS[variant] ? ["--features", VARIANTS[variant]] : [];
    const command =
      'source .tools/env && (cd "$1" && worker-build --release --out-dir "$2" . "${@:3}") && rm -rf "$1/$2-named" && cp -r "$1/$2" "$1/$2-named"' +
      ' && scripts/optimize-wasm.sh "$1/$2/index_bg.wasm" && KEEP_NAMES=1 scripts/optimize-wasm.sh "$1/$2-named/index_bg.wasm"';
    const built = spawnSync("bash", ["-c", command, "_", SOURCE, crateOut, ...features], {
      cwd: root,
      env: { ...process.env, CARGO_TARGET_DIR: join(root, "target/floor-rs/cargo") },
      encoding: "utf8",
      maxBuffer: 1 << 28,
    });
    if (built.status !== 0) throw new Error(`the build failed:\n${`${built.stdout}${built.stderr}`.trimEnd().split("\n").slice(-15).join("\n")}`);
    mkdirSync(join(root, out), { recursive: true });
    for (const [from, to] of [[crateOut, build], [`${crateOut}-named`, named]]) {
      rmSync(join(root, to), { recursive: true, force: true });
      cpSync(join(root, SOURCE, from), join(root, to), { recursive: true });
      rmSync(join(root, SOURCE, from), { recursive: true, force: true });
    }
    writeFileSync(stamp, print);
    const buildSeconds = (performance.now() - started) / 1000;
    log(`${name}: built in ${buildSeconds.toFixed(0)} s (${build})`);
    return { variant, script, namedScript, ...sizes(wasm), cached: false, buildSeconds };
  } catch (error) {
    log(`${name}: ${error.message}`);
    return { variant, error: error.message.split("\n")[0] };
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const build = rustFloorBuild({ variant: process.argv[2] ?? "stock" });
  process.stdout.write(`${JSON.stringify(build, null, 2)}\n`);
  if (build.error) process.exitCode = 1;
}
