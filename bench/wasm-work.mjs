// How much of fluxgate's wasm runs per generation, counted rather than timed:
// every function entry and every loop iteration, by function. binaryen's
// `--log-execution` pass makes each function start and each loop head call an
// import with a number of its own; a copy of the glue gives that import a
// counter. The counts barely move from run to run (only work after the
// answer, such as a usage write, falls in one batch or the next), so they
// show a change to the wasm's own work that the paired CPU figures cannot
// resolve, and which functions do most of it (a loop trying every byte of a
// kilobyte shows up as a thousand iterations and the calls made in each).
//
//   node bench/wasm-work.mjs <build with names> [generations=10] [rows=40]
//
// A build with names: `worker-build --release`, then copy build/ before
// scripts/build.sh strips it (this script applies the shipped `-O3` itself,
// so the counts are those of the shipped code).
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { countGenerations, writeCountingBuild } from "./counting-build.mjs";
import { root, startEmulator, startWorker } from "./services.mjs";

const [buildArg, generationsArg, rowsArg] = process.argv.slice(2);
if (!buildArg) {
  console.error("usage: node bench/wasm-work.mjs <build with names> [generations=10] [rows=40]");
  process.exit(2);
}
const GENERATIONS = Number(generationsArg) > 0 ? Number(generationsArg) : 10;
const ROWS = Number(rowsArg) > 0 ? Number(rowsArg) : 40;
const build = join(root, buildArg);
const dir = join(root, "target", "wasm-work");
const bin = (name) => join(root, "node_modules", ".bin", name);

/**
 * The build, optimized as shipped and instrumented, in a counting build;
 * returns { entry, names } where names maps each counter's number to its
 * function's name.
 */
function instrument() {
  const wasm = join(root, "target", "wasm-work.wasm");
  // Optimized as shipped, its names kept, then instrumented.
  const optimize = 'source .tools/env && cp "$1" "$2" && KEEP_NAMES=1 scripts/optimize-wasm.sh "$2" --log-execution';
  execFileSync("bash", ["-c", optimize, "_", join(build, "index_bg.wasm"), wasm], { cwd: root, stdio: ["ignore", "ignore", "inherit"] });
  const text = execFileSync(bin("wasm-dis"), [wasm], { maxBuffer: 1 << 30 }).toString();
  if (!/\(func \$"?[^\s"]*::/.test(text)) throw new Error(`${buildArg} has no function names: copy build/ before scripts/build.sh strips them`);
  const logger = /\(import "[^"]+" "log_execution" \(func (\$\S+)/.exec(text)?.[1];
  if (!logger) throw new Error("wasm-opt --log-execution added no import");
  // Each counter is `(call $logger (i32.const N))`, on one line or two.
  const names = new Map();
  let fn = "?";
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const start = /^ \(func \$("(?:[^"\\]|\\.)*"|\S+)/.exec(line);
    if (start) fn = start[1].replace(/^"|"$/g, "").replace(/::h[0-9a-f]{16}$/, "");
    else if (line.includes(`(call ${logger}`)) {
      const n = /\(i32\.const (\d+)\)/.exec(line) ?? /\(i32\.const (\d+)\)/.exec(lines[i + 1] ?? "");
      if (n) names.set(Number(n[1]), fn);
    }
  }
  // The added import, counting each counter's calls.
  const prelude = `globalThis.__wrapImports = (imports) => {
  imports["./index_bg.js"].log_execution = (n) => { globalThis.__counts[n] = (globalThis.__counts[n] ?? 0) + 1; };
  return imports;
};`;
  return { entry: writeCountingBuild({ build, dir, prelude, wasm }), names };
}

let instrumented;
try {
  instrumented = instrument();
} catch (error) {
  console.error(`wasm-work: ${error.message}`);
  process.exit(1);
}
const { entry, names } = instrumented;
const emulator = await startEmulator();
const worker = await startWorker(emulator.url, entry);
try {
  const byFunction = new Map();
  for (const [n, count] of Object.entries(await countGenerations(worker, GENERATIONS))) {
    const name = names.get(Number(n)) ?? `counter ${n}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + count / GENERATIONS);
  }
  const sorted = [...byFunction].sort((a, b) => b[1] - a[1]);
  const total = sorted.reduce((sum, [, n]) => sum + n, 0);
  console.log(
    `wasm function entries and loop iterations per generation (POST /generate, copy included), over ${GENERATIONS}: ${Math.round(total)} in ${sorted.length} functions`,
  );
  for (const [name, n] of sorted.slice(0, ROWS)) console.log(`${n.toFixed(1).padStart(9)}  ${name.slice(0, 160)}`);
} finally {
  await worker.mf.dispose();
  await emulator.close();
}
