// Where fluxgate's CPU goes beside the floor's, by native sampling: `perf
// record` on each worker's workerd process while it serves the same
// generations, then the symbols whose sample counts differ most. Compiled
// wasm and JavaScript show as "[JIT]" (no perf map); V8's and workerd's own
// code by name. Needs Linux `perf` and permission to attach to a process.
//
//   node bench/perf-profile.mjs [generations=200] [rows=30]
//
// To name the generated code too: MINIFLARE_WORKERD_V8_FLAGS=--perf-basic-prof
// (V8 writes /tmp/perf-<pid>.map) and PERF_SCRIPT=<an unstripped build's
// index.js> (worker-build's output before scripts/build.sh strips its names).
// V8 then also writes isolate-*-v8.log files here (ignored by git).
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GENERATE_INPUT, generate, waitCopies } from "./paired.mjs";
import { startEmulator, startWorker } from "./services.mjs";

const GENERATIONS = Number(process.argv[2]) > 0 ? Number(process.argv[2]) : 200;
const ROWS = Number(process.argv[3]) > 0 ? Number(process.argv[3]) : 30;
const WARMUP = 20;

/** Samples per symbol ("[JIT]" for generated code) of `generations` generations on `script`. */
async function profile(emulatorUrl, script, file) {
  const worker = await startWorker(emulatorUrl, script);
  try {
    for (let i = 0; i < WARMUP; i++) await generate(worker, GENERATE_INPUT);
    await waitCopies(worker);
    const perf = spawn("perf", ["record", "-q", "-F", "4999", "-p", String(worker.pid), "-o", file], { stdio: "ignore" });
    const exited = new Promise((resolve, reject) => {
      perf.on("exit", resolve);
      perf.on("error", reject);
    });
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < GENERATIONS; i++) await generate(worker, GENERATE_INPUT);
    await waitCopies(worker);
    perf.kill("SIGINT");
    await exited;
  } finally {
    await worker.mf.dispose();
  }
  const report = spawnSync("perf", ["report", "-i", file, "--no-children", "--sort", "dso,symbol", "-g", "none", "--stdio", "-F", "sample,dso,symbol"], {
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
  if (report.status !== 0) throw new Error(`perf report: ${report.stderr}`);
  const counts = new Map();
  for (const line of report.stdout.split("\n")) {
    const match = /^\s*(\d+)\s+(\[JIT\] tid \d+|\S+)\s+\[[.k]\]\s+(.*?)\s*(-\s+-)?\s*$/.exec(line);
    if (!match) continue;
    // Without a perf map (V8's --perf-basic-prof), generated code has no names.
    const unnamed = match[3].startsWith("0x");
    const key = match[2].startsWith("[JIT]") ? (unnamed ? "[JIT] compiled wasm and JavaScript" : `[JIT] ${match[3]}`) : `${match[2]} ${match[3]}`;
    counts.set(key, (counts.get(key) ?? 0) + Number(match[1]));
  }
  return counts;
}

const have = spawnSync("perf", ["--version"], { encoding: "utf8" });
if (have.status !== 0) {
  process.stderr.write("perf-profile: no `perf` on this machine\n");
  process.exit(1);
}
const dir = mkdtempSync(join(tmpdir(), "fluxgate-perf-"));
const emulator = await startEmulator();
try {
  const ours = await profile(emulator.url, process.env.PERF_SCRIPT ?? "build/index.js", join(dir, "fluxgate.data"));
  const floor = await profile(emulator.url, "bench/floor-worker.mjs", join(dir, "floor.data"));
  const total = (m) => [...m.values()].reduce((a, b) => a + b, 0);
  const perGeneration = (n) => `${((n / 4999 / GENERATIONS) * 1000).toFixed(3)} ms`;
  console.log(`${GENERATIONS} generations each, sampled at 4999 Hz (one sample is about 0.2 ms of CPU)`);
  console.log(`fluxgate ${total(ours)} samples (${perGeneration(total(ours))} per generation), floor ${total(floor)} (${perGeneration(total(floor))})`);
  const symbols = new Set([...ours.keys(), ...floor.keys()]);
  const rows = [...symbols].map((s) => [s, (ours.get(s) ?? 0) - (floor.get(s) ?? 0), ours.get(s) ?? 0, floor.get(s) ?? 0]);
  rows.sort((a, b) => b[1] - a[1]);
  console.log("\n  more in fluxgate (samples: difference, fluxgate, floor; per generation)");
  for (const [symbol, diff, a, b] of rows.slice(0, ROWS)) {
    console.log(`${String(diff).padStart(7)} ${String(a).padStart(7)} ${String(b).padStart(7)}  ${perGeneration(diff).padStart(9)}  ${symbol.slice(0, 110)}`);
  }
} finally {
  await emulator.close();
  rmSync(dir, { recursive: true, force: true });
}
