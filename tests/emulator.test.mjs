import { test, describe, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import {
  startEmulator,
  FLUX_SCHNELL_VERSION,
  FLUX_SCHNELL_DEPLOYMENT_VERSION,
} from "../emulator/server.mjs";
import { generateImage, ImageCache } from "../emulator/images.mjs";

const TOKEN = "r8_test";
const MODEL_PATH = "/v1/models/black-forest-labs/flux-schnell/predictions";
const TERMINAL = new Set(["succeeded", "failed", "canceled", "aborted"]);
const ISO_MILLIS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const ISO_NANOS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/;

let emulator;
let base;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function api(path, { method = "GET", body, headers = {}, token = TOKEN, rawBody } = {}) {
  const allHeaders = { "Content-Type": "application/json", ...headers };
  if (token !== null) allHeaders.Authorization = `Bearer ${token}`;
  return fetch(`${base}${path}`, {
    method,
    headers: allHeaders,
    body: rawBody ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
}

async function create(input, headers = {}, extra = {}) {
  const res = await api(MODEL_PATH, { method: "POST", body: { input, ...extra }, headers });
  return { res, body: await res.json() };
}

async function poll(id, done = (p) => TERMINAL.has(p.status), timeoutMs = 5000) {
  const seen = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await api(`/v1/predictions/${id}`);
    assert.equal(res.status, 200);
    const prediction = await res.json();
    seen.push(prediction.status);
    if (done(prediction)) return { prediction, seen };
    if (Date.now() > deadline) throw new Error(`prediction ${id} stuck in ${prediction.status}`);
    await sleep(20);
  }
}

async function addRule(rule) {
  const res = await fetch(`${base}/_control/rules`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(rule),
  });
  assert.equal(res.status, 201);
  const { id } = await res.json();
  assert.match(id, /\S/);
  return id;
}

async function download(url) {
  const res = await fetch(url);
  return { res, bytes: Buffer.from(await res.arrayBuffer()) };
}

describe("Replicate emulator", () => {
  before(async () => {
    emulator = await startEmulator({ port: 0, predictMs: 120, minCancelAfterMs: 0, acceptPrefix: "r8_pfx_" });
    base = emulator.url;
  });

  after(async () => {
    await emulator.close();
  });

  beforeEach(() => {
    emulator.state.reset();
  });

  describe("auth", () => {
    test("missing or unknown token answers 401 with Replicate's shape", async () => {
      for (const token of [null, "r8_wrong"]) {
        const res = await api("/v1/predictions", { token });
        assert.equal(res.status, 401);
        assert.match(res.headers.get("content-type"), /application\/json/);
        assert.deepEqual(await res.json(), {
          title: "Unauthenticated",
          detail: "You did not pass a valid authentication token",
          status: 401,
        });
      }
    });

    test("configured tokens and the accepted prefix pass", async () => {
      assert.equal((await api("/v1/predictions")).status, 200);
      assert.equal((await api("/v1/predictions", { token: "r8_pfx_anything" })).status, 200);
      assert.equal((await api("/v1/predictions", { token: "r8_pf" })).status, 401);
    });
  });

  describe("create and lifecycle", () => {
    test("create without Prefer answers 202 starting, Replicate-shaped", async () => {
      const { res, body } = await create({ prompt: "a lighthouse", megapixels: "0.25", extra_field: 1 });
      assert.equal(res.status, 202);
      assert.equal(res.headers.get("location"), null);
      assert.match(res.headers.get("content-type"), /^application\/json/);
      assert.equal(body.status, "starting");
      assert.match(body.id, /^[0-9a-z]{26}$/);
      assert.equal(body.model, "black-forest-labs/flux-schnell");
      assert.equal(body.version, FLUX_SCHNELL_DEPLOYMENT_VERSION);
      assert.equal(body.output, null);
      assert.equal(body.error, null);
      assert.equal(body.data_removed, false);
      assert.equal(body.logs, "");
      assert.equal(body.source, "api");
      assert.match(body.created_at, ISO_MILLIS);
      assert.equal(body.started_at, undefined);
      assert.deepEqual(body.input, {
        aspect_ratio: "1:1",
        disable_safety_checker: false,
        go_fast: true,
        megapixels: "0.25",
        num_inference_steps: 4,
        num_outputs: 1,
        output_format: "webp",
        output_quality: 80,
        prompt: "a lighthouse",
      });
      assert.deepEqual(Object.keys(body).slice(0, 8), [
        "id", "model", "version", "input", "logs", "output", "data_removed", "error",
      ]);
      assert.equal(body.urls.get, `${base}/v1/predictions/${body.id}`);
      assert.equal(body.urls.cancel, `${base}/v1/predictions/${body.id}/cancel`);
      assert.match(body.urls.stream, /^https:\/\//);
      assert.equal(body.urls.web, `https://replicate.com/p/${body.id}`);
    });

    test("Prefer: wait answers 201 succeeded with output URLs", async () => {
      const { res, body } = await create(
        { prompt: "two foxes", megapixels: "0.25", num_outputs: 2, seed: 7 },
        { Prefer: "wait" },
      );
      assert.equal(res.status, 201);
      assert.equal(body.status, "succeeded");
      assert.deepEqual(body.output, [
        `${base}/delivery/${body.id}/out-0.webp`,
        `${base}/delivery/${body.id}/out-1.webp`,
      ]);
      assert.equal(body.metrics.image_count, 2);
      assert.match(body.logs, /^Using seed: 7\n/);
      assert.match(body.logs, /Total safe images: 2 out of 2\n$/);
    });

    test("polling moves starting -> processing -> succeeded with timestamps and metrics", async () => {
      const { body: created } = await create({ prompt: "a pier at dusk", megapixels: "0.25" });
      const { prediction, seen } = await poll(created.id);
      assert.equal(prediction.status, "succeeded");
      assert.ok(seen.includes("processing") || seen[0] === "starting", `saw ${seen}`);
      assert.match(prediction.created_at, ISO_MILLIS);
      assert.match(prediction.started_at, ISO_NANOS);
      assert.match(prediction.completed_at, ISO_NANOS);
      const created_at = Date.parse(prediction.created_at);
      const started = Date.parse(prediction.started_at);
      const completed = Date.parse(prediction.completed_at);
      assert.ok(created_at <= started && started <= completed);
      assert.ok(prediction.metrics.predict_time > 0);
      assert.ok(prediction.metrics.total_time >= prediction.metrics.predict_time);
      const seed = Number(/^Using seed: (\d+)\n/.exec(prediction.logs)?.[1]);
      assert.ok(Number.isInteger(seed) && seed >= 0 && seed < 65536, prediction.logs);
      assert.equal(prediction.input.seed, undefined);
    });

    test("a prediction is observed in processing before it succeeds", async () => {
      const id = await addRule({ when: { prompt: "slow-one" }, then: { predictMs: 600 } });
      assert.ok(id);
      const { body } = await create({ prompt: "slow-one", megapixels: "0.25" });
      const { prediction } = await poll(body.id, (p) => p.status === "processing");
      assert.match(prediction.started_at, ISO_NANOS);
      assert.match(prediction.logs, /Using seed: \d+/);
      assert.equal(prediction.completed_at, undefined);
      const done = await poll(body.id);
      assert.equal(done.prediction.status, "succeeded");
    });

    test("POST /v1/predictions accepts the three version forms", async () => {
      const forms = [
        [FLUX_SCHNELL_VERSION, FLUX_SCHNELL_VERSION],
        [`black-forest-labs/flux-schnell:${FLUX_SCHNELL_VERSION}`, FLUX_SCHNELL_VERSION],
        ["black-forest-labs/flux-schnell", FLUX_SCHNELL_DEPLOYMENT_VERSION],
      ];
      for (const [version, expected] of forms) {
        const res = await api("/v1/predictions", {
          method: "POST",
          body: { version, input: { prompt: "v", megapixels: "0.25" } },
        });
        assert.equal(res.status, 202, version);
        const body = await res.json();
        assert.equal(body.version, expected);
        assert.equal(body.model, "black-forest-labs/flux-schnell");
      }
      const unknown = await api("/v1/predictions", {
        method: "POST",
        body: { version: "a".repeat(64), input: { prompt: "v" } },
      });
      assert.equal(unknown.status, 422);
      assert.match((await unknown.json()).title, /Invalid version/);
    });

    test("deployments route runs flux-schnell and names the deployment", async () => {
      const res = await api("/v1/deployments/acme/fast-flux/predictions", {
        method: "POST",
        body: { input: { prompt: "deployed", megapixels: "0.25" } },
        headers: { Prefer: "wait=5" },
      });
      assert.equal(res.status, 201);
      const body = await res.json();
      assert.equal(body.deployment, "acme/fast-flux");
      assert.equal(body.status, "succeeded");
    });
  });

  describe("output images", () => {
    test("1:1 at 1 MP is a 1024x1024 webp over 10 KB", async () => {
      const { body } = await create({ prompt: "a red barn", seed: 1 }, { Prefer: "wait" });
      assert.equal(body.status, "succeeded");
      const { res, bytes } = await download(body.output[0]);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "image/webp");
      assert.equal(Number(res.headers.get("content-length")), bytes.length);
      const meta = await sharp(bytes).metadata();
      assert.equal(meta.format, "webp");
      assert.deepEqual([meta.width, meta.height], [1024, 1024]);
      assert.ok(bytes.length > 10 * 1024, `${bytes.length} bytes`);
    });

    test("16:9 png and 0.25 MP jpg have the right format and dimensions", async () => {
      const cases = [
        [{ aspect_ratio: "16:9", output_format: "png" }, "png", "image/png", [1344, 768], "png"],
        [{ megapixels: "0.25", output_format: "jpg" }, "jpeg", "image/jpeg", [512, 512], "jpg"],
        [{ megapixels: "0.25", aspect_ratio: "9:21", output_format: "jpg" }, "jpeg", "image/jpeg", [320, 768], "jpg"],
      ];
      for (const [input, format, contentType, size, ext] of cases) {
        const { body } = await create({ prompt: "a harbour", seed: 3, ...input }, { Prefer: "wait" });
        assert.equal(body.status, "succeeded");
        assert.ok(body.output[0].endsWith(`/out-0.${ext}`), body.output[0]);
        const { res, bytes } = await download(body.output[0]);
        assert.equal(res.headers.get("content-type"), contentType);
        assert.equal(Number(res.headers.get("content-length")), bytes.length);
        const meta = await sharp(bytes).metadata();
        assert.equal(meta.format, format);
        assert.deepEqual([meta.width, meta.height], size);
        assert.ok(bytes.length > 10 * 1024, `${bytes.length} bytes`);
      }
    });

    test("same prompt and seed give identical bytes; another seed differs", async () => {
      const input = { prompt: "a blue kite", seed: 42, megapixels: "0.25" };
      const a = await create(input, { Prefer: "wait" });
      const b = await create(input, { Prefer: "wait" });
      const c = await create({ ...input, seed: 43 }, { Prefer: "wait" });
      const [ba, bb, bc] = await Promise.all([a, b, c].map((p) => download(p.body.output[0]).then((d) => d.bytes)));
      assert.notEqual(a.body.id, b.body.id);
      assert.ok(ba.equals(bb));
      assert.ok(!ba.equals(bc));

      const fullInput = { prompt: "a blue kite", aspect_ratio: "1:1", megapixels: "0.25", output_format: "webp", output_quality: 80 };
      const fresh1 = await generateImage({ input: fullInput, seed: 42, index: 0, cache: new ImageCache() });
      const fresh2 = await generateImage({ input: fullInput, seed: 42, index: 0, cache: new ImageCache() });
      const second = await generateImage({ input: fullInput, seed: 42, index: 1, cache: new ImageCache() });
      assert.ok(fresh1.bytes.equals(fresh2.bytes));
      assert.ok(fresh1.bytes.equals(ba));
      assert.ok(!fresh1.bytes.equals(second.bytes));
    });

    test("unknown output files answer 404 without auth", async () => {
      const res = await fetch(`${base}/delivery/nope/out-0.webp`);
      assert.equal(res.status, 404);
      assert.deepEqual(await res.json(), { detail: "Not found." });
    });
  });

  describe("input validation", () => {
    const cases = [
      ["bad aspect_ratio", { prompt: "x", aspect_ratio: "7:5" }, "input.aspect_ratio", "enum"],
      ["num_outputs 5", { prompt: "x", num_outputs: 5 }, "input.num_outputs", "number_lte"],
      ["missing prompt", { seed: 1 }, "input.prompt", "required"],
      ["megapixels as a number", { prompt: "x", megapixels: 1 }, "input.megapixels", "invalid_type"],
      ["output_quality over 100", { prompt: "x", output_quality: 101 }, "input.output_quality", "number_lte"],
      ["num_inference_steps 0", { prompt: "x", num_inference_steps: 0 }, "input.num_inference_steps", "number_gte"],
    ];
    for (const [name, input, field, type] of cases) {
      test(`422 for ${name} names ${field}`, async () => {
        const { res, body } = await create(input);
        assert.equal(res.status, 422);
        assert.equal(body.title, "Input validation failed");
        assert.equal(body.status, 422);
        assert.ok(body.detail.startsWith(`- ${field}: `), body.detail);
        assert.ok(body.detail.endsWith("\n"));
        assert.equal(body.invalid_fields.length, 1);
        assert.equal(body.invalid_fields[0].field, field);
        assert.equal(body.invalid_fields[0].type, type);
        assert.equal(emulator.state.predictions.byId.size, 0);
      });
    }

    test("missing input is 422 and invalid JSON is 400, both with a detail", async () => {
      const noInput = await api(MODEL_PATH, { method: "POST", body: { webhook: null } });
      assert.equal(noInput.status, 422);
      assert.match((await noInput.json()).detail, /input is required/);
      const broken = await api(MODEL_PATH, { method: "POST", rawBody: "{not json" });
      assert.equal(broken.status, 400);
      assert.match((await broken.json()).detail, /JSON/);
    });
  });

  describe("cancel and deadlines", () => {
    test("cancel stops a running prediction; a terminal one stays as is", async () => {
      const { body } = await create({ prompt: "to cancel", megapixels: "0.25" });
      const res = await api(`/v1/predictions/${body.id}/cancel`, { method: "POST" });
      assert.equal(res.status, 200);
      const canceled = await res.json();
      assert.equal(canceled.status, "canceled");
      assert.match(canceled.completed_at, ISO_NANOS);
      await sleep(250);
      const later = await (await api(`/v1/predictions/${body.id}`)).json();
      assert.equal(later.status, "canceled");
      assert.equal(later.output, null);

      const { body: done } = await create({ prompt: "finished", megapixels: "0.25" }, { Prefer: "wait" });
      const again = await (await api(`/v1/predictions/${done.id}/cancel`, { method: "POST" })).json();
      assert.equal(again.status, "succeeded");
      assert.equal((await api("/v1/predictions/unknown/cancel", { method: "POST" })).status, 404);
    });

    test("Cancel-After aborts before start and cancels after start", async () => {
      await addRule({ when: { prompt: "slow-start" }, then: { predictMs: 3000 } });
      await addRule({ when: { prompt: "stuck" }, then: { hang: true } });
      const early = await create({ prompt: "slow-start", megapixels: "0.25" }, { "Cancel-After": "100ms" });
      const late = await create({ prompt: "stuck", megapixels: "0.25" }, { "Cancel-After": "0.3s" });
      assert.match(early.body.deadline, ISO_NANOS);
      const a = await poll(early.body.id);
      const b = await poll(late.body.id);
      assert.equal(a.prediction.status, "aborted");
      assert.equal(a.prediction.started_at, undefined);
      assert.equal(b.prediction.status, "canceled");
      assert.match(b.prediction.started_at, ISO_NANOS);
      const bad = await create({ prompt: "x" }, { "Cancel-After": "soon" });
      assert.equal(bad.res.status, 400);
    });
  });

  describe("listing, models, routes", () => {
    test("list is newest first and pages with absolute next/previous URLs", async () => {
      const small = await startEmulator({ pageSize: 2, predictMs: 50 });
      try {
        const ids = [];
        for (let i = 0; i < 5; i++) {
          const res = await fetch(`${small.url}${MODEL_PATH}`, {
            method: "POST",
            headers: { Authorization: `Bearer ${TOKEN}` },
            body: JSON.stringify({ input: { prompt: `p${i}`, megapixels: "0.25" } }),
          });
          ids.push((await res.json()).id);
        }
        const get = async (url) => {
          const res = await fetch(url, { headers: { Authorization: `Bearer ${TOKEN}` } });
          assert.equal(res.status, 200);
          return res.json();
        };
        const page1 = await get(`${small.url}/v1/predictions`);
        assert.equal(page1.previous, null);
        assert.ok(page1.next.startsWith(`${small.url}/v1/predictions?cursor=`));
        const page2 = await get(page1.next);
        const page3 = await get(page2.next);
        assert.equal(page3.next, null);
        const seen = [...page1.results, ...page2.results, ...page3.results].map((p) => p.id);
        assert.deepEqual(seen, [...ids].reverse());
        assert.deepEqual([page1, page2, page3].map((p) => p.results.length), [2, 2, 1]);
        assert.equal(page1.results[0].logs, undefined);
        const back = await get(page2.previous);
        assert.deepEqual(back.results.map((p) => p.id), page1.results.map((p) => p.id));
        assert.equal(back.previous, null);

        const clamped = await fetch(`${small.url}${MODEL_PATH}`, {
          method: "POST",
          headers: { Authorization: `Bearer ${TOKEN}`, "Cancel-After": "1s" },
          body: JSON.stringify({ input: { prompt: "deadline", megapixels: "0.25" } }),
        });
        const body = await clamped.json();
        const window = Date.parse(body.deadline) - Date.parse(body.created_at);
        assert.ok(window >= 4990 && window <= 5010, `deadline window ${window}`);
      } finally {
        await small.close();
      }
    });

    test("model and version routes", async () => {
      const model = await (await api("/v1/models/black-forest-labs/flux-schnell")).json();
      assert.equal(model.owner, "black-forest-labs");
      assert.equal(model.name, "flux-schnell");
      assert.equal(model.url, "https://replicate.com/black-forest-labs/flux-schnell");
      assert.equal(model.visibility, "public");
      assert.ok(Number.isInteger(model.run_count));
      assert.equal(model.latest_version.id, FLUX_SCHNELL_VERSION);
      assert.match(FLUX_SCHNELL_VERSION, /^[0-9a-f]{64}$/);
      const props = model.latest_version.openapi_schema.components.schemas.Input.properties;
      for (const name of ["prompt", "aspect_ratio", "num_outputs", "num_inference_steps", "seed", "output_format",
        "output_quality", "go_fast", "megapixels", "disable_safety_checker"]) {
        assert.ok(props[name], name);
      }
      assert.equal(props.num_outputs.maximum, 4);

      const version = await api(`/v1/models/black-forest-labs/flux-schnell/versions/${FLUX_SCHNELL_VERSION}`);
      assert.equal(version.status, 200);
      const v = await version.json();
      assert.equal(v.id, FLUX_SCHNELL_VERSION);
      assert.match(v.created_at, /^\d{4}-/);
      assert.ok(v.cog_version);

      const missingVersion = await api(`/v1/models/black-forest-labs/flux-schnell/versions/${"0".repeat(64)}`);
      assert.equal(missingVersion.status, 404);
      assert.deepEqual(await missingVersion.json(), { detail: "Not found." });
      assert.equal((await api("/v1/models/someone/else")).status, 404);
      const otherCreate = await api("/v1/models/someone/else/predictions", { method: "POST", body: { input: { prompt: "x" } } });
      assert.equal(otherCreate.status, 404);
    });

    test("unknown routes answer 404 with a detail", async () => {
      for (const path of ["/v1/nothing-here", "/elsewhere"]) {
        const res = await api(path);
        assert.equal(res.status, 404);
        assert.deepEqual(await res.json(), { detail: "Not found." });
      }
      assert.equal((await api("/v1/predictions/doesnotexist")).status, 404);
    });
  });

  describe("controls", () => {
    test("latencyMs delays the answer", async () => {
      await addRule({ when: { path: "/v1/models/black-forest-labs", method: "GET" }, then: { latencyMs: 400 }, times: 1 });
      let started = Date.now();
      assert.equal((await api("/v1/models/black-forest-labs/flux-schnell")).status, 200);
      assert.ok(Date.now() - started >= 380, `took ${Date.now() - started}`);
      started = Date.now();
      await api("/v1/models/black-forest-labs/flux-schnell");
      assert.ok(Date.now() - started < 300);
    });

    test("429 with Retry-After, then the rule is used up", async () => {
      await addRule({ when: { prompt: "throttle-me" }, then: { httpStatus: 429, retryAfter: 2 }, times: 1 });
      const first = await create({ prompt: "throttle-me please", megapixels: "0.25" });
      assert.equal(first.res.status, 429);
      assert.equal(first.res.headers.get("retry-after"), "2");
      assert.match(first.body.detail, /^Request was throttled/);
      assert.equal(first.body.status, 429);
      assert.equal(emulator.state.predictions.byId.size, 0);
      const second = await create({ prompt: "throttle-me please", megapixels: "0.25" });
      assert.equal(second.res.status, 202);
    });

    test("5xx on a path rule, with the default body", async () => {
      const { body } = await create({ prompt: "poll me", megapixels: "0.25" });
      await addRule({ when: { path: "/v1/predictions/", method: "GET" }, then: { httpStatus: 503 }, times: 1 });
      const failing = await api(`/v1/predictions/${body.id}`);
      assert.equal(failing.status, 503);
      assert.deepEqual(await failing.json(), { detail: "Internal server error" });
      assert.equal((await api(`/v1/predictions/${body.id}`)).status, 200);
    });

    test("a prompt rule shapes polls of that prediction", async () => {
      const { body } = await create({ prompt: "shaped polls", megapixels: "0.25" });
      await addRule({ when: { prompt: "shaped" }, then: { httpStatus: 500, body: { detail: "boom" } }, times: 1 });
      const res = await api(`/v1/predictions/${body.id}`);
      assert.equal(res.status, 500);
      assert.deepEqual(await res.json(), { detail: "boom" });
      assert.equal((await api(`/v1/predictions/${body.id}`)).status, 200);
    });

    test("fail ends the prediction failed with the error in error and logs", async () => {
      await addRule({ when: { prompt: "doomed" }, then: { fail: "CUDA out of memory" } });
      const { res, body } = await create({ prompt: "doomed", megapixels: "0.25" }, { Prefer: "wait" });
      assert.equal(res.status, 201);
      assert.equal(body.status, "failed");
      assert.equal(body.error, "CUDA out of memory");
      assert.match(body.logs, /CUDA out of memory/);
      assert.equal(body.output, null);
      assert.match(body.completed_at, ISO_NANOS);
    });

    test("hang keeps processing; Prefer: wait=1 answers 202 processing", async () => {
      await addRule({ when: { prompt: "forever" }, then: { hang: true } });
      const started = Date.now();
      const { res, body } = await create({ prompt: "forever", megapixels: "0.25" }, { Prefer: "wait=1" });
      const elapsed = Date.now() - started;
      assert.equal(res.status, 202);
      assert.equal(body.status, "processing");
      assert.equal(body.output, null);
      assert.ok(elapsed >= 950 && elapsed < 2500, `waited ${elapsed}`);
      const canceled = await (await api(`/v1/predictions/${body.id}/cancel`, { method: "POST" })).json();
      assert.equal(canceled.status, "canceled");
    });

    test("expireAfterMs removes output data and files", async () => {
      await addRule({ when: { prompt: "ephemeral" }, then: { expireAfterMs: 150 } });
      const { body } = await create({ prompt: "ephemeral", megapixels: "0.25" }, { Prefer: "wait" });
      assert.equal(body.status, "succeeded");
      assert.equal(body.data_removed, false);
      const url = body.output[0];
      assert.equal((await download(url)).res.status, 200);
      await sleep(250);
      const later = await (await api(`/v1/predictions/${body.id}`)).json();
      assert.equal(later.data_removed, true);
      assert.equal(later.output, null);
      assert.equal(later.status, "succeeded");
      assert.equal((await download(url)).res.status, 404);
    });

    test("truncate serves the full Content-Length but cuts the body", async () => {
      await addRule({ when: { prompt: "cut short" }, then: { truncate: true } });
      const { body } = await create({ prompt: "cut short", megapixels: "0.25" }, { Prefer: "wait" });
      const res = await fetch(body.output[0]);
      assert.equal(res.status, 200);
      const declared = Number(res.headers.get("content-length"));
      assert.ok(declared > 0);
      let received = null;
      try {
        received = (await res.arrayBuffer()).byteLength;
      } catch (error) {
        received = -1;
      }
      assert.ok(received < declared, `received ${received} of ${declared}`);
    });

    test("outputAs data returns data: URIs that decode to images", async () => {
      await addRule({ when: { prompt: "inline" }, then: { outputAs: "data" } });
      const { body } = await create({ prompt: "inline", megapixels: "0.25", output_format: "png" }, { Prefer: "wait" });
      assert.equal(body.status, "succeeded");
      const [uri] = body.output;
      assert.ok(uri.startsWith("data:image/png;base64,"), uri.slice(0, 40));
      const meta = await sharp(Buffer.from(uri.split(",")[1], "base64")).metadata();
      assert.equal(meta.format, "png");
      assert.deepEqual([meta.width, meta.height], [512, 512]);
    });

    test("outputsBeforeComplete answers processing with every output, then succeeds", async () => {
      await addRule({ when: { prompt: "early output" }, then: { outputsBeforeComplete: 400 } });
      const { res, body } = await create(
        { prompt: "early output", megapixels: "0.25", num_outputs: 2 },
        { Prefer: "wait" },
      );
      assert.equal(res.status, 201);
      assert.equal(body.status, "processing");
      assert.equal(body.output.length, 2);
      assert.equal(body.completed_at, undefined);
      assert.equal(body.metrics, undefined);
      assert.equal((await download(body.output[1])).res.status, 200);
      const { prediction } = await poll(body.id);
      assert.equal(prediction.status, "succeeded");
      assert.match(prediction.completed_at, ISO_NANOS);
      assert.ok(prediction.metrics.predict_time > 0);
      assert.deepEqual(prediction.output, body.output);
    });

    test("HTTP control routes: list and clear rules, reset", async () => {
      await addRule({ when: { prompt: "a" }, then: { latencyMs: 1 } });
      const listed = await (await fetch(`${base}/_control/rules`)).json();
      assert.equal(listed.length, 1);
      const cleared = await fetch(`${base}/_control/rules`, { method: "DELETE" });
      assert.equal(cleared.status, 200);
      assert.equal(emulator.state.rules.rules.length, 0);
      const bad = await fetch(`${base}/_control/rules`, { method: "POST", body: JSON.stringify({ then: { nonsense: 1 } }) });
      assert.equal(bad.status, 400);

      const { body } = await create({ prompt: "gone after reset", megapixels: "0.25" });
      const reset = await fetch(`${base}/_control/reset`, { method: "POST" });
      assert.equal(reset.status, 200);
      assert.equal((await api(`/v1/predictions/${body.id}`)).status, 404);
    });
  });

  describe("request log", () => {
    test("records method, path, query, lowercased headers and parsed body", async () => {
      const { body } = await create({ prompt: "logged", megapixels: "0.25" }, { "X-Trace": "abc", Prefer: "wait" });
      await download(body.output[0]);
      await api("/v1/predictions?cursor=zzz");
      const createEntry = emulator.state.requests.find((r) => r.method === "POST");
      assert.equal(createEntry.path, MODEL_PATH);
      assert.equal(createEntry.headers["x-trace"], "abc");
      assert.equal(createEntry.headers.authorization, `Bearer ${TOKEN}`);
      assert.equal(createEntry.headers.prefer, "wait");
      assert.deepEqual(createEntry.body, { input: { prompt: "logged", megapixels: "0.25" } });
      assert.ok(Number.isFinite(createEntry.at));

      const all = await (await fetch(`${base}/_control/requests`)).json();
      assert.deepEqual(all.map((r) => r.method + " " + r.path), [
        `POST ${MODEL_PATH}`,
        `GET /delivery/${body.id}/out-0.webp`,
        "GET /v1/predictions",
      ]);
      assert.deepEqual(all[2].query, { cursor: "zzz" });
      assert.equal(all[1].body, null);
      const filtered = await (await fetch(`${base}/_control/requests?path=/delivery/`)).json();
      assert.equal(filtered.length, 1);
      const del = await fetch(`${base}/_control/requests`, { method: "DELETE" });
      assert.equal(del.status, 200);
      assert.deepEqual(await (await fetch(`${base}/_control/requests`)).json(), []);
    });
  });

  describe("webhooks", () => {
    test("completed webhook is delivered with a valid Replicate signature", async () => {
      const received = [];
      const receiver = createServer((req, res) => {
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => {
          received.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
          res.writeHead(204).end();
        });
      });
      await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
      try {
        const hook = `http://127.0.0.1:${receiver.address().port}/hook`;
        const { body } = await create(
          { prompt: "hooked", megapixels: "0.25" },
          { Prefer: "wait" },
          { webhook: hook, webhook_events_filter: ["completed"] },
        );
        for (let i = 0; i < 100 && received.length === 0; i++) await sleep(20);
        assert.equal(received.length, 1);
        const { headers, body: raw } = received[0];
        const payload = JSON.parse(raw);
        assert.equal(payload.id, body.id);
        assert.equal(payload.status, "succeeded");
        const { key } = await (await api("/v1/webhooks/default/secret")).json();
        assert.match(key, /^whsec_/);
        const expected = createHmac("sha256", Buffer.from(key.slice(6), "base64"))
          .update(`${headers["webhook-id"]}.${headers["webhook-timestamp"]}.${raw}`)
          .digest();
        const signatures = headers["webhook-signature"].split(" ").map((s) => Buffer.from(s.split(",")[1], "base64"));
        assert.ok(signatures.some((s) => s.length === expected.length && timingSafeEqual(s, expected)));
        assert.ok(Math.abs(Number(headers["webhook-timestamp"]) - Date.now() / 1000) < 60);
      } finally {
        await new Promise((resolve) => receiver.close(resolve));
      }
    });
  });

  describe("CLI", () => {
    test("prints one line and honours EMULATOR_TOKENS and --accept-prefix", async () => {
      const script = fileURLToPath(new URL("../emulator/server.mjs", import.meta.url));
      const child = spawn(process.execPath, [script, "--port", "0", "--accept-prefix", "cli_"], {
        env: { ...process.env, EMULATOR_TOKENS: "tok_a, tok_b" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      try {
        const line = await new Promise((resolve, reject) => {
          let out = "";
          child.stdout.on("data", (d) => {
            out += d;
            if (out.includes("\n")) resolve(out);
          });
          child.once("exit", (code) => reject(new Error(`exited ${code}`)));
        });
        const match = /^Replicate emulator listening on (http:\/\/127\.0\.0\.1:(\d+))\n$/.exec(line);
        assert.ok(match, line);
        const cliUrl = match[1];
        const call = (token) =>
          fetch(`${cliUrl}/v1/predictions`, { headers: { Authorization: `Bearer ${token}` } }).then((r) => r.status);
        assert.equal(await call("tok_b"), 200);
        assert.equal(await call("cli_whatever"), 200);
        assert.equal(await call("r8_test"), 401);
      } finally {
        child.kill("SIGTERM");
        await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once("exit", resolve)));
      }
    });
  });
});
