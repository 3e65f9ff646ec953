// Renders the results as aligned text tables (stdout) or Markdown (LATEST.md).

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

function runSection(r) {
  const e = r.environment;
  return {
    title: "Run",
    notes: [
      `started ${r.startedAt}, took ${fixed(0)(r.runSeconds)} s`,
      `node ${e.node}, ${e.cpus} CPUs, miniflare ${e.miniflare}, autocannon ${e.autocannon}, loopback only`,
      `1-minute load average ${fixed(2)(e.loadAverageAtStart)} at start, ${fixed(2)(e.loadAverageAtEnd)} at end (other processes on the machine skew every figure)`,
      `${e.phaseSeconds} s per measured phase after ${e.warmupSeconds} s warm-up; latencies are per response, 2xx only`,
    ],
  };
}

function sizeSection(r) {
  const s = r.size;
  const { runs, medianReadyMs, medianFirstAnswerMs } = r.start;
  return {
    title: "Size and start",
    tables: [
      table(
        [left("measure"), "value"],
        [
          ["build/index_bg.wasm raw", `${int(s.wasmBytes)} B (${kb(s.wasmBytes)})`],
          ["build/index_bg.wasm gzip -9", `${int(s.wasmGzipBytes)} B (${kb(s.wasmGzipBytes)})`],
          ["build/index.js raw", `${int(s.jsBytes)} B (${kb(s.jsBytes)})`],
          ["build/index.js gzip -9", `${int(s.jsGzipBytes)} B (${kb(s.jsGzipBytes)})`],
          [`new Miniflare -> ready, median of ${runs.length}`, `${ms(medianReadyMs)} ms`],
          [`new Miniflare -> first /health answer, median of ${runs.length}`, `${ms(medianFirstAnswerMs)} ms`],
        ],
      ),
    ],
    notes: [`first /health answer per start: ${runs.map((x) => `${ms(x.firstAnswerMs)} ms`).join(", ")}`],
  };
}

function healthSection(r) {
  return {
    title: "Baseline: GET /health (a route with no I/O: workerd + Miniflare + wasm entry)",
    tables: [
      table(
        ["conc", "requests", "failed", "req/s", "p50 ms", "p99 ms", "CPU/req ms"],
        r.health.map((p) => [p.connections, int(p.ok), int(p.failed), int(p.rps), ms(p.p50), ms(p.p99), ms(p.cpuPerRequestMs)]),
      ),
    ],
  };
}

function generationSection(r) {
  const g = r.generation;
  const rows = g.phases.flatMap((p) => [
    ["emulator direct", p.connections, int(p.direct.ok), int(p.direct.failed), int(p.direct.rps), ms(p.direct.p50), ms(p.direct.p99)],
    ["through worker", p.connections, int(p.worker.ok), int(p.worker.failed), int(p.worker.rps), ms(p.worker.p50), ms(p.worker.p99)],
  ]);
  const failedCopies = g.phases.reduce((sum, p) => sum + p.worker.failedCopies, 0);
  return {
    title: "Generation overhead: POST /generate vs. the same create sent straight to the emulator",
    tables: [
      table([left("path"), "conc", "requests", "failed", "req/s", "p50 ms", "p99 ms"], rows),
      table(
        ["conc", left("pct"), "direct ms", "worker ms", "difference ms", "ratio"],
        g.overhead.map((o) => [o.connections, o.percentile, ms(o.directMs), ms(o.workerMs), ms(o.differenceMs), ratio(o.ratio)]),
      ),
    ],
    notes: [
      `input ${JSON.stringify(g.input)}; emulator predict time 0 ms; output ${g.contentType} of ${size(g.outputBytes)}`,
      `copies into R2 that failed: ${failedCopies}`,
    ],
  };
}

function imageSection(r) {
  const { items, phases, memory } = r.images;
  const row = (p, server, m, comparison) => [
    p.label, size(p.bytes), server, p.connections, int(m.ok), int(m.failed), int(m.rps),
    ms(m.p50), ms(m.p99), fixed(1)(m.bytesPerSec / 1e6), fixed(0)(m.loaderCpuPercent), comparison,
  ];
  const rows = phases.flatMap((p) => [row(p, "worker", p.worker, ratio(p.throughputRatio)), row(p, "static", p.static, "")]);
  return {
    title: "Image serving: GET /image/{id} vs. a static file server (same bytes, same run)",
    tables: [
      table(
        [left("image"), "bytes", left("server"), "conc", "requests", "failed", "req/s", "p50 ms", "p99 ms", "MB/s", "loader CPU %", "worker/static"],
        rows,
      ),
      table(
        [left("workerd RSS during"), "start MB", "peak MB", "growth MB"],
        [
          ...phases.map((p) => [`fluxgate ${p.label} c${p.connections}`, p.worker]),
          ...r.floor.images.map((f) => [`floor worker ${f.label} c1`, f]),
        ].map(([what, m]) => [what, mb1(m.rssStartBytes), mb1(m.rssPeakBytes), mb1(m.rssPeakBytes - m.rssStartBytes)]),
      ),
    ],
    notes: [
      ...items.map((i) => `${i.label}: ${i.contentType}, ${int(i.bytes)} B, input ${JSON.stringify(i.input)}`),
      "loader CPU %: the load generator's own CPU (100 = one core); near 100 it, not the server, limits the rate",
      `fluxgate workerd RSS: ${mb1(memory.rssBeforeBytes)} MB before the image phases, ${mb1(memory.rssAfterBytes)} MB after`,
      `buffering whole bodies at concurrency 32 would hold about ${fixed(0)((32 * Math.max(...items.map((i) => i.bytes))) / 1e6)} MB more`,
    ],
  };
}

function floorSection(r) {
  const { floor } = r;
  const atOne = (phases) => phases.find((p) => p.connections === 1);
  const pairs = [
    ["GET /health", floor.health, atOne(r.health)],
    ["POST /generate (incl. copy to R2)", floor.generate, atOne(r.generation.phases).worker],
    ...floor.images.map((f) => [`GET /image ${f.label}`, f, atOne(r.images.phases.filter((p) => p.label === f.label)).worker]),
  ];
  const direct = atOne(r.generation.phases).direct;
  return {
    title: "Floor: bench/floor-worker.mjs, plain JS making the same platform calls, same Miniflare setup, concurrency 1",
    tables: [
      table(
        [left("route"), "floor p50 ms", "fluxgate p50 ms", "floor CPU/req ms", "fluxgate CPU/req ms", "fluxgate - floor CPU ms"],
        pairs.map(([route, f, w]) => [route, ms(f.p50), ms(w.p50), ms(f.cpuPerRequestMs), ms(w.cpuPerRequestMs), ms(w.cpuPerRequestMs - f.cpuPerRequestMs)]),
      ),
    ],
    notes: [
      `floor overhead on POST /generate (floor - emulator direct): p50 ${ms(floor.generate.p50 - direct.p50)} ms, p99 ${ms(floor.generate.p99 - direct.p99)} ms`,
      "what the floor costs is workerd, Miniflare's entry worker and its KV/R2 simulators; the difference is fluxgate's own code",
    ],
  };
}

function cpuSection(r) {
  const row = (route, conc, p) => [route, conc, int(p.ok), int(p.cpuMs), ms(p.cpuPerRequestMs)];
  const rows = [
    ...r.health.map((p) => row("GET /health", p.connections, p)),
    ...r.generation.phases.map((p) => row("POST /generate (incl. copy to R2)", p.connections, p.worker)),
    row("POST /generate (incl. copy to R2)", "all", r.cpu.generate),
    ...r.images.phases.map((p) => row(`GET /image ${p.label}`, p.connections, p.worker)),
    row("GET /image", "all", r.cpu.image),
    ...r.images.phases.map((p) => row(`static server ${p.label} (its own process)`, p.connections, p.static)),
  ];
  return {
    title: "CPU per request (process utime + stime, 10 ms ticks, / 2xx responses)",
    tables: [table([left("route"), "conc", "requests", "CPU ms", "CPU/req ms"], rows)],
  };
}

function targetSection(r) {
  const figure = (t) => (t.unit === "x" ? ratio(t.value) : `${fixed(2)(t.value)} ${t.unit}`);
  const limit = (t) => `${t.below ? "<" : ">="} ${t.unit === "x" ? ratio(t.limit) : `${t.limit} ${t.unit}`}`;
  return {
    title: "Targets",
    tables: [
      table(
        [left("target"), "figure", "limit", left("result")],
        r.targets.map((t) => [t.name, figure(t), limit(t), t.met ? "met" : "NOT met"]),
      ),
    ],
  };
}

function sections(results) {
  return [runSection, sizeSection, healthSection, generationSection, imageSection, cpuSection, floorSection, targetSection].map((s) => s(results));
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
