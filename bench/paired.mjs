// Paired, interleaved CPU measurement of request kinds on several workers
// (each its own workerd process): batches of k consecutive requests, one at a
// time, to each worker in turn, the order rotated from one set to the next;
// each batch's CPU is the change in that process's CPU time from before its
// first request until the process is quiet again (its waitUntil work done),
// divided by k. Differences are taken within a set, so drifts of the machine
// (other load, frequency, caches) that are slower than a set cancel out; new
// processes every round put differences between processes into the spread
// across rounds.
//
// Subjects: A = fluxgate, A2 = a second Miniflare of the same build (the A/A
// calibration: what a difference of nothing measures as), B = the floor.
import { cpuNs, cpuSplitNs, quietCpu } from "./proc.mjs";
import { DEFAULT_WEBHOOK_SECRET, signWebhook } from "../emulator/webhooks.mjs";
import { AUTH_TOKEN, REPLICATE_TOKEN } from "./services.mjs";

const envInt = (name, fallback) => {
  const value = Number(process.env[name]);
  return Number.isInteger(value) && value > 0 ? value : fallback;
};

/**
 * Rounds (each on new instances); the range reported is min..max of the
 * per-round medians, the verdict reads medianInterval. Eight: the fewest
 * from which that interval leaves out an outlying round at each end.
 */
export const ROUNDS = envInt("BENCH_ROUNDS", 8);
/** Rounds done whatever the time budget (see measurePaired). */
export const MIN_ROUNDS = Math.min(ROUNDS, 3);
/** Sets (A, A2, B, in an order rotated through all six) per kind and round. */
export const SETS_PER_ROUND = envInt("BENCH_SETS", 6);
/** Batches of each kind run on each new instance before its sets are measured. */
export const WARMUP_BATCHES = envInt("BENCH_WARMUP_BATCHES", 1);
/**
 * Starts of each build per round, interleaved in the round's order: a single
 * start now and then takes far longer than the others (a slow first round made
 * the start's A/A range 100 ms wide), so a round's start figure per build is
 * the median of these; the last start of each build is the instance measured.
 */
export const STARTS_PER_ROUND = envInt("BENCH_STARTS", 3);
/** Unmeasured starts of each build before the first round. */
const WARM_UP_STARTS = 2;
/** Multiplies every kind's batch size (requests per batch). */
const BATCH_SCALE = Number(process.env.BENCH_BATCH_SCALE) > 0 ? Number(process.env.BENCH_BATCH_SCALE) : 1;
/**
 * A process is quiet once it used at most QUIET_NS over QUIET_MS, or three
 * times what it uses idle over that window if more (measured per worker).
 */
export const QUIET_MS = envInt("BENCH_QUIET_MS", 50);
export const QUIET_NS = 100_000;
const IDLE_SAMPLE_MS = 200;
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

/** A new generation (never from the cache) of `input`; throws unless it answers 200. */
export const generate = (worker, input) =>
  // `no-cache`: every generation is a new one (the floor has no cache).
  call(worker, "POST", "/generate", { headers: { ...auth, ...json, "cache-control": "no-cache" }, body: JSON.stringify({ input }) });

/**
 * The kinds measured. Each: key, name, floor (whether the floor worker has
 * the route: else only fluxgate and its A/A are measured), batch (requests
 * per batch), targetMs (the most fluxgate may cost above the floor, per
 * request), copies (waitUntil copies into R2 to wait for), and
 * request(worker, state) issuing one unit of work (state comes from
 * prepare(workers), run on each round's new workers before measuring). A kind whose first request
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
    // The same bytes under the same id in every worker's R2, put there the same way.
    async prepare(subjects) {
      const [first] = subjects;
      const { bytes } = await generate(first, SMALL_IMAGE_INPUT);
      const { id } = JSON.parse(bytes);
      await waitCopies(first);
      const { res, bytes: image } = await call(first, "GET", `/image/${id}`);
      const contentType = res.headers.get("content-type");
      for (const w of subjects) await (await w.mf.getR2Bucket("IMAGES")).put(id, image, { httpMetadata: { contentType } });
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
    name: "/replicate/v1 create (Prefer: wait), then GET it: per create + get",
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
    name: "POST /uploads of the ~100 KB image",
    floor: false,
    batch: 4,
    targetMs: null,
    async prepare([first]) {
      const { bytes } = await generate(first, SMALL_IMAGE_INPUT);
      await waitCopies(first);
      const { res, bytes: image } = await call(first, "GET", `/image/${JSON.parse(bytes).id}`);
      return { image, contentType: res.headers.get("content-type") };
    },
    request: (w, state) =>
      call(w, "POST", "/uploads", { headers: { ...auth, "content-type": state.contentType }, body: state.image, expect: 201 }),
  },
  {
    key: "webhook",
    name: "POST /webhooks/replicate (a signed delivery, a repeat)",
    floor: false,
    batch: 10,
    targetMs: null,
    copies: true,
    // One generation per worker; then Replicate's completed delivery of it,
    // signed as Replicate signs it, sent again and again (each is verified,
    // parsed and found to change nothing).
    async prepare(subjects) {
      const bodies = new Map();
      for (const w of subjects) {
        const { bytes } = await generate(w, GENERATE_INPUT);
        const { predictionId } = JSON.parse(bytes);
        await waitCopies(w);
        const res = await fetch(`${w.emulatorUrl}/v1/predictions/${predictionId}`, { headers: { authorization: `Bearer ${REPLICATE_TOKEN}` } });
        bodies.set(w.label, await res.text());
      }
      return { bodies };
    },
    request: (w, state) => {
      const body = state.bodies.get(w.label);
      const id = `msg_bench_${Math.random().toString(36).slice(2)}`;
      const timestamp = Math.floor(Date.now() / 1000);
      const signature = `v1,${signWebhook(DEFAULT_WEBHOOK_SECRET, id, timestamp, body)}`;
      const headers = { ...json, "webhook-id": id, "webhook-timestamp": String(timestamp), "webhook-signature": signature };
      return call(w, "POST", "/webhooks/replicate", { headers, body });
    },
  },
];

/** KINDS, or those named in BENCH_KINDS (keys, comma-separated). */
export function selectedKinds() {
  const wanted = process.env.BENCH_KINDS?.split(",").map((k) => k.trim()).filter(Boolean);
  return wanted?.length ? KINDS.filter((k) => wanted.includes(k.key)) : KINDS;
}

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
  const { ns: start, mainNs: startMain } = cpuSplitNs(worker.pid);
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await kind.request(worker, state);
    latencies.push(performance.now() - t);
  }
  const quietness = { windowMs: QUIET_MS, thresholdNs: worker.quietNs ?? QUIET_NS };
  let { ns: end, mainNs: endMain, timedOut } = await quietCpu(worker.pid, quietness);
  let late = 0;
  if (kind.copies) {
    const kv = await worker.mf.getKVNamespace("IMAGE_META");
    for (;;) {
      const page = await kv.list({ prefix: "pending:", limit: 10 });
      if (page.keys.length === 0) break;
      late++;
      if (late > 200) throw new Error(`${worker.label}: copies into R2 did not finish`);
      const { ns: resumed, mainNs: resumedMain } = cpuSplitNs(worker.pid);
      const quiet = await quietCpu(worker.pid, quietness);
      end += quiet.ns - resumed;
      endMain += quiet.mainNs - resumedMain;
      timedOut ||= quiet.timedOut;
    }
  }
  const perRequest = (ns) => ns / 1e6 / count;
  return { cpuMsPerRequest: perRequest(end - start), mainMsPerRequest: perRequest(endMain - startMain), latencies, late, timedOut };
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

/** The median of the finite numbers of `values` (null and missing figures left out); null when none. */
export const median = (values) => {
  const sorted = values.filter((v) => v != null && Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const mid = sorted.length / 2;
  return sorted.length % 2 ? sorted[Math.floor(mid)] : (sorted[mid - 1] + sorted[mid]) / 2;
};

const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
};

/** How often the median of rounds lies between the k-th lowest and the k-th highest of n rounds. */
export function intervalCoverage(n, k) {
  // 1 - 2 P(Binomial(n, 1/2) <= k - 1)
  let below = 0;
  let choose = 1;
  for (let i = 0; i < k; i++) {
    below += choose;
    choose = (choose * (n - i)) / (i + 1);
  }
  return 1 - (2 * below) / 2 ** n;
}

/**
 * The rounds' interval for their median: from the k-th lowest to the k-th
 * highest round, k as large as keeps the median inside in at least 90% of
 * runs (at least 1: up to seven rounds that is the whole range). It narrows
 * as rounds are added, where the range only widens.
 */
export function medianInterval(perRound) {
  const sorted = [...perRound].sort((a, b) => a - b);
  const n = sorted.length;
  let k = 1;
  while (2 * (k + 1) <= n && intervalCoverage(n, k + 1) >= 0.9) k++;
  return { low: sorted[k - 1], high: sorted[n - k], dropped: k - 1 };
}

/**
 * Median over all sets, range (min..max of the per-round medians) and the
 * interval of the median of rounds (see medianInterval) of one series of
 * differences.
 */
export function summarize(rounds) {
  const all = rounds.flat();
  const perRound = rounds.map(median).filter((v) => v != null);
  const { low, high, dropped } = medianInterval(perRound);
  return { median: median(all), min: Math.min(...perRound), max: Math.max(...perRound), low, high, dropped, perRound, n: all.length };
}

/**
 * The paired measurement. Every round starts three new Miniflare instances,
 * A (fluxgate), A2 (fluxgate again) and B (the floor), in a rotated order,
 * timing each to its first answer (the start-up figures), then measures
 * every kind on them, SETS_PER_ROUND sets each, and disposes of them. Fresh
 * processes per round put process-to-process differences (memory layout,
 * JIT decisions, where the scheduler runs them) into the per-round spread,
 * where the A/A range shows them, rather than into every figure of the run.
 * Rounds stop early, once MIN_ROUNDS are done, when the run overruns
 * `budgetSeconds` (a busy machine).
 *
 * start(label, script) resolves to a started worker ({ mf, url, pid, firstAnswerMs }).
 */
export async function measurePaired({ start, kinds = selectedKinds(), budgetSeconds, log, other }) {
  const started = performance.now();
  // BENCH_A2_SCRIPT pairs the build against another one (a probe build, e.g.
  // the commit before a change, built to target/probe-x/index.js) instead of
  // itself: the A/A column then reads "that build - this build" (positive:
  // this one uses less). `other` ({ script, label }) does the same for a
  // phase of the bench (the floor in Rust).
  const a2 = other?.script ?? process.env.BENCH_A2_SCRIPT;
  const scripts = { A: "build/index.js", A2: a2 || "build/index.js", B: "bench/floor-worker.mjs" };
  const labels = { A: "fluxgate", A2: other?.label ?? (a2 ? `probe ${a2}` : "fluxgate again"), B: "floor" };
  const runs = kinds.map((kind) => ({
    kind,
    skipped: null,
    state: {},
    diff: [],
    aa: [],
    // The same on the main thread alone (see cpuSplitNs).
    diffMain: [],
    aaMain: [],
    // A2 - B per set: when A2 is another build, what it costs over the floor
    // (and on the main thread alone).
    a2Floor: [],
    a2FloorMain: [],
    perWorker: { A: { cpu: [], main: [], latencies: [] }, A2: { cpu: [], main: [], latencies: [] }, B: { cpu: [], main: [], latencies: [] } },
    late: 0,
    timedOut: 0,
    set: 0,
    ms: 0,
  }));
  const starts = { A: [], A2: [], B: [], diff: [], aa: [], a2Floor: [], workerdCpuDiff: [], miniflareCpuDiff: [] };
  const idle = { A: [], A2: [], B: [] };
  // All six orders, each instance first in every run of three rounds.
  const startOrders = [["A", "A2", "B"], ["A2", "B", "A"], ["B", "A", "A2"], ["A", "B", "A2"], ["B", "A2", "A"], ["A2", "A", "B"]];
  // The first starts of a run are slower for every build (this process's
  // own code warming up): the first measured round's were 30 to 60 ms slower
  // than the others after one unmeasured start each.
  log(`start-up: ${WARM_UP_STARTS} unmeasured starts of each build`);
  for (let k = 0; k < WARM_UP_STARTS; k++) {
    for (const script of new Set(Object.values(scripts))) await (await start("warm-up", script)).mf.dispose();
  }

  let round = 0;
  for (; round < ROUNDS; round++) {
    // Stop once MIN_ROUNDS are done if another round (as long as the average) would overrun the budget.
    const elapsed = performance.now() - started;
    if (round >= MIN_ROUNDS && elapsed + elapsed / round > budgetSeconds * 1000) break;
    const subjects = {};
    try {
      const timed = { A: [], A2: [], B: [] };
      for (let k = 0; k < STARTS_PER_ROUND; k++) {
        for (const who of startOrders[round % startOrders.length]) {
          const worker = await start(labels[who], scripts[who]);
          timed[who].push(worker);
          if (k < STARTS_PER_ROUND - 1) await worker.mf.dispose();
          else subjects[who] = { ...worker, label: labels[who], who };
        }
      }
      const firstAnswer = (who) => median(timed[who].map((w) => w.firstAnswerMs));
      const cpu = (who, side) => median(timed[who].map((w) => w.startCpu[side]));
      for (const who of ["A", "A2", "B"]) starts[who].push(firstAnswer(who));
      starts.diff.push([firstAnswer("A") - firstAnswer("B")]);
      starts.workerdCpuDiff.push([cpu("A", "workerdMs") - cpu("B", "workerdMs")]);
      starts.miniflareCpuDiff.push([cpu("A", "miniflareMs") - cpu("B", "miniflareMs")]);
      starts.aa.push([firstAnswer("A2") - firstAnswer("A")]);
      starts.a2Floor.push([firstAnswer("A2") - firstAnswer("B")]);
      for (const who of ["A", "A2", "B"]) idle[who].push(await calibrateIdle(subjects[who]));
      for (const run of runs) {
        if (run.skipped) continue;
        const t = performance.now();
        await measureRound(run, subjects, round, log);
        run.ms += performance.now() - t;
      }
    } finally {
      for (const w of Object.values(subjects)) await w.mf.dispose();
    }
  }

  const figures = (run, who) => {
    const w = run.perWorker[who];
    return { cpuMsPerRequest: median(w.cpu), mainMsPerRequest: median(w.main), p50Ms: percentile(w.latencies, 50), p99Ms: percentile(w.latencies, 99) };
  };
  const results = runs.map((run) => {
    const { kind } = run;
    if (run.skipped) return { key: kind.key, name: kind.name, skipped: run.skipped };
    return {
      key: kind.key,
      name: kind.name,
      floor: kind.floor,
      targetMs: kind.targetMs,
      batch: batchSize(kind),
      rounds: run.aa.length,
      setsPerRound: SETS_PER_ROUND,
      seconds: run.ms / 1000,
      fluxgate: figures(run, "A"),
      fluxgateAgain: figures(run, "A2"),
      floorWorker: kind.floor ? figures(run, "B") : null,
      // Sets hold B - A (floor minus fluxgate): turned round, as fluxgate's cost above the floor.
      difference: kind.floor ? summarize(run.diff.map((r) => r.map((d) => -d))) : null,
      aa: summarize(run.aa),
      a2Floor: kind.floor ? summarize(run.a2Floor) : null,
      // By thread: the main thread (the requests' code, Miniflare's KV and R2) and the rest (V8's helpers).
      mainThread: {
        difference: kind.floor ? summarize(run.diffMain.map((r) => r.map((d) => -d))) : null,
        aa: summarize(run.aaMain),
        a2Floor: kind.floor ? summarize(run.a2FloorMain) : null,
        // What is left: the helper threads' share of the difference, set by set.
        helpers: kind.floor ? summarize(run.diff.map((r, i) => r.map((d, j) => run.diffMain[i][j] - d))) : null,
      },
      lateCopyChecks: run.late,
      quietTimeouts: run.timedOut,
      state: { bytes: run.state.bytes, contentType: run.state.contentType },
    };
  });
  return {
    rounds: round,
    warmupBatches: WARMUP_BATCHES,
    kinds: results,
    start: {
      rounds: starts.A.length,
      startsPerRound: STARTS_PER_ROUND,
      fluxgateMs: starts.A,
      fluxgateAgainMs: starts.A2,
      floorMs: starts.B,
      medianFluxgateMs: median(starts.A),
      medianFloorMs: median(starts.B),
      difference: summarize(starts.diff),
      aa: summarize(starts.aa),
      a2Floor: summarize(starts.a2Floor),
      // The CPU of those starts, fluxgate - floor: workerd's, and Miniflare's in Node.
      workerdCpuDifference: summarize(starts.workerdCpuDiff),
      miniflareCpuDifference: summarize(starts.miniflareCpuDiff),
    },
    idleMsPerSecond: Object.fromEntries(Object.entries(idle).map(([who, v]) => [labels[who], median(v)])),
    seconds: (performance.now() - started) / 1000,
  };
}

const batchSize = (kind) => Math.max(1, Math.round(kind.batch * BATCH_SCALE));

/** One round of one kind on this round's subjects. */
async function measureRound(run, subjects, round, log) {
  const { kind } = run;
  const workers = kind.floor ? [subjects.A, subjects.A2, subjects.B] : [subjects.A, subjects.A2];
  try {
    run.state = kind.prepare ? await kind.prepare(workers) : {};
    if (run.state.skip) {
      run.skipped = run.state.skip;
      return;
    }
    // The probe (a 404 means the route is not there yet), also the first of the warm-up.
    await kind.request(workers[0], run.state);
  } catch (error) {
    if (round === 0 && error instanceof Unexpected) {
      run.skipped = error.status === 404 ? "the route does not exist yet (404)" : `the route answered ${error.message}`;
      return;
    }
    throw error;
  }
  const count = batchSize(kind);
  if (round === 0) log(`${kind.name}: ${SETS_PER_ROUND} sets x ${workers.length} workers x ${count} requests per round`);
  // Warm-up: a batch on each (BENCH_WARMUP_BATCHES), so every isolate has compiled the route.
  for (let k = 0; k < WARMUP_BATCHES; k++) for (const w of workers) await batch(kind, w, run.state, count);
  if (kind.copies) for (const w of workers) await waitCopies(w);
  const orders = permutations(workers.map((w) => w.who));
  run.diff.push([]);
  run.aa.push([]);
  run.diffMain.push([]);
  run.aaMain.push([]);
  run.a2Floor.push([]);
  run.a2FloorMain.push([]);
  for (let s = 0; s < SETS_PER_ROUND; s++, run.set++) {
    const got = {};
    const main = {};
    for (const who of orders[run.set % orders.length]) {
      const b = await batch(kind, subjects[who], run.state, count);
      got[who] = b.cpuMsPerRequest;
      main[who] = b.mainMsPerRequest;
      run.perWorker[who].cpu.push(b.cpuMsPerRequest);
      run.perWorker[who].main.push(b.mainMsPerRequest);
      run.perWorker[who].latencies.push(...b.latencies);
      run.late += b.late;
      run.timedOut += b.timedOut ? 1 : 0;
    }
    if (kind.floor) {
      run.diff[round].push(got.B - got.A);
      run.diffMain[round].push(main.B - main.A);
      run.a2Floor[round].push(got.A2 - got.B);
      run.a2FloorMain[round].push(main.A2 - main.B);
    }
    run.aa[round].push(got.A2 - got.A);
    run.aaMain[round].push(main.A2 - main.A);
  }
}

/**
 * The verdict on "fluxgate - floor <= limit". The resolution is how far the
 * A/A calibration's interval (medianInterval: with up to seven rounds, the
 * range of its round medians) strays from zero. While it is within the
 * limit: met when the upper end of the difference's interval is under the
 * limit. When it is wider: the median decides, once it is further from the
 * limit than the resolution (NOT met above, met below); nearer, it is
 * within resolution. Summaries without an interval use their range.
 */
export function verdict(difference, aa, limit) {
  const resolution = Math.max(Math.abs(aa.low ?? aa.min), Math.abs(aa.high ?? aa.max));
  if (resolution > limit) {
    if (difference.median > limit + resolution) return "NOT met";
    if (difference.median < limit - resolution) return "met";
    return "within resolution";
  }
  return (difference.high ?? difference.max) <= limit ? "met" : "NOT met";
}

/**
 * A latency's A/A: the widest spread, as the larger figure over the smaller,
 * of the groups of figures given (each build's runs of the phase, the
 * reference's two instances); 1 when no group has two figures.
 */
export function latencyCalibration(...groups) {
  const spread = (figures) => {
    const valid = figures.filter((x) => Number.isFinite(x) && x > 0);
    return valid.length < 2 ? 1 : Math.max(...valid) / Math.min(...valid);
  };
  return Math.max(1, ...groups.map(spread));
}

/**
 * The verdict on "fluxgate's latency at most (1 + slack) times the
 * reference's": `verdict` on the logarithms, the ratio as the difference and
 * the A/A (latencyCalibration) as its calibration either way. While the A/A
 * is within the slack, met when the ratio is; when it is wider, NOT met only
 * above (1 + slack) times the A/A, met only under (1 + slack) over it, and
 * within resolution between.
 */
export function latencyVerdict(ratio, aa, slack) {
  const difference = Math.log(ratio);
  const resolution = Math.log(Math.max(1, aa));
  return verdict(
    { median: difference, min: difference, max: difference },
    { min: -resolution, max: resolution },
    Math.log(1 + slack),
  );
}
