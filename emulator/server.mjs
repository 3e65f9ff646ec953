import { realpathSync } from "node:fs";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { parseDuration } from "./clock.mjs";
import {
  describeBody,
  parsePreferWait,
  readBody,
  sendForced,
  sendJson,
  sendMethodNotAllowed,
  sendNotFound,
  sleep,
} from "./http.mjs";
import { PredictionStore } from "./predictions.mjs";
import { predictionEffects, RuleBook, RuleError } from "./rules.mjs";
import {
  FLUX_SCHNELL_DEPLOYMENT_VERSION,
  FLUX_SCHNELL_MODEL,
  FLUX_SCHNELL_VERSION,
  fluxSchnellModel,
  fluxSchnellVersion,
  isFluxSchnell,
  validateFluxSchnellInput,
  ValidationError,
} from "./schema.mjs";
import { DEFAULT_WEBHOOK_SECRET, WEBHOOK_EVENTS, WebhookSender } from "./webhooks.mjs";

export {
  FLUX_SCHNELL_DEPLOYMENT_VERSION,
  FLUX_SCHNELL_MODEL,
  FLUX_SCHNELL_VERSION,
} from "./schema.mjs";
export { DEFAULT_WEBHOOK_SECRET, signWebhook } from "./webhooks.mjs";

const UNAUTHENTICATED = {
  title: "Unauthenticated",
  detail: "You did not pass a valid authentication token",
  status: 401,
};

const BASE_RUN_COUNT = 412_345_678;

const DEFAULTS = {
  port: 0,
  host: "127.0.0.1",
  tokens: ["r8_test"],
  acceptPrefix: null,
  predictMs: 300,
  pageSize: 100,
  retentionMs: 3_600_000,
  minCancelAfterMs: 5000,
  maxWaitSeconds: 60,
  publicUrl: null,
  webhookSecret: DEFAULT_WEBHOOK_SECRET,
  webhookRetryDelaysMs: [1000, 5000, 15000, 40000],
  quiet: true,
};

function invalidVersion() {
  return {
    title: "Invalid version or not permitted",
    detail: "The specified version does not exist (or perhaps you don't have permission to use it?)",
    status: 422,
  };
}

/** Resolves the `version` field of POST /v1/predictions. Returns { model, version } or null. */
function resolveVersion(value) {
  if (typeof value !== "string") return null;
  let match = /^([0-9a-f]{64})$/.exec(value);
  if (match) return match[1] === FLUX_SCHNELL_VERSION ? { model: FLUX_SCHNELL_MODEL, version: FLUX_SCHNELL_VERSION } : null;
  match = /^([^/:\s]+)\/([^/:\s]+):([0-9a-f]{64})$/.exec(value);
  if (match) {
    if (!isFluxSchnell(match[1], match[2]) || match[3] !== FLUX_SCHNELL_VERSION) return null;
    return { model: FLUX_SCHNELL_MODEL, version: FLUX_SCHNELL_VERSION };
  }
  match = /^([^/:\s]+)\/([^/:\s]+)$/.exec(value);
  if (match && isFluxSchnell(match[1], match[2])) {
    return { model: FLUX_SCHNELL_MODEL, version: FLUX_SCHNELL_DEPLOYMENT_VERSION };
  }
  return null;
}

function validationFailure(field, type, description) {
  return new ValidationError([{ type, field, description }]);
}

function checkWebhookFields(body) {
  if (body.webhook !== undefined && body.webhook !== null) {
    let ok = typeof body.webhook === "string";
    if (ok) {
      try {
        ok = ["http:", "https:"].includes(new URL(body.webhook).protocol);
      } catch {
        ok = false;
      }
    }
    if (!ok) throw validationFailure("webhook", "format", "Does not match format 'uri'");
  }
  const filter = body.webhook_events_filter;
  if (filter !== undefined && filter !== null) {
    if (!Array.isArray(filter)) {
      throw validationFailure("webhook_events_filter", "invalid_type", "Invalid type. Expected: array, given: " + typeof filter);
    }
    filter.forEach((event, i) => {
      if (!WEBHOOK_EVENTS.includes(event)) {
        throw validationFailure(
          `webhook_events_filter.${i}`,
          "enum",
          `webhook_events_filter.${i} must be one of the following: ${WEBHOOK_EVENTS.map((e) => JSON.stringify(e)).join(", ")}`,
        );
      }
    });
  }
}

function encodeCursor(data) {
  return Buffer.from(JSON.stringify(data)).toString("base64url");
}

function decodeCursor(text) {
  try {
    const data = JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
    if (Number.isInteger(data?.before) || Number.isInteger(data?.after)) return data;
  } catch {}
  return null;
}

function bearerToken(header) {
  const match = /^(?:Bearer|Token)\s+(\S+)\s*$/i.exec(header ?? "");
  return match ? match[1] : null;
}

function routeApi(method, path) {
  let m;
  if ((m = /^\/v1\/models\/([^/]+)\/([^/]+)\/predictions$/.exec(path))) {
    return { name: "createModelPrediction", methods: ["POST"], owner: m[1], model: m[2], create: true };
  }
  if ((m = /^\/v1\/deployments\/([^/]+)\/([^/]+)\/predictions$/.exec(path))) {
    return { name: "createDeploymentPrediction", methods: ["POST"], owner: m[1], model: m[2], create: true };
  }
  if (path === "/v1/predictions") {
    return method === "GET"
      ? { name: "listPredictions", methods: ["GET", "POST"] }
      : { name: "createPrediction", methods: ["GET", "POST"], create: true };
  }
  if ((m = /^\/v1\/predictions\/([^/]+)\/cancel$/.exec(path))) {
    return { name: "cancelPrediction", methods: ["POST"], id: m[1] };
  }
  if ((m = /^\/v1\/predictions\/([^/]+)$/.exec(path))) {
    return { name: "getPrediction", methods: ["GET"], id: m[1] };
  }
  if ((m = /^\/v1\/models\/([^/]+)\/([^/]+)\/versions\/([^/]+)$/.exec(path))) {
    return { name: "getVersion", methods: ["GET"], owner: m[1], model: m[2], version: m[3] };
  }
  if ((m = /^\/v1\/models\/([^/]+)\/([^/]+)\/versions$/.exec(path))) {
    return { name: "listVersions", methods: ["GET"], owner: m[1], model: m[2] };
  }
  if ((m = /^\/v1\/models\/([^/]+)\/([^/]+)$/.exec(path))) {
    return { name: "getModel", methods: ["GET"], owner: m[1], model: m[2] };
  }
  if (path === "/v1/webhooks/default/secret") return { name: "webhookSecret", methods: ["GET"] };
  if (path === "/v1/account") return { name: "account", methods: ["GET"] };
  return null;
}

/**
 * Starts a local emulator of Replicate's HTTP API for black-forest-labs/flux-schnell.
 * Resolves to { url, port, close(), state }.
 */
export async function startEmulator(options = {}) {
  const config = { ...DEFAULTS };
  for (const [key, value] of Object.entries(options)) if (value !== undefined) config[key] = value;
  config.tokens = [...(config.tokens ?? [])];

  const requests = [];
  const rules = new RuleBook();
  const webhooks = new WebhookSender({ secret: config.webhookSecret, retryDelaysMs: config.webhookRetryDelaysMs });
  let baseUrl = null;
  const apiBase = () => config.publicUrl ?? baseUrl;
  const store = new PredictionStore({
    predictMs: config.predictMs,
    retentionMs: config.retentionMs,
    apiBase,
    deliveryBase: () => `${apiBase()}/delivery`,
    webhooks,
  });

  const isAuthorized = (req) => {
    const token = bearerToken(req.headers.authorization);
    if (!token) return false;
    if (config.tokens.includes(token)) return true;
    return typeof config.acceptPrefix === "string" && config.acceptPrefix !== "" && token.startsWith(config.acceptPrefix);
  };

  const state = {
    config,
    requests,
    rules,
    predictions: store,
    webhookDeliveries: webhooks.deliveries,
    webhookSecret: config.webhookSecret,
    addRule(rule) {
      return rules.add(rule).id;
    },
    removeRule(id) {
      return rules.remove(id);
    },
    clearRules() {
      rules.clear();
    },
    listRequests(pathFilter) {
      return pathFilter ? requests.filter((r) => r.path.includes(pathFilter)) : [...requests];
    },
    clearRequests() {
      requests.length = 0;
    },
    getPrediction(id) {
      const prediction = store.get(id);
      return prediction ? store.toJSON(prediction) : null;
    },
    reset() {
      rules.clear();
      requests.length = 0;
      store.clear();
      webhooks.clear();
    },
  };

  async function handleCreate(req, res, route, body, effects) {
    if (body === undefined) {
      return sendJson(res, 400, { title: "Invalid request body", detail: "The request body is not valid JSON.", status: 400 });
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      return sendJson(res, 400, { title: "Invalid request body", detail: "The request body must be a JSON object.", status: 400 });
    }
    let model = FLUX_SCHNELL_MODEL;
    let version = FLUX_SCHNELL_VERSION;
    let deployment = null;
    if (route.name === "createModelPrediction") {
      if (!isFluxSchnell(route.owner, route.model)) return sendNotFound(res);
      version = FLUX_SCHNELL_DEPLOYMENT_VERSION;
    } else if (route.name === "createDeploymentPrediction") {
      deployment = `${route.owner}/${route.model}`;
    } else {
      if (body.version === undefined) {
        return sendJson(res, 422, validationFailure("(root)", "required", "version is required").toBody());
      }
      const resolved = resolveVersion(body.version);
      if (!resolved) return sendJson(res, 422, invalidVersion());
      ({ model, version } = resolved);
    }

    let input;
    try {
      input = validateFluxSchnellInput(body.input);
      checkWebhookFields(body);
    } catch (error) {
      if (error instanceof ValidationError) return sendJson(res, 422, error.toBody());
      throw error;
    }

    let cancelAfterMs = null;
    const cancelAfter = req.headers["cancel-after"];
    if (cancelAfter !== undefined) {
      const parsed = parseDuration(cancelAfter);
      if (parsed === null) {
        return sendJson(res, 400, {
          title: "Invalid Cancel-After header",
          detail: "Cancel-After must be a duration such as 30s, 5m or 1h30m45s.",
          status: 400,
        });
      }
      cancelAfterMs = Math.max(parsed, config.minCancelAfterMs);
    }

    const prediction = store.create({
      model,
      version,
      deployment,
      input,
      behavior: predictionEffects(effects),
      webhook: body.webhook ?? null,
      webhookEventsFilter: body.webhook_events_filter ?? null,
      cancelAfterMs,
    });

    const waitSeconds = parsePreferWait(req.headers.prefer, config.maxWaitSeconds);
    if (waitSeconds !== null) {
      const closed = new Promise((resolve) => res.once("close", resolve));
      await Promise.race([store.waitForOutputOrEnd(prediction, waitSeconds * 1000), closed]);
    }
    const complete = store.isTerminal(prediction) || prediction.output !== null;
    return sendJson(res, complete ? 201 : 202, store.toJSON(prediction));
  }

  function handleList(res, url) {
    const all = store.list();
    const cursorText = url.searchParams.get("cursor");
    let page;
    if (!cursorText) {
      page = all.slice(0, config.pageSize);
    } else {
      const cursor = decodeCursor(cursorText);
      if (!cursor) return sendJson(res, 400, { detail: "Invalid cursor.", status: 400 });
      if (Number.isInteger(cursor.before)) {
        page = all.filter((p) => p.seq < cursor.before).slice(0, config.pageSize);
      } else {
        const newer = all.filter((p) => p.seq > cursor.after);
        page = newer.slice(Math.max(0, newer.length - config.pageSize));
      }
    }
    const link = (data) => `${apiBase()}/v1/predictions?cursor=${encodeCursor(data)}`;
    const last = page.at(-1);
    const first = page[0];
    const next = last && all.some((p) => p.seq < last.seq) ? link({ before: last.seq }) : null;
    const previous = first && all.some((p) => p.seq > first.seq) ? link({ after: first.seq }) : null;
    return sendJson(res, 200, {
      next,
      previous,
      results: page.map((p) => store.toJSON(p, { includeLogs: false })),
    });
  }

  async function handleApi(req, res, url, path, rawBody) {
    if (!isAuthorized(req)) return sendJson(res, 401, UNAUTHENTICATED);

    const route = routeApi(req.method, path);
    let body = null;
    let prompt;
    if (route?.create) {
      try {
        body = rawBody.length === 0 ? null : JSON.parse(rawBody.toString("utf8"));
      } catch {
        body = undefined;
      }
      const candidate = body?.input?.prompt;
      if (typeof candidate === "string") prompt = candidate;
    } else if (route?.id) {
      const stored = store.get(route.id);
      if (stored) prompt = stored.input.prompt;
    }

    const effects = rules.match({ method: req.method, path, prompt, isApi: true, isCreate: Boolean(route?.create) });
    if (effects.latencyMs > 0) await sleep(effects.latencyMs);
    if (Number.isInteger(effects.httpStatus)) {
      return sendForced(res, effects.httpStatus, effects.retryAfter, effects.body);
    }

    if (!route) return sendNotFound(res);
    if (!route.methods.includes(req.method)) return sendMethodNotAllowed(res, req.method, route.methods);

    switch (route.name) {
      case "createModelPrediction":
      case "createDeploymentPrediction":
      case "createPrediction":
        return handleCreate(req, res, route, body, effects);
      case "listPredictions":
        return handleList(res, url);
      case "getPrediction": {
        const prediction = store.get(route.id);
        if (!prediction) return sendNotFound(res);
        return sendJson(res, 200, store.toJSON(prediction));
      }
      case "cancelPrediction": {
        const prediction = store.get(route.id);
        if (!prediction) return sendNotFound(res);
        store.cancel(prediction);
        return sendJson(res, 200, store.toJSON(prediction));
      }
      case "getModel":
        if (!isFluxSchnell(route.owner, route.model)) return sendNotFound(res);
        return sendJson(res, 200, fluxSchnellModel(BASE_RUN_COUNT + store.createdCount));
      case "listVersions":
        if (!isFluxSchnell(route.owner, route.model)) return sendNotFound(res);
        return sendJson(res, 200, { next: null, previous: null, results: [fluxSchnellVersion()] });
      case "getVersion":
        if (!isFluxSchnell(route.owner, route.model) || route.version !== FLUX_SCHNELL_VERSION) return sendNotFound(res);
        return sendJson(res, 200, fluxSchnellVersion());
      case "webhookSecret":
        return sendJson(res, 200, { key: config.webhookSecret });
      case "account":
        return sendJson(res, 200, {
          type: "organization",
          username: "emulator",
          name: "Replicate emulator",
          github_url: null,
        });
      default:
        return sendNotFound(res);
    }
  }

  async function handleDelivery(req, res, path) {
    const effects = rules.match({ method: req.method, path, isApi: false, isCreate: false });
    if (effects.latencyMs > 0) await sleep(effects.latencyMs);
    if (Number.isInteger(effects.httpStatus)) {
      return sendForced(res, effects.httpStatus, effects.retryAfter, effects.body);
    }
    const match = /^\/delivery\/([^/]+)\/out-(\d+)\.([a-z0-9]+)$/.exec(path);
    if (!match) return sendNotFound(res);
    if (req.method !== "GET" && req.method !== "HEAD") return sendMethodNotAllowed(res, req.method, ["GET", "HEAD"]);
    const stored = store.file(match[1], Number(match[2]), match[3]);
    if (!stored) return sendNotFound(res);
    // Delivery effects: a wrong Content-Type header, or other bytes in place of the image.
    const file = typeof effects.replaceBody === "string" ? { ...stored, bytes: Buffer.from(effects.replaceBody) } : stored;
    res.writeHead(200, {
      "Content-Type": typeof effects.contentType === "string" ? effects.contentType : file.contentType,
      "Content-Length": file.bytes.length,
      "Cache-Control": "public, max-age=3600",
    });
    if (req.method === "HEAD") return res.end();
    if (file.truncate) {
      const half = file.bytes.subarray(0, Math.floor(file.bytes.length / 2));
      res.write(half, () => res.destroy());
      return;
    }
    res.end(file.bytes);
  }

  async function handleControl(req, res, url, path, rawBody) {
    let body = null;
    if (rawBody.length > 0) {
      try {
        body = JSON.parse(rawBody.toString("utf8"));
      } catch {
        return sendJson(res, 400, { detail: "The request body is not valid JSON." });
      }
    }
    const ruleMatch = /^\/_control\/rules\/([^/]+)$/.exec(path);
    if (path === "/_control/rules") {
      if (req.method === "POST") {
        try {
          return sendJson(res, 201, { id: state.addRule(body) });
        } catch (error) {
          if (error instanceof RuleError) return sendJson(res, 400, { detail: error.message });
          throw error;
        }
      }
      if (req.method === "GET") return sendJson(res, 200, rules.list());
      if (req.method === "DELETE") {
        const cleared = rules.rules.length;
        rules.clear();
        return sendJson(res, 200, { cleared });
      }
      return sendMethodNotAllowed(res, req.method, ["GET", "POST", "DELETE"]);
    }
    if (ruleMatch) {
      if (req.method !== "DELETE") return sendMethodNotAllowed(res, req.method, ["DELETE"]);
      return rules.remove(ruleMatch[1]) ? sendJson(res, 200, { deleted: ruleMatch[1] }) : sendNotFound(res);
    }
    if (path === "/_control/requests") {
      if (req.method === "GET") return sendJson(res, 200, state.listRequests(url.searchParams.get("path")));
      if (req.method === "DELETE") {
        const cleared = requests.length;
        state.clearRequests();
        return sendJson(res, 200, { cleared });
      }
      return sendMethodNotAllowed(res, req.method, ["GET", "DELETE"]);
    }
    if (path === "/_control/webhooks") {
      if (req.method === "GET") return sendJson(res, 200, webhooks.deliveries);
      if (req.method === "DELETE") {
        webhooks.deliveries.length = 0;
        return sendJson(res, 200, { cleared: true });
      }
      return sendMethodNotAllowed(res, req.method, ["GET", "DELETE"]);
    }
    if (path === "/_control/reset") {
      if (req.method !== "POST") return sendMethodNotAllowed(res, req.method, ["POST"]);
      state.reset();
      return sendJson(res, 200, { reset: true });
    }
    if (path === "/_control/health") {
      return sendJson(res, 200, { ok: true, url: apiBase(), predictions: store.byId.size });
    }
    return sendNotFound(res);
  }

  async function handle(req, res) {
    const url = new URL(req.url, "http://emulator.invalid");
    let path = url.pathname;
    if (path.length > 1 && path.endsWith("/")) path = path.slice(0, -1);
    let rawBody;
    try {
      rawBody = await readBody(req);
    } catch (error) {
      if (error.status === 413) return sendJson(res, 413, { detail: "Request body too large.", status: 413 });
      throw error;
    }

    if (path === "/_control" || path.startsWith("/_control/")) return handleControl(req, res, url, path, rawBody);

    requests.push({
      method: req.method,
      path,
      query: Object.fromEntries(url.searchParams),
      headers: { ...req.headers },
      body: describeBody(rawBody),
      at: Date.now(),
    });

    if (path === "/v1" || path.startsWith("/v1/")) return handleApi(req, res, url, path, rawBody);
    if (path.startsWith("/delivery/")) return handleDelivery(req, res, path);
    return sendNotFound(res);
  }

  const server = createServer((req, res) => {
    const started = Date.now();
    if (!config.quiet) {
      res.on("finish", () => {
        process.stderr.write(`${req.method} ${req.url} -> ${res.statusCode} (${Date.now() - started} ms)\n`);
      });
    }
    handle(req, res).catch((error) => {
      if (!config.quiet) process.stderr.write(`emulator error: ${error?.stack ?? error}\n`);
      if (!res.headersSent) sendJson(res, 500, { detail: "Internal server error" });
      else res.destroy();
    });
  });

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => {
      server.off("error", reject);
      resolve();
    });
  });

  const { port } = server.address();
  const loopbackHost = ["0.0.0.0", "::", ""].includes(config.host)
    ? "127.0.0.1"
    : config.host.includes(":")
      ? `[${config.host}]`
      : config.host;
  baseUrl = `http://${loopbackHost}:${port}`;

  let closing = null;
  const close = () => {
    closing ??= new Promise((resolve) => {
      store.close();
      webhooks.close();
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  };

  return { url: baseUrl, port, close, state };
}

function parseCliArgs(argv) {
  const options = {};
  const numeric = {
    "--port": "port",
    "--predict-ms": "predictMs",
    "--page-size": "pageSize",
    "--retention-ms": "retentionMs",
    "--min-cancel-after-ms": "minCancelAfterMs",
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => (inline !== undefined ? inline : argv[++i]);
    if (flag in numeric) {
      const n = Number(value());
      if (!Number.isFinite(n)) throw new Error(`${flag} needs a number`);
      options[numeric[flag]] = n;
    } else if (flag === "--host") options.host = value();
    else if (flag === "--accept-prefix") options.acceptPrefix = value();
    else if (flag === "--public-url") options.publicUrl = value();
    else if (flag === "--verbose") options.quiet = false;
    else throw new Error(`unknown option ${flag}`);
  }
  const tokens = process.env.EMULATOR_TOKENS;
  if (tokens !== undefined) {
    options.tokens = tokens
      .split(",")
      .map((t) => t.trim())
      .filter(Boolean);
  }
  return options;
}

function isMainModule() {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMainModule()) {
  let options;
  try {
    options = parseCliArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${error.message}\n`);
    process.exit(2);
  }
  const emulator = await startEmulator(options);
  process.stdout.write(`Replicate emulator listening on ${emulator.url}\n`);
  const stop = () => {
    emulator.close().then(() => process.exit(0));
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
