// Serves the worker on http://127.0.0.1:8787 with `wrangler dev` (local R2 and
// KV under .wrangler/). Talks to the real Replicate when REPLICATE_API_TOKEN is
// set (environment or .dev.vars); otherwise starts the local Replicate emulator
// and points the worker at it.
//
// Environment: PORT (default 8787), EMULATOR_PORT (default 8790), and the
// secrets AUTH_TOKEN and REPLICATE_API_TOKEN, which win over .dev.vars.
//
// The worker is built by wrangler's [build] command (scripts/build.sh), which
// `npm start` has already run: wrangler's run at start finds nothing changed
// and returns at once, and wrangler reruns it when src/ changes.
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
process.chdir(root);

const PORT = Number(process.env.PORT || 8787);
const EMULATOR_PORT = Number(process.env.EMULATOR_PORT || 8790);
const LOCAL_AUTH_TOKEN = "local-dev-token";
const SECRETS = ["AUTH_TOKEN", "REPLICATE_API_TOKEN", "REPLICATE_WEBHOOK_SECRET", "WEBHOOK_SIGNING_KEY"];

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

// Loading the emulator takes seconds (its image encoder) and so does loading
// wrangler: with a fixed emulator port both start at the same time.
let emulatorReady = null;
if (!values.REPLICATE_API_TOKEN) {
  const emulator = import("../emulator/server.mjs");
  emulatorReady = emulator.then(({ startEmulator }) =>
    startEmulator({ port: EMULATOR_PORT, acceptPrefix: "r8_", tokens: ["r8_local_emulator"] }),
  );
  const emulatorUrl = EMULATOR_PORT ? `http://127.0.0.1:${EMULATOR_PORT}` : (await emulatorReady).url;
  Object.assign(values, {
    REPLICATE_API_TOKEN: "r8_local_emulator",
    REPLICATE_API_BASE: emulatorUrl,
    EXTRA_OUTPUT_HOSTS: new URL(emulatorUrl).host,
    // The emulator signs its webhooks with this secret: the worker registers
    // and verifies its own webhook, as it would with Replicate's.
    REPLICATE_WEBHOOK_SECRET: (await emulator).DEFAULT_WEBHOOK_SECRET,
    // Callers' webhooks may point at this machine while developing.
    EXTRA_WEBHOOK_HOSTS: values.EXTRA_WEBHOOK_HOSTS ?? "127.0.0.1,localhost",
  });
  console.log(`No REPLICATE_API_TOKEN configured: using the local Replicate emulator at ${emulatorUrl} (it accepts any r8_ token).`);
}
if (!values.AUTH_TOKEN) {
  values.AUTH_TOKEN = LOCAL_AUTH_TOKEN;
  // Callers' webhook secrets are derived from AUTH_TOKEN unless this is set,
  // and the local token is too short to derive them from.
  values.WEBHOOK_SIGNING_KEY ??= "local-development-webhook-signing-key";
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
  await (await emulatorReady?.catch(() => null))?.close();
  process.exit(code);
};
process.on("SIGINT", () => stop(130));
process.on("SIGTERM", () => stop(143));
wrangler.on("exit", (code) => stop(code ?? 1));
emulatorReady?.catch((error) => {
  console.error(`The local Replicate emulator did not start on port ${EMULATOR_PORT}: ${error.message}`);
  stop(1);
});
