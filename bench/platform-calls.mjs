// The KV, R2 and fetch calls a worker makes per request, recorded by a
// wrapper module around it (its bindings and global fetch wrapped in
// recording proxies). The floor is a fair floor only while it makes the same
// calls as fluxgate: tests/platform-calls.test.mjs compares the two.
import { copyFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { GENERATE_INPUT, generate } from "./paired.mjs";
import { root, startWorker } from "./services.mjs";

/** The wrapper: records calls, answers them (and forgets them) at GET /__platform_calls. */
const WRAPPER = (entry) => `
import target from "./${entry}";
const calls = [];
const realFetch = globalThis.fetch;
globalThis.fetch = function (input, init) {
  const url = typeof input === "string" ? input : input.url;
  calls.push(\`fetch \${(init?.method ?? input?.method ?? "GET").toUpperCase()} \${new URL(url).pathname}\`);
  return realFetch.call(globalThis, input, init);
};
function recording(name, binding) {
  return new Proxy(binding, {
    get(object, key) {
      const value = Reflect.get(object, key);
      if (typeof value !== "function" || key === "constructor") return value;
      return (...args) => {
        calls.push(\`\${name}.\${String(key)} \${typeof args[0] === "string" ? args[0] : ""}\`.trim());
        return value.apply(object, args);
      };
    },
  });
}
const wrapEnv = (env) => ({ ...env, IMAGE_META: recording("KV", env.IMAGE_META), IMAGES: recording("R2", env.IMAGES) });
const answerCalls = (request) =>
  new URL(request.url).pathname === "/__platform_calls" ? Response.json(calls.splice(0)) : null;
let wrapped;
if (typeof target === "function") {
  wrapped = class extends target {
    constructor(ctx, env) {
      super(ctx, wrapEnv(env));
    }
    async fetch(request) {
      return answerCalls(request) ?? super.fetch(request);
    }
  };
} else {
  wrapped = {
    fetch: (request, env, ctx) => answerCalls(request) ?? target.fetch(request, wrapEnv(env), ctx),
  };
}
export default wrapped;
`;

/**
 * Starts `scriptPath` (fluxgate's build/index.js, or a floor) wrapped, in
 * its own Miniflare: resolves to startWorker's result plus calls(), which
 * answers the calls recorded since the last calls().
 */
export async function startRecorded(emulatorUrl, scriptPath, name) {
  const dir = join(root, "target", "platform-calls", name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  // Copied as .mjs: Miniflare reads an imported .js as CommonJS.
  const entry = `${basename(scriptPath).replace(/\.m?js$/, "")}.mjs`;
  copyFileSync(join(root, scriptPath), join(dir, entry));
  // A wasm build's module, beside its glue.
  const wasm = join(root, dirname(scriptPath), "index_bg.wasm");
  if (existsSync(wasm)) copyFileSync(wasm, join(dir, "index_bg.wasm"));
  // The floor with checks imports the floor.
  if (scriptPath.startsWith("bench/")) copyFileSync(join(root, "bench/floor-worker.mjs"), join(dir, "floor-worker.mjs"));
  writeFileSync(join(dir, "wrapper.mjs"), WRAPPER(entry));
  const worker = await startWorker(emulatorUrl, join("target", "platform-calls", name, "wrapper.mjs"));
  return {
    ...worker,
    async calls() {
      const res = await fetch(`${worker.url}/__platform_calls`);
      return res.json();
    },
  };
}

/**
 * A call with what varies between requests left out: KV keys keep their
 * prefix (`image:`, `usage:service:`...), R2 keys are dropped, fetches keep
 * the path up to the id.
 */
export function callShape(call) {
  const [what, arg = ""] = call.split(" ", 2);
  if (what.startsWith("R2.")) return what;
  if (what.startsWith("KV.")) {
    return `${what} ${arg.startsWith("usage") ? arg.replace(/\d{4}-\d\d-\d\d/, "<day>") : `${arg.split(":")[0]}:`}`;
  }
  const path = call.split(" ")[2] ?? "";
  return `${what} ${arg} ${path.replace(/\/delivery\/[^/]+\/.*/, "/delivery/<output>")}`;
}

/** The shapes of `calls`, sorted (concurrent calls come in any order). */
export const shapes = (calls) => calls.map(callShape).sort();

/** One generation and its copy; the calls it made (after the copy's end). */
export async function recordGeneration(worker) {
  const { bytes } = await generate(worker, GENERATE_INPUT);
  const { id } = JSON.parse(bytes);
  const calls = [];
  for (const started = Date.now(); Date.now() - started < 10000; ) {
    const more = await worker.calls();
    // The copy ends with the owner's usage written (and, the first time in
    // a day, the day's index of subjects): done once nothing follows it.
    if (more.length === 0 && calls.some((c) => c.startsWith("R2.put")) && calls.at(-1)?.startsWith("KV.put usage")) break;
    calls.push(...more);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { id, calls };
}
