// Where fluxgate's CPU goes beside the floor's, by native sampling: `perf
// record` on each worker's workerd process while it serves the same
// generations, then the difference per thread (workerd's main thread, V8's
// helper threads), per kind of code and per symbol. Compiled wasm and
// JavaScript show as "[JIT]" (no perf map); V8's and workerd's own code by
// name. Needs Linux `perf` and permission to attach to a process.
//
//   node bench/perf-profile.mjs [generations=200] [rows=30] [isolates=1]
//
// With isolates > 1, each side is sampled on that many new workers in turn,
// each after PERF_WARMUP (default 20) generations: `... 24 40 8` with
// PERF_WARMUP=4 samples isolates as young as the paired bench measures.
//
// To name the generated code too: MINIFLARE_WORKERD_V8_FLAGS=--perf-basic-prof
// (V8 writes /tmp/perf-<pid>.map) and PERF_SCRIPT=target/bench-named/index.js
// (the shipped code with its names, which `npm run bench` builds; or any
// worker-build output before scripts/build.sh strips its names).
// PERF_FLOOR=bench/floor-checks-worker.mjs samples the floor with fluxgate's
// checks instead of the plain floor; PERF_KIND=health samples GET /health
// requests instead of generations (the figures then read per request).
// V8 then also writes isolate-*-v8.log files here (ignored by git).
//
// PERF_CALLERS=1 records call stacks too and adds a table of the main
// thread's samples by the worker's code nearest to them, as
// bench/worker-share.mjs sorts them (its header says how), with each group's
// details. Needs the perf map, with interpreted JavaScript named too:
// MINIFLARE_WORKERD_V8_FLAGS="--perf-basic-prof
// --interpreted-frames-native-stack".
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GENERATE_INPUT, generate } from "./paired.mjs";
import { startEmulator } from "./services.mjs";
import { HZ, WORKER_GROUPS, attribute, kindOf, recordGenerations } from "./worker-share.mjs";

const GENERATIONS = Number(process.argv[2]) > 0 ? Number(process.argv[2]) : 200;
const ROWS = Number(process.argv[3]) > 0 ? Number(process.argv[3]) : 30;
const ISOLATES = Number(process.argv[4]) > 0 ? Number(process.argv[4]) : 1;
const WARMUP = Number(process.env.PERF_WARMUP) >= 0 && process.env.PERF_WARMUP ? Number(process.env.PERF_WARMUP) : 20;
const CALLERS = process.env.PERF_CALLERS === "1";

/**
 * One request of the kind sampled: a generation, or with PERF_KIND=health a
 * `GET /health` (what every request costs on its way in and out).
 */
const HEALTH = process.env.PERF_KIND === "health";
const UNIT = HEALTH ? "request" : "generation";
const request =
  HEALTH
    ? async (worker) => (await fetch(`${worker.url}/health`)).arrayBuffer()
    : (worker) => generate(worker, GENERATE_INPUT);

/** Samples of one worker's requests, added to `counts` (key: thread, dso, symbol). */
async function sample(emulatorUrl, script, file, counts, callers) {
  await recordGenerations(emulatorUrl, script, file, { generations: GENERATIONS, warmup: WARMUP, callStacks: CALLERS, request });
  const report = spawnSync(
    "perf",
    ["report", "-n", "-i", file, "--no-children", "--sort", "comm,dso,symbol", "-g", "none", "--stdio", "-t", ";"],
    { encoding: "utf8", maxBuffer: 512 * 1024 * 1024 },
  );
  if (report.status !== 0) throw new Error(`perf report: ${report.stderr}`);
  for (const line of report.stdout.split("\n")) {
    if (line.startsWith("#") || !line.trim()) continue;
    const [, samples, comm, dso, symbol] = line.split(";").map((s) => s.trim());
    if (symbol === undefined) continue;
    // workerd's main thread carries the process's name; V8's helpers are "V8 DefaultWorke".
    const thread = comm.startsWith("workerd") ? "main" : "helpers";
    const name = symbol.replace(/^\[[.kj]\]\s*/, "");
    const unnamed = dso.startsWith("[JIT]") && name.startsWith("0x");
    const key = [thread, dso.startsWith("[JIT]") ? "[JIT]" : dso, unnamed ? "(no perf map)" : name.replace(/::h[0-9a-f]{16}/, "")].join("\t");
    counts.set(key, (counts.get(key) ?? 0) + Number(samples));
  }
  if (CALLERS) attribute(file, script, callers);
}

/**
 * Both sides' samples, their isolates interleaved (fluxgate, floor, floor,
 * fluxgate, ...) so that the machine's drift weighs on both alike.
 */
async function profileBoth(emulatorUrl, sides, dir) {
  const results = sides.map(() => Object.assign(new Map(), { callers: new Map() }));
  for (let i = 0; i < ISOLATES; i++) {
    const order = i % 2 === 0 ? [0, 1] : [1, 0];
    for (const s of order) {
      await sample(emulatorUrl, sides[s].script, join(dir, `${sides[s].label}-${i}.data`), results[s], results[s].callers);
    }
  }
  return results;
}

const have = spawnSync("perf", ["--version"], { encoding: "utf8" });
if (have.status !== 0) {
  process.stderr.write("perf-profile: no `perf` on this machine\n");
  process.exit(1);
}
const dir = mkdtempSync(join(tmpdir(), "fluxgate-perf-"));
const emulator = await startEmulator();
try {
  const [ours, floor] = await profileBoth(
    emulator.url,
    [
      { script: process.env.PERF_SCRIPT ?? "build/index.js", label: "fluxgate" },
      { script: process.env.PERF_FLOOR ?? "bench/floor-worker.mjs", label: "floor" },
    ],
    dir,
  );
  const perGeneration = (n) => `${((n / HZ / (GENERATIONS * ISOLATES)) * 1000).toFixed(3)} ms`;
  const sum = (m, keep) => [...m].filter(([k]) => keep(k.split("\t"))).reduce((a, [, v]) => a + v, 0);
  console.log(
    `${GENERATIONS} ${UNIT}s on each of ${ISOLATES} new isolate(s) per side, after ${WARMUP} of warm-up, sampled at ${HZ} Hz (one sample is about 0.2 ms of CPU)`,
  );
  console.log(`\n  per ${UNIT.padEnd(18)} fluxgate      floor   difference`);
  for (const thread of ["main", "helpers"]) {
    const [a, b] = [sum(ours, ([t]) => t === thread), sum(floor, ([t]) => t === thread)];
    console.log(`  ${thread.padEnd(18)} ${perGeneration(a).padStart(11)} ${perGeneration(b).padStart(10)} ${perGeneration(a - b).padStart(12)}`);
  }
  const keys = [...new Set([...ours.keys(), ...floor.keys()])];
  const diff = (k) => (ours.get(k) ?? 0) - (floor.get(k) ?? 0);
  const byKind = new Map();
  for (const k of keys) {
    const [thread, dso, symbol] = k.split("\t");
    const kind = `${thread}: ${kindOf(dso, symbol)}`;
    byKind.set(kind, (byKind.get(kind) ?? 0) + diff(k));
  }
  console.log(`\n  difference by thread and kind of code, per ${UNIT}`);
  for (const [kind, d] of [...byKind].sort((a, b) => b[1] - a[1])) console.log(`${perGeneration(d).padStart(11)}  ${kind}`);
  const rows = keys.map((k) => [k, diff(k), ours.get(k) ?? 0, floor.get(k) ?? 0]).sort((a, b) => b[1] - a[1]);
  console.log(`\n  more in fluxgate (samples: difference, fluxgate, floor; per ${UNIT})`);
  const print = ([key, d, a, b]) => {
    const [thread, dso, symbol] = key.split("\t");
    const where = `${thread} ${dso === "[JIT]" ? "[JIT]" : dso} ${symbol}`;
    console.log(`${String(d).padStart(7)} ${String(a).padStart(7)} ${String(b).padStart(7)}  ${perGeneration(d).padStart(9)}  ${where.slice(0, 120)}`);
  };
  rows.slice(0, ROWS).forEach(print);
  // What fluxgate's process does less of than the floor's (a kind's total
  // above nets these against the rows before).
  console.log(`\n  more in the floor (samples: difference, fluxgate, floor; per ${UNIT})`);
  rows.slice(-Math.min(ROWS, 15)).reverse().filter(([, d]) => d < 0).forEach(print);
  if (CALLERS) {
    const [a, b] = [ours.callers, floor.callers];
    console.log(`\n  main thread by the worker's code nearest to the sample, per ${UNIT}`);
    console.log(`  ${"difference".padStart(11)} ${"fluxgate".padStart(10)} ${"floor".padStart(10)}`);
    const row = (k) => [k, (a.get(k) ?? 0) - (b.get(k) ?? 0), a.get(k) ?? 0, b.get(k) ?? 0];
    const keys = [...new Set([...a.keys(), ...b.keys()])];
    const line = ([k, d, x, y], indent) =>
      console.log(`${perGeneration(d).padStart(13)} ${perGeneration(x).padStart(10)} ${perGeneration(y).padStart(10)}  ${indent}${k}`);
    // The groups with the worker's code on the stack: far steadier from run
    // to run than the whole thread, whose storage and I/O (the simulators')
    // move by up to a millisecond per generation.
    const share = WORKER_GROUPS.map(row).reduce(([, d, x, y], [, e, u, v]) => ["", d + e, x + u, y + v], ["", 0, 0, 0]);
    line(["with the worker's code on the stack (the three groups so marked)", ...share.slice(1)], "");
    for (const group of keys.filter((k) => k !== "main" && !k.includes("\t")).map(row).sort((p, q) => q[1] - p[1])) {
      line(group, WORKER_GROUPS.includes(group[0]) ? "* " : "  ");
      const details = keys.filter((k) => k.startsWith(`${group[0]}\t`)).map(row);
      if (details.length < 2) continue;
      // The details that moved by at least one sample per 20 generations.
      for (const [k, ...rest] of details.sort((p, q) => q[1] - p[1]).filter(([, d]) => Math.abs(d) * 20 >= GENERATIONS * ISOLATES)) {
        line([k.split("\t")[1], ...rest], "      ");
      }
    }
  }
} finally {
  await emulator.close();
  rmSync(dir, { recursive: true, force: true });
}
