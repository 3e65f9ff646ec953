// GET/HEAD /image/{id}: stored in R2 after the answer, served with caching
// headers, conditional and range requests (one R2 read each), whole images
// from the Cache API in front of R2; and what happens when the copy fails.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AUTH_TOKEN, addRule, eventually, generate, record, stored, uniquePrompt, worker } from "./harness.mjs";

async function generated(w, input) {
  const res = await generate(w, { input });
  assert.equal(res.status, 200);
  return res.json();
}

/** The bytes Replicate (the emulator) holds for the image's prediction. */
async function upstreamBytes(w, id) {
  const r = await record(w, id);
  const res = await fetch(r.source_url);
  return new Uint8Array(await res.arrayBuffer());
}

describe("storing", () => {
  test("the output is copied into R2 and the record marked stored", async () => {
    const w = await worker();
    const { id, predictionId } = await generated(w, { prompt: uniquePrompt("stored"), output_format: "png" });
    const r = await stored(w, id);
    assert.equal(r.id, id);
    assert.equal(r.prediction_id, predictionId);
    assert.equal(r.model, "black-forest-labs/flux-schnell");
    assert.equal(r.content_type, "image/png");
    assert.equal(r.prompt.startsWith("stored"), true);
    const bucket = await w.mf.getR2Bucket("IMAGES");
    const object = await bucket.get(id);
    assert.ok(object, "bytes in R2");
    const bytes = new Uint8Array(await object.arrayBuffer());
    assert.equal(r.size, bytes.length);
    assert.deepEqual(bytes, await upstreamBytes(w, id));
    assert.equal(object.httpMetadata.contentType, "image/png");

    const kv = await w.mf.getKVNamespace("IMAGE_META");
    const index = JSON.parse(await kv.get(`prediction:${predictionId}`));
    assert.deepEqual(index.ids, [id]);
    assert.equal(index.input.output_format, "png", "the input is kept once, with the prediction");
    const { keys } = await kv.list({ prefix: `image:${id}` });
    assert.equal(keys.length, 1);
    assert.equal(keys[0].metadata.status, "stored");
    assert.ok(JSON.stringify(keys[0].metadata).length < 1024);
  });

  test("ids are unguessable, URL-safe, carry the extension and sort by time", async () => {
    const w = await worker();
    const a = await generated(w, { prompt: uniquePrompt("first"), output_format: "jpg" });
    await new Promise((r) => setTimeout(r, 5));
    const b = await generated(w, { prompt: uniquePrompt("second") });
    assert.match(a.id, /^[0-9a-z]{26}\.jpg$/);
    assert.match(b.id, /^[0-9a-z]{26}\.webp$/);
    assert.ok(a.id < b.id, `${a.id} sorts before ${b.id}`);
    assert.notEqual(a.id.slice(10, 26), b.id.slice(10, 26));
  });

  test("a truncated output is never stored half-written; the record says failed", async () => {
    const w = await worker();
    const prompt = uniquePrompt("truncated");
    await addRule({ when: { prompt }, then: { truncate: true } });
    const { id } = await generated(w, { prompt });
    const r = await eventually(async () => {
      const r = await record(w, id);
      return r?.status === "failed" && r;
    }, 15000, "the copy to fail");
    assert.equal(r.attempts, 3);
    assert.ok(r.last_error);
    const bucket = await w.mf.getR2Bucket("IMAGES");
    assert.equal(await bucket.head(id), null, "no partial object in R2");
  });

  test("the stored content type comes from the bytes, not the upstream header", async () => {
    const w = await worker();
    await addRule({ when: { path: "/delivery/" }, then: { contentType: "text/html" }, times: 1 });
    const { id } = await generated(w, { prompt: uniquePrompt("mislabelled"), output_format: "png", megapixels: "0.25" });
    const r = await stored(w, id);
    assert.equal(r.content_type, "image/png");
    const res = await w.fetch(`/image/${id}`);
    assert.equal(res.headers.get("content-type"), "image/png");
    await res.arrayBuffer();
  });

  test("an id's extension that lies about the bytes: the bytes win", async () => {
    const w = await worker();
    // A jpg requested, but the file that arrives is a GIF: stored and served as image/gif.
    await addRule({ when: { path: "/delivery/" }, then: { replaceBody: "GIF89a-not-really-but-magic-says-gif" }, times: 1 });
    const { id } = await generated(w, { prompt: uniquePrompt("relabelled"), output_format: "jpg", megapixels: "0.25" });
    assert.match(id, /\.jpg$/);
    const r = await stored(w, id);
    assert.equal(r.content_type, "image/gif");
    const res = await w.fetch(`/image/${id}`);
    assert.equal(res.headers.get("content-type"), "image/gif");
    assert.equal(await res.text(), "GIF89a-not-really-but-magic-says-gif");
  });

  test("bytes that are no image are not kept", async () => {
    const w = await worker();
    await addRule({ when: { path: "/delivery/" }, then: { replaceBody: "<html>not an image</html>" }, times: 3 });
    const { id } = await generated(w, { prompt: uniquePrompt("not an image") });
    const r = await eventually(async () => {
      const r = await record(w, id);
      return r?.status === "failed" && r;
    }, 15000, "the copy to be refused");
    assert.match(r.last_error, /not an image/);
    assert.equal(await (await w.mf.getR2Bucket("IMAGES")).head(id), null);
  });

  test("the cron retries failed copies while Replicate still has the file", async () => {
    const w = await worker();
    // The next three output downloads (this image's three copy attempts) fail.
    await addRule({ when: { path: "/delivery/" }, then: { httpStatus: 500 }, times: 3 });
    const { id } = await generated(w, { prompt: uniquePrompt("cron") });
    const failed = await eventually(async () => {
      const r = await record(w, id);
      return r?.status === "failed" && r;
    }, 15000, "the copy attempts to fail");
    assert.equal(failed.attempts, 3);
    const bucket = await w.mf.getR2Bucket("IMAGES");
    assert.equal(await bucket.head(id), null);

    await (await w.mf.getWorker()).scheduled({ cron: "*/5 * * * *" });
    const r = await stored(w, id);
    assert.equal(r.attempts, 4);
    assert.equal(r.last_error ?? null, null);
    assert.ok(await bucket.head(id));
  });
});

describe("serving", () => {
  test("GET streams the bytes with type, length, strong ETag, immutable caching", async () => {
    const w = await worker();
    const { id } = await generated(w, { prompt: uniquePrompt("serve"), output_format: "jpg", megapixels: "0.25" });
    await stored(w, id);
    const res = await w.fetch(`/image/${id}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "image/jpeg");
    assert.equal(res.headers.get("cache-control"), "public, max-age=31536000, immutable");
    const etag = res.headers.get("etag");
    assert.match(etag, /^"[^"]+"$/, "a strong ETag");
    const bytes = new Uint8Array(await res.arrayBuffer());
    assert.equal(Number(res.headers.get("content-length")), bytes.length);
    assert.deepEqual(bytes, await upstreamBytes(w, id));
  });

  test("no auth is needed to read an image", async () => {
    const w = await worker();
    const { id } = await generated(w, { prompt: uniquePrompt("public") });
    const res = await fetch(`${w.url.origin}/image/${id}`, { headers: {} });
    assert.equal(res.status, 200);
  });

  test("HEAD gives the headers without a body", async () => {
    const w = await worker();
    const { id } = await generated(w, { prompt: uniquePrompt("head") });
    const r = await stored(w, id);
    const res = await w.fetch(`/image/${id}`, { method: "HEAD" });
    assert.equal(res.status, 200);
    assert.equal(Number(res.headers.get("content-length")), r.size);
    assert.ok(res.headers.get("etag"));
    assert.equal((await res.arrayBuffer()).byteLength, 0);
  });

  test("If-None-Match with the ETag gives 304", async () => {
    const w = await worker();
    const { id } = await generated(w, { prompt: uniquePrompt("etag") });
    await stored(w, id);
    const etag = (await w.fetch(`/image/${id}`)).headers.get("etag");
    const res = await w.fetch(`/image/${id}`, { headers: { "if-none-match": etag } });
    assert.equal(res.status, 304);
    assert.equal(res.headers.get("etag"), etag);
    const other = await w.fetch(`/image/${id}`, { headers: { "if-none-match": '"something-else"' } });
    assert.equal(other.status, 200);
  });

  test("Range gives 206 with Content-Range; unsatisfiable gives 416", async () => {
    const w = await worker();
    const { id } = await generated(w, { prompt: uniquePrompt("range") });
    const r = await stored(w, id);
    const full = new Uint8Array(await (await w.fetch(`/image/${id}`)).arrayBuffer());

    let res = await w.fetch(`/image/${id}`, { headers: { range: "bytes=10-109" } });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get("content-range"), `bytes 10-109/${r.size}`);
    assert.equal(res.headers.get("content-length"), "100");
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), full.slice(10, 110));

    res = await w.fetch(`/image/${id}`, { headers: { range: "bytes=-20" } });
    assert.equal(res.status, 206);
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), full.slice(-20));

    res = await w.fetch(`/image/${id}`, { headers: { range: `bytes=${r.size + 10}-` } });
    assert.equal(res.status, 416);
    assert.equal(res.headers.get("content-range"), `bytes */${r.size}`);
  });

  test("until the copy lands, a reader waits for it and gets the stored bytes", async () => {
    const w = await worker();
    // The next output download (this image's copy into R2) is slow.
    await addRule({ when: { path: "/delivery/" }, then: { latencyMs: 1500 }, times: 1 });
    const { id } = await generated(w, { prompt: uniquePrompt("early"), output_format: "png", megapixels: "0.25" });
    const bucket = await w.mf.getR2Bucket("IMAGES");
    assert.equal(await bucket.head(id), null, "not in R2 yet");
    assert.equal((await record(w, id)).status, "pending");
    const res = await w.fetch(`/image/${id}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "image/png");
    assert.equal(res.headers.get("cache-control"), "public, max-age=31536000, immutable");
    const bytes = new Uint8Array(await res.arrayBuffer());
    assert.deepEqual(bytes, new Uint8Array(await (await bucket.get(id)).arrayBuffer()));
    assert.deepEqual(bytes, await upstreamBytes(w, id));
  });

  test("a copy that never lands: 503 not ready, with Retry-After", async () => {
    const w = await worker();
    const prompt = uniquePrompt("slow copy");
    await addRule({ when: { outputOf: prompt }, then: { latencyMs: 12000 }, times: 1 });
    const { id } = await generated(w, { prompt, output_format: "png", megapixels: "0.25" });
    const res = await w.fetch(`/image/${id}`);
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("retry-after"), "2");
    assert.equal((await res.json()).error, "Image not ready yet");
  });

  test("unknown or malformed ids: 404 Image not found", async () => {
    const w = await worker();
    for (const id of ["01jhc3z3x8a1b2c3d4e5f6g7h8.png", "generated_image_1234567890.png", "..%2F..%2Fetc%2Fpasswd", "x", "01JHC3Z3X8A1B2C3D4E5F6G7H8.PNG"]) {
      const res = await w.fetch(`/image/${id}`);
      assert.equal(res.status, 404, id);
      assert.deepEqual(await res.json(), { error: "Image not found" });
    }
  });
});

/** An image generated and stored, with its bytes and ETag as R2 has them. */
async function storedImage(w, what) {
  const { id } = await generated(w, { prompt: uniquePrompt(what), output_format: "png", megapixels: "0.25" });
  await stored(w, id);
  const object = await (await w.mf.getR2Bucket("IMAGES")).get(id);
  return { id, etag: object.httpEtag, bytes: new Uint8Array(await object.arrayBuffer()) };
}

/** Waits until Miniflare's cache holds the image's whole answer (put after the answer). */
async function cachedInWorker(w, id) {
  const caches = await w.mf.getCaches();
  await eventually(async () => {
    const hit = await caches.default.match(new URL(`/image/${id}`, w.url).href);
    await hit?.arrayBuffer();
    return hit?.status === 200;
  }, 5000, `image ${id} in the cache`);
}

/** Removes an image behind the worker's back: its R2 bytes and its KV record. */
async function removeFromStorage(w, id) {
  await (await w.mf.getR2Bucket("IMAGES")).delete(id);
  await (await w.mf.getKVNamespace("IMAGE_META")).delete(`image:${id}`);
}

function assertImageHeaders(res, etag) {
  assert.equal(res.headers.get("etag"), etag);
  assert.equal(res.headers.get("cache-control"), "public, max-age=31536000, immutable");
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  assert.equal(res.headers.get("content-security-policy"), "default-src 'none'; sandbox");
}

describe("one R2 read, and the cache in front of it", () => {
  test("304 and 206 answered straight from R2, and never kept in the cache", async () => {
    const w = await worker();
    const { id, etag, bytes } = await storedImage(w, "one read");
    const size = bytes.length;
    const get = (headers) => w.fetch(`/image/${id}`, { headers });

    for (const tags of [etag, `W/${etag}`, `"other", ${etag}`, "*"]) {
      const res = await get({ "if-none-match": tags });
      assert.equal(res.status, 304, tags);
      assertImageHeaders(res, etag);
      assert.equal((await res.arrayBuffer()).byteLength, 0);
    }

    const part = async (range, start, end) => {
      const res = await get({ range });
      assert.equal(res.status, 206, range);
      assert.equal(res.headers.get("content-range"), `bytes ${start}-${end}/${size}`, range);
      assert.equal(res.headers.get("content-length"), String(end - start + 1), range);
      assertImageHeaders(res, etag);
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes.slice(start, end + 1), range);
    };
    await part("bytes=-20", size - 20, size - 1);
    await part(`bytes=${size - 5}-`, size - 5, size - 1);
    await part(`bytes=${size - 5}-${size + 100}`, size - 5, size - 1);
    await part("bytes=10-109", 10, 109);

    for (const range of [`bytes=${size}-`, `bytes=${size}-${size + 9}`, "bytes=-0"]) {
      const res = await get({ range });
      assert.equal(res.status, 416, range);
      assert.equal(res.headers.get("content-range"), `bytes */${size}`, range);
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      await res.arrayBuffer();
    }
    const both = await get({ "if-none-match": etag, range: "bytes=0-9" });
    assert.equal(both.status, 304, "a matching ETag comes before the range");
    const several = await get({ range: "bytes=0-1,5-6" });
    assert.equal(several.status, 200, "several ranges: the whole image");
    assert.deepEqual(new Uint8Array(await several.arrayBuffer()), bytes);

    await removeFromStorage(w, id);
    const after = await get({});
    assert.equal(after.status, 404, "none of those answers was kept in the cache");
    await after.arrayBuffer();
  });

  test("a whole image, once answered, comes from the cache without R2 or KV", async () => {
    const w = await worker();
    const { id, etag, bytes } = await storedImage(w, "cached");
    const first = await w.fetch(`/image/${id}`);
    assert.equal(first.status, 200);
    assert.deepEqual(new Uint8Array(await first.arrayBuffer()), bytes);
    await cachedInWorker(w, id);
    await removeFromStorage(w, id);

    const res = await w.fetch(`/image/${id}`);
    assert.equal(res.status, 200, "served from the cache, with R2 and KV empty");
    assertImageHeaders(res, etag);
    assert.equal(res.headers.get("content-type"), "image/png");
    assert.equal(res.headers.get("content-length"), String(bytes.length));
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);
    const cors = await w.fetch(`/image/${id}`, { headers: { origin: "https://elsewhere.example" } });
    assert.equal(cors.status, 200);
    assert.ok(cors.headers.get("access-control-allow-origin"), "headers are still added to a cached answer");
    await cors.arrayBuffer();
    const unchanged = await w.fetch(`/image/${id}`, { headers: { "if-none-match": etag } });
    assert.equal(unchanged.status, 304, "the cache answers If-None-Match itself");
    assertImageHeaders(unchanged, etag);

    // HEAD and ranges go to R2, where the image is gone.
    const head = await w.fetch(`/image/${id}`, { method: "HEAD" });
    assert.equal(head.status, 404);
    const range = await w.fetch(`/image/${id}`, { headers: { range: "bytes=0-9" } });
    assert.equal(range.status, 404);
    await range.arrayBuffer();
  });

  test("deleting an image drops it from the cache", async () => {
    const w = await worker();
    const { id } = await storedImage(w, "deleted");
    await (await w.fetch(`/image/${id}`)).arrayBuffer();
    await cachedInWorker(w, id);
    const del = await w.fetch(`/image/${id}`, { method: "DELETE", headers: { authorization: `Bearer ${AUTH_TOKEN}` } });
    assert.equal(del.status, 204);
    const res = await w.fetch(`/image/${id}`);
    assert.equal(res.status, 404);
    await res.arrayBuffer();
  });
});
