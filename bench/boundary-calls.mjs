// The calls a generation makes from fluxgate's wasm into JavaScript (the
// imports wasm-bindgen's glue gives the module), counted by a copy of
// build/index.js whose imports are wrapped in counters, per generation.
//
//   node bench/boundary-calls.mjs [generations=10]
//
// BOUNDARY_BUILD=<dir> counts another build's (index.js and index_bg.wasm in
// <dir>); BOUNDARY_CALLERS=<n> lists each call with the n innermost wasm
// functions it came from (named only in a build that kept its names: copy
// build/ right after `worker-build --release`, before scripts/build.sh
// strips them).
import { join } from "node:path";
import { countGenerations, writeCountingBuild } from "./counting-build.mjs";
import { root, startEmulator, startWorker } from "./services.mjs";

const GENERATIONS = Number(process.argv[2]) > 0 ? Number(process.argv[2]) : 10;
const build = process.env.BOUNDARY_BUILD ? join(root, process.env.BOUNDARY_BUILD) : join(root, "build");
const callers = Number(process.env.BOUNDARY_CALLERS) > 0 ? Number(process.env.BOUNDARY_CALLERS) : 0;

// Every import wrapped in a counter, keyed by its name (and its callers when asked).
const prelude = `const CALLERS = ${callers};
// The innermost wasm frames of a stack, innermost first, without hashes.
const callersOf = (stack) => stack.split(String.fromCharCode(10)).filter((line) => line.includes("wasm"))
  .slice(0, CALLERS).map((line) => line.trim().replace(/^at /, "").split(" (wasm")[0].replace(/::h[0-9a-f]{16}/g, "")).join(" < ");
globalThis.__wrapImports = (imports) => {
  for (const module of Object.values(imports)) {
    for (const [name, f] of Object.entries(module)) {
      if (typeof f !== "function") continue;
      module[name] = function (...args) {
        const key = CALLERS === 0 ? name : name + " | " + callersOf(new Error().stack ?? "");
        globalThis.__counts[key] = (globalThis.__counts[key] ?? 0) + 1;
        return f.apply(this, args);
      };
    }
  }
  return imports;
};`;

const emulator = await startEmulator();
const worker = await startWorker(emulator.url, writeCountingBuild({ build, dir: join(root, "target", "boundary-calls"), prelude }));
try {
  const counts = await countGenerations(worker, GENERATIONS);
  // Name without wasm-bindgen's prefix and hash: __wbg_then_c949d5a25a4e78f8 -> then.
  const rows = new Map();
  for (const [name, n] of Object.entries(counts)) {
    const [imported, from] = name.split(" | ");
    const short = imported.replace(/^__wbg_/, "").replace(/_[0-9a-f]{16}$/, "") + (from ? ` | ${from.replace(/\bfluxgate\.wasm\./g, "")}` : "");
    rows.set(short, (rows.get(short) ?? 0) + n / GENERATIONS);
  }
  const sorted = [...rows].sort((a, b) => b[1] - a[1]);
  const total = sorted.reduce((a, [, n]) => a + n, 0);
  console.log(`calls from the wasm into JavaScript per generation (POST /generate, copy included), over ${GENERATIONS}: ${total}`);
  for (const [name, n] of sorted) console.log(`${String(n).padStart(7)}  ${name}`);
} finally {
  await worker.mf.dispose();
  await emulator.close();
}
