// Paired, interleaved CPU measurement of one request kind on several workers
// (each its own workerd process): batches of k consecutive requests, one at a
// time, to each worker in turn, the order rotated from one set to the next;
// each batch's CPU is the change in that process's CPU time from before its
// first request until the process is quiet again (its waitUntil work done),
// divided by k. Differences are taken within a set, so drifts of the machine
// (other load, frequency, caches) that are slower than a set cancel out.
//
// Subjects: A = fluxgate, A2 = a second Miniflare of the same build (the A/A
// calibration: what a difference of nothing measures as), B = the floor.
import { cpuNs, quietCpu } from "./proc.mjs";
import { AUTH_TOKEN } from "./services.mjs";

const envInt = (name, fallback) => {
  const value = Number(process.env[name]);
  return Number.isInteger(value) && value > 0 ? value : fallback;
};

/** Rounds per kind; the range reported is min..max of the per-round medians. */
export const ROUNDS = envInt("BENCH_ROUNDS", 5);
/** Sets (A, A2, B in rotated order) per round. */
export const SETS_PER_ROUND = envInt("BENCH_SETS", 4);
/** Multiplies every kind's batch size (requests per batch). */
const BATCH_SCALE = Number(process.env.BENCH_BATCH_SCALE) > 0 ? Number(process.env.BENCH_BATCH_SCALE) : 1;
/**
 * A process is quiet once it used at most QUIET_NS over QUIET_MS, or three
 * times what it uses idle over that window if more (measured per worker).
 */
export const QUIET_MS = envInt("BENCH_QUIET_MS", 50);
export const QUIET_NS = 100_000;
const IDLE_SAMPLE_MS = 500;
const COPY_TIMEOUT_MS = 30_000;

export const GENERATE_INPUT = { prompt: "fluxgate benchmark", seed: 7 };
export const SMALL_IMAGE_INPUT = { prompt: "fluxgate benchmark small", seed: 11, output_format: "jpg", output_quality: 80 };
const MODEL_PATH = "/replicate/v1/models/black-forest-labs/flux-schnell/predictions";

const json = { "content-type": "application/json" };
const auth = { authorization: `Bearer ${AUTH_TOKEN}` };

/** An answer other than the expected one; `status` 404 means the route is missing. */
export class Unexpected extends Error {
  constructor(what, status, body) {
    super(`${what}: HTTP ${status} ${String(body).slice(0, 200)}`);
    this.status = status;
  }
}

/** One request; reads the whole body; throws Unexpected unless the status is `expect` (one or a list). */
export async function call(worker, method, path, { headers, body, expect = 200 } = {}) {
  const res = await fetch(`${worker.url}${path}`, { method, headers, body, redirect: "manual" });
  const bytes = Buffer.from(await res.arrayBuffer());
  if (![expect].flat().includes(res.status)) throw new Unexpected(`${method} ${path}`, res.status, bytes.toString());
  return { res, bytes };
}

const generate = (worker, input) =>
  call(worker, "POST", "/generate", { headers: { ...auth, ...json }, body: JSON.stringify({ input }) });

/**
 * The kinds measured. Each: key, name, floor (whether the floor worker has
 * the route: else only fluxgate and its A/A are measured), batch (requests
 * per batch), targetMs (the most fluxgate may cost above the floor, per
 * request), copies (waitUntil copies into R2 to wait for), and
 * request(worker, state) issuing one unit of work (state comes from
 * prepare(subjects), run once before measuring). A kind whose first request
 * answers 404 is reported as not measured: its route does not exist yet.
 * To measure a new route, add a kind here (the floor too, if it can mirror it).
 */
export const KINDS = [
  {
    key: "generate",
    name: "POST /generate (copy into R2 included)",
    floor: true,
    batch: 4,
    targetMs: 0.5,
    copies: true,
    request: (w) => generate(w, GENERATE_INPUT),
  },
  {
    key: "image",
    name: "GET /image/{id} ~100 KB",
    floor: true,
    batch: 10,
    targetMs: 0.1,
    // The same bytes under the same id in every worker's R2.
    async prepare(subjects) {
      const [first, ...others] = subjects;
      const { bytes } = await generate(first, SMALL_IMAGE_INPUT);
      const { id } = JSON.parse(bytes);
      await waitCopies(first);
      const { res, bytes: image } = await call(first, "GET", `/image/${id}`);
      const contentType = res.headers.get("content-type");
      for (const w of others) await (await w.mf.getR2Bucket("IMAGES")).put(id, image, { httpMetadata: { contentType } });
      return { path: `/image/${id}`, bytes: image.length, contentType };
    },
    request: (w, state) => call(w, "GET", state.path),
  },
  {
    key: "health",
    name: "GET /health",
    floor: true,
    batch: 20,
    targetMs: null,
    request: (w) => call(w, "GET", "/health"),
  },
  {
    key: "replicate",
    name: "/replicate/v1 create (Prefer: wait) + GET prediction, per pair",
    floor: false,
    batch: 4,
    targetMs: null,
    copies: true,
    async request(w) {
      const { bytes } = await call(w, "POST", MODEL_PATH, {
        headers: { ...auth, ...json, prefer: "wait=60" },
        body: JSON.stringify({ input: GENERATE_INPUT }),
        expect: [201, 202],
      });
      await call(w, "GET", `/replicate/v1/predictions/${JSON.parse(bytes).id}`, { headers: auth });
    },
  },
  // Not there yet: measured as soon as their routes answer something but 404
  // (adjust the request to the route's final shape when it lands).
  {
    key: "generate-cached",
    name: "GET /generate answered from the cache",
    floor: false,
    batch: 10,
    targetMs: null,
    copies: true,
    async prepare([first]) {
      const path = `/generate?prompt=${encodeURIComponent("fluxgate benchmark cached")}&seed=5`;
      const once = await call(first, "GET", path, { headers: auth, expect: 302 });
      const again = await call(first, "GET", path, { headers: auth, expect: 302 });
      if (once.res.headers.get("location") !== again.res.headers.get("location")) {
        return { skip: "GET /generate is not answered from a cache yet (two identical requests made two images)" };
      }
      return { path };
    },
    request: (w, state) => call(w, "GET", state.path, { headers: auth, expect: 302 }),
  },
  {
    key: "upload",
    name: "POST /upload (an image kept in R2)",
    floor: false,
    batch: 4,
    targetMs: null,
    request: (w) => call(w, "POST", "/upload", { headers: { ...auth, "content-type": "image/png" }, body: TINY_PNG }),
  },
  {
    key: "webhook",
    name: "POST /webhooks/replicate (a webhook delivery)",
    floor: false,
    batch: 4,
    targetMs: null,
    request: (w) =>
      call(w, "POST", "/webhooks/replicate", { headers: json, body: JSON.stringify({ id: "bench", status: "succeeded" }) }),
  },
];

const TINY_PNG = Buffer.from(
  "89504e470d0a1a0a0000000d4948445200000001000000010806000000" +
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082",
  "hex",
);

/** Waits until the worker has no copy into R2 left to do (its pending: index is empty). */
export async function waitCopies(worker, timeoutMs = COPY_TIMEOUT_MS) {
  const kv = await worker.mf.getKVNamespace("IMAGE_META");
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const page = await kv.list({ prefix: "pending:", limit: 10 });
    if (page.keys.length === 0) return;
    if (Date.now() > deadline) throw new Error(`${worker.label}: copies into R2 still pending after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Runs `count` requests of `kind` on `worker` one at a time and charges the
 * CPU its process uses until quiet. For kinds with copies, once quiet the
 * pending: index is checked (after the CPU is read: the check's own cost is
 * not charged); copies still running are waited for and charged.
 */
async function batch(kind, worker, state, count) {
  const latencies = [];
  const start = cpuNs(worker.pid);
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await kind.request(worker, state);
    latencies.push(performance.now() - t);
  }
  const quietness = { windowMs: QUIET_MS, thresholdNs: worker.quietNs ?? QUIET_NS };
  let { ns: end, timedOut } = await quietCpu(worker.pid, quietness);
  let late = 0;
  if (kind.copies) {
    const kv = await worker.mf.getKVNamespace("IMAGE_META");
    for (;;) {
      const page = await kv.list({ prefix: "pending:", limit: 10 });
      if (page.keys.length === 0) break;
      late++;
      if (late > 200) throw new Error(`${worker.label}: copies into R2 did not finish`);
      const resumed = cpuNs(worker.pid);
      const quiet = await quietCpu(worker.pid, quietness);
      end += quiet.ns - resumed;
      timedOut ||= quiet.timedOut;
    }
  }
  return { cpuMsPerRequest: (end - start) / 1e6 / count, latencies, late, timedOut };
}

/**
 * Measures what `worker`'s process uses idle and sets its quiet threshold
 * (worker.quietNs); resolves to the idle use in ms of CPU per second.
 */
export async function calibrateIdle(worker) {
  await quietCpu(worker.pid, { windowMs: QUIET_MS, thresholdNs: QUIET_NS * 5, maxMs: 3000 });
  const before = cpuNs(worker.pid);
  const t = performance.now();
  await new Promise((r) => setTimeout(r, IDLE_SAMPLE_MS));
  const nsPerMs = (cpuNs(worker.pid) - before) / (performance.now() - t);
  worker.quietNs = Math.max(QUIET_NS, 3 * nsPerMs * QUIET_MS);
  worker.idleMsPerSecond = nsPerMs / 1000;
  return worker.idleMsPerSecond;
}

/** Every order of `items`. */
function permutations(items) {
  if (items.length <= 1) return [items];
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

export const median = (values) => {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  return sorted.length % 2 ? sorted[Math.floor(mid)] : (sorted[mid - 1] + sorted[mid]) / 2;
};

const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
};

/** Median over all sets and range (min..max of the per-round medians) of one series of differences. */
export function summarize(rounds) {
  const all = rounds.flat();
  const perRound = rounds.map(median);
  return { median: median(all), min: Math.min(...perRound), max: Math.max(...perRound), perRound, n: all.length };
}

/**
 * Measures one kind. subjects: { A, A2, B } (B = floor; unused when the kind
 * has no floor equivalent). Resolves to the figures, or { skipped: reason }.
 */
export async function measureKind(kind, subjects, log) {
  const workers = kind.floor ? [subjects.A, subjects.A2, subjects.B] : [subjects.A, subjects.A2];
  let state = {};
  try {
    if (kind.prepare) state = await kind.prepare(workers);
    if (state.skip) return { key: kind.key, name: kind.name, skipped: state.skip };
    // The probe, also the first of the warm-up.
    await kind.request(workers[0], state);
  } catch (error) {
    if (error instanceof Unexpected) {
      const reason = error.status === 404 ? "the route does not exist yet (404)" : `the route answered ${error.message}`;
      return { key: kind.key, name: kind.name, skipped: reason };
    }
    throw error;
  }
  const count = Math.max(1, Math.round(kind.batch * BATCH_SCALE));
  log(`${kind.name}: ${ROUNDS} rounds x ${SETS_PER_ROUND} sets x ${workers.length} workers x ${count} requests`);
  // Warm-up: a batch on each, so every isolate has compiled the route.
  for (const w of workers) await batch(kind, w, state, count);
  if (kind.copies) for (const w of workers) await waitCopies(w);

  const orders = permutations(workers);
  const diff = []; // per round: B - A per set
  const aa = []; // per round: A2 - A per set
  const perWorker = new Map(workers.map((w) => [w.label, { cpu: [], latencies: [] }]));
  let late = 0;
  let timedOut = 0;
  let set = 0;
  for (let round = 0; round < ROUNDS; round++) {
    diff.push([]);
    aa.push([]);
    for (let s = 0; s < SETS_PER_ROUND; s++, set++) {
      const got = {};
      for (const w of orders[set % orders.length]) {
        const b = await batch(kind, w, state, count);
        got[w.label] = b.cpuMsPerRequest;
        perWorker.get(w.label).cpu.push(b.cpuMsPerRequest);
        perWorker.get(w.label).latencies.push(...b.latencies);
        late += b.late;
        timedOut += b.timedOut ? 1 : 0;
      }
      if (kind.floor) diff[round].push(got[subjects.B.label] - got[subjects.A.label]);
      aa[round].push(got[subjects.A2.label] - got[subjects.A.label]);
    }
  }
  const figures = (label) => {
    const w = perWorker.get(label);
    return w && { cpuMsPerRequest: median(w.cpu), p50Ms: percentile(w.latencies, 50), p99Ms: percentile(w.latencies, 99) };
  };
  // B - A is the floor minus fluxgate: reported the other way round, as fluxgate's cost above the floor.
  const over = kind.floor ? summarize(diff.map((r) => r.map((d) => -d))) : null;
  return {
    key: kind.key,
    name: kind.name,
    floor: kind.floor,
    targetMs: kind.targetMs,
    batch: count,
    rounds: ROUNDS,
    setsPerRound: SETS_PER_ROUND,
    fluxgate: figures(subjects.A.label),
    fluxgateAgain: figures(subjects.A2.label),
    floorWorker: kind.floor ? figures(subjects.B.label) : null,
    difference: over,
    aa: summarize(aa),
    lateCopyChecks: late,
    quietTimeouts: timedOut,
    state: { bytes: state.bytes, contentType: state.contentType },
  };
}

/**
 * Start-up: new Miniflare -> first /health answer, for fluxgate (twice: A/A)
 * and the floor in rotated order, `rounds` times after one unmeasured start
 * of each. start(script) resolves to a started worker ({ firstAnswerMs, mf }).
 */
export async function measureStarts(start, rounds, log) {
  const scripts = { A: "build/index.js", A2: "build/index.js", B: "bench/floor-worker.mjs" };
  log(`start-up: ${rounds} rounds of fluxgate, fluxgate, floor`);
  for (const script of ["build/index.js", "bench/floor-worker.mjs"]) await (await start(script)).mf.dispose();
  const orders = permutations(["A", "A2", "B"]);
  const times = { A: [], A2: [], B: [] };
  const diff = [];
  const aa = [];
  for (let round = 0; round < rounds; round++) {
    const got = {};
    for (const who of orders[round % orders.length]) {
      const worker = await start(scripts[who]);
      got[who] = worker.firstAnswerMs;
      times[who].push(worker.firstAnswerMs);
      await worker.mf.dispose();
    }
    diff.push([got.A - got.B]);
    aa.push([got.A2 - got.A]);
  }
  return {
    rounds,
    fluxgateMs: times.A,
    fluxgateAgainMs: times.A2,
    floorMs: times.B,
    medianFluxgateMs: median(times.A),
    medianFloorMs: median(times.B),
    difference: summarize(diff),
    aa: summarize(aa),
  };
}

/**
 * The verdict on "fluxgate - floor <= limit": met only when the upper end of
 * the range is under the limit; within resolution when the A/A calibration
 * strays further from zero than the limit and the range does not settle it.
 */
export function verdict(difference, aa, limit) {
  const resolution = Math.max(Math.abs(aa.min), Math.abs(aa.max));
  if (resolution > limit) {
    if (difference.min > limit + resolution) return "NOT met";
    if (difference.max < limit - resolution) return "met";
    return "within resolution";
  }
  return difference.max <= limit ? "met" : "NOT met";
}
