// `npm run bench`: measures the worker built in build/ under Miniflare against
// the local Replicate emulator, bench/floor-worker.mjs (plain JS making the
// same platform calls) and a static file server; prints a report and writes
// it to bench/results/ (LATEST.md, committed, and latest.json).
// Exits non-zero only if the benchmark could not run.
//
// 1. CPU per request, paired: fluxgate vs the floor and vs a second copy of
//    itself (A/A), in interleaved batches (bench/paired.mjs).
// 2. Start-up (new Miniflare -> first answer), timed on each round's new
//    instances of the paired measurement; then step by step (the floor, + the
//    wasm module, + the glue, fluxgate: bench/start-steps.mjs); wasm size.
// 3. Throughput and latency under concurrency with autocannon (fluxgate only),
//    latencies compared with the previous run's LATEST.md.
//
// Knobs (environment): BENCH_ROUNDS, BENCH_SETS, BENCH_BATCH_SCALE,
// BENCH_QUIET_MS, BENCH_PAIRED_SECONDS (paired CPU and start-up: rounds stop,
// once 3 are done, when this budget is spent); BENCH_SECONDS (autocannon
// phase length); BENCH_LATENCY_SLACK (fraction a latency may exceed the
// previous run's and still count as no worse); BENCH_KINDS (keys of the
// kinds in bench/paired.mjs to measure, comma-separated); BENCH_ONLY=paired|load; BENCH_WORKER_LOGS=1 prints the workers' own lines.
// BENCH_ONLY or BENCH_KINDS runs are partial: they still overwrite LATEST.md.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { readBaseline } from "./baseline.mjs";
import { load, PHASE_SECONDS, WARMUP_SECONDS } from "./load.mjs";
import { CPU_SOURCE, rssBytes, rssSampler } from "./proc.mjs";
import {
  GENERATE_INPUT,
  measurePaired,
  MIN_ROUNDS,
  selectedKinds,
  QUIET_MS,
  QUIET_NS,
  ROUNDS,
  SETS_PER_ROUND,
  verdict,
  waitCopies,
} from "./paired.mjs";
import { renderMarkdown, renderText } from "./report.mjs";
import { measureStartSteps } from "./start-steps.mjs";
import { AUTH_TOKEN, REPLICATE_TOKEN, root, startEmulator, startStaticServer, startWorker } from "./services.mjs";

const PAIRED_BUDGET_SECONDS = Number(process.env.BENCH_PAIRED_SECONDS) > 0 ? Number(process.env.BENCH_PAIRED_SECONDS) : 75;
const LATENCY_SLACK = Number.isFinite(Number(process.env.BENCH_LATENCY_SLACK)) && process.env.BENCH_LATENCY_SLACK
  ? Number(process.env.BENCH_LATENCY_SLACK)
  : 0.1;
const ONLY = process.env.BENCH_ONLY;
const HEALTH_CONNECTIONS = [1, 32];
const GENERATE_CONNECTIONS = [1, 16];
const IMAGE_CONNECTIONS = [1, 32];
const SHORT_PHASE_SECONDS = Math.max(1, PHASE_SECONDS / 2);
const IMAGES = [
  { label: "~100 KB", input: { prompt: "fluxgate benchmark small", seed: 11, output_format: "jpg", output_quality: 80 } },
  { label: "~2 MB", input: { prompt: "fluxgate benchmark large", seed: 2, output_format: "png", aspect_ratio: "9:21" } },
];
const WASM_GZIP_LIMIT_KB = 220;
const START_LIMIT_MS = 20;

const packageVersion = (name) => JSON.parse(readFileSync(join(root, "node_modules", name, "package.json"), "utf8")).version;
// `no-cache`: every generation measured is a new one (the floor has no cache).
const workerHeaders = { authorization: `Bearer ${AUTH_TOKEN}`, "content-type": "application/json", "cache-control": "no-cache" };
const log = (message) => process.stderr.write(`bench: ${message}\n`);

function sizes() {
  const wasm = readFileSync(join(root, "build/index_bg.wasm"));
  const js = readFileSync(join(root, "build/index.js"));
  return {
    wasmBytes: wasm.length,
    wasmGzipBytes: gzipSync(wasm, { level: 9 }).length,
    jsBytes: js.length,
    jsGzipBytes: gzipSync(js, { level: 9 }).length,
  };
}

/**
 * A fixed loop's CPU time in this process, in ms: how fast a core is right
 * now (a busy machine makes it slower; workerd's CPU per request grows more).
 */
function cpuProbe() {
  const before = process.cpuUsage();
  let x = 0;
  for (let i = 0; i < 3e7; i++) x = (x + i * 7) % 1000003;
  const { user, system } = process.cpuUsage(before);
  return x >= 0 ? (user + system) / 1000 : 0;
}

// ------------------------------------------------------------ paired CPU

function pairedPhase(emulator) {
  return measurePaired({
    start: (_label, script) => startWorker(emulator.url, script),
    budgetSeconds: PAIRED_BUDGET_SECONDS,
    log,
  });
}

/** V8's flag for this phase: every wasm function compiled by TurboFan up front. */
const TIERED_V8_FLAGS = "--no-liftoff";

/**
 * The kinds the floor has, again, with fluxgate's wasm compiled optimized
 * from the start: V8 first runs wasm in its baseline tier (Liftoff) and
 * moves a function to TurboFan only after it has run for a while, so the
 * paired phase above measures an isolate whose per-request code is still
 * mostly baseline code; this one, an isolate whose code has all tiered up
 * (a busy, long-lived one). Start-up figures of this phase are not used
 * (TurboFan compiling every function at its first call is slow).
 */
async function tieredPhase(emulator) {
  const before = process.env.MINIFLARE_WORKERD_V8_FLAGS;
  process.env.MINIFLARE_WORKERD_V8_FLAGS = [before, TIERED_V8_FLAGS].filter(Boolean).join(" ");
  try {
    return await measurePaired({
      start: (_label, script) => startWorker(emulator.url, script),
      kinds: selectedKinds().filter((k) => k.floor),
      budgetSeconds: Math.min(PAIRED_BUDGET_SECONDS, 45),
      log: (message) => log(`tiered up: ${message}`),
    });
  } finally {
    if (before === undefined) delete process.env.MINIFLARE_WORKERD_V8_FLAGS;
    else process.env.MINIFLARE_WORKERD_V8_FLAGS = before;
  }
}

// ------------------------------------------------------------ autocannon

async function healthPhases(worker) {
  const url = `${worker.url}/health`;
  await load({ url, connections: 8, seconds: WARMUP_SECONDS });
  const phases = [];
  for (const connections of HEALTH_CONNECTIONS) {
    log(`GET /health, ${connections} connection(s)`);
    phases.push(await load({ url, connections, seconds: SHORT_PHASE_SECONDS }));
  }
  return phases;
}

/** POST /generate through the worker under load, then waits for its copies into R2. */
async function generateThroughWorker(worker, connections, seconds) {
  const result = await load({
    url: `${worker.url}/generate`,
    method: "POST",
    connections,
    seconds,
    headers: workerHeaders,
    body: JSON.stringify({ input: GENERATE_INPUT }),
  });
  await waitCopies(worker, 60_000);
  return result;
}

/** The create fluxgate sends, sent straight to the emulator. */
function generateDirect(emulator, connections, seconds) {
  return load({
    url: `${emulator.url}/v1/models/black-forest-labs/flux-schnell/predictions`,
    method: "POST",
    connections,
    seconds,
    headers: { authorization: `Bearer ${REPLICATE_TOKEN}`, prefer: "wait=60", "content-type": "application/json" },
    body: JSON.stringify({ input: GENERATE_INPUT }),
  });
}

async function generationPhases(worker, emulator) {
  log("POST /generate warm-up");
  await generateDirect(emulator, 16, WARMUP_SECONDS);
  await generateThroughWorker(worker, 16, WARMUP_SECONDS);
  const phases = [];
  for (const connections of GENERATE_CONNECTIONS) {
    log(`POST /generate, ${connections} connection(s): emulator direct, then through the worker`);
    const direct = await generateDirect(emulator, connections, PHASE_SECONDS);
    const viaWorker = await generateThroughWorker(worker, connections, PHASE_SECONDS);
    phases.push({ connections, direct, worker: viaWorker });
  }
  const sample = await generateOne(worker, GENERATE_INPUT);
  return { input: GENERATE_INPUT, outputBytes: sample.size, contentType: sample.content_type, phases };
}

/** Generates one image through the worker and resolves to its KV record once stored. */
async function generateOne(worker, input) {
  const res = await fetch(`${worker.url}/generate`, { method: "POST", headers: workerHeaders, body: JSON.stringify({ input }) });
  if (!res.ok) throw new Error(`POST /generate ${JSON.stringify(input)}: HTTP ${res.status} ${await res.text()}`);
  const { id } = await res.json();
  await waitCopies(worker);
  const kv = await worker.mf.getKVNamespace("IMAGE_META");
  const record = JSON.parse(await kv.get(`image:${id}`));
  if (record.status !== "stored") throw new Error(`image ${id} was not stored: ${record.last_error}`);
  return record;
}

/** Stores the test images through the worker and copies their bytes, as served, to `dir`. */
async function storeImages(worker, dir) {
  const items = [];
  for (const { label, input } of IMAGES) {
    const { id } = await generateOne(worker, input);
    const res = await fetch(`${worker.url}/image/${id}`);
    if (!res.ok) throw new Error(`GET /image/${id}: HTTP ${res.status}`);
    const bytes = Buffer.from(await res.arrayBuffer());
    writeFileSync(join(dir, id), bytes);
    items.push({ label, input, id, bytes: bytes.length, contentType: res.headers.get("content-type") });
  }
  return items;
}

async function imagePhases(worker, items, dir) {
  const server = await startStaticServer(dir);
  try {
    const rssBeforeBytes = rssBytes(worker.pid);
    const phases = [];
    for (const item of items) {
      const workerUrl = `${worker.url}/image/${item.id}`;
      const staticUrl = `${server.url}/${item.id}`;
      log(`GET /image ${item.label} warm-up`);
      await load({ url: workerUrl, connections: 8, seconds: WARMUP_SECONDS });
      await load({ url: staticUrl, connections: 8, seconds: WARMUP_SECONDS });
      for (const connections of IMAGE_CONNECTIONS) {
        log(`GET /image ${item.label}, ${connections} connection(s): worker, then static server`);
        const viaWorker = await withPeakRss(worker.pid, () => load({ url: workerUrl, connections }));
        const staticResult = await load({ url: staticUrl, connections });
        phases.push({
          label: item.label,
          bytes: item.bytes,
          connections,
          worker: viaWorker,
          static: staticResult,
          throughputRatio: viaWorker.rps / staticResult.rps,
        });
      }
    }
    const rssPeakBytes = Math.max(rssBeforeBytes, ...phases.map((p) => p.worker.rssPeakBytes));
    return { items, phases, memory: { rssBeforeBytes, rssPeakBytes, rssAfterBytes: rssBytes(worker.pid) } };
  } finally {
    await server.close();
  }
}

/** Runs `phase` while sampling the RSS of `pid`; adds rssStartBytes and rssPeakBytes to its result. */
async function withPeakRss(pid, phase) {
  const rssStartBytes = rssBytes(pid);
  const sampler = rssSampler(pid);
  const result = await phase();
  return { ...result, rssStartBytes, rssPeakBytes: sampler.stop() };
}

async function loadPhases(emulator) {
  const started = performance.now();
  const worker = await startWorker(emulator.url);
  const dir = mkdtempSync(join(tmpdir(), "fluxgate-bench-"));
  try {
    const health = await healthPhases(worker);
    const generation = await generationPhases(worker, emulator);
    generation.overhead = overheads(generation);
    const items = await storeImages(worker, dir);
    const images = await imagePhases(worker, items, dir);
    return { health, generation, images, seconds: (performance.now() - started) / 1000 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await worker.mf.dispose();
  }
}

function overheads(generation) {
  return generation.phases.flatMap(({ connections, direct, worker }) =>
    ["p50", "p99"].map((percentile) => ({
      connections,
      percentile,
      directMs: direct[percentile],
      workerMs: worker[percentile],
      differenceMs: worker[percentile] - direct[percentile],
      ratio: worker[percentile] / direct[percentile],
    })),
  );
}

// ------------------------------------------------------------ targets

/** p50 and p99 of every autocannon phase of fluxgate, by name ("GET /health c1"). */
export function latencies(results) {
  const out = {};
  const put = (name, m) => (out[name] = { p50: m.p50, p99: m.p99 });
  if (!results.health) return out;
  for (const p of results.health) put(`GET /health c${p.connections}`, p);
  for (const p of results.generation.phases) put(`POST /generate c${p.connections}`, p.worker);
  for (const p of results.images.phases) put(`GET /image ${p.label} c${p.connections}`, p.worker);
  return out;
}

function targets(results) {
  const list = [];
  for (const k of results.paired?.kinds ?? []) {
    if (k.skipped || k.targetMs == null) continue;
    list.push({
      name: `CPU: ${k.name}, fluxgate - floor`,
      unit: "ms",
      value: k.difference.median,
      range: [k.difference.min, k.difference.max],
      aa: [k.aa.min, k.aa.max],
      limit: k.targetMs,
      result: verdict(k.difference, k.aa, k.targetMs),
    });
  }
  if (results.start) {
    const s = results.start;
    list.push({
      name: "start: new Miniflare -> first answer, fluxgate - floor",
      unit: "ms",
      value: s.difference.median,
      range: [s.difference.min, s.difference.max],
      aa: [s.aa.min, s.aa.max],
      limit: START_LIMIT_MS,
      result: verdict(s.difference, s.aa, START_LIMIT_MS),
    });
  }
  const wasmKb = results.size.wasmGzipBytes / 1000;
  list.push({
    name: "wasm gzipped (level 9)",
    unit: "KB",
    value: wasmKb,
    limit: WASM_GZIP_LIMIT_KB,
    result: wasmKb <= WASM_GZIP_LIMIT_KB ? "met" : "NOT met",
  });
  return list;
}

/** Each latency against the previous run's: no worse = at most (1 + slack) times it. */
function latencyTargets(current, baseline) {
  return Object.entries(current).flatMap(([name, now]) =>
    ["p50", "p99"].map((pct) => {
      const before = baseline?.latency?.[name]?.[pct];
      if (now[pct] == null) return { name, pct, now: null, before, result: "no figure (no 2xx answers)" };
      if (before == null) return { name, pct, now: now[pct], before: null, result: "no baseline" };
      const ok = now[pct] <= before * (1 + LATENCY_SLACK);
      return { name, pct, now: now[pct], before, ratio: now[pct] / before, result: ok ? "met" : "NOT met" };
    }),
  );
}

function writeResults(results) {
  const dir = join(root, "bench/results");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "latest.json"), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(dir, "LATEST.md"), renderMarkdown(results));
}

async function main() {
  for (const file of ["build/index.js", "build/index_bg.wasm"]) {
    if (!existsSync(join(root, file))) throw new Error(`${file} is missing: run npm run build first`);
  }
  const clock = performance.now();
  const baseline = readBaseline(join(root, "bench/results/LATEST.md"));
  const cleanups = [];
  try {
    const results = {
      startedAt: new Date().toISOString(),
      environment: {
        node: process.version,
        cpus: availableParallelism(),
        loadAverageAtStart: loadavg(),
        cpuProbeMsAtStart: cpuProbe(),
        autocannon: packageVersion("autocannon"),
        miniflare: packageVersion("miniflare"),
        phaseSeconds: PHASE_SECONDS,
        warmupSeconds: WARMUP_SECONDS,
        cpuSource: CPU_SOURCE,
        rounds: ROUNDS,
        setsPerRound: SETS_PER_ROUND,
        quietMs: QUIET_MS,
        quietNs: QUIET_NS,
        minRounds: MIN_ROUNDS,
        pairedBudgetSeconds: PAIRED_BUDGET_SECONDS,
        latencySlack: LATENCY_SLACK,
      },
      baseline: baseline && { from: baseline.from, startedAt: baseline.startedAt },
      size: sizes(),
    };
    const emulator = await startEmulator();
    cleanups.push(() => emulator.close());
    if (ONLY !== "load") {
      results.paired = await pairedPhase(emulator);
      results.start = results.paired.start;
      log("start, step by step");
      results.startSteps = await measureStartSteps(emulator.url, 7);
      results.tiered = { v8Flags: TIERED_V8_FLAGS, ...(await tieredPhase(emulator)) };
    }
    if (ONLY !== "paired") Object.assign(results, await loadPhases(emulator));
    results.latency = latencies(results);
    results.targets = targets(results);
    results.latencyTargets = latencyTargets(results.latency, baseline);
    results.environment.loadAverageAtEnd = loadavg();
    results.environment.cpuProbeMsAtEnd = cpuProbe();
    results.runSeconds = (performance.now() - clock) / 1000;
    writeResults(results);
    process.stdout.write(renderText(results));
  } finally {
    for (const cleanup of cleanups.reverse()) await Promise.resolve().then(cleanup).catch((e) => log(`cleanup: ${e.message}`));
  }
}

try {
  await main();
} catch (error) {
  log(`could not run: ${error.stack ?? error}`);
  process.exitCode = 1;
}
