// `npm run bench`: measures the worker built in build/ under Miniflare against
// the local Replicate emulator and a static file server, prints a report and
// writes it to bench/results/. Exits non-zero only if the benchmark could not run.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { load, PHASE_SECONDS, WARMUP_SECONDS } from "./load.mjs";
import { cpuMs, rssBytes, rssSampler, settled } from "./proc.mjs";
import { renderMarkdown, renderText } from "./report.mjs";
import { AUTH_TOKEN, REPLICATE_TOKEN, root, startEmulator, startStaticServer, startWorker } from "./services.mjs";

const START_RUNS = 3;
const HEALTH_CONNECTIONS = [1, 32];
const GENERATE_CONNECTIONS = [1, 16];
const IMAGE_CONNECTIONS = [1, 32];
const SHORT_PHASE_SECONDS = Math.max(2, PHASE_SECONDS / 2);
const GENERATE_INPUT = { prompt: "fluxgate benchmark", seed: 7 };
const IMAGES = [
  { label: "~100 KB", input: { prompt: "fluxgate benchmark small", seed: 11, output_format: "jpg", output_quality: 80 } },
  { label: "~2 MB", input: { prompt: "fluxgate benchmark large", seed: 2, output_format: "png", aspect_ratio: "9:21" } },
];
const STORE_TIMEOUT_MS = 60000;

const packageVersion = (name) => JSON.parse(readFileSync(join(root, "node_modules", name, "package.json"), "utf8")).version;
const workerHeaders = { authorization: `Bearer ${AUTH_TOKEN}`, "content-type": "application/json" };
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)];
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

async function measureStart(emulatorUrl) {
  const runs = [];
  for (let i = 0; i < START_RUNS; i++) {
    const worker = await startWorker(emulatorUrl);
    runs.push({ readyMs: worker.readyMs, firstAnswerMs: worker.firstAnswerMs });
    await worker.mf.dispose();
  }
  return {
    runs,
    medianReadyMs: median(runs.map((r) => r.readyMs)),
    medianFirstAnswerMs: median(runs.map((r) => r.firstAnswerMs)),
  };
}

/** Runs a phase and charges the CPU `pid` used (until it settles) to the phase's answers. */
async function measured(pid, options) {
  const before = cpuMs(pid);
  const result = await load(options);
  const used = (await settled(pid)) - before;
  return { ...result, cpuMs: used, cpuPerRequestMs: used / result.ok };
}

async function healthPhases(worker) {
  const url = `${worker.url}/health`;
  await load({ url, connections: 8, seconds: WARMUP_SECONDS });
  const phases = [];
  for (const connections of HEALTH_CONNECTIONS) {
    log(`GET /health, ${connections} connection(s)`);
    phases.push(await measured(worker.pid, { url, connections, seconds: SHORT_PHASE_SECONDS }));
  }
  return phases;
}

/** Status of every image record in KV, by image id. */
async function recordStatuses(kv) {
  const statuses = new Map();
  let cursor;
  do {
    const page = await kv.list({ prefix: "image:", cursor });
    for (const key of page.keys) statuses.set(key.name.slice("image:".length), key.metadata?.status);
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor);
  return statuses;
}

/**
 * Waits until the record of every id has left `pending`; resolves to the CPU
 * the KV checks themselves cost the worker's process and the failed copies.
 */
async function waitStored(worker, ids) {
  const kv = await worker.mf.getKVNamespace("IMAGE_META");
  const deadline = Date.now() + STORE_TIMEOUT_MS;
  let checkCpuMs = 0;
  for (;;) {
    await settled(worker.pid);
    const before = cpuMs(worker.pid);
    const statuses = await recordStatuses(kv);
    checkCpuMs += cpuMs(worker.pid) - before;
    const pending = ids.filter((id) => !["stored", "failed"].includes(statuses.get(id)));
    if (pending.length === 0) return { checkCpuMs, failed: ids.filter((id) => statuses.get(id) === "failed").length };
    if (Date.now() > deadline) throw new Error(`${pending.length} of ${ids.length} images still pending after ${STORE_TIMEOUT_MS / 1000} s`);
  }
}

/** POST /generate through a worker, with the copies into R2 (waitUntil) charged to it. */
async function generateThroughWorker(worker, connections, seconds) {
  const ids = [];
  const before = cpuMs(worker.pid);
  const result = await load({
    url: `${worker.url}/generate`,
    method: "POST",
    connections,
    seconds,
    headers: workerHeaders,
    body: JSON.stringify({ input: GENERATE_INPUT }),
    onBody: (status, body) => status === 200 && ids.push(JSON.parse(body).id),
  });
  const { checkCpuMs, failed } = await waitStored(worker, ids);
  const used = cpuMs(worker.pid) - before - checkCpuMs;
  return { ...result, cpuMs: used, cpuPerRequestMs: used / result.ok, failedCopies: failed };
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
  await waitStored(worker, [id]);
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
    await settled(worker.pid);
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
        const viaWorker = await withPeakRss(worker.pid, () => measured(worker.pid, { url: workerUrl, connections }));
        const staticResult = await measured(server.pid, { url: staticUrl, connections });
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
    await settled(worker.pid);
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

/** The same routes at concurrency 1 on bench/floor-worker.mjs, a worker that only makes the platform calls. */
async function floorPhases(emulator, items, dir) {
  const floor = await startWorker(emulator.url, "bench/floor-worker.mjs");
  try {
    const bucket = await floor.mf.getR2Bucket("IMAGES");
    for (const item of items) {
      await bucket.put(item.id, readFileSync(join(dir, item.id)), { httpMetadata: { contentType: item.contentType } });
    }
    const phase = async (url) => {
      await load({ url, connections: 1, seconds: WARMUP_SECONDS });
      return withPeakRss(floor.pid, () => measured(floor.pid, { url, connections: 1, seconds: SHORT_PHASE_SECONDS }));
    };
    log("floor worker: GET /health, POST /generate, GET /image");
    const health = await phase(`${floor.url}/health`);
    await generateThroughWorker(floor, 1, WARMUP_SECONDS);
    const generate = await generateThroughWorker(floor, 1, SHORT_PHASE_SECONDS);
    const images = [];
    for (const item of items) images.push({ label: item.label, ...(await phase(`${floor.url}/image/${item.id}`)) });
    return { health, generate, images };
  } finally {
    await floor.mf.dispose();
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

/** CPU per answer of a route over all its measured phases. */
function cpuOverall(phases) {
  const cpu = phases.reduce((sum, p) => sum + p.cpuMs, 0);
  const ok = phases.reduce((sum, p) => sum + p.ok, 0);
  return { ok, cpuMs: cpu, cpuPerRequestMs: cpu / ok };
}

function targets(results) {
  const atOne = (percentile) => results.generation.overhead.find((o) => o.connections === 1 && o.percentile === percentile);
  const list = [
    { name: "overhead p50 at concurrency 1 (worker - direct)", value: atOne("p50").differenceMs, unit: "ms", limit: 2, below: true },
    { name: "overhead p99 at concurrency 1 (worker - direct)", value: atOne("p99").differenceMs, unit: "ms", limit: 10, below: true },
    { name: "CPU per POST /generate (incl. copy to R2)", value: results.cpu.generate.cpuPerRequestMs, unit: "ms", limit: 2, below: true },
  ];
  for (const { label } of results.images.items) {
    const phases = results.images.phases.filter((p) => p.label === label).map((p) => p.worker);
    list.push({ name: `CPU per GET /image ${label}`, value: cpuOverall(phases).cpuPerRequestMs, unit: "ms", limit: 1, below: true });
  }
  for (const p of results.images.phases) {
    list.push({ name: `GET /image ${p.label} c${p.connections}: worker / static req/s`, value: p.throughputRatio, unit: "x", limit: 0.5, below: false });
  }
  list.push({ name: "wasm gzipped (level 9)", value: results.size.wasmGzipBytes / 1000, unit: "KB", limit: 400, below: true });
  return list.map((t) => ({ ...t, met: t.below ? t.value < t.limit : t.value >= t.limit }));
}

function writeResults(results) {
  const dir = join(root, "bench/results");
  mkdirSync(dir, { recursive: true });
  const json = `${JSON.stringify(results, null, 2)}\n`;
  writeFileSync(join(dir, `${results.startedAt.replaceAll(":", "-")}.json`), json);
  writeFileSync(join(dir, "latest.json"), json);
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
        loadAverageAtStart: loadavg()[0],
        autocannon: packageVersion("autocannon"),
        miniflare: packageVersion("miniflare"),
        phaseSeconds: PHASE_SECONDS,
        warmupSeconds: WARMUP_SECONDS,
      },
      size: sizes(),
    };
    const emulator = await startEmulator();
    cleanups.push(() => emulator.close());
    log("start-up");
    results.start = await measureStart(emulator.url);
    const worker = await startWorker(emulator.url);
    cleanups.push(() => worker.mf.dispose());
    results.health = await healthPhases(worker);
    results.generation = await generationPhases(worker, emulator);
    results.generation.overhead = overheads(results.generation);
    const dir = mkdtempSync(join(tmpdir(), "fluxgate-bench-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const items = await storeImages(worker, dir);
    results.images = await imagePhases(worker, items, dir);
    results.floor = await floorPhases(emulator, items, dir);
    results.cpu = {
      health: cpuOverall(results.health),
      generate: cpuOverall(results.generation.phases.map((p) => p.worker)),
      image: cpuOverall(results.images.phases.map((p) => p.worker)),
    };
    results.targets = targets(results);
    results.environment.loadAverageAtEnd = loadavg()[0];
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
