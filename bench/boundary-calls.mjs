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
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GENERATE_INPUT, generate, waitCopies } from "./paired.mjs";
import { root, startEmulator, startWorker } from "./services.mjs";

const GENERATIONS = Number(process.argv[2]) > 0 ? Number(process.argv[2]) : 10;
const dir = join(root, "target", "boundary-calls");
const build = process.env.BOUNDARY_BUILD ? join(root, process.env.BOUNDARY_BUILD) : join(root, "build");
const callers = Number(process.env.BOUNDARY_CALLERS) > 0 ? Number(process.env.BOUNDARY_CALLERS) : 0;

/** The build's glue with every import wrapped in a counter; /__calls answers and resets the counts. */
function countingBuild() {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(build, "index_bg.wasm"), join(dir, "index_bg.wasm"));
  const glue = readFileSync(join(build, "index.js"), "utf8");
  // The glue instantiates the module as `new WebAssembly.Instance(<module>, <imports>())`.
  const instantiation = /new WebAssembly\.Instance\((\w+),(\w+)\(\)\)/g;
  if (!instantiation.test(glue)) throw new Error("boundary-calls: the glue's instantiation was not found");
  const counted = glue.replace(instantiation, "new WebAssembly.Instance($1,globalThis.__countImports($2()))");
  const counters = `const CALLERS = ${callers};
// The innermost wasm frames of a stack, innermost first, without hashes.
const callersOf = (stack) => stack.split(String.fromCharCode(10)).filter((line) => line.includes("wasm"))
  .slice(0, CALLERS).map((line) => line.trim().replace(/^at /, "").split(" (wasm")[0].replace(/::h[0-9a-f]{16}/g, "")).join(" < ");
globalThis.__calls = {};
globalThis.__countImports = (imports) => {
  for (const module of Object.values(imports)) {
    for (const [name, f] of Object.entries(module)) {
      if (typeof f !== "function") continue;
      module[name] = function (...args) {
        const key = CALLERS === 0 ? name : name + " | " + callersOf(new Error().stack ?? "");
        globalThis.__calls[key] = (globalThis.__calls[key] ?? 0) + 1;
        return f.apply(this, args);
      };
    }
  }
  return imports;
};
`;
  writeFileSync(join(dir, "glue.mjs"), counters + counted);
  writeFileSync(
    join(dir, "index.mjs"),
    `import Fluxgate from "./glue.mjs";
export default class Counting extends Fluxgate {
  async fetch(request) {
    if (new URL(request.url).pathname !== "/__calls") return super.fetch(request);
    const calls = globalThis.__calls;
    globalThis.__calls = {};
    return Response.json(calls);
  }
}
`,
  );
  return join(dir, "index.mjs");
}

const emulator = await startEmulator();
const worker = await startWorker(emulator.url, countingBuild());
try {
  const calls = async () => (await fetch(`${worker.url}/__calls`)).json();
  // The first generations read the model's schema and compile: not counted.
  for (let i = 0; i < 3; i++) await generate(worker, GENERATE_INPUT);
  await waitCopies(worker);
  await calls();
  for (let i = 0; i < GENERATIONS; i++) await generate(worker, GENERATE_INPUT);
  await waitCopies(worker);
  // Name without wasm-bindgen's prefix and hash: __wbg_then_c949d5a25a4e78f8 -> then.
  const rows = new Map();
  for (const [name, n] of Object.entries(await calls())) {
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
