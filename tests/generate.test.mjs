// GET and POST /generate against the emulator: inputs, validation, and how
// Replicate's answers map to ours. What the worker sent is read back from
// the emulator's request log.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  AUTH_TOKEN,
  SERVICE_REPLICATE_TOKEN,
  addRule,
  createsFor,
  generate,
  received,
  uniquePrompt,
  worker,
  workerWith,
} from "./harness.mjs";

const auth = { authorization: `Bearer ${AUTH_TOKEN}` };
const IMAGE_URL = /^http:\/\/127\.0\.0\.1:\d+\/image\/[0-9a-z]{26}\.(webp|png|jpg)$/;

async function oneCreate(prompt) {
  const creates = await createsFor(prompt);
  assert.equal(creates.length, 1, "exactly one create reached Replicate");
  return creates[0];
}

describe("GET /generate", () => {
  test("redirects (302) to the stored image's URL", async () => {
    const w = await worker();
    const prompt = uniquePrompt("a beautiful sunset");
    const res = await w.fetch(`/generate?prompt=${encodeURIComponent(prompt)}`, { headers: auth });
    assert.equal(res.status, 302);
    const location = res.headers.get("location");
    assert.match(location, IMAGE_URL);
    assert.ok(location.startsWith(w.url.origin));
    const image = await fetch(location);
    assert.equal(image.status, 200);
    assert.match(image.headers.get("content-type"), /^image\/webp$/);
    assert.ok((await image.arrayBuffer()).byteLength > 1000);
  });

  test("missing prompt: 400 with the contract's message", async () => {
    const w = await worker();
    for (const query of ["", "?prompt=", "?prompt=%20%20", "?seed=1"]) {
      const res = await w.fetch(`/generate${query}`, { headers: auth });
      assert.equal(res.status, 400, query);
      assert.deepEqual(await res.json(), { error: "Missing 'prompt' query parameter" });
    }
  });

  test("other inputs as query parameters arrive typed", async () => {
    const w = await worker();
    const prompt = uniquePrompt("typed query");
    const query = new URLSearchParams({
      prompt,
      aspect_ratio: "16:9",
      seed: "42",
      output_format: "png",
      num_inference_steps: "2",
      output_quality: "90",
      go_fast: "false",
      megapixels: "0.25",
    });
    const res = await w.fetch(`/generate?${query}`, { headers: auth });
    assert.equal(res.status, 302);
    assert.match(res.headers.get("location"), /\.png$/);
    const { body } = await oneCreate(prompt);
    assert.deepEqual(body.input, {
      prompt,
      aspect_ratio: "16:9",
      seed: 42,
      output_format: "png",
      num_inference_steps: 2,
      output_quality: 90,
      go_fast: false,
      megapixels: "0.25",
    });
  });

  test("a bad query value: 400 naming the field, nothing sent", async () => {
    const w = await worker();
    const prompt = uniquePrompt("bad query");
    for (const [k, v] of [["seed", "abc"], ["aspect_ratio", "7:3"], ["go_fast", "maybe"], ["num_inference_steps", "9"], ["colour", "red"]]) {
      const res = await w.fetch(`/generate?prompt=${encodeURIComponent(prompt)}&${k}=${v}`, { headers: auth });
      assert.equal(res.status, 400, `${k}=${v}`);
      const body = await res.json();
      assert.match(`${body.error} ${body.details}`, new RegExp(k), `${k}=${v}`);
    }
    assert.equal((await createsFor(prompt)).length, 0);
  });
});

describe("POST /generate", () => {
  test("simple form: {id, imageUrl}, go_fast defaults to true", async () => {
    const w = await worker();
    const prompt = uniquePrompt("a futuristic city");
    const res = await generate(w, { prompt });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.match(body.imageUrl, IMAGE_URL);
    assert.equal(body.imageUrl, `${w.url.origin}/image/${body.id}`);
    assert.equal(body.model, "black-forest-labs/flux-schnell");
    assert.match(body.predictionId, /^[a-z0-9]{26}$/);
    const create = await oneCreate(prompt);
    assert.equal(create.path, "/v1/models/black-forest-labs/flux-schnell/predictions");
    assert.deepEqual(create.body, { input: { prompt, go_fast: true } });
    assert.match(create.headers.prefer, /^wait=\d+$/);
  });

  test("full form: the input goes to Replicate as given", async () => {
    const w = await worker();
    const prompt = uniquePrompt("full form");
    const input = { prompt, output_format: "png", aspect_ratio: "16:9", num_outputs: 1, num_inference_steps: 4, seed: 12345, go_fast: false };
    const res = await generate(w, { input });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.match(body.id, /\.png$/);
    assert.equal(body.seed, 12345);
    assert.deepEqual((await oneCreate(prompt)).body, { input });
  });

  test("full form with webhook and events filter: kept by the service, not given to Replicate", async () => {
    const w = await worker();
    const prompt = uniquePrompt("webhook");
    const res = await generate(w, {
      input: { prompt, output_format: "webp", aspect_ratio: "1:1" },
      webhook: "https://example.com/callback",
      webhook_events_filter: ["start", "completed"],
    });
    assert.equal(res.status, 200);
    const { predictionId } = await res.json();
    const { body } = await oneCreate(prompt);
    assert.equal(body.webhook, undefined, "the service calls the caller's webhook itself");
    assert.equal(body.webhook_events_filter, undefined);
    const kv = await w.mf.getKVNamespace("IMAGE_META");
    const index = JSON.parse(await kv.get(`prediction:${predictionId}`));
    assert.equal(index.job.webhook.url, "https://example.com/callback");
    assert.deepEqual(index.job.webhook.events, ["start", "completed"]);
  });

  test("a webhook that is not https, or a bad events filter: 400", async () => {
    const w = await worker();
    const prompt = uniquePrompt("bad webhook");
    for (const extra of [
      { webhook: "http://example.com/hook" },
      { webhook: "ftp://example.com" },
      { webhook: 42 },
      { webhook: "https://example.com/h", webhook_events_filter: ["done"] },
      { webhook: "https://example.com/h", webhook_events_filter: "completed" },
    ]) {
      const res = await generate(w, { input: { prompt }, ...extra });
      assert.equal(res.status, 400, JSON.stringify(extra));
      assert.match((await res.json()).details, /webhook/);
    }
    assert.equal((await createsFor(prompt)).length, 0);
  });

  test("num_outputs > 1 adds images[] with every output", async () => {
    const w = await worker();
    const prompt = uniquePrompt("several");
    const res = await generate(w, { input: { prompt, num_outputs: 3, megapixels: "0.25" } });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.images.length, 3);
    assert.equal(body.images[0].id, body.id);
    assert.equal(new Set(body.images.map((i) => i.id)).size, 3);
    for (const image of body.images) {
      assert.match(image.imageUrl, IMAGE_URL);
      assert.equal((await fetch(image.imageUrl)).status, 200);
    }
  });

  test("schema violations: 400 naming the field, nothing sent", async () => {
    const w = await worker();
    const prompt = uniquePrompt("invalid");
    const cases = [
      [{ input: { prompt, guidance_scale: 3.5 } }, /guidance_scale/],
      [{ input: { prompt, num_inference_steps: 8 } }, /num_inference_steps/],
      [{ input: { prompt, num_outputs: 5 } }, /num_outputs/],
      [{ input: { prompt, aspect_ratio: "2:1" } }, /aspect_ratio/],
      [{ input: { prompt, output_format: "gif" } }, /output_format/],
      [{ input: { prompt, output_quality: 101 } }, /output_quality/],
      [{ input: { prompt, seed: "42" } }, /seed/],
      [{ input: { prompt, go_fast: "yes" } }, /go_fast/],
      [{ input: { prompt, megapixels: "2" } }, /megapixels/],
      [{ input: { prompt: 42 } }, /prompt/],
      [{ input: {} }, /prompt/],
      [{ input: "a cat" }, /input/],
      [{ prompt, colour: "red" }, /colour/],
      [{ prompt: "x".repeat(2001) }, /prompt/],
    ];
    for (const [body, field] of cases) {
      const res = await generate(w, body);
      assert.equal(res.status, 400, JSON.stringify(body).slice(0, 80));
      const answer = await res.json();
      assert.match(`${answer.error} ${answer.details}`, field, JSON.stringify(answer));
    }
    assert.equal((await createsFor(prompt)).length, 0);
  });

  test("malformed bodies each get their own clear error", async () => {
    const w = await worker();
    const cases = [
      ["{not json", "application/json", 400, /Invalid JSON/],
      ["[1,2]", "application/json", 400, /JSON object/],
      ['"a cat"', "application/json", 400, /JSON object/],
      ["", "application/json", 400, /body/i],
      ["prompt=a cat", "application/x-www-form-urlencoded", 415, /Unsupported Media Type/],
      [JSON.stringify({ prompt: "x".repeat(70 * 1024) }), "application/json", 413, /too large/],
    ];
    for (const [body, type, status, message] of cases) {
      const res = await w.fetch("/generate", { method: "POST", headers: { ...auth, "content-type": type }, body });
      assert.equal(res.status, status, `${type} ${body.slice(0, 20)}`);
      assert.match(res.headers.get("content-type"), /^application\/json/);
      assert.match((await res.json()).error, message);
    }
  });

  test("a pinned version from configuration is sent with /v1/predictions", async () => {
    const version = "c846a69991daf4c0e5d016514849d14ee5b2e6846ce6b9d6f21369e564cfe51e";
    const w = await workerWith({ MODELS: `schnell=black-forest-labs/flux-schnell:${version}` });
    const prompt = uniquePrompt("pinned");
    const res = await generate(w, { prompt });
    assert.equal(res.status, 200);
    const create = await oneCreate(prompt);
    assert.equal(create.path, "/v1/predictions");
    assert.equal(create.body.version, version);
  });
});

describe("talking to Replicate", () => {
  test("a failed prediction: 502 with Replicate's error", async () => {
    const w = await worker();
    const prompt = uniquePrompt("fails");
    await addRule({ when: { prompt }, then: { fail: "CUDA out of memory" } });
    const res = await generate(w, { prompt });
    assert.equal(res.status, 502);
    assert.deepEqual(await res.json(), { error: "Failed to generate image", details: "CUDA out of memory" });
  });

  test("a prediction that never finishes: 504 with its id, cancelled upstream", async () => {
    const w = await workerWith({ GENERATION_TIMEOUT_SECONDS: "2", REPLICATE_WAIT_SECONDS: "1" });
    const prompt = uniquePrompt("hangs");
    await addRule({ when: { prompt }, then: { hang: true } });
    const res = await generate(w, { prompt });
    assert.equal(res.status, 504);
    const body = await res.json();
    assert.equal(body.error, "Prediction timed out");
    assert.match(body.details, /[a-z0-9]{26}/);
    const id = body.predictionId ?? body.details.match(/[a-z0-9]{26}/)[0];
    const cancelled = async () => (await received(`/v1/predictions/${id}/cancel`)).length > 0;
    const end = Date.now() + 5000;
    while (!(await cancelled()) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    assert.ok(await cancelled(), "the prediction was cancelled upstream");
  });

  test("polls with growing delays until the prediction ends", async () => {
    const w = await workerWith({ REPLICATE_WAIT_SECONDS: "1" });
    const prompt = uniquePrompt("slow");
    await addRule({ when: { prompt }, then: { predictMs: 2500 } });
    const res = await generate(w, { prompt });
    assert.equal(res.status, 200);
    const create = await oneCreate(prompt);
    assert.equal(create.headers.prefer, "wait=1");
    const polls = (await received("/v1/predictions/")).filter((r) => r.method === "GET" && r.at > create.at);
    const id = (await res.json()).predictionId;
    const mine = polls.filter((r) => r.path === `/v1/predictions/${id}`);
    assert.ok(mine.length >= 2, `polled ${mine.length} times`);
    const gaps = mine.slice(1).map((r, i) => r.at - mine[i].at);
    assert.ok(gaps.at(-1) >= gaps[0], `delays grow: ${gaps}`);
  });

  test("429 on create: waits as Retry-After says, then succeeds", async () => {
    const w = await worker();
    const prompt = uniquePrompt("throttled once");
    await addRule({ when: { prompt }, then: { httpStatus: 429, retryAfter: 1 }, times: 1 });
    const res = await generate(w, { prompt });
    assert.equal(res.status, 200);
    const creates = await createsFor(prompt);
    assert.equal(creates.length, 2);
    assert.ok(creates[1].at - creates[0].at >= 900, "waited about Retry-After");
  });

  test("429 beyond the deadline: 429 with Retry-After", async () => {
    const w = await worker();
    const prompt = uniquePrompt("throttled");
    await addRule({ when: { prompt }, then: { httpStatus: 429, retryAfter: 30 } });
    const res = await generate(w, { prompt });
    assert.equal(res.status, 429);
    assert.equal(res.headers.get("retry-after"), "30");
    assert.match((await res.json()).error, /Rate limited/);
  });

  test("5xx on create is not retried (it could pay twice): 502", async () => {
    const w = await worker();
    const prompt = uniquePrompt("create 500");
    await addRule({ when: { prompt }, then: { httpStatus: 500 } });
    const res = await generate(w, { prompt });
    assert.equal(res.status, 502);
    assert.equal((await res.json()).error, "Replicate API error");
    assert.equal((await createsFor(prompt)).length, 1);
  });

  test("5xx on a read is retried", async () => {
    const w = await workerWith({ REPLICATE_WAIT_SECONDS: "1" });
    const prompt = uniquePrompt("read 503");
    await addRule({ when: { prompt }, then: { predictMs: 1500 } });
    await addRule({ when: { prompt, method: "GET" }, then: { httpStatus: 503 }, times: 1 });
    const res = await generate(w, { prompt });
    assert.equal(res.status, 200);
  });

  test("outputs from hosts not allowed are refused", async () => {
    const w = await workerWith({ EXTRA_OUTPUT_HOSTS: "" });
    const res = await generate(w, { prompt: uniquePrompt("foreign host") });
    assert.equal(res.status, 502);
    const body = await res.json();
    assert.equal(body.error, "Failed to generate image");
    assert.match(body.details, /not allowed/);
  });

  test("data: URI outputs are decoded and stored", async () => {
    const w = await worker();
    const prompt = uniquePrompt("inline");
    await addRule({ when: { prompt }, then: { outputAs: "data" } });
    const res = await generate(w, { input: { prompt, output_format: "png", megapixels: "0.25" } });
    assert.equal(res.status, 200);
    const { imageUrl } = await res.json();
    const image = await fetch(imageUrl);
    assert.equal(image.status, 200);
    assert.equal(image.headers.get("content-type"), "image/png");
    const bytes = new Uint8Array(await image.arrayBuffer());
    assert.deepEqual([...bytes.slice(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
  });

  test("the service token is sent only to Replicate's API", async () => {
    const w = await worker();
    const prompt = uniquePrompt("token scope");
    const res = await generate(w, { prompt });
    const { id } = await res.json();
    await fetch(`${w.url.origin}/image/${id}`);
    const deliveries = await received("/delivery/");
    assert.ok(deliveries.length > 0);
    for (const d of deliveries) assert.ok(!JSON.stringify(d.headers).includes(SERVICE_REPLICATE_TOKEN));
  });
});
