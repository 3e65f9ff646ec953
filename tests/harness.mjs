// One Miniflare instance and one Replicate emulator per test file (each file
// runs in its own process, so nothing a file does is seen by another).
// The worker is loaded from worker-build's output.
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { startEmulator } from "../emulator/server.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));

export const AUTH_TOKEN = "test-service-auth-token-3f9a";
export const SERVICE_REPLICATE_TOKEN = "r8_service_token_for_tests";
export const USER_REPLICATE_TOKEN = "r8_user_token_for_tests";

/** The [vars] of wrangler.toml, so tests run with the configuration that ships. */
export function wranglerVars() {
  const text = readFileSync(new URL("../wrangler.toml", import.meta.url), "utf8");
  const section = text.split(/^\[vars\]\s*$/m)[1]?.split(/^\[/m)[0] ?? "";
  return Object.fromEntries([...section.matchAll(/^([A-Z_][A-Z0-9_]*)\s*=\s*"([^"]*)"/gm)].map((m) => [m[1], m[2]]));
}

function compatibilityDate() {
  const text = readFileSync(new URL("../wrangler.toml", import.meta.url), "utf8");
  return text.match(/^compatibility_date\s*=\s*"([^"]+)"/m)[1];
}

const LOG_LINES = 20000;
let sharedEmulator;
let started;
const variants = new Map();

function emulator() {
  sharedEmulator ??= startEmulator({ tokens: [SERVICE_REPLICATE_TOKEN, USER_REPLICATE_TOKEN], predictMs: 150 });
  return sharedEmulator;
}

/** The shared worker: `{ url, mf, emulator, fetch(path, init) }`. */
export function worker() {
  started ??= start({});
  return started;
}

/**
 * Another worker instance with some bindings changed (operator settings),
 * against the same emulator; one per distinct set of overrides.
 */
export function workerWith(overrides) {
  const key = JSON.stringify(overrides);
  if (!variants.has(key)) variants.set(key, start(overrides));
  return variants.get(key);
}

async function start(overrides) {
  const emu = await emulator();
  const bindings = {
    ...wranglerVars(),
    REPLICATE_API_BASE: emu.url,
    EXTRA_OUTPUT_HOSTS: new URL(emu.url).host,
    REPLICATE_WAIT_SECONDS: "5",
    GENERATION_TIMEOUT_SECONDS: "10",
    AUTH_TOKEN,
    REPLICATE_API_TOKEN: SERVICE_REPLICATE_TOKEN,
    ...overrides,
  };
  for (const [k, v] of Object.entries(bindings)) if (v === undefined) delete bindings[k];
  // The worker's output (its log lines) is kept for the tests to read, the
  // latest LOG_LINES of it; FLUXGATE_TEST_LOGS=1 also prints it.
  const logs = [];
  const keep = (stream, echo) => {
    let rest = "";
    stream.on("data", (chunk) => {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop();
      for (const line of lines) {
        logs.push(line);
        if (process.env.FLUXGATE_TEST_LOGS) echo.write(`${line}\n`);
      }
      if (logs.length > LOG_LINES) logs.splice(0, logs.length - LOG_LINES);
    });
  };
  const mf = new Miniflare({
    rootPath: root,
    scriptPath: "build/index.js",
    modules: true,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
    compatibilityDate: compatibilityDate(),
    r2Buckets: ["IMAGES"],
    kvNamespaces: ["IMAGE_META"],
    ratelimits: { KEY_LIMITER: { namespace_id: "1001", simple: { limit: Number(bindings.KEY_LIMITER_LIMIT ?? 60), period: 60 } } },
    bindings,
    handleRuntimeStdio: (stdout, stderr) => {
      keep(stdout, process.stdout);
      keep(stderr, process.stderr);
    },
  });
  const url = await mf.ready;
  return {
    url,
    mf,
    /** The worker's output lines so far (the latest LOG_LINES). */
    logs,
    /** Its JSON log lines, parsed. */
    logLines: () => logs.flatMap((line) => {
      try {
        const value = JSON.parse(line);
        return value && typeof value === "object" ? [value] : [];
      } catch {
        return [];
      }
    }),
    emulator: emu,
    fetch: (path, init) => fetch(new URL(path, url), { redirect: "manual", ...init }),
  };
}

after(async () => {
  for (const w of [started, ...variants.values()]) if (w) await (await w).mf.dispose();
  if (sharedEmulator) await (await sharedEmulator).close();
});

/** A prompt no other test uses, so emulator rules and logs can be scoped to it. */
let counter = 0;
export function uniquePrompt(what = "test") {
  counter += 1;
  return `${what} ${process.pid}-${counter}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Adds an emulator rule (see emulator/rules.mjs), to the shared emulator or to `emu`. */
export async function addRule(rule, emu) {
  emu ??= await emulator();
  const res = await fetch(`${emu.url}/_control/rules`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(rule),
  });
  assertOk(res, "adding an emulator rule");
  return res.json();
}

export async function clearRules() {
  const emu = await emulator();
  await fetch(`${emu.url}/_control/rules`, { method: "DELETE" });
}

/** What the emulator received, optionally only requests whose path contains `path`. */
export async function received(path = "") {
  const emu = await emulator();
  const res = await fetch(`${emu.url}/_control/requests?path=${encodeURIComponent(path)}`);
  assertOk(res, "reading the emulator's request log");
  return res.json();
}

/** The create requests the emulator received for `prompt`. */
export async function createsFor(prompt) {
  return (await received("/predictions")).filter((r) => r.method === "POST" && r.body?.input?.prompt === prompt);
}

function assertOk(res, what) {
  if (!res.ok) throw new Error(`${what}: HTTP ${res.status}`);
}

/** Polls `check` until it returns a truthy value or `ms` pass. */
export async function eventually(check, ms = 8000, what = "condition") {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** POST /generate with a JSON body. */
export async function generate(w, body, headers = { authorization: `Bearer ${AUTH_TOKEN}` }) {
  return w.fetch("/generate", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/**
 * The answer to a POST declaring `length` bytes, given before any byte of the
 * body is sent (the worker refuses on the declared length alone; sending the
 * body would race the runtime closing the connection under it).
 */
export function declaredPost(w, path, length, headers) {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, w.url), { method: "POST", headers: { ...headers, "content-length": String(length) } });
    req.on("response", async (res) => {
      const chunks = [];
      for await (const chunk of res) chunks.push(chunk);
      const headers = Object.entries(res.headers).filter(([, v]) => typeof v === "string");
      resolve(new Response(Buffer.concat(chunks), { status: res.statusCode, headers }));
      req.destroy();
    });
    req.on("error", reject);
    req.flushHeaders();
  });
}

/** The KV record of an image, parsed. */
export async function record(w, id) {
  const kv = await w.mf.getKVNamespace("IMAGE_META");
  const value = await kv.get(`image:${id}`);
  return value && JSON.parse(value);
}

/** Waits until the image is stored in R2 and its record says so. */
export async function stored(w, id) {
  return eventually(async () => {
    const r = await record(w, id);
    return r?.status === "stored" && r;
  }, 10000, `image ${id} to be stored`);
}
