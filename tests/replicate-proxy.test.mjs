// The Replicate-compatible API under /replicate/v1: same routes, bodies,
// status codes and headers as Replicate, with outputs copied into R2 and
// served from /image/{id}. Driven with raw fetch and with the official
// JavaScript client; what the worker sent upstream is read back from the
// emulator's request log.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { describe, test } from "node:test";
import Replicate from "replicate";
import { FLUX_SCHNELL_VERSION } from "../emulator/server.mjs";
import {
  AUTH_TOKEN,
  SERVICE_REPLICATE_TOKEN,
  USER_REPLICATE_TOKEN,
  addRule,
  createsFor,
  eventually,
  received,
  record,
  stored,
  uniquePrompt,
  worker,
  workerWith,
} from "./harness.mjs";

const MODEL = "black-forest-labs/flux-schnell";
const T = { timeout: 60_000 };

/** A raw request to the worker's /replicate/v1 API. */
function api(w, path, { method = "GET", body, headers = {}, auth = AUTH_TOKEN } = {}) {
  const h = { ...headers };
  if (auth) h.authorization = `Bearer ${auth}`;
  if (body !== undefined) h["content-type"] ??= "application/json";
  return w.fetch(`/replicate/v1${path}`, {
    method,
    headers: h,
    body: body === undefined || typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** The official client pointed at the worker. */
function client(w, auth = AUTH_TOKEN) {
  return new Replicate({ auth, baseUrl: `${w.url.origin}/replicate/v1` });
}

/** A read of the emulator itself (what Replicate says, unproxied). */
async function upstream(w, path) {
  const res = await fetch(`${w.emulator.url}${path}`, { headers: { authorization: `Bearer ${SERVICE_REPLICATE_TOKEN}` } });
  assert.equal(res.status, 200, `emulator GET ${path}`);
  return res.json();
}

function escape(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The worker's /image/{id} URL pattern. */
function imageUrl(w, ext = "(webp|png|jpg)") {
  return new RegExp(`^${escape(w.url.origin)}/image/[0-9a-z]{26}\\.${ext}$`);
}

function imageId(url) {
  return String(url).split("/image/")[1];
}

/**
 * Asserts a prediction object as the proxy must return it: urls.get/cancel
 * point at the worker, a succeeded prediction's outputs are /image/ URLs,
 * nothing points back at the upstream API or its delivery host.
 */
function assertProxied(w, p, { ext } = {}) {
  assert.match(p.id, /^[0-9a-z]+$/);
  assert.equal(p.urls?.get, `${w.url.origin}/replicate/v1/predictions/${p.id}`);
  assert.equal(p.urls?.cancel, `${w.url.origin}/replicate/v1/predictions/${p.id}/cancel`);
  if (p.status === "succeeded") {
    assert.ok(Array.isArray(p.output) && p.output.length > 0, `output: ${JSON.stringify(p.output)}`);
    for (const url of p.output) assert.match(url, imageUrl(w, ext), "output rewritten to the worker");
  }
  assert.ok(!JSON.stringify(p).includes(`${w.emulator.url}/`), `no upstream URL left in ${JSON.stringify(p)}`);
}

async function json(res, status, what = "") {
  const text = await res.text();
  assert.equal(res.status, status, `${what} ${text.slice(0, 300)}`);
  // Replicate's errors are RFC 7807: application/problem+json is JSON too.
  assert.match(res.headers.get("content-type") ?? "", /^application\/(problem\+)?json/, what);
  return JSON.parse(text);
}

/** Creates through the worker with `Prefer: wait` and expects it done (201). */
async function createDone(w, input, extra = {}) {
  const res = await api(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input }, headers: { prefer: "wait" }, ...extra });
  const p = await json(res, 201, "create");
  assert.equal(p.status, "succeeded");
  return p;
}

/** Every KV key `image:*` whose metadata names the prediction. */
async function recordsOf(w, predictionId) {
  const kv = await w.mf.getKVNamespace("IMAGE_META");
  const keys = [];
  let cursor;
  do {
    const page = await kv.list({ prefix: "image:", cursor });
    keys.push(...page.keys);
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor);
  return keys.filter((k) => k.metadata?.prediction_id === predictionId).map((k) => k.name.slice("image:".length));
}

async function r2Bytes(w, id) {
  const object = await (await w.mf.getR2Bucket("IMAGES")).get(id);
  assert.ok(object, `${id} in R2`);
  return new Uint8Array(await object.arrayBuffer());
}

async function bytesAt(url) {
  const res = await fetch(url);
  assert.equal(res.status, 200, String(url));
  return new Uint8Array(await res.arrayBuffer());
}

async function rejectsWithStatus(promise, status) {
  let error;
  try {
    await promise;
  } catch (e) {
    error = e;
  }
  assert.ok(error, "the client threw");
  assert.equal(error.name, "ApiError", String(error));
  assert.equal(error.response?.status, status, String(error));
  return error;
}

describe("Replicate-compatible API (/replicate/v1)", () => {
  // ---- routes and pass-through -------------------------------------------

  test("POST /models/{owner}/{name}/predictions with Prefer: wait: 201, succeeded, outputs rewritten and stored", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("proxy model create");
    const p = await createDone(w, { prompt, output_format: "png", num_outputs: 2, megapixels: "0.25" });
    assertProxied(w, p, { ext: "png" });
    assert.equal(p.output.length, 2);
    assert.equal(p.model, MODEL);
    assert.equal(p.input.prompt, prompt);
    const [create] = await createsFor(prompt);
    assert.equal(create.path, `/v1/models/${MODEL}/predictions`);
    assert.equal(create.headers.prefer, "wait");
    for (const [index, url] of p.output.entries()) {
      const r = await stored(w, imageId(url));
      assert.equal(r.prediction_id, p.id);
      assert.equal(r.index, index);
      assert.equal(r.content_type, "image/png");
    }
  });

  test("POST /predictions with a version in each of Replicate's three forms", T, async () => {
    const w = await worker();
    for (const version of [FLUX_SCHNELL_VERSION, `${MODEL}:${FLUX_SCHNELL_VERSION}`, MODEL]) {
      const prompt = uniquePrompt("proxy version");
      const res = await api(w, "/predictions", { method: "POST", body: { version, input: { prompt } }, headers: { prefer: "wait" } });
      const p = await json(res, 201, version);
      assert.equal(p.status, "succeeded", version);
      assertProxied(w, p, { ext: "webp" });
      const creates = await createsFor(prompt);
      assert.equal(creates.length, 1, version);
      assert.equal(creates[0].path, "/v1/predictions");
      assert.equal(creates[0].body.version, version);
    }
  });

  test("POST /deployments/{owner}/{name}/predictions through the client", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("proxy deployment");
    const p = await client(w).deployments.predictions.create("acme", "flux-fast", { input: { prompt }, wait: true });
    assert.equal(p.status, "succeeded");
    assert.equal(p.deployment, "acme/flux-fast");
    assertProxied(w, p);
    const [create] = await createsFor(prompt);
    assert.equal(create.path, "/v1/deployments/acme/flux-fast/predictions");
  });

  test("GET /models/{owner}/{name} and /versions/{version} answer as Replicate does", T, async () => {
    const w = await worker();
    const replicate = client(w);
    const model = await replicate.models.get("black-forest-labs", "flux-schnell");
    assert.equal(model.owner, "black-forest-labs");
    assert.equal(model.name, "flux-schnell");
    assert.equal(model.latest_version.id, FLUX_SCHNELL_VERSION);
    const version = await replicate.models.versions.get("black-forest-labs", "flux-schnell", FLUX_SCHNELL_VERSION);
    assert.equal(version.id, FLUX_SCHNELL_VERSION);
    assert.deepEqual(version, await upstream(w, `/v1/models/${MODEL}/versions/${FLUX_SCHNELL_VERSION}`));
    assert.ok(version.openapi_schema.components.schemas.Input.properties.prompt);
    await rejectsWithStatus(replicate.models.get("nobody", "nothing"), 404);
  });

  test("Prefer and Cancel-After are passed to Replicate", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("proxy headers");
    const res = await api(w, `/models/${MODEL}/predictions`, {
      method: "POST",
      body: { input: { prompt } },
      headers: { prefer: "wait=3", "cancel-after": "45s" },
    });
    const p = await json(res, 201);
    const [create] = await createsFor(prompt);
    assert.equal(create.headers.prefer, "wait=3");
    assert.equal(create.headers["cancel-after"], "45s");
    assert.ok(p.deadline, "Replicate set a deadline from Cancel-After");
  });

  test("a 429 from Replicate comes back with its status, body and Retry-After", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("proxy throttled");
    await addRule({ when: { prompt }, then: { httpStatus: 429, retryAfter: 30 } });
    const res = await api(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: { prompt } } });
    const body = await json(res, 429);
    assert.equal(res.headers.get("retry-after"), "30");
    assert.match(body.detail, /throttled/);
    assert.equal((await createsFor(prompt)).length, 1, "a create is not retried by the proxy");
  });

  test("Location and rate-limit headers come back, Location pointing at the worker", T, async () => {
    // The emulator sends neither, so a stub plays Replicate for this one create.
    const seen = [];
    const stub = createServer((req, res) => {
      seen.push({ method: req.method, url: req.url, authorization: req.headers.authorization });
      req.resume();
      req.on("end", () => {
        const base = `http://127.0.0.1:${stub.address().port}`;
        const id = "stubpredictionid0000000000";
        res.writeHead(201, {
          "content-type": "application/json",
          location: `${base}/v1/predictions/${id}`,
          "x-ratelimit-limit": "600",
          "x-ratelimit-remaining": "599",
          "ratelimit-policy": "600;w=60",
        });
        res.end(JSON.stringify({
          id, model: MODEL, version: "dp-x", input: { prompt: "stub" }, logs: "", output: null, data_removed: false,
          error: null, status: "starting", created_at: new Date().toISOString(),
          urls: { get: `${base}/v1/predictions/${id}`, cancel: `${base}/v1/predictions/${id}/cancel`, stream: "https://stream.replicate.com/v1/files/x" },
        }));
      });
    });
    await new Promise((resolve) => stub.listen(0, "127.0.0.1", resolve));
    try {
      const base = `http://127.0.0.1:${stub.address().port}`;
      const w = await workerWith({ REPLICATE_API_BASE: base, EXTRA_OUTPUT_HOSTS: `127.0.0.1:${stub.address().port}` });
      const res = await api(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: { prompt: "stub" } } });
      const p = await json(res, 201);
      assert.equal(res.headers.get("location"), `${w.url.origin}/replicate/v1/predictions/${p.id}`);
      assert.equal(res.headers.get("x-ratelimit-limit"), "600");
      assert.equal(res.headers.get("x-ratelimit-remaining"), "599");
      assert.equal(res.headers.get("ratelimit-policy"), "600;w=60");
      assert.equal(p.urls.get, `${w.url.origin}/replicate/v1/predictions/${p.id}`);
      assert.deepEqual(seen.map((r) => [r.method, r.url, r.authorization]), [
        ["POST", `/v1/models/${MODEL}/predictions`, `Bearer ${SERVICE_REPLICATE_TOKEN}`],
      ]);
    } finally {
      await new Promise((resolve) => stub.close(resolve));
    }
  });

  test("unknown routes and ids: 404 with Replicate's {detail}", T, async () => {
    const w = await worker();
    for (const path of ["/nope", "/predictions/zzzzzzzzzzzzzzzzzzzzzzzzzz", "/models/nobody/nothing", "/predictions/abc/nope/more"]) {
      const body = await json(await api(w, path), 404, path);
      assert.equal(typeof body.detail, "string", path);
      assert.equal(body.error, undefined, `${path}: Replicate's shape, not /generate's`);
    }
  });

  test("malformed bodies get Replicate's 4xx with detail, never a 500", T, async () => {
    const w = await worker();
    const path = `/models/${MODEL}/predictions`;
    let body = await json(await api(w, path, { method: "POST", body: "{not json" }), 400, "invalid JSON");
    assert.equal(typeof body.detail, "string");
    body = await json(await api(w, path, { method: "POST", body: { prompt: "no input object" } }), 422, "missing input");
    assert.match(body.detail, /input/);
    body = await json(await api(w, path, { method: "POST", body: { input: { prompt: "x", num_outputs: 9 } } }), 422, "bad input");
    assert.match(body.detail, /num_outputs/);
    assert.ok(Array.isArray(body.invalid_fields));
    body = await json(await api(w, "/predictions", { method: "POST", body: { input: { prompt: "x" } } }), 422, "no version");
    assert.equal(typeof body.detail, "string");
  });

  // ---- auth ----------------------------------------------------------------

  test("service auth runs on the service's Replicate token", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("proxy service auth");
    await createDone(w, { prompt });
    const [create] = await createsFor(prompt);
    assert.equal(create.headers.authorization, `Bearer ${SERVICE_REPLICATE_TOKEN}`);
  });

  test("a user's Replicate token, as the bearer or as X-Replicate-Token, is sent upstream", T, async () => {
    const w = await worker();
    let prompt = uniquePrompt("proxy user bearer");
    await createDone(w, { prompt }, { auth: USER_REPLICATE_TOKEN });
    assert.equal((await createsFor(prompt))[0].headers.authorization, `Bearer ${USER_REPLICATE_TOKEN}`);

    prompt = uniquePrompt("proxy user header");
    await createDone(w, { prompt }, { auth: null, headers: { prefer: "wait", "x-replicate-token": USER_REPLICATE_TOKEN } });
    assert.equal((await createsFor(prompt))[0].headers.authorization, `Bearer ${USER_REPLICATE_TOKEN}`);
  });

  test("no token: 401 in Replicate's error shape, nothing sent", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("proxy anonymous");
    const res = await api(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: { prompt } }, auth: null });
    const body = await json(res, 401);
    assert.equal(typeof body.detail, "string");
    assert.equal(typeof body.title, "string");
    assert.equal(body.status, 401);
    assert.equal((await createsFor(prompt)).length, 0);
    await json(await api(w, "/predictions", { auth: null }), 401, "list");
  });

  test("a token Replicate rejects: Replicate's own 401 comes back; the client throws ApiError 401", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("proxy bad token");
    const res = await api(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: { prompt } }, auth: "r8_not_a_real_token" });
    assert.deepEqual(await json(res, 401), {
      title: "Unauthenticated",
      detail: "You did not pass a valid authentication token",
      status: 401,
    });
    const error = await rejectsWithStatus(client(w, "r8_not_a_real_token").run(MODEL, { input: { prompt } }), 401);
    assert.match(error.message, /401/);
  });

  test("ALLOW_USER_TOKENS=false: a user bearer is refused with 401, service auth still works", T, async () => {
    const w = await workerWith({ ALLOW_USER_TOKENS: "false" });
    const prompt = uniquePrompt("proxy user tokens off");
    const res = await api(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: { prompt } }, auth: USER_REPLICATE_TOKEN });
    const body = await json(res, 401);
    assert.equal(typeof body.detail, "string");
    assert.equal((await createsFor(prompt)).length, 0);
    await createDone(w, { prompt: uniquePrompt("proxy user tokens off, service") });
  });

  test("no service secret appears in any proxied response", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("proxy secrets");
    await addRule({ when: { prompt: `${prompt} hang` }, then: { hang: true } });
    await addRule({ when: { prompt: `${prompt} 429` }, then: { httpStatus: 429, retryAfter: 30 } });
    const created = await (await api(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: { prompt } }, headers: { prefer: "wait" } })).json();
    const hanging = await (await api(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: { prompt: `${prompt} hang` } } })).json();
    const responses = [
      await api(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: { prompt: `${prompt} again` } }, headers: { prefer: "wait" } }),
      await api(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: { prompt: `${prompt} 429` } } }),
      await api(w, `/models/${MODEL}/predictions`, { method: "POST", body: "{bad" }),
      await api(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: {} } }),
      await api(w, `/predictions/${created.id}`),
      await api(w, `/predictions/${hanging.id}/cancel`, { method: "POST" }),
      await api(w, "/predictions"),
      await api(w, `/models/${MODEL}`),
      await api(w, `/models/${MODEL}/versions/${FLUX_SCHNELL_VERSION}`),
      await api(w, "/nope"),
      await api(w, "/predictions", { auth: null }),
      await api(w, "/predictions", { auth: "wrong" }),
      await api(w, "/predictions", { auth: null, headers: { "x-replicate-token": USER_REPLICATE_TOKEN } }),
    ];
    for (const res of responses) {
      const text = `${[...res.headers].map(([k, v]) => `${k}: ${v}`).join("\n")}\n\n${await res.text()}`;
      for (const secret of [AUTH_TOKEN, SERVICE_REPLICATE_TOKEN]) {
        assert.ok(!text.includes(secret), `${res.url} (${res.status}) leaks a secret`);
      }
    }
  });

  // ---- outputs that never expire -------------------------------------------

  test("polling many times (sequentially) gives the same URLs and one KV record per output", T, async () => {
    const w = await worker();
    const p = await createDone(w, { prompt: uniquePrompt("proxy repeat"), num_outputs: 2, megapixels: "0.25" });
    const answers = [p];
    for (let i = 0; i < 4; i++) answers.push(await json(await api(w, `/predictions/${p.id}`), 200, `poll ${i}`));
    for (const a of answers) {
      assertProxied(w, a);
      assert.deepEqual(a.output, p.output);
    }
    for (const url of p.output) await stored(w, imageId(url));
    assert.deepEqual((await recordsOf(w, p.id)).sort(), p.output.map(imageId).sort());
  });

  test("concurrent polls of a prediction first seen succeeded give the same URLs and one record per output", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("proxy concurrent");
    const res = await api(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: { prompt, num_outputs: 2, megapixels: "0.25" } } });
    const p = await json(res, 202, "create without wait");
    assertProxied(w, p);
    await eventually(async () => (await upstream(w, `/v1/predictions/${p.id}`)).status === "succeeded", 8000, "upstream success");
    const answers = await Promise.all(Array.from({ length: 6 }, () => api(w, `/predictions/${p.id}`).then((r) => json(r, 200))));
    for (const a of answers) {
      assertProxied(w, a);
      assert.equal(a.status, "succeeded");
      assert.deepEqual(a.output, answers[0].output, "every concurrent poll gives the same URLs");
    }
    for (const url of answers[0].output) await stored(w, imageId(url));
    assert.deepEqual((await recordsOf(w, p.id)).sort(), answers[0].output.map(imageId).sort());
  });

  test("after Replicate removed the data, the proxy still shows the stored outputs, and they serve", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("proxy expiring");
    await addRule({ when: { prompt }, then: { expireAfterMs: 1500 } });
    const p = await createDone(w, { prompt, output_format: "jpg", megapixels: "0.25" });
    assertProxied(w, p, { ext: "jpg" });
    for (const url of p.output) await stored(w, imageId(url));
    await eventually(async () => {
      const up = await upstream(w, `/v1/predictions/${p.id}`);
      return up.data_removed === true && up.output === null;
    }, 8000, "Replicate to remove the data");
    const later = await json(await api(w, `/predictions/${p.id}`), 200);
    assert.equal(later.status, "succeeded");
    assert.deepEqual(later.output, p.output);
    assertProxied(w, later, { ext: "jpg" });
    for (const url of later.output) assert.deepEqual(await bytesAt(url), await r2Bytes(w, imageId(url)));
  });

  test("REWRITE_OUTPUTS=false: prediction objects pass through untouched", T, async () => {
    const w = await workerWith({ REWRITE_OUTPUTS: "false" });
    const prompt = uniquePrompt("proxy passthrough");
    const p = await createDone(w, { prompt });
    assert.equal(p.urls.get, `${w.emulator.url}/v1/predictions/${p.id}`);
    assert.equal(p.urls.cancel, `${w.emulator.url}/v1/predictions/${p.id}/cancel`);
    for (const url of p.output) assert.match(url, new RegExp(`^${escape(w.emulator.url)}/delivery/${p.id}/out-0\\.webp$`));
    const again = await json(await api(w, `/predictions/${p.id}`), 200);
    assert.deepEqual(again.output, p.output);
    assert.equal(again.urls.get, p.urls.get);
  });

  // ---- the official JavaScript client ---------------------------------------

  test("client run(): outputs are the worker's URLs and their bytes are the ones stored in R2", T, async () => {
    const w = await worker();
    let seen;
    const output = await client(w).run(MODEL, { input: { prompt: uniquePrompt("client run"), output_format: "png", megapixels: "0.25" } }, (p) => {
      seen = p;
    });
    assert.ok(Array.isArray(output) && output.length === 1, `run() returned ${JSON.stringify(output)}`);
    // http: URLs are not wrapped as FileOutput by replicate 1.4.0 (only https:/data:).
    assert.equal(typeof output[0], "string");
    assert.match(output[0], imageUrl(w, "png"));
    const r = await stored(w, imageId(output[0]));
    assert.equal(r.prediction_id, seen.id);
    const bytes = await bytesAt(output[0]);
    assert.deepEqual(bytes, await r2Bytes(w, imageId(output[0])));
    assert.deepEqual([...bytes.slice(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
  });

  test("client predictions.create + wait + get: urls and outputs point at the worker", T, async () => {
    const w = await worker();
    const replicate = client(w);
    const created = await replicate.predictions.create({ model: MODEL, input: { prompt: uniquePrompt("client wait") } });
    assert.ok(["starting", "processing"].includes(created.status), created.status);
    assertProxied(w, created);
    const done = await replicate.wait(created);
    assert.equal(done.status, "succeeded");
    assertProxied(w, done, { ext: "webp" });
    const got = await replicate.predictions.get(created.id);
    assert.deepEqual(got.output, done.output);
    assertProxied(w, got);
    await rejectsWithStatus(replicate.predictions.get("zzzzzzzzzzzzzzzzzzzzzzzzzz"), 404);
  });

  test("client predictions.cancel on a hanging prediction: canceled, cancelled upstream", T, async () => {
    const w = await worker();
    const replicate = client(w);
    const prompt = uniquePrompt("client cancel");
    await addRule({ when: { prompt }, then: { hang: true } });
    const created = await replicate.predictions.create({ model: MODEL, input: { prompt } });
    const canceled = await replicate.predictions.cancel(created.id);
    assert.equal(canceled.status, "canceled");
    assertProxied(w, canceled);
    const cancels = (await received(`/v1/predictions/${created.id}/cancel`)).filter((r) => r.method === "POST");
    assert.equal(cancels.length, 1);
    assert.equal((await replicate.predictions.get(created.id)).status, "canceled");
  });

  test("client predictions.list: our predictions, with the worker's urls and stored outputs", T, async () => {
    const w = await worker();
    const replicate = client(w);
    const mine = [];
    for (let i = 0; i < 3; i++) mine.push(await createDone(w, { prompt: uniquePrompt("client list"), megapixels: "0.25" }));
    const page = await replicate.predictions.list();
    assert.ok(Array.isArray(page.results));
    for (const p of page.results) {
      assert.equal(p.urls.get, `${w.url.origin}/replicate/v1/predictions/${p.id}`);
    }
    for (const p of mine) {
      const listed = page.results.find((r) => r.id === p.id);
      assert.ok(listed, `${p.id} listed`);
      assert.deepEqual(listed.output, p.output);
    }
  });

  test("list: a prediction that succeeded without being polled still shows worker URLs, never Replicate's", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("proxy unseen list");
    const created = await json(await api(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: { prompt } } }), 202);
    await eventually(async () => (await upstream(w, `/v1/predictions/${created.id}`)).status === "succeeded", 8000, "upstream success");
    const page = await json(await api(w, "/predictions"), 200);
    const listed = page.results.find((p) => p.id === created.id);
    assert.ok(listed, "listed");
    assertProxied(w, listed);
  });

  test("a 429 on create is retried by the client and the run succeeds", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("client throttled once");
    await addRule({ when: { prompt, method: "POST" }, then: { httpStatus: 429, retryAfter: 1 }, times: 1 });
    const output = await client(w).run(MODEL, { input: { prompt } });
    assert.match(output[0], imageUrl(w, "webp"));
    assert.equal((await createsFor(prompt)).length, 2);
  });

  test("a failed prediction: run() throws Replicate's error; get() shows failed with the error", T, async () => {
    const w = await worker();
    const replicate = client(w);
    const prompt = uniquePrompt("client fails");
    await addRule({ when: { prompt }, then: { fail: "CUDA out of memory" } });
    let seen;
    await assert.rejects(
      replicate.run(MODEL, { input: { prompt } }, (p) => {
        seen = p;
      }),
      /CUDA out of memory/,
    );
    assert.ok(seen?.id, "the progress callback saw the prediction");
    const p = await replicate.predictions.get(seen.id);
    assert.equal(p.status, "failed");
    assert.equal(p.error, "CUDA out of memory");
    assertProxied(w, p);
  });

  test("Prefer: wait=1 that times out: 202 still running, polling later gives rewritten outputs", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("client slow");
    await addRule({ when: { prompt }, then: { predictMs: 2500 } });
    const res = await api(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: { prompt } }, headers: { prefer: "wait=1" } });
    const p = await json(res, 202);
    assert.ok(["starting", "processing"].includes(p.status), p.status);
    assert.equal(p.output, null);
    assertProxied(w, p);
    assert.equal((await createsFor(prompt))[0].headers.prefer, "wait=1");
    const done = await client(w).wait(p, { interval: 200 });
    assert.equal(done.status, "succeeded");
    assertProxied(w, done, { ext: "webp" });
    await stored(w, imageId(done.output[0]));
  });

  test("client create with wait: {timeout: 1} on a slow prediction, then wait()", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("client slow block");
    await addRule({ when: { prompt }, then: { predictMs: 2500 } });
    const replicate = client(w);
    const p = await replicate.predictions.create({ model: MODEL, input: { prompt }, wait: 1 });
    assert.ok(["starting", "processing"].includes(p.status), p.status);
    assert.equal((await createsFor(prompt))[0].headers.prefer, "wait=1");
    const done = await replicate.wait(p, { interval: 200 });
    assertProxied(w, done, { ext: "webp" });
    assert.equal((await record(w, imageId(done.output[0])))?.prediction_id, p.id);
  });

  // ---- pagination --------------------------------------------------------------

  // More predictions than the emulator's page (100), so `next` exists.
  let bulk;
  function bulkPredictions(w) {
    bulk ??= (async () => {
      const tag = uniquePrompt("proxy bulk");
      await addRule({ when: { prompt: tag }, then: { fail: "bulk" } });
      const ids = [];
      for (let batch = 0; batch < 11; batch++) {
        const created = await Promise.all(
          Array.from({ length: 10 }, async (_, i) => {
            const res = await api(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: { prompt: `${tag} ${batch}-${i}` } } });
            return (await json(res, 202, "bulk create")).id;
          }),
        );
        ids.push(...created);
      }
      return ids;
    })();
    return bulk;
  }

  test("list: next/previous point back through the worker, and following them works", T, async () => {
    const w = await worker();
    const ids = await bulkPredictions(w);
    const first = await json(await api(w, "/predictions"), 200, "page 1");
    assert.equal(first.results.length, 100);
    assert.ok(first.next, "a next page exists");
    assert.ok(first.next.startsWith(`${w.url.origin}/replicate/v1/predictions?cursor=`), first.next);
    const second = await json(await fetch(first.next, { headers: { authorization: `Bearer ${AUTH_TOKEN}` } }), 200, "page 2");
    assert.ok(second.results.length > 0);
    assert.ok(!second.results.some((p) => first.results.find((q) => q.id === p.id)), "pages do not overlap");
    assert.ok(second.previous?.startsWith(`${w.url.origin}/replicate/v1/predictions?cursor=`), second.previous);
    const back = await json(await fetch(second.previous, { headers: { authorization: `Bearer ${AUTH_TOKEN}` } }), 200, "previous");
    assert.deepEqual(back.results.map((p) => p.id), first.results.map((p) => p.id));
    assert.equal(ids.length, 110);
  });

  test("client paginate(predictions.list) finds every prediction created", T, async () => {
    const w = await worker();
    const replicate = client(w);
    const ids = new Set(await bulkPredictions(w));
    const fresh = [];
    for (let i = 0; i < 3; i++) fresh.push((await replicate.predictions.create({ model: MODEL, input: { prompt: uniquePrompt("client paginate") } })).id);
    const found = new Set();
    let pages = 0;
    for await (const results of replicate.paginate(replicate.predictions.list)) {
      pages += 1;
      for (const p of results) found.add(p.id);
    }
    assert.ok(pages >= 2, `walked ${pages} pages`);
    for (const id of [...ids, ...fresh]) assert.ok(found.has(id), `${id} found`);
  });
});
