// The floor in Rust (bench/floor-rs/): bench/floor-worker.mjs's calls made
// from Rust through the worker crate's own API. Built as the worker is
// (worker-build --release with the repository's .cargo/config.toml, then
// scripts/optimize-wasm.sh), into target/floor-rs/build/, and rebuilt only
// when its sources or the toolchain change.
//
//   node bench/floor-rs.mjs      builds it (or finds it) and prints where it is
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import { root } from "./services.mjs";

const SOURCE = "bench/floor-rs";
const OUT = "target/floor-rs";
const INPUTS = [SOURCE, "scripts/optimize-wasm.sh", ".cargo", ".tools/env"];

/** Every input file's path and content, then the toolchain's versions, hashed. */
function fingerprint() {
  const hash = createHash("sha256");
  const add = (path) => {
    const full = join(root, path);
    if (!existsSync(full)) return;
    if (!statSync(full).isDirectory()) return hash.update(`${path}\0`).update(readFileSync(full));
    for (const name of readdirSync(full).sort()) if (name !== "build") add(join(path, name));
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
 * The floor in Rust, built now unless current. Never throws: resolves to
 * { script, wasmBytes, wasmGzipBytes, cached, buildSeconds } (script relative to the
 * repository root, for startWorker) or { error }.
 */
export function rustFloorBuild({ log = (m) => process.stderr.write(`bench: ${m}\n`) } = {}) {
  const build = join(OUT, "build");
  const script = join(build, "index.js");
  const stamp = join(root, OUT, "stamp");
  try {
    if (!existsSync(join(root, ".tools/env"))) throw new Error(".tools/env is missing (run npm run setup)");
    const print = fingerprint();
    const wasm = join(root, build, "index_bg.wasm");
    if (existsSync(stamp) && readFileSync(stamp, "utf8") === print && existsSync(join(root, script)) && existsSync(wasm)) {
      log(`floor in Rust: current build in ${build}`);
      return { script, ...sizes(wasm), cached: true, buildSeconds: null };
    }
    const started = performance.now();
    log(`floor in Rust: building ${SOURCE} (the first build compiles its dependencies: a minute or more)`);
    rmSync(stamp, { force: true });
    const built = spawnSync("bash", ["-c", 'source .tools/env && cd "$1" && worker-build --release && cd - >/dev/null && scripts/optimize-wasm.sh "$1/build/index_bg.wasm"', "_", SOURCE], {
      cwd: root,
      env: { ...process.env, CARGO_TARGET_DIR: join(root, OUT, "cargo") },
      encoding: "utf8",
      maxBuffer: 1 << 28,
    });
    if (built.status !== 0) throw new Error(`the build failed:\n${`${built.stdout}${built.stderr}`.trimEnd().split("\n").slice(-15).join("\n")}`);
    rmSync(join(root, build), { recursive: true, force: true });
    mkdirSync(join(root, OUT), { recursive: true });
    cpSync(join(root, SOURCE, "build"), join(root, build), { recursive: true });
    rmSync(join(root, SOURCE, "build"), { recursive: true, force: true });
    writeFileSync(stamp, print);
    const buildSeconds = (performance.now() - started) / 1000;
    log(`floor in Rust: built in ${buildSeconds.toFixed(0)} s (${build})`);
    return { script, ...sizes(wasm), cached: false, buildSeconds };
  } catch (error) {
    log(`floor in Rust: ${error.message}`);
    return { error: error.message.split("\n")[0] };
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const build = rustFloorBuild();
  process.stdout.write(`${JSON.stringify(build, null, 2)}\n`);
  if (build.error) process.exitCode = 1;
}
