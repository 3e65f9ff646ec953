// Serves the worker on http://127.0.0.1:8787 with `wrangler dev` (local R2 and
// KV under .wrangler/). Talks to the real Replicate when REPLICATE_API_TOKEN is
// set (environment or .dev.vars); otherwise starts the local Replicate emulator
// and points the worker at it.
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { startEmulator } from "../emulator/server.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
process.chdir(root);

const PORT = Number(process.env.PORT || 8787);
const EMULATOR_PORT = Number(process.env.EMULATOR_PORT || 8790);
const LOCAL_AUTH_TOKEN = "local-dev-token";
const SECRETS = ["AUTH_TOKEN", "REPLICATE_API_TOKEN"];

/** KEY=VALUE lines, as wrangler reads .dev.vars. */
export function parseDotenv(text) {
  const out = {};
  for (const line of text.split(/\r?\n/)) {
    const m = line.match(/^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/);
    if (!m) continue;
    let value = m[2];
    if (/^(["']).*\1$/.test(value)) value = value.slice(1, -1);
    out[m[1]] = value;
  }
  return out;
}

const values = existsSync(".dev.vars") ? parseDotenv(readFileSync(".dev.vars", "utf8")) : {};
for (const name of SECRETS) if (process.env[name]) values[name] = process.env[name];

let emulator;
if (!values.REPLICATE_API_TOKEN) {
  emulator = await startEmulator({ port: EMULATOR_PORT, acceptPrefix: "r8_", tokens: ["r8_local_emulator"] });
  const host = new URL(emulator.url).host;
  Object.assign(values, {
    REPLICATE_API_TOKEN: "r8_local_emulator",
    REPLICATE_API_BASE: emulator.url,
    EXTRA_OUTPUT_HOSTS: host,
  });
  console.log(`No REPLICATE_API_TOKEN configured: using the local Replicate emulator at ${emulator.url} (it accepts any r8_ token).`);
}
if (!values.AUTH_TOKEN) {
  values.AUTH_TOKEN = LOCAL_AUTH_TOKEN;
  console.log(`No AUTH_TOKEN configured: service auth accepts "Bearer ${LOCAL_AUTH_TOKEN}" locally (set AUTH_TOKEN in .dev.vars).`);
}

// Secrets reach wrangler through a private env file, never the command line.
mkdirSync(".wrangler", { recursive: true });
const envFile = ".wrangler/start.env";
writeFileSync(envFile, Object.entries(values).map(([k, v]) => `${k}=${JSON.stringify(String(v))}`).join("\n") + "\n", { mode: 0o600 });
chmodSync(envFile, 0o600);

const wrangler = spawn(
  "wrangler",
  ["dev", "--ip", "127.0.0.1", "--port", String(PORT), "--env-file", envFile, "--show-interactive-dev-session=false"],
  { stdio: "inherit", env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
);

const stop = async (code) => {
  wrangler.kill("SIGTERM");
  await emulator?.close();
  process.exit(code);
};
process.on("SIGINT", () => stop(130));
process.on("SIGTERM", () => stop(143));
wrangler.on("exit", (code) => stop(code ?? 1));
