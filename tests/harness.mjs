// One Miniflare instance and one Replicate emulator for the whole test run
// (tests run with --experimental-test-isolation=none, so this module is
// loaded once). The worker is loaded from worker-build's output.
import { readFileSync } from "node:fs";
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

let started;

/** The shared worker: `{ url, mf, emulator, fetch(path, init) }`. */
export function worker() {
  started ??= start();
  return started;
}

async function start() {
  const emulator = await startEmulator({
    tokens: [SERVICE_REPLICATE_TOKEN, USER_REPLICATE_TOKEN],
    predictMs: 150,
  });
  const mf = new Miniflare({
    rootPath: root,
    scriptPath: "build/index.js",
    modules: true,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
    compatibilityDate: compatibilityDate(),
    r2Buckets: ["IMAGES"],
    kvNamespaces: ["IMAGE_META"],
    bindings: {
      ...wranglerVars(),
      REPLICATE_API_BASE: emulator.url,
      EXTRA_OUTPUT_HOSTS: new URL(emulator.url).host,
      REPLICATE_WAIT_SECONDS: "5",
      GENERATION_TIMEOUT_SECONDS: "10",
      AUTH_TOKEN,
      REPLICATE_API_TOKEN: SERVICE_REPLICATE_TOKEN,
    },
  });
  const url = await mf.ready;
  return {
    url,
    mf,
    emulator,
    fetch: (path, init) => fetch(new URL(path, url), { redirect: "manual", ...init }),
  };
}

after(async () => {
  if (!started) return;
  const { mf, emulator } = await started;
  await mf.dispose();
  await emulator.close();
});
