// Renders the results as aligned text tables (stdout) or Markdown (LATEST.md).
import { intervalCoverage, median, verdict } from "./paired.mjs";
import { WORKER_GROUPS } from "./worker-share.mjs";

const fixed = (digits) => (v) => (v == null || !Number.isFinite(v) ? "-" : v.toFixed(digits));
const ms = fixed(2);
const ratio = (v) => `${fixed(2)(v)}x`;
const int = (v) => (v == null ? "-" : Math.round(v).toLocaleString("en-US"));
const kb = (bytes) => `${fixed(1)(bytes / 1000)} KB`;
const mb = (bytes) => `${fixed(2)(bytes / 1e6)} MB`;
const mb1 = (bytes) => fixed(1)(bytes / 1e6);
const size = (bytes) => (bytes >= 1e6 ? mb(bytes) : kb(bytes));

function table(columns, rows) {
  return { columns: columns.map((c) => (typeof c === "string" ? { title: c, right: true } : c)), rows };
}

const left = (title) => ({ title, right: false });

const signed = (digits) => (v) => (v == null || !Number.isFinite(v) ? "-" : `${v >= 0 ? "+" : ""}${v.toFixed(digits)}`);
const sms = signed(3);
const range = (lo, hi, f = sms) => `${f(lo)} .. ${f(hi)}`;
const load3 = (l) => (Array.isArray(l) ? l.map(fixed(2)).join(" / ") : fixed(2)(l));

/** What the reference build is: revision, commit, subject and date; or why there is none. */
function referenceLine(ref) {
  if (!ref) return "none";
  const what = ref.sha
    ? `${ref.rev} = ${ref.sha.slice(0, 12)}, "${ref.subject}" (committed ${ref.date})`
    : ref.rev;
  if (ref.error) return `${what}: no reference build, ${ref.error}`;
  const built = ref.cached ? `cached in ${ref.dir}` : `built in this run in ${fixed(0)(ref.buildSeconds)} s, cached in ${ref.dir}`;
  return `${what}; worker-build --release of that revision's tree, ${built}`;
}

function runSection(r) {
  const e = r.environment;
  const notes = [
    `started ${r.startedAt}, took ${fixed(0)(r.runSeconds)} s`,
    `node ${e.node}, ${e.cpus} CPUs, miniflare ${e.miniflare}, autocannon ${e.autocannon}, loopback only`,
    `load average (1 / 5 / 15 min) ${load3(e.loadAverageAtStart)} at start, ${load3(e.loadAverageAtEnd)} at end (other processes on the machine skew every figure)`,
    `a fixed loop took ${fixed(0)(e.cpuProbeMsAtStart)} ms of CPU at start, ${fixed(0)(e.cpuProbeMsAtEnd)} ms at end (how fast a core was)`,
    `CPU per request: ${e.cpuSource}; ${r.paired ? r.paired.rounds : "-"} rounds (asked ${e.rounds}; at least ${e.minRounds}, more while within ${e.pairedBudgetSeconds} s) x ${e.setsPerRound} sets per kind`,
  ];
  if (r.health) {
    notes.push(`autocannon: each phase runs ${e.latencyRunsPerBuild} times per build (fluxgate, and the reference in two instances when there is one), interleaved, ${e.latencyRunSeconds} s a run (GET /health ${e.healthRunSeconds} s; GET /image ~2 MB at 32 connections ${e.phaseSeconds} s), after ${e.warmupSeconds} s warm-up per build; latencies are per response, 2xx only`);
  }
  return { title: "Run", notes };
}

function pairedSection(r) {
  if (!r.paired) return null;
  const measured = r.paired.kinds.filter((k) => !k.skipped);
  const skipped = r.paired.kinds.filter((k) => k.skipped);
  const byKey = Object.fromEntries((r.targets ?? []).map((t) => [t.name, t]));
  const rows = measured.map((k) => {
    const t = byKey[`CPU: ${k.name}, fluxgate - floor`];
    return [
      k.name,
      k.batch,
      ms(k.fluxgate.cpuMsPerRequest),
      k.floor ? ms(k.floorWorker.cpuMsPerRequest) : "-",
      k.floor ? sms(k.difference.median) : "-",
      k.floor ? range(k.difference.min, k.difference.max) : "-",
      sms(k.aa.median),
      range(k.aa.min, k.aa.max),
      k.targetMs == null ? "-" : `<= ${k.targetMs}`,
      t ? t.result : "-",
    ];
  });
  const latencyRows = measured.map((k) => [
    k.name,
    ms(k.fluxgate.p50Ms),
    ms(k.fluxgate.p99Ms),
    k.floor ? ms(k.floorWorker.p50Ms) : "-",
    k.floor ? ms(k.floorWorker.p99Ms) : "-",
  ]);
  const notes = [
    `each round starts new Miniflare instances of fluxgate, of fluxgate again (A/A) and of the floor (bench/floor-worker.mjs), warms each kind up with ${(r.paired.warmupBatches ?? 1) === 1 ? "one batch" : `${r.paired.warmupBatches} batches`} per instance, then measures it in sets`,
    "each set: a batch of k requests, one at a time, to each instance, in an order rotated through all six from set to set",
    "a batch's CPU: its workerd process's CPU time from before the first request until the process is quiet again (waitUntil copies into R2 included: for kinds that copy, the pending: index is checked after the CPU is read and copies still running are waited for and charged), / k",
    "k: requests per batch; fluxgate, floor: median CPU per request over the batches",
    "difference = fluxgate - floor per set, median over all sets; range = lowest .. highest per-round median; A/A = fluxgate again - fluxgate, the same way: the resolution of the method",
    "met: the range's upper end is under the target and the A/A range within it; when the A/A range strays further from zero than the target, the median decides once it is further from the target than the A/A range strays (NOT met above, met below), and is within resolution nearer; from eight rounds on, both ranges leave out their most outlying rounds (see the targets' notes)",
    `idle CPU of a new instance, median, ms per second: ${Object.entries(r.paired.idleMsPerSecond).map(([w, v]) => `${w} ${fixed(2)(v)}`).join(", ")}; a batch ends once its process used at most ${fixed(2)(r.environment.quietNs / 1e6)} ms (or 3x its idle use) over ${r.environment.quietMs} ms`,
    ...measured.filter((k) => k.lateCopyChecks || k.quietTimeouts).map((k) => `${k.name}: ${k.lateCopyChecks} batch(es) whose copies were still running when the process looked quiet, ${k.quietTimeouts} that never went quiet`),
    ...skipped.map((k) => `not measured yet: ${k.name}: ${k.skipped}`),
  ];
  return {
    title: `CPU per request, paired: fluxgate vs the floor and vs itself (A/A), ms (${fixed(0)(r.paired.seconds)} s)`,
    tables: [
      table(
        [left("kind"), "k", "fluxgate", "floor", "diff median", "diff range", "A/A median", "A/A range", "target", left("result")],
        rows,
      ),
      table([left("kind (same batches, one request at a time)"), "fluxgate p50 ms", "fluxgate p99 ms", "floor p50 ms", "floor p99 ms"], latencyRows),
      ...threadTables(measured),
    ],
    notes: [...notes, ...threadNotes(measured)],
  };
}

/** The same differences split by thread: workerd's main thread, and V8's helper threads (the rest). */
function threadTables(kinds) {
  const split = kinds.filter((k) => k.floor && k.mainThread?.difference);
  if (!split.length) return [];
  const rows = split.map((k) => [
    k.name,
    ms(k.fluxgate.mainMsPerRequest),
    ms(k.floorWorker.mainMsPerRequest),
    sms(k.mainThread.difference.median),
    range(k.mainThread.difference.min, k.mainThread.difference.max),
    range(k.mainThread.aa.min, k.mainThread.aa.max),
    sms(k.mainThread.helpers.median),
    range(k.mainThread.helpers.min, k.mainThread.helpers.max),
  ]);
  return [
    table(
      [left("kind, by thread"), "fluxgate main", "floor main", "main diff", "main diff range", "main A/A range", "helpers diff", "helpers diff range"],
      rows,
    ),
  ];
}

function threadNotes(kinds) {
  if (!kinds.some((k) => k.floor && k.mainThread?.difference)) return [];
  return [
    "by thread: main = workerd's main thread alone (the event loop: the requests' JavaScript and wasm, and Miniflare's local KV and R2); helpers = the rest of the process, V8's helper threads (compiling code up a tier, concurrent garbage collection); the two add up to the figures above",
  ];
}

function tieredSection(r) {
  if (!r.tiered) return null;
  const rows = r.tiered.kinds
    .filter((k) => !k.skipped)
    .map((k) => [
      k.name,
      k.batch,
      ms(k.fluxgate.cpuMsPerRequest),
      ms(k.floorWorker.cpuMsPerRequest),
      sms(k.difference.median),
      range(k.difference.min, k.difference.max),
      sms(k.aa.median),
      range(k.aa.min, k.aa.max),
      k.targetMs == null ? "-" : `<= ${k.targetMs}`,
      k.targetMs == null ? "-" : verdict(k.difference, k.aa, k.targetMs),
    ]);
  return {
    title: `CPU per request, paired, the wasm tiered up (V8 ${r.tiered.v8Flags}), ms (${fixed(0)(r.tiered.seconds)} s)`,
    tables: [table([left("kind"), "k", "fluxgate", "floor", "diff median", "diff range", "A/A median", "A/A range", "target", left("result")], rows)],
    notes: [
      "the same measurement as above, with every wasm function compiled by TurboFan from the start: V8 otherwise runs wasm in its baseline tier (Liftoff) and moves a function up only after it has run for a while, so the figures above are those of an isolate whose per-request code is still mostly baseline code, these of a busy, long-lived one whose code has tiered up",
      "the targets are judged on the figures above; these say how much of the difference is the tier the wasm runs in",
    ],
  };
}

function stackSection(r) {
  if (!r.stack?.length) return null;
  const rows = [];
  const notes = [];
  for (const phase of r.stack) {
    if (phase.error) {
      notes.push(phase.error);
      continue;
    }
    for (const k of phase.kinds.filter((k) => !k.skipped)) {
      rows.push([
        k.name,
        phase.variant,
        k.batch,
        ms(k.floorWorker.cpuMsPerRequest),
        ms(k.fluxgateAgain.cpuMsPerRequest),
        ms(k.fluxgate.cpuMsPerRequest),
        sms(k.a2Floor.median),
        range(k.a2Floor.min, k.a2Floor.max),
        sms(k.mainThread.a2Floor?.median),
        sms(-k.aa.median),
        range(-k.aa.max, -k.aa.min),
        sms(-k.mainThread.aa.median),
      ]);
    }
    const st = phase.start;
    rows.push([
      "start: new Miniflare -> first answer",
      phase.variant,
      "-",
      ms(st.medianFloorMs),
      ms(median(st.fluxgateAgainMs)),
      ms(st.medianFluxgateMs),
      sms(st.a2Floor.median),
      range(st.a2Floor.min, st.a2Floor.max, signed(1)),
      "-",
      sms(-st.aa.median),
      range(-st.aa.max, -st.aa.min, signed(1)),
      "-",
    ]);
    notes.push(`${phase.variant}: ${phase.rounds} rounds in ${fixed(0)(phase.seconds)} s; wasm ${int(phase.wasmBytes)} B raw, ${int(phase.wasmGzipBytes)} B gzip -9`);
  }
  return {
    title: "The stack's own share: the floor in Rust (bench/floor-rs/), paired, ms",
    tables: rows.length
      ? [table([left("kind"), left("floor in Rust"), "k", "floor", "floor in Rust", "fluxgate", "Rust floor - floor", "range", "main thread", "fluxgate - Rust floor", "range", "main thread"], rows)]
      : [],
    notes: [
      "floor in Rust: the floor's KV, R2 and fetch calls made from Rust (bench/floor-rs/, built as fluxgate is: worker-build --release, the same profile and flags, scripts/optimize-wasm.sh), checked before measuring to make the floor's calls for a generation; stock: through the worker crate's own API, as its documentation shows; lean: through fluxgate's own paths to the runtime (its src/edge/{promise,kv,r2}.rs compiled in, fetches and bodies as src/edge/net.rs makes them)",
      "floor in Rust - floor: what the stack (Rust, wasm-bindgen, the worker crate) costs for those calls alone, written that way; fluxgate - floor in Rust: what fluxgate's own code costs on top (its checks and features)",
      "measured as the paired section above, with the floor in Rust as the second build; its resolution is that section's A/A; main thread: the same difference (median) on workerd's main thread alone, the rest being V8's helper threads (compiling the wasm up a tier as a new isolate warms up)",
      ...notes,
    ],
  };
}

export function shareSection(r) {
  const sh = r.share;
  if (!sh) return null;
  const title = "The worker's share of the main thread, sampled (bench/worker-share.mjs), ms per generation";
  if (sh.error) return { title, notes: [`not measured: ${sh.error}`] };
  // The worker's share by its groups (own instructions, crossing, the
  // runtime under its calls), then the rest of the main thread.
  const row = (label, { a, b }) => {
    const [own, crossing, runtime] = WORKER_GROUPS.map((g) => sms(a.groups[g] - b.groups[g]));
    const rest = a.main - a.share - (b.main - b.share);
    return [label, ms(a.share), ms(b.share), sms(a.share - b.share), own, crossing, runtime, sms(rest), sms(a.main - b.main)];
  };
  return {
    title,
    tables: [
      table(
        [left("comparison"), "fluxgate share", "other share", "share diff", "own instructions", "crossing", "runtime under calls", "rest of main thread", "whole main thread"],
        [
          row("fluxgate - floor", sh.floor),
          ...(sh.lean ? [row("fluxgate - floor in Rust (lean)", sh.lean)] : []),
          row("fluxgate - fluxgate (A/A)", sh.aa),
        ],
      ),
    ],
    notes: [
      `perf samples of workerd's main thread (V8's perf map naming the wasm and the JavaScript; fluxgate built with its names, as shipped otherwise, in target/bench-named/), ${sh.generations} generations on each of ${sh.isolates} new isolates a side after ${sh.warmup}, the sides' isolates interleaved; ${fixed(0)(sh.seconds)} s`,
      "share: the samples with the worker's code on the stack: its own instructions (wasm, or the floor's JavaScript), crossing between wasm and JavaScript (the glue's JavaScript, V8's wasm builtins entered from wasm), the runtime under its calls; the rest of the main thread: Miniflare's local KV, R2 and entry, the event loop, I/O and the simulators' storage (on Cloudflare not on the worker's thread)",
      "share diff is far steadier than the whole thread (the A/A row is its resolution); the CPU target is judged on the paired figures above, this is the closer estimate of what a generation costs the worker's own thread",
      "fluxgate - floor in Rust (lean): what fluxgate's own code adds on the stack's leanest known way of making the floor's calls (bench/floor-rs/, the same build as the stack's section above, with its names)",
    ],
  };
}

function sizeSection(r) {
  const s = r.size;
  const rows = [
    ["build/index_bg.wasm raw", `${int(s.wasmBytes)} B (${kb(s.wasmBytes)})`],
    ["build/index_bg.wasm gzip -9", `${int(s.wasmGzipBytes)} B (${kb(s.wasmGzipBytes)})`],
    ["build/index.js raw", `${int(s.jsBytes)} B (${kb(s.jsBytes)})`],
    ["build/index.js gzip -9", `${int(s.jsGzipBytes)} B (${kb(s.jsGzipBytes)})`],
  ];
  const notes = [];
  if (r.start) {
    const st = r.start;
    rows.push(
      [`fluxgate: new Miniflare -> first /health answer, median of ${st.rounds} rounds`, `${ms(st.medianFluxgateMs)} ms`],
      [`floor: new Miniflare -> first /health answer, median of ${st.rounds} rounds`, `${ms(st.medianFloorMs)} ms`],
      ["fluxgate - floor: median (range over rounds)", `${sms(st.difference.median)} ms (${range(st.difference.min, st.difference.max, signed(1))})`],
      ["A/A, fluxgate again - fluxgate: median (range)", `${sms(st.aa.median)} ms (${range(st.aa.min, st.aa.max, signed(1))})`],
    );
    if (st.workerdCpuDifference) {
      const cpu = (d) => `${sms(d.median)} ms (${range(d.min, d.max, signed(1))})`;
      rows.push(
        ["CPU of a start, fluxgate - floor: workerd (the runtime)", cpu(st.workerdCpuDifference)],
        ["CPU of a start, fluxgate - floor: Miniflare (Node)", cpu(st.miniflareCpuDifference)],
      );
    }
    notes.push(
      `the paired rounds' starts, after two unmeasured starts of each build: in each round every build starts ${st.startsPerRound} times (fluxgate, fluxgate again, floor, in a rotated order, repeated), a round's figure per build is the median of its starts; range over rounds`,
      `per round, fluxgate ${st.fluxgateMs.map(fixed(1)).join(", ")} ms; again ${st.fluxgateAgainMs.map(fixed(1)).join(", ")} ms; floor ${st.floorMs.map(fixed(1)).join(", ")} ms`,
    );
  }
  const tables = [table([left("measure"), "value"], rows)];
  if (r.startSteps) {
    const step = (v) => (v == null ? "-" : signed(1)(v));
    tables.push(
      table(
        [
          left("start, step by step (bench/start-steps.mjs)"),
          "median ms",
          "this step ms",
          "workerd CPU ms",
          "this step",
          "Miniflare CPU ms",
          "this step",
          left("each start, ms"),
        ],
        r.startSteps.map((s) => [
          s.name,
          ms(s.medianMs),
          step(s.stepMs),
          fixed(1)(s.workerdCpuMs),
          step(s.workerdCpuStepMs),
          fixed(1)(s.miniflareCpuMs),
          step(s.miniflareCpuStepMs),
          s.ms.map(fixed(0)).join(", "),
        ]),
      ),
    );
    notes.push(
      "each step is the one above plus one thing, the steps interleaved in each round; a step's figure is the difference of medians",
      "CPU of a start, from new Miniflare to the first answer: workerd = the new workerd process (loading the modules, decoding and validating the wasm, compiling what the first answer runs); Miniflare = its JavaScript in the bench's own process (building workerd's configuration, with every module's bytes in it). Only workerd's part has a counterpart on Cloudflare, where the bundle is uploaded once, at deploy",
    );
  }
  return { title: "Size and start", tables, notes };
}

/** The builds a phase ran on, with their figures: [["fluxgate", m], ["reference", m]?, ["reference again", m]?]. */
const builds = (fluxgate, reference, again) => [
  ["fluxgate", fluxgate],
  ...(reference ? [["reference", reference]] : []),
  ...(again ? [["reference again", again]] : []),
];

function healthSection(r) {
  if (!r.health) return null;
  return {
    title: "Throughput: GET /health (a route with no I/O: workerd + Miniflare + wasm entry)",
    tables: [
      table(
        [left("build"), "conc", "requests", "failed", "req/s", "p50 ms", "p99 ms"],
        r.health.flatMap((p) =>
          builds(p.fluxgate, p.reference, p.referenceAgain).map(([b, m]) => [b, p.connections, int(m.ok), int(m.failed), int(m.rps), ms(m.p50), ms(m.p99)]),
        ),
      ),
    ],
    notes: ["each build's figures: requests and failed summed over its runs, req/s the median of its runs, p50 and p99 over the answers of all its runs"],
  };
}

function generationSection(r) {
  if (!r.generation) return null;
  const g = r.generation;
  const row = (path, conc, m) => [path, conc, int(m.ok), int(m.failed), int(m.rps), ms(m.p50), ms(m.p99)];
  const rows = g.phases.flatMap((p) => [
    row("emulator direct", p.connections, p.direct),
    ...builds(p.worker, p.reference, p.referenceAgain).map(([b, m]) => row(`through ${b}`, p.connections, m)),
  ]);
  return {
    title: "Generation overhead: POST /generate vs. the same create sent straight to the emulator",
    tables: [
      table([left("path"), "conc", "requests", "failed", "req/s", "p50 ms", "p99 ms"], rows),
      table(
        ["conc", left("pct"), "direct ms", "fluxgate ms", "difference ms", "ratio"],
        g.overhead.map((o) => [o.connections, o.percentile, ms(o.directMs), ms(o.workerMs), ms(o.differenceMs), ratio(o.ratio)]),
      ),
    ],
    notes: [
      `input ${JSON.stringify(g.input)}; emulator predict time 0 ms; output ${g.contentType} of ${size(g.outputBytes)}`,
      "emulator direct: one run per concurrency, before the builds' interleaved runs; the overhead is fluxgate's figure (the median of its runs) against it",
      "after each run through a build, its copies into R2 are waited for (the pending: index where the build keeps one, then its workerd and the emulator quiet together)",
    ],
  };
}

function imageSection(r) {
  if (!r.images) return null;
  const { items, phases, memory } = r.images;
  const row = (p, server, m, comparison) => [
    p.label, size(p.bytes), server, p.connections, int(m.ok), int(m.failed), int(m.rps),
    ms(m.p50), ms(m.p99), fixed(1)(m.bytesPerSec / 1e6), fixed(0)(m.loaderCpuPercent), comparison,
  ];
  const rows = phases.flatMap((p) => [
    row(p, "fluxgate", p.worker, ratio(p.throughputRatio)),
    ...(p.reference ? [row(p, "reference", p.reference, ratio(p.referenceThroughputRatio))] : []),
    row(p, "static", p.static, ""),
  ]);
  const rss = phases.flatMap((p) => builds(p.worker, p.reference).map(([b, m]) => [`${b} ${p.label} c${p.connections}`, m]));
  const differentBytes = phases.filter((p) => p.referenceBytes != null && p.referenceBytes !== p.bytes);
  return {
    title: "Image serving: GET /image/{id} vs. a static file server (same bytes, same run)",
    tables: [
      table(
        [left("image"), "bytes", left("server"), "conc", "requests", "failed", "req/s", "p50 ms", "p99 ms", "MB/s", "loader CPU %", "server/static"],
        rows,
      ),
      table(
        [left("workerd RSS during"), "start MB", "peak MB", "growth MB"],
        rss
          .filter(([, m]) => m.rssPeakBytes != null)
          .map(([what, m]) => [what, mb1(m.rssStartBytes), mb1(m.rssPeakBytes), mb1(m.rssPeakBytes - m.rssStartBytes)]),
      ),
    ],
    notes: [
      ...items.map((i) => `${i.label}: ${i.contentType}, ${int(i.bytes)} B, input ${JSON.stringify(i.input)}`),
      "each build serves the images generated through it, from its own R2; the static server, fluxgate's bytes; it runs once per phase, after the builds' interleaved runs",
      ...differentBytes.map((p) => `${p.label} c${p.connections}: the reference's image is ${int(p.referenceBytes)} B, not ${int(p.bytes)} B`),
      "loader CPU %: the load generator's own CPU (100 = one core); near 100 it, not the server, limits the rate",
      `fluxgate workerd RSS: ${mb1(memory.rssBeforeBytes)} MB before the image phases, ${mb1(memory.rssAfterBytes)} MB after; RSS during a phase: lowest start and highest peak over the build's runs`,
    ],
  };
}

export function targetSection(r) {
  const value = (t) => (t.unit === "KB" ? `${fixed(2)(t.value)} KB` : `${sms(t.value)} ms`);
  const rows = r.targets.map((t) => [
    t.name,
    value(t),
    t.range ? range(...t.range) : "-",
    t.aa ? range(...t.aa) : "-",
    `<= ${t.limit} ${t.unit}`,
    t.result,
  ]);
  const runsOf = (name, build) => (r.latency?.[name]?.[build]?.runs ?? []);
  const latencyRows = (r.latencyTargets ?? []).map((t) => [
    t.name,
    t.pct,
    ms(t.now),
    ms(t.before),
    t.again == null ? "-" : ms(t.again),
    t.ratio == null ? "-" : ratio(t.ratio),
    t.aa == null ? "-" : ratio(t.aa),
    t.result,
    t.floorMs == null ? "-" : ms(t.floorMs),
    t.floorRatio == null ? "-" : ratio(t.floorRatio),
    runsOf(t.name, "fluxgate").map((x) => ms(x[t.pct])).join(" / ") || "-",
    runsOf(t.name, "reference").map((x) => ms(x[t.pct])).join(" / ") || "-",
  ]);
  const tables = [table([left("target"), "figure", "range", "A/A range", "limit", left("result")], rows)];
  const notes = r.targets
    .filter((t) => t.interval)
    .map(
      (t) =>
        `${t.name}: over ${t.rounds} rounds the result reads the rounds without the ${t.dropped} lowest and ${t.dropped} highest, which hold the median of rounds in ${Math.round(intervalCoverage(t.rounds, t.dropped + 1) * 100)}% of runs: ${range(...t.interval)} (A/A ${range(...t.aaInterval)})`,
    );
  if (latencyRows.length) {
    tables.push(
      table(
        [
          left("latency (autocannon)"),
          left("pct"),
          "fluxgate ms",
          "reference ms",
          "reference again ms",
          "fluxgate/reference",
          "A/A",
          left("result"),
          "floor ms",
          "floor/reference",
          "fluxgate runs",
          "reference runs",
        ],
        latencyRows,
      ),
    );
    const ref = r.reference;
    notes.push(
      `latency: fluxgate against the reference build, ${referenceLine(ref)}`,
      ref && !ref.error
        ? `both measured in this run, each in its own Miniflare on the same emulator, the reference in two (reference again: its second), every phase run ${r.environment.latencyRunsPerBuild} times per build, interleaved (fluxgate, reference, reference again, then the other way round, the order reversed from one phase to the next), so that the machine's drift weighs on all alike; a build's p50 and p99 are taken over the answers of all its runs together (each run's own listed, in the run order of that build)`
        : "without a reference build the phases ran on fluxgate alone, and no latency target is judged",
      `met: fluxgate's figure at most ${fixed(0)(r.environment.latencySlack * 100)}% above the reference's (BENCH_LATENCY_SLACK); A/A, the resolution: the reference again against the reference, or one build's runs of the phase against each other, the larger over the smaller, whichever pair came furthest apart; when it is wider than the slack, NOT met only above (1 + slack) times it, met only under (1 + slack) over it, and within resolution between (the CPU verdict's rule, on ratios)`,
      "floor: bench/floor-worker.mjs, fluxgate's KV, R2 and fetch calls per generation in plain JavaScript, measured in the same interleaved runs of the POST /generate phases (fluxgate, reference, floor, then the other way round): its latency over the reference's is what the calls cost, whatever the code making them",
    );
  }
  return { title: "Targets", tables, notes };
}

function sections(results) {
  return [runSection, targetSection, pairedSection, tieredSection, stackSection, shareSection, sizeSection, healthSection, generationSection, imageSection]
    .map((s) => s(results))
    .filter(Boolean);
}

function widths({ columns, rows }) {
  return columns.map((c, i) => Math.max(c.title.length, ...rows.map((row) => String(row[i]).length)));
}

function textTable(t) {
  const w = widths(t);
  const line = (cells) =>
    cells
      .map((cell, i) => (t.columns[i].right ? String(cell).padStart(w[i]) : String(cell).padEnd(w[i])))
      .join("  ")
      .trimEnd();
  return [line(t.columns.map((c) => c.title)), w.map((n) => "-".repeat(n)).join("  "), ...t.rows.map(line)];
}

function markdownTable(t) {
  const w = widths(t).map((n) => Math.max(n, 3));
  const line = (cells) =>
    `| ${cells.map((cell, i) => (t.columns[i].right ? String(cell).padStart(w[i]) : String(cell).padEnd(w[i]))).join(" | ")} |`;
  const rule = `|${w.map((n, i) => (t.columns[i].right ? `${"-".repeat(n + 1)}:` : `:${"-".repeat(n + 1)}`)).join("|")}|`;
  return [line(t.columns.map((c) => c.title)), rule, ...t.rows.map(line)];
}

export function renderText(results) {
  const out = ["fluxgate benchmark", ""];
  for (const s of sections(results)) {
    out.push(`== ${s.title}`, "");
    for (const t of s.tables ?? []) out.push(...textTable(t).map((l) => `  ${l}`), "");
    if (s.notes) out.push(...s.notes.map((n) => `  ${n}`), "");
  }
  return out.join("\n");
}

export function renderMarkdown(results) {
  const out = [
    "# fluxgate benchmark: latest results",
    "",
    "Written by `npm run bench` (bench/run.mjs); the full figures are in `latest.json` beside this file (not committed).",
    "",
  ];
  for (const s of sections(results)) {
    out.push(`## ${s.title}`, "");
    for (const t of s.tables ?? []) out.push(...markdownTable(t), "");
    if (s.notes) out.push(...s.notes.map((n) => `- ${n}`), "");
  }
  return out.join("\n");
}
