import { randomBytes } from "node:crypto";
import { realpathSync } from "node:fs";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { parseDuration } from "./clock.mjs";
import { echoedHeaders, holdOpen, RedirectPlans, sendRedirect, serveFile } from "./delivery.mjs";
import { DEFAULT_MAX_FILE_BYTES, FileError, FileStore, tooLarge } from "./files.mjs";
import {
  describeBody,
  forcedResponse,
  parsePreferWait,
  readBody,
  sendForced,
  sendJson,
  sendMethodNotAllowed,
  sendNotFound,
  sleep,
} from "./http.mjs";
import { InputFetcher } from "./inputs.mjs";
import { findModel, findVersion } from "./models.mjs";
import { PredictionStore } from "./predictions.mjs";
import { predictionEffects, RuleBook, RuleError } from "./rules.mjs";
import { modelObject, validateInput, ValidationError, versionObject } from "./schema.mjs";
import { CONTROLLED_MODES, DEFAULT_WEBHOOK_SECRET, WEBHOOK_EVENTS, WebhookSender } from "./webhooks.mjs";

export { FLUX_SCHNELL_MODEL } from "./schema.mjs";
export {
  FLUX_11_PRO_VERSION,
  FLUX_DEV_VERSION,
  FLUX_FILL_PRO_VERSION,
  FLUX_KONTEXT_PRO_VERSION,
  FLUX_SCHNELL_DEPLOYMENT_VERSION,
  FLUX_SCHNELL_VERSION,
  HIDDEN_VERSION,
  MODELS,
  REAL_ESRGAN_VERSION,
  SD_INPAINTING_VERSION,
  SDXL_VERSION,
} from "./models.mjs";
export { DEFAULT_WEBHOOK_SECRET, signWebhook } from "./webhooks.mjs";

const UNAUTHENTICATED = {
  title: "Unauthenticated",
  detail: "You did not pass a valid authentication token",
  status: 401,
};

const RESOURCE_NOT_FOUND = { detail: "The requested resource could not be found.", status: 404 };
const FILE_NOT_FOUND = { detail: "File not found" };
const FILE_JSON = { "Content-Type": "application/json; charset=UTF-8" };
const GENERAL_BODY_LIMIT = 110 * 1024 * 1024;

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
  strictInputs: false,
  maxFileBytes: DEFAULT_MAX_FILE_BYTES,
  inputFetchTimeoutMs: 10_000,
  maxInputBytes: 32 * 1024 * 1024,
  quiet: true,
};

function invalidVersion() {
  return {
    title: "Invalid version or not permitted",
    detail: "The specified version does not exist (or perhaps you don't have permission to use it?)",
    status: 422,
  };
}

/**
 * Resolves the `version` field of POST /v1/predictions: `<64 hex>`, `owner/name:<64 hex>`,
 * or `owner/name` (official models). Returns { modelDef, versionDef, version } or null.
 */
function resolveVersion(value) {
  if (typeof value !== "string") return null;
  let match = /^([0-9a-f]{64})$/.exec(value);
  if (match) {
    const found = findVersion(match[1]);
    return found ? { modelDef: found.model, versionDef: found.version, version: found.version.id } : null;
  }
  match = /^([^/:\s]+)\/([^/:\s]+):([0-9a-f]{64})$/.exec(value);
  if (match) {
    const modelDef = findModel(match[1], match[2]);
    const versionDef = modelDef?.versions.find((v) => v.id === match[3]);
    return versionDef ? { modelDef, versionDef, version: versionDef.id } : null;
  }
  match = /^([^/:\s]+)\/([^/:\s]+)$/.exec(value);
  const modelDef = match ? findModel(match[1], match[2]) : null;
  if (modelDef?.official) return { modelDef, versionDef: modelDef.latestVersion, version: modelDef.predictionVersion };
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

/**
 * One page of `all` (newest first, each with a `seq`) for a `cursor` query value.
 * Returns { next, previous, page } or null for a bad cursor.
 */
function paginate(all, cursorText, pageSize, linkBase) {
  let page;
  if (!cursorText) {
    page = all.slice(0, pageSize);
  } else {
    const cursor = decodeCursor(cursorText);
    if (!cursor) return null;
    if (Number.isInteger(cursor.before)) {
      page = all.filter((p) => p.seq < cursor.before).slice(0, pageSize);
    } else {
      const newer = all.filter((p) => p.seq > cursor.after);
      page = newer.slice(Math.max(0, newer.length - pageSize));
    }
  }
  const link = (data) => `${linkBase}?cursor=${encodeCursor(data)}`;
  const last = page.at(-1);
  const first = page[0];
  const next = last && all.some((p) => p.seq < last.seq) ? link({ before: last.seq }) : null;
  const previous = first && all.some((p) => p.seq > first.seq) ? link({ after: first.seq }) : null;
  return { next, previous, page };
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
    return { name: "cancelPrediction", methods: ["POST"], id: m[1], prediction: true };
  }
  if ((m = /^\/v1\/predictions\/([^/]+)$/.exec(path))) {
    return { name: "getPrediction", methods: ["GET"], id: m[1], prediction: true };
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
  if (path === "/v1/files") {
    return method === "POST" ? { name: "uploadFile", methods: ["GET", "POST"] } : { name: "listFiles", methods: ["GET", "POST"] };
  }
  if ((m = /^\/v1\/files\/([^/]+)\/download$/.exec(path))) return { name: "downloadFile", methods: ["GET", "HEAD"], id: m[1] };
  if ((m = /^\/v1\/files\/([^/]+)$/.exec(path))) return { name: "file", methods: ["GET", "DELETE"], id: m[1] };
  if (path === "/v1/webhooks/default/secret") return { name: "webhookSecret", methods: ["GET"] };
  if (path === "/v1/account") return { name: "account", methods: ["GET"] };
  return null;
}

/**
 * Starts a local emulator of Replicate's HTTP API for the models in models.mjs.
 * Resolves to { url, port, close(), state }.
 */
export async function startEmulator(options = {}) {
  const config = { ...DEFAULTS };
  for (const [key, value] of Object.entries(options)) if (value !== undefined) config[key] = value;
  config.tokens = [...(config.tokens ?? [])];

  const requests = [];
  const rules = new RuleBook();
  const plans = new RedirectPlans();
  const files = new FileStore({ maxBytes: config.maxFileBytes });
  const webhooks = new WebhookSender({
    secret: config.webhookSecret,
    retryDelaysMs: config.webhookRetryDelaysMs,
    enabled: config.sendWebhooks !== false,
  });
  const internalSecret = `INTERNAL-SECRET-${randomBytes(12).toString("hex")}`;
  let baseUrl = null;
  const apiBase = () => config.publicUrl ?? baseUrl;

  /** Replicate file URLs (this emulator's, or api.replicate.com's) come from the file store. */
  const resolveFile = (url) => {
    const match = /^\/v1\/files\/([^/]+)(?:\/download)?$/.exec(url.pathname);
    if (!match || !["http:", "https:"].includes(url.protocol)) return undefined;
    const own = new Set(["api.replicate.com", new URL(baseUrl).host, new URL(apiBase()).host]);
    if (!own.has(url.host)) return undefined;
    const record = files.get(match[1]);
    return record ? { bytes: record.bytes, contentType: record.contentType } : null;
  };
  const fetcher = new InputFetcher({ resolveFile, timeoutMs: config.inputFetchTimeoutMs, maxBytes: config.maxInputBytes });

  const store = new PredictionStore({
    predictMs: config.predictMs,
    retentionMs: config.retentionMs,
    apiBase,
    deliveryBase: () => `${apiBase()}/delivery`,
    webhooks,
    loadInput: (prediction, field, url) => fetcher.load(prediction.id, field, url),
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
    files,
    fetches: fetcher.log,
    webhookDeliveries: webhooks.deliveries,
    webhookSecret: config.webhookSecret,
    internalSecret,
    /** Where /_control/internal-secret answers: `sameHost` as the API, `otherHost` under the name localhost. */
    internalSecretUrls: null,
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
      plans.clear();
      requests.length = 0;
      store.clear();
      files.clear();
      fetcher.clear();
      webhooks.clear();
    },
  };

  function sendEchoedHeaders(req, res, effects) {
    const status = Number.isInteger(effects.httpStatus) ? effects.httpStatus : 500;
    const { headers } = forcedResponse(status, effects.retryAfter, null);
    const detail = `Upstream request failed. It carried these headers:\n${echoedHeaders(req)}`;
    return sendJson(res, status, { detail, status }, headers);
  }

  /** Effects every answer honours, in order. True when the answer was given (or withheld). */
  async function applyResponseEffects(req, res, effects) {
    if (effects.latencyMs > 0) await sleep(effects.latencyMs);
    if (effects.holdOpen) {
      await holdOpen(res);
      return true;
    }
    if (effects.echoHeaders) {
      sendEchoedHeaders(req, res, effects);
      return true;
    }
    if (Number.isInteger(effects.httpStatus)) {
      sendForced(res, effects.httpStatus, effects.retryAfter, effects.body);
      return true;
    }
    return false;
  }

  async function handleCreate(req, res, route, body, effects) {
    if (body === undefined) {
      return sendJson(res, 400, { title: "Invalid request body", detail: "The request body is not valid JSON.", status: 400 });
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      return sendJson(res, 400, { title: "Invalid request body", detail: "The request body must be a JSON object.", status: 400 });
    }
    let modelDef;
    let versionDef;
    let version;
    let deployment = null;
    if (route.name === "createModelPrediction") {
      modelDef = findModel(route.owner, route.model);
      if (!modelDef) return sendNotFound(res);
      if (!modelDef.official) return sendJson(res, 404, RESOURCE_NOT_FOUND);
      versionDef = modelDef.latestVersion;
      version = modelDef.predictionVersion;
    } else if (route.name === "createDeploymentPrediction") {
      // Every deployment runs flux-schnell.
      modelDef = findModel("black-forest-labs", "flux-schnell");
      versionDef = modelDef.latestVersion;
      version = modelDef.predictionVersion;
      deployment = `${route.owner}/${route.model}`;
    } else {
      if (body.version === undefined) {
        return sendJson(res, 422, validationFailure("(root)", "required", "version is required").toBody());
      }
      const resolved = resolveVersion(body.version);
      if (!resolved) return sendJson(res, 422, invalidVersion());
      ({ modelDef, versionDef, version } = resolved);
    }

    let input;
    try {
      const strict = typeof effects.strictInputs === "boolean" ? effects.strictInputs : Boolean(config.strictInputs);
      input = validateInput(versionDef.openapi_schema, body.input, { strict });
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
      model: modelDef.slug,
      modelDef,
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
    const result = paginate(store.list(), url.searchParams.get("cursor"), config.pageSize, `${apiBase()}/v1/predictions`);
    if (!result) return sendJson(res, 400, { detail: "Invalid cursor.", status: 400 });
    return sendJson(res, 200, {
      next: result.next,
      previous: result.previous,
      results: result.page.map((p) => store.toJSON(p, { includeLogs: false })),
    });
  }

  async function handleFiles(req, res, url, route, rawBody) {
    switch (route.name) {
      case "uploadFile": {
        let record;
        try {
          record = await files.upload(req.headers["content-type"], rawBody);
        } catch (error) {
          if (!(error instanceof FileError)) throw error;
          const headers = error.status === 413 ? { "Content-Type": "application/problem+json" } : {};
          return sendJson(res, error.status, { detail: error.detail }, headers);
        }
        return sendJson(res, 201, files.toJSON(record, apiBase()), FILE_JSON);
      }
      case "listFiles": {
        const result = paginate(files.list(), url.searchParams.get("cursor"), config.pageSize, `${apiBase()}/v1/files`);
        if (!result) return sendJson(res, 400, { detail: "Invalid cursor.", status: 400 });
        const results = result.page.map((r) => files.toJSON(r, apiBase()));
        return sendJson(res, 200, { next: result.next, previous: result.previous, results }, FILE_JSON);
      }
      case "file": {
        const record = files.get(route.id);
        if (!record) return sendJson(res, 404, FILE_NOT_FOUND);
        if (req.method === "DELETE") {
          files.delete(route.id);
          res.writeHead(204);
          return res.end();
        }
        return sendJson(res, 200, files.toJSON(record, apiBase()), FILE_JSON);
      }
      case "downloadFile": {
        const record = files.get(route.id);
        if (!record) return sendJson(res, 404, FILE_NOT_FOUND);
        return serveFile(req, res, { bytes: record.bytes, contentType: record.contentType }, {}, { ETag: `"${record.md5}"` });
      }
      default:
        return sendNotFound(res);
    }
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
    } else if (route?.prediction) {
      const stored = store.get(route.id);
      if (stored && typeof stored.input.prompt === "string") prompt = stored.input.prompt;
    }

    const effects = rules.match({ method: req.method, path, prompt, isApi: true, isCreate: Boolean(route?.create) });
    if (await applyResponseEffects(req, res, effects)) return;

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
      case "listVersions":
      case "getVersion": {
        const modelDef = findModel(route.owner, route.model);
        if (!modelDef) return sendNotFound(res);
        if (route.name === "getModel") {
          return sendJson(res, 200, modelObject(modelDef, modelDef.baseRunCount + (store.createdByModel.get(modelDef.slug) ?? 0)));
        }
        if (route.name === "listVersions") {
          return sendJson(res, 200, { next: null, previous: null, results: modelDef.versions.map(versionObject) });
        }
        const versionDef = modelDef.versions.find((v) => v.id === route.version);
        return versionDef ? sendJson(res, 200, versionObject(versionDef)) : sendNotFound(res);
      }
      case "uploadFile":
      case "listFiles":
      case "file":
      case "downloadFile":
        return handleFiles(req, res, url, route, rawBody);
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

  async function handleDelivery(req, res, url, path) {
    const match = /^\/delivery\/([^/]+)\/([^/]+)$/.exec(path);
    const prediction = match ? store.get(match[1]) : null;
    const hop = plans.lookup(url.searchParams.get("hop"));
    let effects;
    if (hop) {
      effects = hop.effects;
    } else {
      const outputPrompt = typeof prediction?.input.prompt === "string" ? prediction.input.prompt : undefined;
      effects = rules.match({ method: req.method, path, outputPrompt, isApi: false, isCreate: false, isDelivery: true });
      if (await applyResponseEffects(req, res, effects)) return;
    }
    if (!match) return sendNotFound(res);
    if (req.method !== "GET" && req.method !== "HEAD") return sendMethodNotAllowed(res, req.method, ["GET", "HEAD"]);
    const stored = store.file(match[1], match[2]);
    if (!stored) return sendNotFound(res);

    const hopsDone = hop?.hops ?? 0;
    const status = effects.redirectStatus ?? 302;
    if ((effects.redirectHops ?? 0) > hopsDone) {
      const token = hop?.token ?? plans.create(effects);
      return sendRedirect(res, status, `${apiBase()}${path}?hop=${token}.${hopsDone + 1}`);
    }
    if (typeof effects.redirectTo === "string") return sendRedirect(res, status, effects.redirectTo);
    return serveFile(req, res, stored, effects, { "Cache-Control": "public, max-age=3600" });
  }

  async function deliverWebhook(res, body) {
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      return sendJson(res, 400, { detail: "Send {url, prediction, mode}." });
    }
    const { url, prediction: id, mode = "valid", ageSeconds, messageId } = body;
    let ok = typeof url === "string";
    try {
      ok = ok && ["http:", "https:"].includes(new URL(url).protocol);
    } catch {
      ok = false;
    }
    if (!ok) return sendJson(res, 400, { detail: "url must be an absolute http(s) URL" });
    if (!CONTROLLED_MODES.includes(mode)) return sendJson(res, 400, { detail: `mode must be one of ${CONTROLLED_MODES.join(", ")}` });
    if (ageSeconds !== undefined && !Number.isFinite(ageSeconds)) return sendJson(res, 400, { detail: "ageSeconds must be a number" });
    if (messageId !== undefined && typeof messageId !== "string") return sendJson(res, 400, { detail: "messageId must be a string" });
    let payload = null;
    let earlier = null;
    if (!(mode === "replay" && messageId)) {
      const prediction = typeof id === "string" ? store.get(id) : null;
      if (!prediction) return sendJson(res, 404, { detail: "prediction must name a stored prediction" });
      payload = store.toJSON(prediction);
      earlier = earlierSnapshot(payload);
    }
    const event = payload && !store.isTerminal(store.get(id)) ? "output" : "completed";
    try {
      const deliveries = await webhooks.deliverControlled({ url, mode, event, payload, earlier, ageSeconds, messageId });
      return sendJson(res, 200, { deliveries });
    } catch (error) {
      return sendJson(res, 400, { detail: String(error.message) });
    }
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
    if (path === "/_control/fetches") {
      if (req.method === "GET") {
        const prediction = url.searchParams.get("prediction");
        return sendJson(res, 200, prediction ? fetcher.log.filter((f) => f.prediction === prediction) : fetcher.log);
      }
      if (req.method === "DELETE") {
        const cleared = fetcher.log.length;
        fetcher.clear();
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
    if (path === "/_control/webhooks/deliver") {
      if (req.method !== "POST") return sendMethodNotAllowed(res, req.method, ["POST"]);
      return deliverWebhook(res, body);
    }
    if (path === "/_control/reset") {
      if (req.method !== "POST") return sendMethodNotAllowed(res, req.method, ["POST"]);
      state.reset();
      return sendJson(res, 200, { reset: true });
    }
    if (path === "/_control/health") {
      return sendJson(res, 200, {
        ok: true,
        url: apiBase(),
        predictions: store.byId.size,
        files: files.byId.size,
        internalSecretUrls: state.internalSecretUrls,
      });
    }
    return sendNotFound(res);
  }

  function logRequest(req, url, path, rawBody) {
    const multipart = /^multipart\//i.test(req.headers["content-type"] ?? "");
    requests.push({
      method: req.method,
      path,
      query: Object.fromEntries(url.searchParams),
      headers: { ...req.headers },
      body: multipart ? { multipart: true, bytes: rawBody.length } : describeBody(rawBody),
      at: Date.now(),
    });
  }

  async function handle(req, res) {
    const url = new URL(req.url, "http://emulator.invalid");
    let path = url.pathname;
    if (path.length > 1 && path.endsWith("/")) path = path.slice(0, -1);

    const isUpload = path === "/v1/files" && req.method === "POST";
    const limit = isUpload ? config.maxFileBytes + 1024 * 1024 : Math.max(GENERAL_BODY_LIMIT, config.maxFileBytes + 1024 * 1024);
    const declared = Number(req.headers["content-length"]);
    const refuse = () => {
      res.setHeader("Connection", "close");
      if (isUpload) return sendJson(res, 413, { detail: tooLarge(config.maxFileBytes).detail }, { "Content-Type": "application/problem+json" });
      return sendJson(res, 413, { detail: "Request body too large.", status: 413 });
    };
    if (Number.isFinite(declared) && declared > limit) return refuse();
    let rawBody;
    try {
      rawBody = await readBody(req, limit);
    } catch (error) {
      if (error.status === 413) return refuse();
      throw error;
    }

    if (path === "/_control/internal-secret" || path.startsWith("/_control/internal-secret/")) {
      logRequest(req, url, path, rawBody);
      const secret = Buffer.from(`${internalSecret}\n`);
      res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": secret.length });
      return res.end(req.method === "HEAD" ? undefined : secret);
    }
    if (path === "/_control" || path.startsWith("/_control/")) return handleControl(req, res, url, path, rawBody);

    logRequest(req, url, path, rawBody);
    if (path === "/v1" || path.startsWith("/v1/")) return handleApi(req, res, url, path, rawBody);
    if (path.startsWith("/delivery/")) return handleDelivery(req, res, url, path);
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
  state.internalSecretUrls = {
    sameHost: `${baseUrl}/_control/internal-secret`,
    otherHost: `http://localhost:${port}/_control/internal-secret`,
  };

  let closing = null;
  const close = () => {
    closing ??= new Promise((resolve) => {
      store.close();
      webhooks.close();
      fetcher.close();
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  };

  return { url: baseUrl, port, close, state };
}

/** The prediction as a receiver saw it one step earlier (for out-of-order webhook deliveries). */
function earlierSnapshot(payload) {
  const earlier = { ...payload, output: null, error: null, status: payload.status === "starting" ? "starting" : "processing" };
  if (payload.status === "processing") earlier.status = "starting";
  delete earlier.completed_at;
  delete earlier.metrics;
  if (earlier.status === "starting") {
    delete earlier.started_at;
    earlier.logs = "";
  }
  return earlier;
}

function parseCliArgs(argv) {
  const options = {};
  const numeric = {
    "--port": "port",
    "--predict-ms": "predictMs",
    "--page-size": "pageSize",
    "--retention-ms": "retentionMs",
    "--min-cancel-after-ms": "minCancelAfterMs",
    "--max-file-bytes": "maxFileBytes",
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => (inline !== undefined ? inline : argv[++i]);
    if (flag in numeric) {
      const n = Number(value());
      if (!Number.isFinite(n)) throw new Error(`${flag} needs a number`);
      options[numeric[flag]] = n;
    } else if (flag === "--host") options.host = value();
    else if (flag === "--webhook-secret") options.webhookSecret = value();
    else if (flag === "--strict-inputs") options.strictInputs = true;
    else if (flag === "--no-webhooks") options.sendWebhooks = false;
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
