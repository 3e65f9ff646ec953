// What a hostile caller or a misbehaving upstream can do, and what the
// worker does about it: redirects checked at every hop, bounded outputs,
// only checked image bytes served, token shapes, upstream text scrubbed,
// bounded proxy bodies and records, lost images, durations from outside,
// predictions kept only when made here, and private webhook targets.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  AUTH_TOKEN,
  SERVICE_REPLICATE_TOKEN,
  addRule,
  createsFor,
  declaredPost,
  eventually,
  generate,
  received,
  record,
  stored,
  uniquePrompt,
  worker,
  workerWith,
} from "./harness.mjs";

const T = { timeout: 60_000 };
const MODEL = "black-forest-labs/flux-schnell";

async function generated(w, input) {
  const res = await generate(w, { input });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

/** Waits until the image's record says the copy failed, and returns it. */
async function failed(w, id) {
  return eventually(async () => {
    const r = await record(w, id);
    return r?.status === "failed" && r;
  }, 20000, `the copy of ${id} to fail`);
}

/** Output downloads the emulator served for a prediction. */
async function downloadsOf(predictionId) {
  return (await received(`/delivery/${predictionId}`)).length;
}

async function r2Has(w, id) {
  return (await (await w.mf.getR2Bucket("IMAGES")).head(id)) !== null;
}

function proxy(w, path, { method = "GET", body, headers = {} } = {}) {
  return w.fetch(`/replicate/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${AUTH_TOKEN}`, "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
}

describe("1. redirects stay on allowed hosts", () => {
  test("an output redirected to another host is never fetched, stored or served", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("redirect away");
    const secretUrl = w.emulator.state.internalSecretUrls.otherHost;
    await addRule({ when: { outputOf: prompt }, then: { redirectTo: secretUrl } });
    const before = (await received("/_control/internal-secret")).length;
    const { id } = await generated(w, { prompt, output_format: "png", megapixels: "0.25" });
    const r = await failed(w, id);
    assert.match(r.last_error, /redirected to a host that is not allowed/);
    const res = await w.fetch(`/image/${id}`);
    const text = await res.text();
    assert.notEqual(res.status, 200);
    assert.ok(!text.includes("INTERNAL-SECRET"), "the redirect target's body was served");
    assert.equal((await received("/_control/internal-secret")).length, before, "the redirect target was fetched");
    assert.equal(await r2Has(w, id), false);
  });

  test("redirects within the allowed host are followed, a bounded number of times", T, async () => {
    const w = await worker();
    const ok = uniquePrompt("redirect hops");
    await addRule({ when: { outputOf: ok }, then: { redirectHops: 3 } });
    const { id } = await generated(w, { prompt: ok, output_format: "png", megapixels: "0.25" });
    assert.equal((await stored(w, id)).content_type, "image/png");

    const loop = uniquePrompt("redirect loop");
    await addRule({ when: { outputOf: loop }, then: { redirectHops: 20 } });
    const { id: looped } = await generated(w, { prompt: loop, output_format: "png", megapixels: "0.25" });
    assert.match((await failed(w, looped)).last_error, /redirected more than 5 times/);
  });
});

describe("2. output size", () => {
  const small = { MAX_OUTPUT_BYTES: "65536" };

  test("a declared length over the limit is refused before reading", T, async () => {
    const w = await workerWith(small);
    const prompt = uniquePrompt("huge sized");
    await addRule({ when: { outputOf: prompt }, then: { hugeBytes: 50 * 1024 * 1024 } });
    const { id } = await generated(w, { prompt, output_format: "png", megapixels: "0.25" });
    assert.match((await failed(w, id)).last_error, /larger than the 65536-byte limit/);
    assert.equal(await r2Has(w, id), false);
  });

  test("an unsized body stops being read at the limit", T, async () => {
    const w = await workerWith(small);
    const prompt = uniquePrompt("huge unsized");
    await addRule({ when: { outputOf: prompt }, then: { hugeBytes: 300 * 1024 * 1024, unsized: true } });
    const { id } = await generated(w, { prompt, output_format: "png", megapixels: "0.25" });
    assert.match((await failed(w, id)).last_error, /larger than the 65536-byte limit/);
    assert.equal(await r2Has(w, id), false);
  });

  test("an unsized image within the limit is stored", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("unsized ok");
    await addRule({ when: { outputOf: prompt }, then: { unsized: true } });
    const { id } = await generated(w, { prompt, output_format: "webp", megapixels: "0.25" });
    assert.equal((await stored(w, id)).content_type, "image/webp");
  });
});

describe("3. only checked image bytes are served", () => {
  test("HTML from upstream is never served, before or after the copy fails", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("html");
    await addRule({ when: { outputOf: prompt }, then: { replaceBody: "<html><script>alert(1)</script></html>", contentType: "image/png" } });
    const { id } = await generated(w, { prompt, output_format: "png", megapixels: "0.25" });
    const early = await w.fetch(`/image/${id}`);
    const body = await early.text();
    assert.notEqual(early.status, 200);
    assert.ok(!body.includes("<script>"));
    assert.equal(early.headers.get("x-content-type-options"), "nosniff");
    assert.match(early.headers.get("content-security-policy"), /default-src 'none'/);
    assert.match((await failed(w, id)).last_error, /not an image/);
    const late = await w.fetch(`/image/${id}`);
    assert.ok(!(await late.text()).includes("<script>"));
  });

  test("a body cut short upstream is never stored or served", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("short body");
    await addRule({ when: { outputOf: prompt }, then: { shortBody: true } });
    const { id } = await generated(w, { prompt, output_format: "png", megapixels: "0.25" });
    await failed(w, id);
    assert.equal(await r2Has(w, id), false);
    const res = await w.fetch(`/image/${id}`);
    assert.notEqual(res.status, 200);
    await res.arrayBuffer();
  });

  test("readers of a pending image wait for the one copy; upstream is fetched once", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("pending readers");
    await addRule({ when: { outputOf: prompt }, then: { latencyMs: 1500 }, times: 1 });
    const { id, predictionId } = await generated(w, { prompt, output_format: "png", megapixels: "0.25" });
    assert.equal(await r2Has(w, id), false, "not stored yet");
    const answers = await Promise.all(Array.from({ length: 5 }, () => w.fetch(`/image/${id}`)));
    for (const res of answers) {
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "image/png");
      assert.equal(res.headers.get("cache-control"), "public, max-age=31536000, immutable");
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      await res.arrayBuffer();
    }
    assert.equal(await downloadsOf(predictionId), 1, "one download, whatever the number of readers");
  });

  test("every image answer carries nosniff and a restrictive CSP, errors included", async () => {
    const w = await worker();
    for (const path of ["/image/nope.png", "/image/00000000000000000000000000.png"]) {
      const res = await w.fetch(path);
      assert.equal(res.status, 404);
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      assert.equal(res.headers.get("content-security-policy"), "default-src 'none'; sandbox");
      await res.arrayBuffer();
    }
  });
});

describe("4. token shapes", () => {
  for (const [label, token] of [
    ["a curly quote", "r8_abc\u201d"],
    ["an ellipsis", "r8_abc\u2026"],
    ["an accented letter", "r8_caf\u00e9"],
    ["CR LF", "r8_abc\r\nX-Injected: 1"],
    ["NUL", "r8_abc\u0000def"],
    ["an overlong token", `r8_${"a".repeat(400)}`],
  ]) {
    test(`a user token with ${label}: 400 that does not echo it, nothing sent`, async () => {
      const w = await worker();
      const prompt = uniquePrompt("token shape");
      const res = await generate(w, { prompt, replicate_token: token }, {});
      const text = await res.text();
      assert.equal(res.status, 400, text);
      assert.equal(JSON.parse(text).error, "Malformed token");
      assert.ok(!text.includes(token.slice(3, 12)), "the token is echoed");
      assert.equal((await createsFor(prompt)).length, 0);
    });
  }

  test("a non-ASCII token in a header is refused the same way, on both APIs", async () => {
    const w = await worker();
    const latin1 = "r8_caf\u00e9";
    const res = await w.fetch("/generate", {
      method: "POST",
      headers: { "content-type": "application/json", "x-replicate-token": latin1 },
      body: JSON.stringify({ prompt: uniquePrompt("header token") }),
    });
    assert.equal(res.status, 400);
    assert.ok(!(await res.text()).includes("caf"));
    const viaProxy = await proxy(w, "/predictions/abc", { headers: { authorization: `Bearer ${latin1}` } });
    assert.equal(viaProxy.status, 400);
    const body = await viaProxy.json();
    assert.ok(!JSON.stringify(body).includes("caf"));
  });
});

describe("5. upstream text is scrubbed", () => {
  test("an upstream error that echoes request headers does not leak the service's token", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("echo headers");
    await addRule({ when: { prompt }, then: { echoHeaders: true, httpStatus: 422 } });
    const res = await generate(w, { prompt });
    const text = await res.text();
    assert.equal(res.status, 400);
    assert.ok(!text.includes(SERVICE_REPLICATE_TOKEN), text);
    assert.match(text, /redacted/);

    await addRule({ when: { prompt }, then: { echoHeaders: true, httpStatus: 500 } });
    const viaProxy = await proxy(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: { prompt } } });
    const proxied = await viaProxy.text();
    assert.ok(!proxied.includes(SERVICE_REPLICATE_TOKEN), proxied);
  });
});

describe("6. bounded proxy bodies and records", () => {
  test("a proxy body over the limit: 413 in Replicate's shape, nothing sent", T, async () => {
    const w = await worker();
    // Declared larger than the limit: refused before a byte of it is read.
    const declared = await declaredPost(w, `/replicate/v1/models/${MODEL}/predictions`, 17 * 1024 * 1024, {
      authorization: `Bearer ${AUTH_TOKEN}`,
      "content-type": "application/json",
    });
    assert.equal(declared.status, 413);
    assert.equal(typeof (await declared.json()).detail, "string");
    // Sent without a length (chunked): refused once the limit is passed.
    const prompt = uniquePrompt("huge proxy body");
    const chunk = "x".repeat(1024 * 1024);
    const body = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(`{"input":{"prompt":"${prompt}","pad":"`));
        for (let i = 0; i < 17; i++) controller.enqueue(new TextEncoder().encode(chunk));
        controller.enqueue(new TextEncoder().encode(`"}}`));
        controller.close();
      },
    });
    const res = await w
      .fetch(`/replicate/v1/models/${MODEL}/predictions`, {
        method: "POST",
        headers: { authorization: `Bearer ${AUTH_TOKEN}`, "content-type": "application/json" },
        body,
        duplex: "half",
      })
      .catch(() => null);
    if (res) assert.equal(res.status, 413);
    assert.equal((await createsFor(prompt)).length, 0);
  });

  test("a large input is kept once, bounded, with no data: payloads in records", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("big input") + " " + "y".repeat(1500);
    const image = `data:image/png;base64,${"A".repeat(200_000)}`;
    const res = await proxy(w, `/models/${MODEL}/predictions`, {
      method: "POST",
      headers: { prefer: "wait" },
      body: { input: { prompt, num_outputs: 4, megapixels: "0.25", image } },
    });
    const p = await res.json();
    assert.equal(p.status, "succeeded", JSON.stringify(p).slice(0, 300));
    const kv = await w.mf.getKVNamespace("IMAGE_META");
    const index = await kv.get(`prediction:${p.id}`);
    assert.ok(index.length < 8000, `index is ${index.length} bytes`);
    assert.ok(!index.includes("AAAAAAAAAA"));
    for (const url of p.output) {
      const id = url.split("/").pop();
      const text = await kv.get(`image:${id}`);
      assert.ok(text.length < 1500, `record is ${text.length} bytes`);
      assert.ok(!text.includes("data:"));
    }
  });
});

describe("7. images lost after a 200", () => {
  test("an image whose upstream output is gone answers 410, and the cron counts it", T, async () => {
    const w = await worker();
    const { id } = await generated(w, { prompt: uniquePrompt("lost"), output_format: "png", megapixels: "0.25" });
    await stored(w, id);
    // An image never stored, whose output Replicate has removed (over an hour old).
    const kv = await w.mf.getKVNamespace("IMAGE_META");
    const r = await record(w, id);
    const lostId = `${id.slice(0, 10)}${"z".repeat(16)}.png`;
    const old = new Date(Date.now() - 2 * 3600 * 1000).toISOString();
    await kv.put(`image:${lostId}`, JSON.stringify({ ...r, id: lostId, status: "failed", created_at: old, size: null, content_type: null }));
    await kv.put(`pending:${lostId}`, "");
    const res = await w.fetch(`/image/${lostId}`);
    assert.equal(res.status, 410);
    assert.equal((await res.json()).error, "Image lost");
    const before = Number((await kv.get("stats:lost")) ?? 0);
    await (await w.mf.getWorker()).scheduled({ cron: "*/5 * * * *" });
    assert.equal((await record(w, lostId)).status, "lost");
    assert.equal(Number(await kv.get("stats:lost")), before + 1);
    assert.equal(await kv.get(`pending:${lostId}`), null, "no longer a copy to do");
    const health = await (await w.fetch("/health")).json();
    assert.equal(health.lost_images, before + 1);
  });

  test("a stored image leaves the index of copies to do", T, async () => {
    const w = await worker();
    const { id } = await generated(w, { prompt: uniquePrompt("index"), output_format: "png", megapixels: "0.25" });
    await stored(w, id);
    const kv = await w.mf.getKVNamespace("IMAGE_META");
    await eventually(async () => (await kv.get(`pending:${id}`)) === null, 5000, "the index entry to go");
  });
});

describe("8. durations from outside", () => {
  test("a huge Retry-After does not wrap around: 429 at once, one create", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("huge retry-after");
    await addRule({ when: { prompt }, then: { httpStatus: 429, retryAfter: "99999999999999999999" } });
    const res = await generate(w, { prompt });
    assert.equal(res.status, 429);
    assert.ok(Number(res.headers.get("retry-after")) > 0);
    await res.arrayBuffer();
    assert.equal((await createsFor(prompt)).length, 1);
  });

  test("a create that hangs answers 504 by the deadline", T, async () => {
    const w = await workerWith({ GENERATION_TIMEOUT_SECONDS: "2" });
    const prompt = uniquePrompt("hanging create");
    await addRule({ when: { prompt }, then: { holdOpen: true } });
    const res = await generate(w, { prompt });
    assert.equal(res.status, 504);
    await res.arrayBuffer();
  });
});

describe("9. which predictions are kept", () => {
  test("predictions made elsewhere are listed as Replicate gave them, never downloaded", T, async () => {
    const w = await worker();
    const emu = w.emulator.url;
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${emu}/v1/models/${MODEL}/predictions`, {
        method: "POST",
        headers: { authorization: `Bearer ${SERVICE_REPLICATE_TOKEN}`, "content-type": "application/json", prefer: "wait" },
        body: JSON.stringify({ input: { prompt: uniquePrompt("elsewhere"), megapixels: "0.25" } }),
      });
      ids.push((await res.json()).id);
    }
    const page = await (await proxy(w, "/predictions")).json();
    for (const id of ids) {
      const listed = page.results.find((p) => p.id === id);
      assert.ok(listed, `${id} listed`);
      for (const url of [listed.output].flat()) assert.ok(!url.includes("/image/"), "rewritten to ours");
      assert.equal(await downloadsOf(id), 0, "downloaded");
    }
  });

  test("20 concurrent polls of one prediction download each output once", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("concurrent polls");
    const created = await (await proxy(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: { prompt, num_outputs: 4, megapixels: "0.25" } } })).json();
    await eventually(async () => {
      const up = await fetch(`${w.emulator.url}/v1/predictions/${created.id}`, { headers: { authorization: `Bearer ${SERVICE_REPLICATE_TOKEN}` } });
      return (await up.json()).status === "succeeded";
    }, 8000, "upstream success");
    const answers = await Promise.all(Array.from({ length: 20 }, () => proxy(w, `/predictions/${created.id}`).then((r) => r.json())));
    for (const a of answers) assert.deepEqual(a.output, answers[0].output);
    for (const url of answers[0].output) await stored(w, url.split("/").pop());
    assert.equal(await downloadsOf(created.id), 4);
  });
});

describe("10. webhook targets", () => {
  for (const target of ["https://169.254.169.254/latest/meta-data", "https://localhost/hook", "https://[::1]/hook", "https://10.0.0.8/hook"]) {
    test(`${target} is refused on both APIs, nothing sent`, async () => {
      const w = await worker();
      const prompt = uniquePrompt("webhook target");
      const res = await generate(w, { prompt, webhook: target });
      assert.equal(res.status, 400);
      assert.equal((await res.json()).details, "webhook must point at a public host");
      const viaProxy = await proxy(w, `/models/${MODEL}/predictions`, { method: "POST", body: { input: { prompt }, webhook: target } });
      assert.equal(viaProxy.status, 400);
      assert.match((await viaProxy.json()).detail, /public host/);
      assert.equal((await createsFor(prompt)).length, 0);
    });
  }
});

describe("host names", () => {
  test("an internationalized host is taken in its Punycode form only, with a clear 400 otherwise", async () => {
    const w = await worker();
    const prompt = uniquePrompt("unicode host");
    const hook = await generate(w, { prompt, webhook: "https://b\u00fccher.example/hook" });
    assert.equal(hook.status, 400);
    assert.equal((await hook.json()).details, "webhook must be an https:// URL");
    const image = await w.fetch("/generate", {
      method: "POST",
      headers: { authorization: `Bearer ${AUTH_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "kontext", input: { prompt, input_image: "https://b\u00fccher.example/cat.png" } }),
    });
    assert.equal(image.status, 400);
    assert.match((await image.json()).details, /input_image/);
    assert.equal((await createsFor(prompt)).length, 0, "nothing sent to Replicate");
    // The same host in its ASCII form is a public https host.
    const ascii = await w.fetch("/generate", {
      method: "POST",
      headers: { authorization: `Bearer ${AUTH_TOKEN}`, "content-type": "application/json", prefer: "respond-async" },
      body: JSON.stringify({ input: { prompt }, webhook: "https://xn--bcher-kva.example/hook" }),
    });
    assert.equal(ascii.status, 202, await ascii.clone().text());
    await ascii.arrayBuffer();
  });
});

describe("links", () => {
  test("/health says when links are built from the request's Host", async () => {
    const w = await worker();
    assert.equal((await (await w.fetch("/health")).json()).links_from_request_host, true);
    const pinned = await workerWith({ PUBLIC_BASE_URL: "https://images.example.com" });
    assert.equal((await (await pinned.fetch("/health")).json()).links_from_request_host, false);
  });
});
