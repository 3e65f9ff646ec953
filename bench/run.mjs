// `npm run bench`: measures the worker built in build/ under Miniflare against
// the local Replicate emulator and a static file server, prints a report and
// writes it to bench/results/. Exits non-zero only if the benchmark could not run.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { load, PHASE_SECONDS, WARMUP_SECONDS } from "./load.mjs";
import { cpuMs, rssBytes, rssSampler, settled } from "./proc.mjs";
import { renderMarkdown, renderText } from "./report.mjs";
import { AUTH_TOKEN, REPLICATE_TOKEN, root, startEmulator, startStaticServer, startWorker } from "./services.mjs";

const START_RUNS = 3;
const GENERATE_CONNECTIONS = [1, 16];
const IMAGE_CONNECTIONS = [1, 32];
const HEALTH_CONNECTIONS = [1, 32];
const GENERATE_INPUT = { prompt: "fluxgate benchmark", seed: 7 };
const IMAGES = [
  { label: "~100 KB", input: { prompt: "fluxgate benchmark small", seed: 11, output_format: "jpg", output_quality: 80 } },
  { label: "~2 MB", input: { prompt: "fluxgate benchmark large", seed: 2, output_format: "png", aspect_ratio: "9:21" } },
];
const STORE_TIMEOUT_MS = 60000;

const packageVersion = (name) => JSON.parse(readFileSync(join(root, "node_modules", name, "package.json"), "utf8")).version;
const workerAuth = { authorization: `Bearer ${AUTH_TOKEN}`, "content-type": "application/json" };
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
  return { runs, medianFirstAnswerMs: median(runs.map((r) => r.firstAnswerMs)) };
}

/** Runs a phase and charges the workerd CPU it used (until the process settles) to its requests. */
async function measured(pid, options) {
  const before = cpuMs(pid);
  const result = await load(options);
  const after = await settled(pid);
  return { ...result, cpuMs: after - before, cpuPerRequestMs: (after - before) / result.ok };
}

async function healthPhases(worker) {
  const url = `${worker.url}/health`;
  await load({ url, connections: 8, seconds: WARMUP_SECONDS });
  const phases = [];
  for (const connections of HEALTH_CONNECTIONS) {
    log(`GET /health, ${connections} connection(s)`);
    phases.push(await measured(worker.pid, { url, connections, seconds: Math.max(2, PHASE_SECONDS / 2) }));
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
 * Waits until every id's record has left `pending`; resolves to the workerd
 * CPU the KV checks themselves cost and the number of failed copies.
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

/** POST /generate through the worker, with the copies into R2 charged to it. */
async function generateThroughWorker(worker, connections, seconds) {
  const ids = [];
  const before = cpuMs(worker.pid);
  const result = await load({
    url: `${worker.url}/generate`,
    method: "POST",
    connections,
    seconds,
    headers: workerAuth,
    body: JSON.stringify({ input: GENERATE_INPUT }),
    onBody: (status, body) => status === 200 && ids.push(JSON.parse(body).id),
  });
  const { checkCpuMs, failed } = await waitStored(worker, ids);
  const used = cpuMs(worker.pid) - before - checkCpuMs;
  return { ...result, cpuMs: used, cpuPerRequestMs: used / result.ok, failedCopies: failed };
}

function generateDirect(emulator, connections, seconds) {
  return load({
    url: `${emulator.url}/v1/models/black-forest-labs/flux-schnell/predictions`,
    method: "POST",
    connections,
    seconds,
    headers: { authorization: `Bearer ${REPLICATE_TOKEN}`, prefer: "wait", "content-type": "application/json" },
    body: JSON.stringify({ input: GENERATE_INPUT }),
  });
}

async function generationPhases(worker, emulator) {
  log("POST /generate warm-up");
  await generateDirect(emulator, 16, WARMUP_SECONDS);
  await generateThroughWorker(worker, 16, WARMUP_SECONDS);
  const phases = [];
  for (const connections of GENERATE_CONNECTIONS) {
    log(`POST /generate, ${connections} connection(s): direct, then through the worker`);
    const direct = await generateDirect(emulator, connections, PHASE_SECONDS);
    const viaWorker = await generateThroughWorker(worker, connections, PHASE_SECONDS);
    phases.push({ connections, direct, worker: viaWorker });
  }
  const sample = await fetch(`${worker.url}/generate`, {
    method: "POST",
    headers: workerAuth,
    body: JSON.stringify({ input: GENERATE_INPUT }),
  }).then((r) => r.json());
  await waitStored(worker, [sample.id]);
  const record = JSON.parse(await (await worker.mf.getKVNamespace("IMAGE_META")).get(`image:${sample.id}`));
  return { input: GENERATE_INPUT, outputBytes: record.size, contentType: record.content_type, phases };
}

/** Generates one image through the worker, waits until it is in R2, and copies its bytes to `dir`. */
async function storedImage(worker, dir, { label, input }) {
  const res = await fetch(`${worker.url}/generate`, { method: "POST", headers: workerAuth, body: JSON.stringify({ input }) });
  if (!res.ok) throw new Error(`generating the ${label} image: HTTP ${res.status} ${await res.text()}`);
  const { id } = await res.json();
  await waitStored(worker, [id]);
  const image = await fetch(`${worker.url}/image/${id}`);
  if (!image.ok) throw new Error(`reading the ${label} image back: HTTP ${image.status}`);
  const bytes = Buffer.from(await image.arrayBuffer());
  writeFileSync(join(dir, id), bytes);
  return { label, input, id, bytes: bytes.length, contentType: image.headers.get("content-type") };
}

async function imagePhases(worker, dir) {
  const items = [];
  for (const image of IMAGES) items.push(await storedImage(worker, dir, image));
  const server = await startStaticServer(dir);
  try {
    await settled(worker.pid);
    const rssBeforeBytes = rssBytes(worker.pid);
    let rssPeakBytes = rssBeforeBytes;
    const phases = [];
    for (const item of items) {
      const workerUrl = `${worker.url}/image/${item.id}`;
      const staticUrl = `${server.url}/${item.id}`;
      log(`GET /image ${item.label} warm-up`);
      await load({ url: workerUrl, connections: 8, seconds: WARMUP_SECONDS });
      await load({ url: staticUrl, connections: 8, seconds: WARMUP_SECONDS });
      for (const connections of IMAGE_CONNECTIONS) {
        log(`GET /image ${item.label}, ${connections} connection(s): worker, then static server`);
        const sampler = rssSampler(worker.pid);
        const viaWorker = await measured(worker.pid, { url: workerUrl, connections });
        const peak = sampler.stop();
        rssPeakBytes = Math.max(rssPeakBytes, peak);
        const staticResult = await measured(server.pid, { url: staticUrl, connections });
        phases.push({
          label: item.label,
          bytes: item.bytes,
          connections,
          worker: { ...viaWorker, rssPeakBytes: peak },
          static: staticResult,
          throughputRatio: viaWorker.rps / staticResult.rps,
        });
      }
    }
    await settled(worker.pid);
    return { items, phases, memory: { rssBeforeBytes, rssPeakBytes, rssAfterBytes: rssBytes(worker.pid) } };
  } finally {
    await server.close();
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

/** CPU per request of a route over all its measured phases. */
function cpuOverall(phases) {
  const cpu = phases.reduce((sum, p) => sum + p.cpuMs, 0);
  const requests = phases.reduce((sum, p) => sum + p.ok, 0);
  return { cpuMs: cpu, requests, perRequestMs: cpu / requests };
}

function targets(results) {
  const atOne = (percentile) => results.generation.overhead.find((o) => o.connections === 1 && o.percentile === percentile);
  const list = [
    { name: "overhead p50 at concurrency 1 (worker - direct)", value: atOne("p50").differenceMs, unit: "ms", limit: 2, below: true },
    { name: "overhead p99 at concurrency 1 (worker - direct)", value: atOne("p99").differenceMs, unit: "ms", limit: 10, below: true },
    { name: "CPU per POST /generate (incl. copy to R2)", value: results.cpu.generate.perRequestMs, unit: "ms", limit: 2, below: true },
  ];
  for (const item of results.images.items) {
    const phases = results.images.phases.filter((p) => p.label === item.label).map((p) => p.worker);
    list.push({ name: `CPU per GET /image ${item.label}`, value: cpuOverall(phases).perRequestMs, unit: "ms", limit: 1, below: true });
  }
  for (const phase of results.images.phases) {
    list.push({
      name: `GET /image ${phase.label} c${phase.connections}: worker / static req/s`,
      value: phase.throughputRatio,
      unit: "x",
      limit: 0.5,
      below: false,
    });
  }
  list.push({ name: "wasm gzipped (level 9)", value: results.size.wasmGzipBytes / 1000, unit: "KB", limit: 400, below: true });
  return list.map((t) => ({ ...t, met: t.below ? t.value < t.limit : t.value >= t.limit }));
}

function writeResults(results) {
  const dir = join(root, "bench/results");
  mkdirSync(dir, { recursive: true });
  const json = JSON.stringify(results, null, 2) + "\n";
  writeFileSync(join(dir, `${results.startedAt.replaceAll(":", "-")}.json`), json);
  writeFileSync(join(dir, "latest.json"), json);
  writeFileSync(join(dir, "LATEST.md"), renderMarkdown(results));
}

async function main() {
  for (const file of ["build/index.js", "build/index_bg.wasm"]) {
    if (!existsSync(join(root, file))) throw new Error(`${file} is missing: run npm run build first`);
  }
  const startedAt = new Date().toISOString();
  const clock = performance.now();
  const cleanups = [];
  try {
    const results = {
      startedAt,
      environment: {
        node: process.version,
        cpus: availableParallelism(),
        autocannon: packageVersion("autocannon"),
        miniflare: packageVersion("miniflare"),
        phaseSeconds: PHASE_SECONDS,
        warmupSeconds: WARMUP_SECONDS,
      },
      size: sizes(),
    };
    const emulator = await startEmulator();
    cleanups.push(() => emulator.close());
    log("measuring start-up");
    results.start = await measureStart(emulator.url);
    const worker = await startWorker(emulator.url);
    cleanups.push(() => worker.mf.dispose());
    results.health = await healthPhases(worker);
    results.generation = await generationPhases(worker, emulator);
    results.generation.overhead = overheads(results.generation);
    const dir = mkdtempSync(join(tmpdir(), "fluxgate-bench-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    results.images = await imagePhases(worker, dir);
    results.cpu = {
      health: cpuOverall(results.health),
      generate: cpuOverall(results.generation.phases.map((p) => p.worker)),
      image: cpuOverall(results.images.phases.map((p) => p.worker)),
    };
    results.targets = targets(results);
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
