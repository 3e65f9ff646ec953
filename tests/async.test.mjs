// Asynchronous generation (`Prefer: respond-async`): 202 at once with the
// ids the images will have and a status URL; the status URL polled to the
// end; image URLs answering "not ready" with Retry-After, then the image;
// cancel; failure; who may read a job. This worker has no webhook secret
// for Replicate, so the job is moved on by polling (the request's own, after
// answering, and the status URL's). Every answer is checked against
// openapi.json.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { addRule, AUTH_TOKEN, eventually, generate, received, record, uniquePrompt, USER_REPLICATE_TOKEN, worker } from "./harness.mjs";
import { checkResponse } from "./openapi-check.mjs";

const asAsync = { authorization: `Bearer ${AUTH_TOKEN}`, prefer: "respond-async" };

async function startAsync(w, body, headers = asAsync) {
  const res = await generate(w, body, headers);
  assert.equal(res.status, 202, await res.clone().text());
  return { res, body: await checkResponse("POST", "/generate", res) };
}

async function status(w, url, headers = { authorization: `Bearer ${AUTH_TOKEN}` }) {
  const res = await w.fetch(new URL(url).pathname, { headers });
  return { res, body: await checkResponse("GET", "/generate/{predictionId}", res) };
}

describe("async generation", () => {
  test("202 at once with the image ids and a status URL; polled to the end; the image then served", async () => {
    const w = await worker();
    const prompt = uniquePrompt("async slow");
    await addRule({ when: { prompt }, then: { predictMs: 3000 } });
    const started = Date.now();
    const { res, body } = await startAsync(w, { prompt, num_outputs: 2, output_format: "png", megapixels: "0.25" });
    assert.ok(Date.now() - started < 2500, "answered before the model finished");
    assert.equal(body.status, "starting");
    assert.match(body.predictionId, /^[a-z0-9]+$/);
    assert.equal(body.statusUrl, new URL(`/generate/${body.predictionId}`, w.url).href);
    assert.equal(res.headers.get("location"), body.statusUrl);
    assert.equal(body.images.length, 2, "one per expected output");
    for (const image of body.images) {
      assert.match(image.id, /^[0-9a-z]{26}\.png$/);
      assert.equal(image.imageUrl, new URL(`/image/${image.id}`, w.url).href);
    }
    assert.equal(body.id, body.images[0].id);

    const early = await w.fetch(`/image/${body.id}`);
    assert.equal(early.status, 503);
    assert.equal((await checkResponse("GET", "/image/{id}", early)).error, "Image not ready yet");
    assert.ok(Number(early.headers.get("retry-after")) > 0, "Retry-After");

    const running = await status(w, body.statusUrl);
    assert.equal(running.res.status, 200);
    assert.ok(["starting", "processing"].includes(running.body.status), running.body.status);
    assert.ok(running.res.headers.get("retry-after"));
    const head = await w.fetch(new URL(body.statusUrl).pathname, { method: "HEAD", headers: { authorization: `Bearer ${AUTH_TOKEN}` } });
    assert.equal(head.status, 200);
    await checkResponse("HEAD", "/generate/{predictionId}", head);

    const done = await eventually(async () => {
      const { body: now } = await status(w, body.statusUrl);
      return now.status === "succeeded" && now;
    }, 15000, "the job to succeed");
    assert.deepEqual(done.images.map((i) => i.id), body.images.map((i) => i.id), "the announced ids");
    const image = await eventually(async () => {
      const r = await w.fetch(`/image/${body.id}`);
      return r.status === 200 && r;
    }, 10000, "the image");
    assert.equal(image.headers.get("content-type"), "image/png");
    const bytes = new Uint8Array(await image.arrayBuffer());
    assert.deepEqual([...bytes.slice(1, 4)], [0x50, 0x4e, 0x47]);
    const creates = (await received("/predictions")).filter((r) => r.method === "POST" && r.body?.input?.prompt === prompt);
    assert.equal(creates.length, 1);
    assert.equal(creates[0].headers.prefer, undefined, "not held open by Prefer: wait");
  });

  test("the job moves on after the answer without anyone polling", async () => {
    const w = await worker();
    const prompt = uniquePrompt("async unwatched");
    const { body } = await startAsync(w, { prompt, megapixels: "0.25" });
    const r = await eventually(async () => {
      const rec = await record(w, body.id);
      return rec?.status === "stored" && rec;
    }, 15000, "the image to be stored by the request's own polling");
    assert.equal(r.prediction_id, body.predictionId);
    assert.equal(r.owner, "service", "owned by its caller, though kept after the request");
    const { images } = await (await w.fetch("/images?limit=100", { headers: { authorization: `Bearer ${AUTH_TOKEN}` } })).json();
    assert.ok(images.some((i) => i.id === body.id), "in its caller's gallery");
  });

  test("DELETE on the status URL cancels; the announced images are withdrawn", async () => {
    const w = await worker();
    const prompt = uniquePrompt("async cancel");
    await addRule({ when: { prompt }, then: { predictMs: 20000 } });
    const { body } = await startAsync(w, { prompt, megapixels: "0.25" });
    const res = await w.fetch(new URL(body.statusUrl).pathname, { method: "DELETE", headers: { authorization: `Bearer ${AUTH_TOKEN}` } });
    assert.equal(res.status, 200);
    assert.equal((await checkResponse("DELETE", "/generate/{predictionId}", res)).status, "canceled");
    const cancels = (await received(`/predictions/${body.predictionId}/cancel`)).filter((r) => r.method === "POST");
    assert.equal(cancels.length, 1);
    assert.equal((await w.fetch(`/image/${body.id}`)).status, 404);
    assert.equal((await status(w, body.statusUrl)).body.status, "canceled");
  });

  test("a failed prediction: the status says so with Replicate's error", async () => {
    const w = await worker();
    const prompt = uniquePrompt("async fail");
    await addRule({ when: { prompt }, then: { fail: "NSFW content detected" } });
    const { body } = await startAsync(w, { prompt, megapixels: "0.25" });
    const failed = await eventually(async () => {
      const { body: now } = await status(w, body.statusUrl);
      return now.status === "failed" && now;
    }, 15000, "the job to fail");
    assert.match(failed.error, /NSFW/);
    assert.equal((await w.fetch(`/image/${body.id}`)).status, 404);
  });

  test("only its caller (or the operator) sees a job; unknown ids are 404", async () => {
    const w = await worker();
    const prompt = uniquePrompt("async owner");
    const own = { "x-replicate-token": USER_REPLICATE_TOKEN, prefer: "respond-async" };
    const { body } = await startAsync(w, { prompt, megapixels: "0.25" }, own);
    const path = new URL(body.statusUrl).pathname;
    assert.equal((await w.fetch(path, { headers: { "x-replicate-token": USER_REPLICATE_TOKEN } })).status, 200);
    assert.equal((await w.fetch(path, { headers: { authorization: `Bearer ${AUTH_TOKEN}` } })).status, 200, "the operator");
    const keyRes = await w.fetch("/admin/keys", {
      method: "POST",
      headers: { authorization: `Bearer ${AUTH_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "another caller" }),
    });
    const { key } = await keyRes.json();
    const other = await w.fetch(path, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(other.status, 404);
    assert.equal((await checkResponse("GET", path, other)).error, "Generation not found");
    const otherCancel = await w.fetch(path, { method: "DELETE", headers: { authorization: `Bearer ${key}` } });
    assert.equal(otherCancel.status, 404);
    await checkResponse("DELETE", path, otherCancel);
    const anonymous = await w.fetch(path);
    assert.equal(anonymous.status, 401, "no credential");
    await checkResponse("GET", path, anonymous);
    for (const bad of ["/generate/nosuchprediction0", "/generate/..%2F..", "/generate/ABC"]) {
      const res = await w.fetch(bad, { headers: { authorization: `Bearer ${AUTH_TOKEN}` } });
      assert.equal(res.status, 404, bad);
      assert.equal((await checkResponse("GET", "/generate/{predictionId}", res)).error, "Generation not found", bad);
    }
  });

  test("a bad input is refused before anything is created", async () => {
    const w = await worker();
    const prompt = uniquePrompt("async bad");
    const res = await generate(w, { prompt, num_outputs: 9 }, asAsync);
    assert.equal(res.status, 400);
    assert.equal((await received("/predictions")).filter((r) => r.body?.input?.prompt === prompt).length, 0);
  });
});
