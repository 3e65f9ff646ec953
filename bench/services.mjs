// The processes under test: the worker in Miniflare (workerd), the Replicate
// emulator and the static file server, each in its own process so the load
// generator in this process does not share an event loop with them.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { DEFAULT_WEBHOOK_SECRET } from "../emulator/webhooks.mjs";
import { childrenMatching, cpuNs } from "./proc.mjs";

export const root = fileURLToPath(new URL("..", import.meta.url));

export const AUTH_TOKEN = "bench-service-auth-token";
export const REPLICATE_TOKEN = "r8_bench_service_token";

const wranglerToml = () => readFileSync(new URL("../wrangler.toml", import.meta.url), "utf8");

/** The [vars] of wrangler.toml. */
function wranglerVars() {
  const section = wranglerToml().split(/^\[vars\]\s*$/m)[1]?.split(/^\[/m)[0] ?? "";
  return Object.fromEntries([...section.matchAll(/^([A-Z_][A-Z0-9_]*)\s*=\s*"([^"]*)"/gm)].map((m) => [m[1], m[2]]));
}

function compatibilityDate() {
  return wranglerToml().match(/^compatibility_date\s*=\s*"([^"]+)"/m)[1];
}

/** The [[ratelimits]] of wrangler.toml, as Miniflare takes them. */
function rateLimits() {
  const found = {};
  for (const block of wranglerToml().split(/^\[\[ratelimits\]\]\s*$/m).slice(1)) {
    const body = block.split(/^\[/m)[0];
    const name = /^name\s*=\s*"([^"]+)"/m.exec(body)?.[1];
    const namespace = /^namespace_id\s*=\s*"([^"]+)"/m.exec(body)?.[1];
    const simple = /^simple\s*=\s*\{\s*limit\s*=\s*(\d+)\s*,\s*period\s*=\s*(\d+)\s*\}/m.exec(body);
    if (name && simple) found[name] = { namespace_id: namespace, simple: { limit: Number(simple[1]), period: Number(simple[2]) } };
  }
  return found;
}

/** Spawns a Node script that prints `listening on <url>`; resolves to { url, pid, close() }. */
async function startListening(args, env = {}) {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
  const exited = once(child, "exit");
  const killOnExit = () => child.kill();
  process.once("exit", killOnExit);
  const url = await new Promise((resolve, reject) => {
    let seen = "";
    child.stdout.on("data", (chunk) => {
      seen += chunk;
      const match = /listening on (http:\/\/\S+)/.exec(seen);
      if (match) resolve(match[1]);
    });
    exited.then(([code]) => reject(new Error(`${args[0]} exited (${code}) before listening`)));
  });
  child.stdout.resume();
  return {
    url,
    pid: child.pid,
    async close() {
      process.off("exit", killOnExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/**
 * The Replicate emulator with no added prediction latency. Predictions do not
 * call their webhooks: the worker holds a webhook secret (so that a delivery
 * can be measured) but a generation is measured without a delivery, like the
 * floor's.
 */
export function startEmulator() {
  return startListening(["emulator/server.mjs", "--port", "0", "--host", "127.0.0.1", "--predict-ms", "0", "--no-webhooks"], {
    EMULATOR_TOKENS: REPLICATE_TOKEN,
  });
}

/** A static file server for the files in `dir`. */
export function startStaticServer(dir) {
  return startListening([fileURLToPath(new URL("./static-server.mjs", import.meta.url)), dir]);
}

/**
 * Runs `work` with `flags` added to the V8 flags of the workerd processes
 * Miniflare starts meanwhile (MINIFLARE_WORKERD_V8_FLAGS), then restores them.
 */
export async function withV8Flags(flags, work) {
  const before = process.env.MINIFLARE_WORKERD_V8_FLAGS;
  process.env.MINIFLARE_WORKERD_V8_FLAGS = [before, flags].filter(Boolean).join(" ");
  try {
    return await work();
  } finally {
    if (before === undefined) delete process.env.MINIFLARE_WORKERD_V8_FLAGS;
    else process.env.MINIFLARE_WORKERD_V8_FLAGS = before;
  }
}

/**
 * A worker (by default fluxgate from build/) in a fresh Miniflare. Resolves to
 * { mf, url, pid (workerd), readyMs, firstAnswerMs } where the times run from
 * constructing Miniflare to `mf.ready` and to the first answered GET /health.
 */
export async function startWorker(emulatorUrl, scriptPath = "build/index.js") {
  const before = new Set(childrenMatching(process.pid, "workerd"));
  const started = performance.now();
  const nodeCpu = process.cpuUsage();
  const mf = new Miniflare({
    rootPath: root,
    scriptPath,
    modules: true,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
    compatibilityDate: compatibilityDate(),
    r2Buckets: ["IMAGES"],
    kvNamespaces: ["IMAGE_META"],
    ratelimits: rateLimits(),
    host: "127.0.0.1",
    // The worker's own lines (one per request) are dropped unless asked for.
    handleRuntimeStdio(stdout, stderr) {
      if (process.env.BENCH_WORKER_LOGS === "1") {
        stdout.pipe(process.stderr);
        stderr.pipe(process.stderr);
      } else {
        stdout.resume();
        stderr.resume();
      }
    },
    bindings: {
      ...wranglerVars(),
      REPLICATE_API_BASE: emulatorUrl,
      EXTRA_OUTPUT_HOSTS: new URL(emulatorUrl).host,
      AUTH_TOKEN,
      REPLICATE_API_TOKEN: REPLICATE_TOKEN,
      REPLICATE_WEBHOOK_SECRET: DEFAULT_WEBHOOK_SECRET,
    },
  });
  try {
    const url = await mf.ready;
    const readyMs = performance.now() - started;
    for (;;) {
      const res = await fetch(new URL("/health", url)).catch(() => null);
      await res?.arrayBuffer();
      if (res?.ok) break;
      if (performance.now() - started > 30000) throw new Error("the worker did not answer /health within 30 s");
      await new Promise((r) => setTimeout(r, 5));
    }
    const firstAnswerMs = performance.now() - started;
    // The CPU a start took on each side: Miniflare's JavaScript in this
    // process (building workerd's configuration, the modules' bytes in it)
    // and the new workerd process (loading the modules, the first answer).
    const { user, system } = process.cpuUsage(nodeCpu);
    const pids = childrenMatching(process.pid, "workerd").filter((pid) => !before.has(pid));
    if (pids.length !== 1) throw new Error(`expected one new workerd process, found ${pids.length}`);
    const startCpu = { miniflareMs: (user + system) / 1000, workerdMs: cpuNs(pids[0]) / 1e6 };
    return { mf, url: url.origin, pid: pids[0], readyMs, firstAnswerMs, startCpu, emulatorUrl };
  } catch (error) {
    await mf.dispose();
    throw error;
  }
}
