// A copy of a build whose wasm imports pass through a function of ours before
// the module is instantiated (to count calls, or to add an import), with an
// entry that answers GET /__counts with what was counted since the last ask.
// Used by boundary-calls.mjs and wasm-work.mjs.
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GENERATE_INPUT, generate, waitCopies } from "./paired.mjs";

/**
 * Writes `dir`/glue.mjs (the build's glue after `prelude`, its imports handed
 * to `globalThis.__wrapImports` first) and `dir`/index.mjs (the entry), and
 * copies `wasm` (default: the build's own) beside them. `prelude` defines
 * `globalThis.__wrapImports(imports) -> imports` and keeps its counts in
 * `globalThis.__counts`. Returns the entry's path.
 */
export function writeCountingBuild({ build, dir, prelude, wasm = join(build, "index_bg.wasm") }) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  copyFileSync(wasm, join(dir, "index_bg.wasm"));
  const glue = readFileSync(join(build, "index.js"), "utf8");
  // The glue instantiates the module as `new WebAssembly.Instance(<module>, <imports>())`
  // (once at load, again after a panic).
  const instantiation = /new WebAssembly\.Instance\((\w+),(\w+)\(\)\)/g;
  if (!instantiation.test(glue)) throw new Error(`the glue's instantiation was not found in ${build}/index.js`);
  const wrapped = glue.replace(instantiation, "new WebAssembly.Instance($1,globalThis.__wrapImports($2()))");
  writeFileSync(join(dir, "glue.mjs"), `globalThis.__counts = {};\n${prelude}\n${wrapped}`);
  writeFileSync(
    join(dir, "index.mjs"),
    `import Fluxgate from "./glue.mjs";
export default class Counting extends Fluxgate {
  async fetch(request) {
    if (new URL(request.url).pathname !== "/__counts") return super.fetch(request);
    const counts = globalThis.__counts;
    globalThis.__counts = {};
    return Response.json(counts);
  }
}
`,
  );
  return join(dir, "index.mjs");
}

/**
 * What a counting build counted over `generations` generations (POST
 * /generate, their copies into R2 included), after three that are not
 * counted (they read the model's schema and compile).
 */
export async function countGenerations(worker, generations) {
  const counts = async () => (await fetch(`${worker.url}/__counts`)).json();
  for (let i = 0; i < 3; i++) await generate(worker, GENERATE_INPUT);
  await waitCopies(worker);
  await counts();
  for (let i = 0; i < generations; i++) await generate(worker, GENERATE_INPUT);
  await waitCopies(worker);
  return counts();
}
