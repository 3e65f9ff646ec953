// Webhooks both ways. This worker holds Replicate's webhook secret (the
// emulator's), so it registers its own webhook on what it creates and
// persists outputs from verified deliveries; forged, tampered and stale
// deliveries are refused, repeated and late ones change nothing. Callers'
// webhooks are called by the service after the bytes are stored, signed with
// the caller's own secret, which the official client's validateWebhook
// accepts. Answers and the payloads callers receive are checked against
// openapi.json.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { createServer } from "node:http";
import { describe, test } from "node:test";
import Replicate, { validateWebhook } from "replicate";
import { DEFAULT_WEBHOOK_SECRET } from "../emulator/server.mjs";
import { addRule, AUTH_TOKEN, declaredPost, eventually, generate, received, record, uniquePrompt, worker, workerWith } from "./harness.mjs";
import { checkResponse, schemaProblems } from "./openapi-check.mjs";

const settings = { REPLICATE_WEBHOOK_SECRET: DEFAULT_WEBHOOK_SECRET, EXTRA_WEBHOOK_HOSTS: "127.0.0.1" };
const auth = { authorization: `Bearer ${AUTH_TOKEN}` };

/** A caller's webhook receiver: every delivery with its headers and body, and whether the bytes were stored when it came. */
async function receiver(w, t, { failFirst = 0 } = {}) {
  const deliveries = [];
  let refused = 0;
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const delivery = { headers: req.headers, body, json: JSON.parse(body), storedOnArrival: null };
      const firstImage = delivery.json.id && delivery.json.status === "succeeded" ? delivery.json.id : null;
      if (firstImage) delivery.storedOnArrival = (await record(w, firstImage))?.status === "stored";
      deliveries.push(delivery);
      if (refused < failFirst) {
        refused += 1;
        delivery.refused = true;
        return res.writeHead(500).end("not now");
      }
      res.writeHead(200).end("ok");
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => {
    server.close();
    server.closeAllConnections();
  });
  return { url: `http://127.0.0.1:${server.address().port}/hook`, deliveries };
}

/** Headers of a Standard Webhooks delivery of `body` signed with `secret`, as Replicate sends them. */
function signedHeaders(body, secret, id = `msg_${Date.now()}`) {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const signature = createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64");
  return { "content-type": "application/json", "webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": `v1,${signature}` };
}

async function secretOf(w, headers = auth) {
  const res = await w.fetch("/replicate/v1/webhooks/default/secret", { headers });
  assert.equal(res.status, 200);
  return (await res.json()).key;
}

/** What the emulator delivered, or tried to, to this worker's own webhook about `predictionId`. */
async function deliveriesTo(w, predictionId) {
  const res = await fetch(`${w.emulator.url}/_control/webhooks`);
  const all = await res.json();
  const ours = all.filter((d) => d.url === new URL("/webhooks/replicate", w.url).href && d.body?.id === predictionId);
  return ours.length > 0 && ours.every((d) => d.status !== null || d.error !== null) && ours;
}

async function control(w, body) {
  const res = await fetch(`${w.emulator.url}/_control/webhooks/deliver`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()).deliveries;
}

describe("the service's own webhook", () => {
  test("registered on what it creates, in place of the caller's; outputs kept from the delivery", async (t) => {
    const w = await workerWith(settings);
    const hook = await receiver(w, t);
    const prompt = uniquePrompt("own webhook");
    const res = await generate(w, { prompt, megapixels: "0.25", webhook: hook.url, webhook_events_filter: ["completed"] }, { ...auth, prefer: "respond-async" });
    assert.equal(res.status, 202);
    const job = await checkResponse("POST", "/generate", res);
    const [create] = (await received("/predictions")).filter((r) => r.method === "POST" && r.body?.input?.prompt === prompt);
    assert.equal(create.body.webhook, new URL("/webhooks/replicate", w.url).href);
    assert.deepEqual(create.body.webhook_events_filter, ["completed"]);
    const [delivery] = await eventually(() => deliveriesTo(w, job.predictionId), 10000, "Replicate's delivery");
    await eventually(async () => (await record(w, job.id))?.status === "stored", 10000, "the image stored");
    assert.equal(delivery.status, 200, "accepted");
    const polls = (await received(`/predictions/${job.predictionId}`)).filter((r) => r.method === "GET");
    assert.equal(polls.length, 0, "nothing polled: the delivery did it");
  });

  test("forged, tampered and stale deliveries are refused; nothing is kept from them", async () => {
    const w = await workerWith(settings);
    const prompt = uniquePrompt("forged");
    await addRule({ when: { prompt }, then: { predictMs: 6000 } });
    const res = await generate(w, { prompt, megapixels: "0.25" }, { ...auth, prefer: "respond-async" });
    const job = await res.json();
    const url = new URL("/webhooks/replicate", w.url).href;
    for (const mode of ["forged", "tampered", "stale"]) {
      const [sent] = await control(w, { url, prediction: job.predictionId, mode });
      assert.equal(sent.status, 401, mode);
    }
    const unsigned = await w.fetch("/webhooks/replicate", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ id: job.predictionId, status: "succeeded", output: ["https://replicate.delivery/x.png"] }) });
    assert.equal(unsigned.status, 401);
    assert.equal((await checkResponse("POST", "/webhooks/replicate", unsigned)).error, "Invalid webhook signature");
    const r = await record(w, job.id);
    assert.equal(r.status, "awaiting", "still waiting for the genuine outcome");
    const status = await w.fetch(`/generate/${job.predictionId}`, { headers: auth });
    assert.ok(["starting", "processing"].includes((await checkResponse("GET", "/generate/{predictionId}", status)).status));
    assert.equal((await w.fetch(`/image/${job.id}`)).status, 503);
  });

  test("a signed delivery about a prediction made elsewhere is acknowledged and ignored", async () => {
    const w = await workerWith(settings);
    const body = JSON.stringify({ id: "elsewhere0000000000000001", status: "succeeded", output: ["https://replicate.delivery/x/out.png"] });
    const res = await w.fetch("/webhooks/replicate", { method: "POST", headers: signedHeaders(body, DEFAULT_WEBHOOK_SECRET), body });
    assert.equal(res.status, 200);
    assert.deepEqual(await checkResponse("POST", "/webhooks/replicate", res), { received: true, known: false });
  });

  test("not taken without Replicate's secret (404); over 4 MiB refused (413)", async () => {
    const plain = await worker();
    const none = await plain.fetch("/webhooks/replicate", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(none.status, 404);
    await checkResponse("POST", "/webhooks/replicate", none);
    const w = await workerWith(settings);
    const large = await declaredPost(w, "/webhooks/replicate", 4 * 1024 * 1024 + 1, { "content-type": "application/json" });
    assert.equal(large.status, 413);
    await checkResponse("POST", "/webhooks/replicate", large);
  });

  test("replayed, duplicated and out-of-order deliveries change nothing: one copy, one caller delivery", async (t) => {
    const w = await workerWith(settings);
    const hook = await receiver(w, t);
    const prompt = uniquePrompt("replay");
    const res = await generate(w, { prompt, megapixels: "0.25", output_format: "png", webhook: hook.url }, { ...auth, prefer: "respond-async" });
    const job = await res.json();
    const [genuine] = await eventually(() => deliveriesTo(w, job.predictionId), 10000, "Replicate's delivery");
    await eventually(async () => (await record(w, job.id))?.status === "stored", 10000, "the image stored");
    await eventually(() => hook.deliveries.some((d) => d.json.status === "succeeded"), 10000, "the caller's delivery");
    const url = new URL("/webhooks/replicate", w.url).href;
    for (const [i, sent] of [
      ...(await control(w, { url, mode: "replay", messageId: genuine.id })),
      ...(await control(w, { url, prediction: job.predictionId, mode: "duplicate" })),
      ...(await control(w, { url, prediction: job.predictionId, mode: "out-of-order" })),
    ].entries()) {
      assert.equal(sent.status, 200, `delivery ${i} acknowledged`);
    }
    const status = await (await w.fetch(`/generate/${job.predictionId}`, { headers: auth })).json();
    assert.equal(status.status, "succeeded", "a late 'processing' does not move it back");
    await new Promise((r) => setTimeout(r, 500));
    const outputFetches = (await received(`/delivery/${job.predictionId}/`)).filter((r) => r.method === "GET");
    assert.equal(outputFetches.length, 1, "the output copied once");
    const completed = hook.deliveries.filter((d) => d.headers["webhook-id"] === `msg_${job.predictionId}_completed`);
    assert.equal(completed.length, 1, "the caller told once");
    const ids = hook.deliveries.map((d) => d.headers["webhook-id"]);
    assert.equal(new Set(ids).size, ids.length, `each event once: ${ids}`);
  });
});

describe("callers' webhooks, called by the service", () => {
  test("after the bytes are stored, with this service's URLs, verified by the official client's validateWebhook", async (t) => {
    const w = await workerWith(settings);
    const hook = await receiver(w, t);
    const prompt = uniquePrompt("caller webhook");
    const res = await generate(w, { prompt, megapixels: "0.25", webhook: hook.url, webhook_events_filter: ["start", "completed"] }, { ...auth, prefer: "respond-async" });
    const job = await res.json();
    await eventually(() => hook.deliveries.find((d) => d.json.status === "succeeded"), 15000, "the completed delivery");
    const [start, completed] = [hook.deliveries.find((d) => d.json.status === "starting"), hook.deliveries.find((d) => d.json.status === "succeeded")];
    assert.ok(start, "the start event, asked for");
    for (const delivery of [start, completed]) {
      assert.deepEqual(schemaProblems("#/components/schemas/GenerationStatus", delivery.json), [], `${delivery.headers["webhook-id"]}: the payload openapi.json describes`);
      assert.deepEqual(schemaProblems("#/components/parameters/WebhookSignature/schema", delivery.headers["webhook-signature"]), []);
      assert.deepEqual(schemaProblems("#/components/parameters/WebhookTimestamp/schema", delivery.headers["webhook-timestamp"]), []);
    }
    assert.deepEqual(start.json.images.map((i) => i.id), job.images.map((i) => i.id), "start names the announced images");
    assert.equal(completed.storedOnArrival, true, "the bytes were stored before the call");
    assert.equal(completed.json.imageUrl, new URL(`/image/${job.id}`, w.url).href);
    assert.equal(completed.json.predictionId, job.predictionId);
    assert.equal(completed.headers["webhook-id"], `msg_${job.predictionId}_completed`);
    const secret = await secretOf(w);
    const valid = await validateWebhook({ headers: completed.headers, body: completed.body }, secret);
    assert.equal(valid, true);
    const forged = await validateWebhook({ headers: completed.headers, body: completed.body.replace(job.id, "x") }, secret);
    assert.equal(forged, false);
    assert.ok(!completed.body.includes("replicate.delivery"), "no Replicate URL");
    assert.equal((await w.fetch(new URL(completed.json.imageUrl).pathname)).status, 200);
  });

  test("a generation that fails is delivered as completed, status failed, with Replicate's error", async (t) => {
    const w = await workerWith(settings);
    const hook = await receiver(w, t);
    const prompt = uniquePrompt("failing webhook");
    await addRule({ when: { prompt }, then: { fail: "NSFW content detected" } });
    const res = await generate(w, { prompt, megapixels: "0.25", webhook: hook.url, webhook_events_filter: ["completed"] }, { ...auth, prefer: "respond-async" });
    const job = await checkResponse("POST", "/generate", res);
    const delivery = await eventually(() => hook.deliveries.find((d) => d.json.status === "failed"), 15000, "the failed delivery");
    assert.equal(delivery.headers["webhook-id"], `msg_${job.predictionId}_completed`);
    assert.match(delivery.json.error, /NSFW/);
    assert.deepEqual(schemaProblems("#/components/schemas/GenerationStatus", delivery.json), []);
    assert.equal(await validateWebhook({ headers: delivery.headers, body: delivery.body }, await secretOf(w)), true);
  });

  test("the events filter is honoured", async (t) => {
    const w = await workerWith(settings);
    const hook = await receiver(w, t);
    const prompt = uniquePrompt("filter");
    await generate(w, { prompt, megapixels: "0.25", webhook: hook.url, webhook_events_filter: ["completed"] }, auth);
    await eventually(() => hook.deliveries.some((d) => d.json.status === "succeeded"), 15000, "the completed delivery");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(hook.deliveries.filter((d) => d.json.status === "starting").length, 0, "no start event");
    assert.equal(hook.deliveries.length, 1);
  });

  test("each caller has its own secret; reading it needs a credential", async () => {
    const w = await workerWith(settings);
    const keyRes = await w.fetch("/admin/keys", {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ name: "webhook secret" }),
    });
    const { key } = await keyRes.json();
    const operator = await secretOf(w);
    const caller = await secretOf(w, { authorization: `Bearer ${key}` });
    assert.match(operator, /^whsec_[A-Za-z0-9+/]+=*$/);
    assert.notEqual(operator, caller);
    assert.ok(!operator.includes(AUTH_TOKEN) && !caller.includes(key));
    assert.equal((await w.fetch("/replicate/v1/webhooks/default/secret")).status, 401);
  });

  test("a webhook that is not public https is refused before anything is created", async () => {
    const w = await workerWith(settings);
    const prompt = uniquePrompt("private hook");
    const res = await generate(w, { prompt, webhook: "http://10.0.0.1/hook" }, auth);
    assert.equal(res.status, 400);
    assert.equal((await received("/predictions")).filter((r) => r.body?.input?.prompt === prompt).length, 0);
  });

  test("/replicate/v1 predictions created with a webhook, through the official client", async (t) => {
    const w = await workerWith(settings);
    const hook = await receiver(w, t);
    const replicate = new Replicate({ auth: AUTH_TOKEN, baseUrl: new URL("/replicate/v1", w.url).href });
    const prompt = uniquePrompt("client webhook");
    const created = await replicate.predictions.create({
      model: "black-forest-labs/flux-schnell",
      input: { prompt, megapixels: "0.25" },
      webhook: hook.url,
      webhook_events_filter: ["completed"],
    });
    assert.equal(created.webhook, hook.url, "the caller sees its own webhook");
    const [create] = (await received("/predictions")).filter((r) => r.method === "POST" && r.body?.input?.prompt === prompt);
    assert.equal(create.body.webhook, new URL("/webhooks/replicate", w.url).href, "Replicate was given the service's");
    const delivery = await eventually(() => hook.deliveries.find((d) => d.json.status === "succeeded"), 15000, "the delivery");
    const secret = (await replicate.webhooks.default.secret.get()).key;
    assert.equal(await validateWebhook({ headers: delivery.headers, body: delivery.body }, secret), true);
    assert.equal(delivery.json.id, created.id);
    assert.deepEqual(schemaProblems("#/components/schemas/Prediction", delivery.json), [], "the payload openapi.json describes");
    const [output] = [delivery.json.output].flat();
    assert.ok(output.startsWith(new URL("/image/", w.url).href), output);
    assert.equal(delivery.json.webhook, hook.url);
    const image = await w.fetch(new URL(output).pathname);
    assert.equal(image.status, 200);
  });

  test("a receiver that fails is tried again in the request, then by the cron, under one delivery id", async (t) => {
    const w = await workerWith(settings);
    const hook = await receiver(w, t, { failFirst: 3 });
    const prompt = uniquePrompt("failing receiver");
    const res = await generate(w, { prompt, megapixels: "0.25", webhook: hook.url, webhook_events_filter: ["completed"] }, auth);
    assert.equal(res.status, 200);
    const { predictionId } = await res.json();
    const kv = await w.mf.getKVNamespace("IMAGE_META");
    const state = await eventually(async () => {
      const text = await kv.get(`hook:${predictionId}`);
      return text && JSON.parse(text);
    }, 15000, "the failed delivery written down");
    assert.equal(hook.deliveries.length, 3, "three tries within the request");
    assert.equal(state.attempts, 1);
    assert.ok(state.retry_at_ms > Date.now() + 30_000, "the next try left to the cron, a minute on");
    assert.ok(await kv.get(`payload:${predictionId}`), "the payload kept for it");
    assert.ok((await kv.list({ prefix: `open:${predictionId}` })).keys.length === 1, "still followed");

    await (await w.mf.getWorker()).scheduled({ cron: "*/5 * * * *" });
    assert.equal(hook.deliveries.length, 3, "not before it is due");
    await kv.put(`hook:${predictionId}`, JSON.stringify({ ...state, retry_at_ms: Date.now() - 1 }));
    await (await w.mf.getWorker()).scheduled({ cron: "*/5 * * * *" });
    await eventually(() => hook.deliveries.length === 4, 10000, "the cron's delivery");
    const ids = new Set(hook.deliveries.map((d) => d.headers["webhook-id"]));
    assert.deepEqual([...ids], [`msg_${predictionId}_completed`]);
    const secret = await secretOf(w);
    assert.equal(await validateWebhook({ headers: hook.deliveries[3].headers, body: hook.deliveries[3].body }, secret), true);
    await eventually(async () => (await kv.list({ prefix: `open:${predictionId}` })).keys.length === 0, 5000, "no longer followed");
  });

  test("a job whose delivery does not come is read by the cron once it has been quiet", async () => {
    const w = await workerWith(settings);
    const prompt = uniquePrompt("quiet job");
    // Starting for 2 s, processing until 6 s, then reported.
    await addRule({ when: { prompt }, then: { predictMs: 6000 } });
    const res = await generate(w, { prompt, megapixels: "0.25" }, { ...auth, prefer: "respond-async" });
    const { predictionId } = await res.json();
    const reads = async () => (await received(`/predictions/${predictionId}`)).filter((r) => r.method === "GET").length;
    const kv = await w.mf.getKVNamespace("IMAGE_META");
    await (await w.mf.getWorker()).scheduled({ cron: "*/5 * * * *" });
    assert.equal(await reads(), 0, "not while it may still report back");
    const index = JSON.parse(await kv.get(`prediction:${predictionId}`));
    const longAgo = Date.now() - 3 * 60 * 1000;
    index.job.created_ms = longAgo;
    index.job.updated_ms = longAgo;
    await kv.put(`prediction:${predictionId}`, JSON.stringify(index));
    await new Promise((r) => setTimeout(r, 2500));
    await (await w.mf.getWorker()).scheduled({ cron: "*/5 * * * *" });
    assert.equal(await reads(), 1, "read once by the cron");
    const after = JSON.parse(await kv.get(`prediction:${predictionId}`));
    assert.equal(after.job.status, "processing", "moved on from what it read");
  });

  test("a /replicate/v1 prediction canceled through the service: its webhook hears of it", async (t) => {
    const w = await workerWith(settings);
    const hook = await receiver(w, t);
    const prompt = uniquePrompt("canceled hook");
    await addRule({ when: { prompt }, then: { predictMs: 20000 } });
    const replicate = new Replicate({ auth: AUTH_TOKEN, baseUrl: new URL("/replicate/v1", w.url).href });
    const created = await replicate.predictions.create({
      model: "black-forest-labs/flux-schnell",
      input: { prompt, megapixels: "0.25" },
      webhook: hook.url,
      webhook_events_filter: ["completed"],
    });
    const canceled = await replicate.predictions.cancel(created.id);
    assert.equal(canceled.status, "canceled");
    const delivery = await eventually(() => hook.deliveries.find((d) => d.json.status === "canceled"), 10000, "the canceled delivery");
    assert.equal(delivery.json.id, created.id);
    assert.equal(delivery.headers["webhook-id"], `msg_${created.id}_completed`);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(hook.deliveries.length, 1, "told once");
  });
});
