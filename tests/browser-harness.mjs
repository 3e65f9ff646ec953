// The site as a browser sees it: the worker plus the static assets of
// public/ (the playground) under Miniflare, against a Replicate emulator of
// its own, and Debian's Chromium driven by playwright-core.
//
// The shared harness (tests/harness.mjs) runs the worker without assets; this
// one adds Miniflare's `assets` option the way wrangler does for an `[assets]`
// block (assets first, the worker for every path no file matches).
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { chromium } from "playwright-core";
import { startEmulator } from "../emulator/server.mjs";
import { AUTH_TOKEN, SERVICE_REPLICATE_TOKEN, USER_REPLICATE_TOKEN, wranglerVars } from "./harness.mjs";

export { AUTH_TOKEN, SERVICE_REPLICATE_TOKEN, USER_REPLICATE_TOKEN };

const root = fileURLToPath(new URL("..", import.meta.url));

/** Where screenshots go (gitignored). */
export const ARTIFACTS = join(root, "tests", "artifacts");

/** Chromium: Debian's package unless CHROMIUM_PATH says otherwise. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

/**
 * Flags for a closed network: without the background-networking ones,
 * Chromium's own connections are refused and slow everything down.
 */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

function wranglerToml() {
  return readFileSync(join(root, "wrangler.toml"), "utf8");
}

/** The `[assets]` directory of wrangler.toml, or public/ while it has none. */
export function assetsDirectory() {
  const section = wranglerToml().split(/^\[assets\]\s*$/m)[1]?.split(/^\[/m)[0] ?? "";
  const dir = section.match(/^directory\s*=\s*"([^"]+)"/m)?.[1] ?? "./public";
  return join(root, dir);
}

function compatibilityDate() {
  return wranglerToml().match(/^compatibility_date\s*=\s*"([^"]+)"/m)[1];
}

/**
 * Starts the emulator and the worker with its assets.
 * Returns `{ url, mf, emulator, fetch(path, init), close() }`.
 */
export async function startSite({ bindings = {}, emulator: emulatorOptions = {} } = {}) {
  const emulator = await startEmulator({
    tokens: [SERVICE_REPLICATE_TOKEN, USER_REPLICATE_TOKEN],
    predictMs: 600,
    quiet: true,
    ...emulatorOptions,
  });
  const all = {
    ...wranglerVars(),
    REPLICATE_API_BASE: emulator.url,
    EXTRA_OUTPUT_HOSTS: new URL(emulator.url).host,
    REPLICATE_WAIT_SECONDS: "5",
    GENERATION_TIMEOUT_SECONDS: "20",
    AUTH_TOKEN,
    REPLICATE_API_TOKEN: SERVICE_REPLICATE_TOKEN,
    ...bindings,
  };
  for (const [k, v] of Object.entries(all)) if (v === undefined) delete all[k];
  const mf = new Miniflare({
    rootPath: root,
    scriptPath: "build/index.js",
    modules: true,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
    compatibilityDate: compatibilityDate(),
    r2Buckets: ["IMAGES"],
    kvNamespaces: ["IMAGE_META"],
    bindings: all,
    assets: { directory: assetsDirectory(), routerConfig: { has_user_worker: true } },
    // The worker's own lines, as in harness.mjs: printed only with FLUXGATE_TEST_LOGS=1.
    handleRuntimeStdio(stdout, stderr) {
      for (const [stream, echo] of [[stdout, process.stdout], [stderr, process.stderr]]) {
        if (process.env.FLUXGATE_TEST_LOGS) stream.pipe(echo);
        else stream.resume();
      }
    },
  });
  let url;
  try {
    url = (await mf.ready).href;
  } catch (e) {
    await emulator.close();
    throw e;
  }
  return {
    url,
    mf,
    emulator,
    fetch: (path, init) => fetch(new URL(path, url), { redirect: "manual", ...init }),
    async close() {
      await mf.dispose();
      await emulator.close();
    },
  };
}

/**
 * Launches Chromium headless (Playwright gives it a fresh temporary profile).
 * Returns `{ browser, page(options), close() }`; each page has its own
 * context, so its own local storage.
 */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`${CHROMIUM_PATH} is missing: run 'npm run setup' (installs Debian's chromium) or set CHROMIUM_PATH`);
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
  return {
    browser,
    /** A page in a new context: `viewport` (default 1280x900), `colorScheme`, ... */
    async page(options = {}) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
      // Generous: a loaded 2-core machine runs workerd, the emulator and Chromium at once.
      context.setDefaultTimeout(60_000);
      context.setDefaultNavigationTimeout(90_000);
      return context.newPage();
    },
    close: () => browser.close(),
  };
}

/**
 * Saves a screenshot as tests/artifacts/NAME.png and returns its path: the
 * whole page from the top, or with `{ fullPage: false }` what the viewport shows.
 */
export async function screenshot(page, name, { fullPage = true } = {}) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  // From the top, so that sticky panels sit where a reader first sees them.
  if (fullPage) await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path, fullPage });
  return path;
}

/** Everything the page logged as an error, and every uncaught exception, for assertions. */
export function collectPageErrors(page) {
  const errors = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  return errors;
}
