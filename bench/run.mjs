// `npm run bench`: measures the worker built in build/ under Miniflare against
// the local Replicate emulator, bench/floor-worker.mjs (plain JS making the
// same platform calls), a reference build of an earlier revision and a static
// file server; prints a report and writes it to bench/results/ (LATEST.md,
// committed, and latest.json).
// Exits non-zero only if the benchmark could not run.
//
// 1. CPU per request, paired: fluxgate vs the floor and vs a second copy of
//    itself (A/A), in interleaved batches (bench/paired.mjs).
// 2. Start-up (new Miniflare -> first answer), timed on each round's new
//    instances of the paired measurement; then step by step (the floor, + the
//    wasm module, + the glue, fluxgate: bench/start-steps.mjs); wasm size.
// 3. The stack's own share: the floor kinds again, with the floor in Rust
//    (bench/floor-rs/: the floor's calls made from Rust, built by
//    bench/floor-rs.mjs) in place of fluxgate's second copy, once through
//    the worker crate's own API ("stock") and once through fluxgate's own
//    paths to the runtime ("lean"): the floor in Rust - the floor is what
//    the stack costs for the calls alone, written each way; fluxgate - the
//    floor in Rust, fluxgate's own code. Their calls are compared with the
//    floor's first.
// 4. The worker's share of the main thread, sampled (bench/worker-share.mjs):
//    per generation, workerd's main-thread samples with the worker's code on
//    the stack (its own instructions, crossing between wasm and JavaScript,
//    the runtime under its calls), fluxgate (built with its names into
//    target/bench-named/) against the floor, the floor in Rust (lean) and
//    itself (A/A), eight new isolates a side, interleaved. Finer than the
//    paired CPU: the rest of the thread, Miniflare's local storage, is left
//    out. Needs `perf` (the report says so when it cannot run);
//    BENCH_SHARE=0 skips it.
// 5. Throughput and latency under concurrency with autocannon, on fluxgate
//    and on the reference build (bench/reference.mjs: the worker as it stood
//    at BENCH_REFERENCE, default bef49d1, built once and cached in
//    target/bench-reference/), each in its own Miniflare, in this run, the
//    reference in two (the second one against the first is the A/A): every
//    phase runs twice per build, interleaved (fluxgate, reference, reference
//    again, then back, the order reversed from one phase to the next). The
//    latency targets are fluxgate's p50 and p99 over the reference's, phase
//    by phase, judged against the A/A (latencyVerdict in bench/paired.mjs).
//    The POST /generate phases run on the floor as well, interleaved with the
//    others: its latency over the reference's is what the calls alone cost.
//    Without a reference build (it failed to build or to answer) the phases
//    run on fluxgate alone and the report says why.
//
// Knobs (environment): BENCH_ROUNDS (8), BENCH_SETS, BENCH_STARTS (starts of each
// build per round, default 3), BENCH_BATCH_SCALE, BENCH_WARMUP_BATCHES
// (batches of each kind on each new instance before it is measured, default 1),
// BENCH_QUIET_MS, BENCH_PAIRED_SECONDS (default 180; paired CPU and start-up: rounds stop,
// once 3 are done, when this budget is spent); BENCH_SECONDS (autocannon
// phase length: each build's runs of a phase add up to it); BENCH_REFERENCE
// (git revision of the reference build); BENCH_LATENCY_SLACK (fraction by
// which fluxgate's latency may exceed the reference's and still count as no
// worse, default 0.1); BENCH_KINDS (keys of the kinds in bench/paired.mjs to
// measure, comma-separated); BENCH_ONLY=paired|load; BENCH_WORKER_LOGS=1
// prints the workers' own lines; BENCH_SHARE=0 skips the sampled share (4).
// BENCH_ONLY or BENCH_KINDS runs are partial: they still overwrite LATEST.md.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { load, percentile, PHASE_SECONDS, WARMUP_SECONDS } from "./load.mjs";
import { CPU_SOURCE, cpuNs, rssBytes, rssSampler } from "./proc.mjs";
import {
  GENERATE_INPUT,
  latencyCalibration,
  latencyVerdict,
  measurePaired,
  median,
  MIN_ROUNDS,
  selectedKinds,
  QUIET_MS,
  QUIET_NS,
  ROUNDS,
  SETS_PER_ROUND,
  verdict,
  waitCopies,
} from "./paired.mjs";
import { rustFloorBuild, VARIANTS } from "./floor-rs.mjs";
import { recordGeneration, shapes, startRecorded } from "./platform-calls.mjs";
import { referenceBuild } from "./reference.mjs";
import { renderMarkdown, renderText } from "./report.mjs";
import { measureStartSteps } from "./start-steps.mjs";
import { namedBuild, workerShare } from "./worker-share.mjs";
import { AUTH_TOKEN, REPLICATE_TOKEN, root, startEmulator, startStaticServer, startWorker, withV8Flags } from "./services.mjs";

const PAIRED_BUDGET_SECONDS = Number(process.env.BENCH_PAIRED_SECONDS) > 0 ? Number(process.env.BENCH_PAIRED_SECONDS) : 180;
const LATENCY_SLACK = Number.isFinite(Number(process.env.BENCH_LATENCY_SLACK)) && process.env.BENCH_LATENCY_SLACK
  ? Number(process.env.BENCH_LATENCY_SLACK)
  : 0.1;
const ONLY = process.env.BENCH_ONLY;
const HEALTH_CONNECTIONS = [1, 32];
const GENERATE_CONNECTIONS = [1, 16];
const IMAGE_CONNECTIONS = [1, 32];
const SHORT_PHASE_SECONDS = Math.max(1, PHASE_SECONDS / 2);
/** One run of an interleaved phase (two per build): each build gets about a phase's length. */
const RUN_SECONDS = Math.max(1, PHASE_SECONDS / 2);
const SHORT_RUN_SECONDS = Math.max(1, SHORT_PHASE_SECONDS / 2);
const IMAGES = [
  { label: "~100 KB", input: { prompt: "fluxgate benchmark small", seed: 11, output_format: "jpg", output_quality: 80 } },
  {
    label: "~2 MB",
    input: { prompt: "fluxgate benchmark large", seed: 2, output_format: "png", aspect_ratio: "9:21" },
    // At 32 connections an answer takes over a second: a run as short as
    // the others' would end with a larger share of the slowest answers still
    // in flight (autocannon drops those), so each of these runs is a whole phase.
    runSeconds: (connections) => (connections > 1 ? PHASE_SECONDS : RUN_SECONDS),
  },
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
function tieredPhase(emulator) {
  return withV8Flags(TIERED_V8_FLAGS, () =>
    measurePaired({
      start: (_label, script) => startWorker(emulator.url, script),
      kinds: selectedKinds().filter((k) => k.floor),
      budgetSeconds: Math.min(PAIRED_BUDGET_SECONDS, 45),
      log: (message) => log(`tiered up: ${message}`),
    }),
  );
}

/**
 * The calls of a generation of `script` (its second, and whatever follows
 * it: a usage writer waits out its second), as shapes.
 */
async function generationShapes(emulator, script, name) {
  const worker = await startRecorded(emulator.url, script, name);
  try {
    await recordGeneration(worker); // the first one of an isolate may differ
    const { calls } = await recordGeneration(worker);
    await new Promise((r) => setTimeout(r, 1500));
    return shapes([...calls, ...(await worker.calls())]);
  } finally {
    await worker.mf.dispose();
  }
}

/**
 * The floor kinds with a floor in Rust as the second build (the A/A column
 * reads "the floor in Rust - fluxgate", a2Floor "the floor in Rust - the
 * floor"), once it is shown to make the floor's calls (`floorShapes`) for a
 * generation.
 */
async function stackPhase(emulator, build, floorShapes) {
  const { variant } = build;
  if (build.error) return { variant, error: `no floor in Rust (${variant}): ${build.error}` };
  const kinds = selectedKinds().filter((k) => k.floor);
  if (kinds.length === 0) return null;
  const made = await generationShapes(emulator, build.script, `floor-rs-${variant}`);
  if (JSON.stringify(made) !== JSON.stringify(floorShapes)) {
    log(`floor in Rust (${variant}): its calls differ from the floor's: ${JSON.stringify([floorShapes, made])}`);
    return { variant, error: `the floor in Rust (${variant}) does not make the floor's calls (see the log)` };
  }
  const phase = await measurePaired({
    start: (_label, script) => startWorker(emulator.url, script),
    kinds,
    budgetSeconds: Math.min(PAIRED_BUDGET_SECONDS, 60),
    log: (message) => log(`floor in Rust (${variant}): ${message}`),
    other: { script: build.script, label: `floor in Rust (${variant})` },
  });
  return { variant, wasmBytes: build.wasmBytes, wasmGzipBytes: build.wasmGzipBytes, ...phase };
}

/**
 * The worker's share of the main thread per generation (see
 * bench/worker-share.mjs): fluxgate against the floor, the floor in Rust
 * (lean, built with its names by bench/floor-rs.mjs) and itself.
 * Null when no generation is measured or BENCH_SHARE=0; { error } when it
 * cannot run (no perf, no build with names).
 */
async function sharePhase(emulator, rustFloors) {
  if (process.env.BENCH_SHARE === "0" || !selectedKinds().some((k) => k.key === "generate")) return null;
  const started = performance.now();
  const named = namedBuild({ log });
  if (named.error) return { error: `no build with names: ${named.error}` };
  const lean = rustFloors.find((b) => b.variant === "lean" && b.namedScript);
  const sampling = { isolates: 8, generations: 24, warmup: 4 };
  const phase = {};
  const others = [
    ["floor", "bench/floor-worker.mjs", "floor"],
    ...(lean ? [["lean", lean.namedScript, "floor in Rust (lean)"]] : []),
    ["aa", named.script, "fluxgate (A/A)"],
  ];
  try {
    for (const [key, other, label] of others) {
      log(`the worker's share, fluxgate - ${label}`);
      const [a, b] = await workerShare(emulator.url, named.script, other, { ...sampling, log: (m) => log(`the worker's share: ${m}`) });
      phase[key] = { a, b };
    }
  } catch (error) {
    return { error: error.message };
  }
  return { ...phase, ...sampling, seconds: (performance.now() - started) / 1000 };
}

// ------------------------------------------------------------ autocannon
//
// Every latency phase runs on fluxgate and on the reference build (see
// bench/reference.mjs) in two instances, each in its own Miniflare, in this
// run: two runs per build, interleaved (fluxgate, reference, reference again,
// then back, the order reversed from one phase to the next), so that a drift
// of the machine over the phase weighs on all alike. A build's p50 and p99
// are taken over the answers of all its runs together; its rates are the
// median of its runs.

/**
 * The builds a latency phase runs on: fluxgate, and the reference when it
 * started, twice, each in its own Miniflare: the second instance against the
 * first is the latency's A/A, as a second fluxgate is the paired CPU's.
 */
const BUILDS = ["fluxgate", "reference", "referenceAgain"];
/**
 * The POST /generate phases run on the floor too (bench/floor-worker.mjs,
 * fluxgate's KV, R2 and fetch calls in plain JavaScript): its latency over
 * the reference's is what the calls cost by themselves.
 */
const GENERATE_BUILDS = [...BUILDS, "floor"];
/** Runs per build and phase. */
const RUNS_PER_BUILD = 2;

/**
 * Runs `measure(worker, build)` RUNS_PER_BUILD times per build of `builds`
 * that has a worker, interleaved, the order reversed from one call to the
 * next. Resolves to { fluxgate: combined, reference: combined | null, order }
 * and the same for each other build.
 */
let interleavedCalls = 0;
async function interleaved(workers, measure, builds = BUILDS) {
  const first = interleavedCalls++ % 2 === 0 ? builds : [...builds].reverse();
  const order = Array.from({ length: RUNS_PER_BUILD }, (_, k) => (k % 2 ? [...first].reverse() : first))
    .flat()
    .filter((b) => workers[b]);
  const runs = Object.fromEntries(builds.map((b) => [b, []]));
  for (const build of order) runs[build].push(await measure(workers[build], build));
  const combined = Object.fromEntries(builds.map((b) => [b, runs[b].length ? combine(runs[b]) : null]));
  return { ...combined, order };
}

/**
 * A build's runs of one phase: counts summed, rates the median of its runs,
 * p50 and p99 over every answer of its runs together (two runs of a phase
 * give one p99 from twice the answers, rather than the middle of two p99s
 * each resting on a handful of the slowest), each run kept.
 */
function combine(runs) {
  const sum = (key) => runs.reduce((n, r) => n + r[key], 0);
  const out = {
    connections: runs[0].connections,
    seconds: sum("seconds"),
    requests: sum("requests"),
    ok: sum("ok"),
    failed: sum("failed"),
  };
  for (const key of ["rps", "p50", "p99", "bytesPerSec", "loaderCpuPercent"]) out[key] = median(runs.map((r) => r[key]));
  if (runs.every((r) => r.latencies)) {
    const pooled = runs.flatMap((r) => r.latencies).sort((a, b) => a - b);
    out.p50 = percentile(pooled, 50);
    out.p99 = percentile(pooled, 99);
  }
  if (runs.every((r) => r.rssPeakBytes != null)) {
    out.rssStartBytes = Math.min(...runs.map((r) => r.rssStartBytes));
    out.rssPeakBytes = Math.max(...runs.map((r) => r.rssPeakBytes));
  }
  out.runs = runs.map(({ seconds, ok, failed, rps, p50, p99 }) => ({ seconds, ok, failed, rps, p50, p99 }));
  return out;
}

async function healthPhases(workers) {
  for (const worker of Object.values(workers)) await load({ url: `${worker.url}/health`, connections: 8, seconds: WARMUP_SECONDS });
  const phases = [];
  for (const connections of HEALTH_CONNECTIONS) {
    log(`GET /health, ${connections} connection(s)`);
    const measured = await interleaved(workers, (worker) =>
      load({ url: `${worker.url}/health`, connections, seconds: SHORT_RUN_SECONDS }),
    );
    phases.push({ connections, ...measured });
  }
  return phases;
}

/**
 * Waits until `pids` (the worker's workerd and the emulator) have together
 * been quiet for `windowMs`: copies into R2 still running in waitUntil keep
 * one of them busy. For builds that do not index their pending copies (see
 * waitCopies), this is the wait; for the others, a second look.
 */
async function quietTogether(pids, { windowMs = 150, thresholdNs = 3e6, maxMs = 30_000 } = {}) {
  const used = () => pids.reduce((n, pid) => n + cpuNs(pid), 0);
  const started = performance.now();
  let windowStart = started;
  let base = used();
  while (performance.now() - started < maxMs) {
    await new Promise((r) => setTimeout(r, 10));
    const now = used();
    if (now - base > thresholdNs) {
      base = now;
      windowStart = performance.now();
    } else if (performance.now() - windowStart >= windowMs) return true;
  }
  return false;
}

/** After a generation phase: its copies into R2 done, so that they do not weigh on the next run. */
async function settle(worker) {
  await waitCopies(worker, 60_000);
  const pids = [worker.pid, worker.emulatorPid].filter(Boolean);
  if (!(await quietTogether(pids))) log(`${worker.label}: still busy 30 s after a generation phase`);
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
  await settle(worker);
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

async function generationPhases(workers, emulator) {
  log("POST /generate warm-up");
  await generateDirect(emulator, 16, WARMUP_SECONDS);
  for (const worker of Object.values(workers)) await generateThroughWorker(worker, 16, WARMUP_SECONDS);
  const phases = [];
  for (const connections of GENERATE_CONNECTIONS) {
    log(`POST /generate, ${connections} connection(s): emulator direct, then through each build`);
    const direct = await generateDirect(emulator, connections, PHASE_SECONDS);
    const measured = await interleaved(
      workers,
      (worker) => generateThroughWorker(worker, connections, RUN_SECONDS),
      GENERATE_BUILDS,
    );
    const { fluxgate, reference, referenceAgain, floor, order } = measured;
    phases.push({ connections, direct, worker: fluxgate, reference, referenceAgain, floor, order });
  }
  const sample = await generateOne(workers.fluxgate, GENERATE_INPUT);
  return { input: GENERATE_INPUT, outputBytes: sample.size, contentType: sample.contentType, phases };
}

/**
 * Generates one image through the worker and resolves to { id, size,
 * contentType } once its bytes are in R2. Judged by its KV record's status
 * (`image:<id>`, pending until stored, in every build so far); a build whose
 * record has no status is judged by GET /image/<id> answering 200.
 */
async function generateOne(worker, input, timeoutMs = 60_000) {
  const res = await fetch(`${worker.url}/generate`, { method: "POST", headers: workerHeaders, body: JSON.stringify({ input }) });
  if (!res.ok) throw new Error(`${worker.label}: POST /generate ${JSON.stringify(input)}: HTTP ${res.status} ${await res.text()}`);
  const { id } = await res.json();
  if (typeof id !== "string" || !id) throw new Error(`${worker.label}: POST /generate answered no image id`);
  await waitCopies(worker, timeoutMs);
  const kv = await worker.mf.getKVNamespace("IMAGE_META");
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await kv.get(`image:${id}`);
    let record = null;
    try {
      record = text == null ? null : JSON.parse(text);
    } catch {}
    if (record?.status === "stored") return { id, size: record.size, contentType: record.content_type };
    if (record?.status === "failed") throw new Error(`${worker.label}: image ${id} was not stored: ${record.last_error}`);
    if (record != null && record.status == null) {
      const image = await fetch(`${worker.url}/image/${id}`);
      const bytes = Buffer.from(await image.arrayBuffer());
      if (image.ok) return { id, size: bytes.length, contentType: image.headers.get("content-type") };
    }
    if (Date.now() > deadline) throw new Error(`${worker.label}: image ${id} not stored after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Stores the test images through the worker and, when `dir` is given, copies their bytes as served to it. */
async function storeImages(worker, dir) {
  const items = [];
  for (const { label, input } of IMAGES) {
    const { id } = await generateOne(worker, input);
    const res = await fetch(`${worker.url}/image/${id}`);
    if (!res.ok) throw new Error(`${worker.label}: GET /image/${id}: HTTP ${res.status}`);
    const bytes = Buffer.from(await res.arrayBuffer());
    if (dir) writeFileSync(join(dir, id), bytes);
    items.push({ label, input, id, bytes: bytes.length, contentType: res.headers.get("content-type") });
  }
  return items;
}

/**
 * `itemsByBuild`: each build's own images (stored through it, in its own R2),
 * in IMAGES' order; fluxgate's are also in `dir`, for the static server.
 */
async function imagePhases(workers, itemsByBuild, dir) {
  const server = await startStaticServer(dir);
  try {
    const rssBeforeBytes = rssBytes(workers.fluxgate.pid);
    const phases = [];
    for (const [i, item] of itemsByBuild.fluxgate.entries()) {
      const urls = Object.fromEntries(Object.entries(workers).map(([b, w]) => [b, `${w.url}/image/${itemsByBuild[b][i].id}`]));
      const staticUrl = `${server.url}/${item.id}`;
      log(`GET /image ${item.label} warm-up`);
      for (const url of [...Object.values(urls), staticUrl]) await load({ url, connections: 8, seconds: WARMUP_SECONDS });
      for (const connections of IMAGE_CONNECTIONS) {
        const seconds = IMAGES[i].runSeconds?.(connections) ?? RUN_SECONDS;
        log(`GET /image ${item.label}, ${connections} connection(s): each build, then the static server`);
        const measured = await interleaved(workers, (worker, build) =>
          withPeakRss(worker.pid, () => load({ url: urls[build], connections, seconds })),
        );
        const staticResult = await load({ url: staticUrl, connections });
        phases.push({
          label: item.label,
          bytes: item.bytes,
          referenceBytes: itemsByBuild.reference?.[i].bytes ?? null,
          connections,
          worker: measured.fluxgate,
          reference: measured.reference,
          referenceAgain: measured.referenceAgain,
          order: measured.order,
          static: staticResult,
          throughputRatio: measured.fluxgate.rps / staticResult.rps,
          referenceThroughputRatio: measured.reference ? measured.reference.rps / staticResult.rps : null,
        });
      }
    }
    const rssPeakBytes = Math.max(rssBeforeBytes, ...phases.map((p) => p.worker.rssPeakBytes));
    return { items: itemsByBuild.fluxgate, phases, memory: { rssBeforeBytes, rssPeakBytes, rssAfterBytes: rssBytes(workers.fluxgate.pid) } };
  } finally {
    await server.close();
  }
}

/** Runs `phase` while sampling the RSS of `pid`; adds rssStartBytes and rssPeakBytes to its result. */
async function withPeakRss(pid, phase) {
  const rssStartBytes = rssBytes(pid);
  const sampler = rssSampler(pid);
  const result = await phase();
  const out = { ...result, rssStartBytes, rssPeakBytes: sampler.stop() };
  Object.defineProperty(out, "latencies", { value: result.latencies });
  return out;
}

/**
 * Starts the reference build next to fluxgate and stores its images; on any
 * failure (it does not start, its answers are not what the bench needs),
 * records why in `reference.error` and resolves to null: the phases then run
 * on fluxgate alone.
 */
async function startReference(reference, emulator) {
  if (reference.error) return null;
  let worker = null;
  try {
    worker = Object.assign(await startWorker(emulator.url, reference.script), { label: "reference", emulatorPid: emulator.pid });
    return worker;
  } catch (error) {
    reference.error = `it did not start: ${error.message}`;
    log(`reference: ${reference.error}`);
    await worker?.mf.dispose().catch(() => {});
    return null;
  }
}

async function loadPhases(emulator, reference) {
  const started = performance.now();
  const workers = {};
  const dir = mkdtempSync(join(tmpdir(), "fluxgate-bench-"));
  try {
    workers.fluxgate = Object.assign(await startWorker(emulator.url), { label: "fluxgate", emulatorPid: emulator.pid });
    const ref = await startReference(reference, emulator);
    if (ref) workers.reference = ref;
    // The reference's answers are checked before any phase: a build that
    // cannot generate and store an image is left out rather than measured.
    const itemsByBuild = { fluxgate: await storeImages(workers.fluxgate, dir) };
    if (workers.reference) {
      try {
        itemsByBuild.reference = await storeImages(workers.reference, null);
      } catch (error) {
        reference.error = `its answers are not what the bench needs: ${error.message}`;
        log(`reference: ${reference.error}`);
        await workers.reference.mf.dispose().catch(() => {});
        delete workers.reference;
      }
    }
    // The reference again, for the latencies' A/A; without it they are
    // judged against each build's run-to-run spread alone.
    if (workers.reference) {
      let again = null;
      try {
        again = Object.assign(await startWorker(emulator.url, reference.script), { label: "reference again", emulatorPid: emulator.pid });
        itemsByBuild.referenceAgain = await storeImages(again, null);
        workers.referenceAgain = again;
      } catch (error) {
        log(`reference again: left out, ${error.message}`);
        await again?.mf.dispose().catch(() => {});
      }
    }
    const health = await healthPhases(workers);
    const floor = await startWorker(emulator.url, "bench/floor-worker.mjs").catch((error) => {
      log(`floor: it did not start (${error.message}); the POST /generate phases run without it`);
      return null;
    });
    if (floor) workers.floor = Object.assign(floor, { label: "floor", emulatorPid: emulator.pid });
    const generation = await generationPhases(workers, emulator);
    if (workers.floor) {
      await workers.floor.mf.dispose().catch((e) => log(`cleanup: ${e.message}`));
      delete workers.floor;
    }
    generation.overhead = overheads(generation);
    const images = await imagePhases(workers, itemsByBuild, dir);
    return { health, generation, images, seconds: (performance.now() - started) / 1000 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    for (const worker of Object.values(workers)) await worker.mf.dispose().catch((e) => log(`cleanup: ${e.message}`));
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

/**
 * p50 and p99 of every autocannon phase, by name ("GET /health c1"), for
 * each build: { fluxgate: { p50, p99, runs }, reference: ... | null }.
 */
export function latencies(results) {
  const out = {};
  const pick = (m) => m && { p50: m.p50, p99: m.p99, runs: m.runs?.map(({ p50, p99 }) => ({ p50, p99 })) };
  const put = (name, { fluxgate, reference, referenceAgain, floor }) =>
    (out[name] = {
      fluxgate: pick(fluxgate),
      reference: pick(reference),
      ...(referenceAgain && { referenceAgain: pick(referenceAgain) }),
      ...(floor && { floor: pick(floor) }),
    });
  if (!results.health) return out;
  for (const p of results.health) put(`GET /health c${p.connections}`, p);
  for (const p of results.generation.phases) put(`POST /generate c${p.connections}`, { ...p, fluxgate: p.worker });
  for (const p of results.images.phases) put(`GET /image ${p.label} c${p.connections}`, { ...p, fluxgate: p.worker });
  return out;
}

/**
 * The intervals a verdict reads, when they are narrower than the ranges
 * (eight rounds or more: see medianInterval in paired.mjs).
 */
function intervals(difference, aa) {
  if (!difference.dropped && !aa.dropped) return {};
  return {
    interval: [difference.low, difference.high],
    aaInterval: [aa.low, aa.high],
    rounds: difference.perRound.length,
    dropped: difference.dropped,
  };
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
      ...intervals(k.difference, k.aa),
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
      ...intervals(s.difference, s.aa),
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

/**
 * Each latency of fluxgate against the reference's in the same phases: no
 * worse = at most (1 + slack) times it, judged against the A/A as
 * latencyVerdict says: the wider of the reference's second instance against
 * the first and each build's run-to-run spread.
 */
function latencyTargets(current, reference) {
  return Object.entries(current).flatMap(([name, { fluxgate, reference: ref, referenceAgain, floor }]) =>
    ["p50", "p99"].map((pct) => {
      const now = fluxgate?.[pct] ?? null;
      const before = ref?.[pct] ?? null;
      const floorMs = floor?.[pct] ?? null;
      const floorRatio = floorMs != null && before ? floorMs / before : null;
      if (now == null) return { name, pct, now: null, before, floorMs, result: "no figure (no 2xx answers)" };
      if (before == null) {
        return { name, pct, now, before: null, floorMs, result: reference?.error ? "no reference" : "no reference figure" };
      }
      const runs = (build) => (build?.runs ?? []).map((run) => run[pct]);
      const again = referenceAgain?.[pct] ?? null;
      const aa = latencyCalibration(runs(fluxgate), runs(ref), runs(referenceAgain), [before, again]);
      const ratio = now / before;
      const result = latencyVerdict(ratio, aa, LATENCY_SLACK);
      return { name, pct, now, before, again, ratio, aa, floorMs, floorRatio, result };
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
        latencyRunsPerBuild: RUNS_PER_BUILD,
        latencyRunSeconds: RUN_SECONDS,
        healthRunSeconds: SHORT_RUN_SECONDS,
      },
      size: sizes(),
    };
    // Built (or found in its cache) before anything is measured: a first
    // build takes minutes of both cores.
    if (ONLY !== "paired") results.reference = await referenceBuild({ log });
    const rustFloors = ONLY !== "load" ? Object.keys(VARIANTS).map((variant) => rustFloorBuild({ variant, log })) : [];
    const emulator = await startEmulator();
    cleanups.push(() => emulator.close());
    if (ONLY !== "load") {
      results.paired = await pairedPhase(emulator);
      results.start = results.paired.start;
      log("start, step by step");
      results.startSteps = await measureStartSteps(emulator.url, 7);
      results.tiered = { v8Flags: TIERED_V8_FLAGS, ...(await tieredPhase(emulator)) };
      results.stack = [];
      const floorShapes = rustFloors.length && selectedKinds().some((k) => k.floor) ? await generationShapes(emulator, "bench/floor-worker.mjs", "floor") : null;
      for (const build of rustFloors) {
        log(`floor in Rust (${build.variant})`);
        const phase = await stackPhase(emulator, build, floorShapes);
        if (phase) results.stack.push(phase);
      }
      results.share = await sharePhase(emulator, rustFloors);
    }
    if (ONLY !== "paired") Object.assign(results, await loadPhases(emulator, results.reference));
    results.latency = latencies(results);
    results.targets = targets(results);
    results.latencyTargets = latencyTargets(results.latency, results.reference);
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
