// The worker's share of workerd's main thread, by sampling: `perf record -g`
// on a worker's workerd process while it serves generations, with V8's perf
// map naming the generated code, then each main-thread sample sorted by the
// worker's code nearest to it on the stack (its wasm, its glue, or the
// floor's JavaScript):
// - the worker's own instructions;
// - crossing between wasm and JavaScript: the glue's JavaScript, and V8's
//   wasm builtins (Liftoff's frame setup, wrappers) entered from wasm;
// - the runtime under the worker's calls, by the API entered (workerd's
//   "KvNamespace::put", or a V8 builtin), alike for wasm and JavaScript;
// - Miniflare's local KV, R2 and entry (its JavaScript);
// - nothing of the worker's on the stack: the event loop between turns,
//   I/O, the simulators' storage.
// The first three are the worker's share. It is steady from run to run (an
// A/A of eight isolates a side reads within about 0.05 ms per generation)
// where the whole thread is not: the rest moves by up to a millisecond,
// almost all of it the kernel under Miniflare's local storage, which on
// Cloudflare is not on the worker's thread.
//
// Used by bench/perf-profile.mjs (PERF_CALLERS=1) and by `npm run bench`
// (workerShare), which also builds the worker with its names (namedBuild).
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { GENERATE_INPUT, generate, waitCopies } from "./paired.mjs";
import { root, startWorker, withV8Flags } from "./services.mjs";

/** V8's flags for samples that name generated and interpreted code. */
export const PERF_V8_FLAGS = "--perf-basic-prof --interpreted-frames-native-stack";
export const HZ = 4999;

/** The groups with the worker's code on the stack. */
export const WORKER_GROUPS = [
  "the worker's own instructions",
  "crossing between wasm and JavaScript",
  "the runtime, under the worker's calls",
];
const MINIFLARE = "Miniflare's local KV, R2 and entry (its JavaScript)";
const NOTHING = "nothing of the worker's on the stack (the event loop, I/O, the simulators' storage)";

/** Where a symbol of workerd's own binary belongs. */
export function kindOf(dso, symbol) {
  if (dso.startsWith("[JIT]")) return "compiled wasm and JavaScript";
  if (dso.includes("kernel")) return "kernel";
  if (dso !== "workerd") return `libraries (${dso})`;
  if (/^Builtins_(Wasm|JSToWasm)/.test(symbol)) return "V8 wasm builtins (frame setup, wrappers)";
  if (/^Builtins_/.test(symbol)) return "V8 JavaScript builtins";
  if (/Scavenger|Heap::|MarkCompact|Sweeper|GlobalHandles|Marking/.test(symbol)) return "V8 garbage collection";
  if (/compiler::|turboshaft|wasm::|Liftoff/.test(symbol)) return "V8 compilers";
  if (/^v8::/.test(symbol)) return "V8 runtime";
  if (/tcmalloc|TCMalloc/.test(symbol)) return "allocator";
  if (/^kj::|capnp/.test(symbol)) return "workerd's promises and I/O (kj)";
  if (/^workerd::/.test(symbol)) return "workerd's API objects";
  return "other";
}

/**
 * The runtime's API a call entered (frames leaf first, up to the caller):
 * the workerd API method nearest the caller ("KvNamespace::put"), else the
 * V8 builtin it called.
 */
function runtimeEntry(frames) {
  for (let i = frames.length - 1; i >= 0; i--) {
    const api = /^workerd::api::(?:\w+::)*?(\w+::\w+)$/.exec(frames[i].symbol);
    if (api) return api[1];
  }
  const builtin = frames.findLast(
    ({ symbol }) => /^Builtins_/.test(symbol) && !/^Builtins_(Call|Wasm|JSToWasm|JSEntry|Interpreter|Construct)/.test(symbol),
  );
  return builtin ? `V8 ${builtin.symbol.replace(/^Builtins_/, "")}` : null;
}

/**
 * [group, detail] of one main-thread sample (frames leaf first, as `perf
 * script` prints them); `script` is the path the worker was started from.
 */
export function callerOf(frames, script) {
  const own = script.replace(/^\.\//, "");
  // The worker's modules: its script and those beside it (the floor with
  // checks imports the floor); Miniflare's own have no directory.
  const beside = `${dirname(own)}/`;
  const leaf = kindOf(frames[0]?.dso ?? "", frames[0]?.symbol ?? "");
  for (let i = 0; i < frames.length; i++) {
    const name = frames[i].symbol.startsWith("JS:") ? frames[i].symbol.slice(3) : null;
    if (name === null) continue;
    // A wasm function is named "<function>-<index>-<tier>", a JavaScript one "<name> <file>:<line>:<column>".
    const at = / (\S+):\d+:\d+$/.exec(name);
    const ours = at && (at[1] === own || at[1].startsWith(beside));
    if (at && !ours) return [MINIFLARE, "all"];
    const glue = ours && own.endsWith("index.js");
    if (i === 0) {
      if (glue) return [WORKER_GROUPS[1], "the glue's JavaScript (strings, closures, imports' wrappers)"];
      return [WORKER_GROUPS[0], ours ? "JavaScript" : "wasm"];
    }
    if (!ours && /V8 wasm builtins/.test(leaf)) return [WORKER_GROUPS[1], "V8's wasm builtins beneath wasm (frame setup, wrappers)"];
    return [WORKER_GROUPS[2], runtimeEntry(frames.slice(0, i)) ?? leaf];
  }
  return [NOTHING, leaf];
}

/**
 * The main thread's samples in perf data `file`, counted into `callers`
 * under their group, and under "group\tdetail"; "main" counts them all.
 */
export function attribute(file, script, callers) {
  const out = spawnSync("perf", ["script", "-i", file, "-F", "comm,ip,sym,dso"], { encoding: "utf8", maxBuffer: 1024 * 1024 * 1024 });
  if (out.status !== 0) throw new Error(`perf script: ${out.stderr.trim().split("\n").at(-1)}`);
  const add = (key) => callers.set(key, (callers.get(key) ?? 0) + 1);
  for (const block of out.stdout.split("\n\n")) {
    const lines = block.split("\n").filter((l) => l.trim());
    // workerd's main thread carries the process's name.
    if (lines.length < 2 || !lines[0].trim().startsWith("workerd")) continue;
    const frames = lines.slice(1).map((line) => {
      const m = /^\s*[0-9a-f]+ (.*) \((.*)\)$/.exec(line);
      if (!m) return { symbol: "", dso: "" };
      // Generated code is named by V8's perf map, /tmp/perf-<pid>.map.
      const dso = /^perf-\d+\.map$/.test(basename(m[2])) ? "[JIT]" : basename(m[2]);
      return { symbol: m[1], dso };
    });
    const [group, detail] = callerOf(frames, script);
    add("main");
    add(group);
    add(`${group}\t${detail}`);
  }
}

/**
 * Records `generations` generations of a new worker of `script` (after
 * `warmup`) into perf data `file`, with call stacks when `callStacks`.
 * Resolves once perf has written it.
 */
export async function recordGenerations(emulatorUrl, script, file, { generations, warmup, callStacks, request }) {
  const worker = await startWorker(emulatorUrl, script);
  try {
    for (let i = 0; i < warmup; i++) await request(worker);
    await waitCopies(worker);
    const args = ["record", "-q", ...(callStacks ? ["-g"] : []), "-F", String(HZ), "-p", String(worker.pid), "-o", file];
    const perf = spawn("perf", args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    perf.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise((resolve, reject) => {
      perf.on("exit", resolve);
      perf.on("error", reject);
    });
    await new Promise((r) => setTimeout(r, 300));
    if (perf.exitCode !== null) throw new Error(`perf record: ${stderr.trim() || `exit ${perf.exitCode}`}`);
    for (let i = 0; i < generations; i++) await request(worker);
    await waitCopies(worker);
    perf.kill("SIGINT");
    await exited;
  } finally {
    await worker.mf.dispose();
  }
}

const generation = (worker) => generate(worker, GENERATE_INPUT);

/**
 * The worker's share of the main thread for two builds, their isolates
 * interleaved (a, b, b, a, ...): per side, ms per generation of the whole
 * main thread, of the worker's share and of each group. Throws when perf
 * cannot record (none installed, or not allowed to attach).
 */
export async function workerShare(emulatorUrl, a, b, { isolates = 8, generations = 24, warmup = 4, log = () => {} } = {}) {
  const have = spawnSync("perf", ["--version"], { encoding: "utf8" });
  if (have.status !== 0) throw new Error("no `perf` on this machine (Debian: linux-perf)");
  const dir = mkdtempSync(join(tmpdir(), "fluxgate-share-"));
  const counts = [new Map(), new Map()];
  try {
    await withV8Flags(PERF_V8_FLAGS, async () => {
      for (let i = 0; i < isolates; i++) {
        for (const s of i % 2 === 0 ? [0, 1] : [1, 0]) {
          const file = join(dir, `${s}-${i}.data`);
          const script = [a, b][s];
          await recordGenerations(emulatorUrl, script, file, { generations, warmup, callStacks: true, request: generation });
          attribute(file, script, counts[s]);
          rmSync(file, { force: true });
        }
        log(`isolate ${i + 1} of ${isolates} a side`);
      }
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
    // V8 writes its log beside the process (--perf-basic-prof); not kept.
    for (const name of readdirSync(root)) if (/^isolate-.*-v8\.log$/.test(name)) rmSync(join(root, name), { force: true });
  }
  const ms = (n) => (n / HZ / (generations * isolates)) * 1000;
  const sides = counts.map((c) => {
    const groups = Object.fromEntries([...WORKER_GROUPS, MINIFLARE, NOTHING].map((g) => [g, ms(c.get(g) ?? 0)]));
    return { main: ms(c.get("main") ?? 0), share: WORKER_GROUPS.reduce((sum, g) => sum + groups[g], 0), groups };
  });
  // Without V8's perf map no frame is named and every sample would count as
  // "nothing of the worker's": say so rather than report a share of zero.
  if (sides.some((side) => side.share === 0)) throw new Error("no sample had the worker's code named on its stack (no perf map from V8?)");
  return sides;
}

/**
 * fluxgate built with its names, as shipped otherwise (`-O3`, see
 * scripts/optimize-wasm.sh), into target/bench-named/: the perf map names
 * its wasm functions only when the module keeps its name section. Built
 * again only when the shipped build's inputs changed (scripts/build.sh's
 * stamp). Returns { script } or { error }.
 */
export function namedBuild({ log = () => {} } = {}) {
  const out = "target/bench-named";
  const stampFile = join(root, out, ".stamp");
  const shipped = join(root, "target/fluxgate-build.stamp");
  try {
    if (!existsSync(shipped)) throw new Error("no current build (run npm run build)");
    const key = readFileSync(shipped, "utf8").split(" ")[0];
    const script = join(out, "index.js");
    if (existsSync(stampFile) && readFileSync(stampFile, "utf8") === key && existsSync(join(root, out, "index_bg.wasm"))) {
      return { script };
    }
    log("building fluxgate with its names (target/bench-named)");
    execFileSync(
      "bash",
      ["-c", 'source .tools/env && worker-build --release --out-dir "$1" >&2 && KEEP_NAMES=1 scripts/optimize-wasm.sh "$1/index_bg.wasm" >&2', "_", out],
      { cwd: root, stdio: ["ignore", "ignore", "pipe"], maxBuffer: 1 << 28 },
    );
    writeFileSync(stampFile, key);
    return { script };
  } catch (error) {
    return { error: `${error.message}`.trim().split("\n").slice(-5).join("\n") };
  }
}
