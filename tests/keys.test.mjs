// API keys: the admin API and its command, limits checked before Replicate
// is called, usage, image ownership, CORS, and no secret kept in KV.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  AUTH_TOKEN,
  SERVICE_REPLICATE_TOKEN,
  USER_REPLICATE_TOKEN,
  addRule,
  createsFor,
  eventually,
  generate,
  stored,
  uniquePrompt,
  worker,
  workerWith,
} from "./harness.mjs";
import { main as keysCommand } from "../scripts/keys.mjs";

const ADMIN = { authorization: `Bearer ${AUTH_TOKEN}` };
const madeKeys = [];

async function createKey(w, body = {}) {
  const res = await w.fetch("/admin/keys", {
    method: "POST",
    headers: { ...ADMIN, "content-type": "application/json" },
    body: JSON.stringify({ name: "test key", ...body }),
  });
  assert.equal(res.status, 201);
  const created = await res.json();
  assert.match(created.key, /^fg_[0-9a-z]{8}_[0-9a-z]{32}$/);
  madeKeys.push(created.key);
  return created;
}

const as = (key) => ({ authorization: `Bearer ${key}` });

async function generateAs(w, key, prompt) {
  return generate(w, { prompt }, as(key));
}

function assertRateLimited(res) {
  assert.equal(res.status, 429);
  assert.ok(Number(res.headers.get("retry-after")) >= 1);
  assert.ok(res.headers.get("ratelimit-limit"));
  assert.equal(res.headers.get("ratelimit-remaining"), "0");
  assert.ok(Number(res.headers.get("ratelimit-reset")) >= 1);
}

describe("API keys", () => {
  test("the admin API needs AUTH_TOKEN; a key is shown once and listed without it", async () => {
    const w = await worker();
    const denied = await w.fetch("/admin/keys", { method: "POST", body: "{}" });
    assert.equal(denied.status, 401);
    const created = await createKey(w, { per_day: 5, models: ["black-forest-labs/flux-schnell"] });
    assert.deepEqual(created.limits, { per_minute: null, per_day: 5 });
    const asKey = await w.fetch("/admin/keys", { headers: as(created.key) });
    assert.equal(asKey.status, 401);
    const { keys } = await (await w.fetch("/admin/keys", { headers: ADMIN })).json();
    const listed = keys.find((k) => k.id === created.id);
    assert.equal(listed.name, "test key");
    assert.equal(listed.revoked_at, null);
    assert.ok(!JSON.stringify(keys).includes(created.key));
  });

  test("a key over its own per-minute limit gets 429 before Replicate sees a create", async () => {
    const w = await worker();
    const { key } = await createKey(w, { per_minute: 1 });
    assert.equal((await generateAs(w, key, uniquePrompt("minute"))).status, 200);
    const prompt = uniquePrompt("minute over");
    const res = await generateAs(w, key, prompt);
    assertRateLimited(res);
    assert.equal(res.headers.get("ratelimit-limit"), "1");
    assert.equal((await createsFor(prompt)).length, 0);
  });

  test("answers within a key's limits say how much is left (RateLimit-*)", async () => {
    const w = await worker();
    const { key } = await createKey(w, { per_minute: 3, per_day: 50 });
    const first = await generateAs(w, key, uniquePrompt("left 1"));
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("ratelimit-limit"), "3", "the nearer limit: per minute");
    assert.equal(first.headers.get("ratelimit-remaining"), "2");
    assert.ok(Number(first.headers.get("ratelimit-reset")) >= 1);
    assert.equal(first.headers.get("retry-after"), null);
    const proxied = await w.fetch("/replicate/v1/models/black-forest-labs/flux-schnell/predictions", {
      method: "POST",
      headers: { ...as(key), "content-type": "application/json", prefer: "wait=5" },
      body: JSON.stringify({ input: { prompt: uniquePrompt("left 2"), megapixels: "0.25" } }),
    });
    assert.ok(proxied.status < 300);
    assert.equal(proxied.headers.get("ratelimit-remaining"), "1", "on /replicate/v1 too");
    const daily = (await createKey(w, { per_day: 10 })).key;
    const res = await generateAs(w, daily, uniquePrompt("daily left"));
    assert.equal(res.headers.get("ratelimit-limit"), "10");
    assert.equal(res.headers.get("ratelimit-remaining"), "9");
    const operator = await generate(w, { prompt: uniquePrompt("no limit") });
    assert.equal(operator.headers.get("ratelimit-limit"), null, "no limit, no header");
  });

  test("the KEY_LIMITER binding refuses a key over the binding's limit", async () => {
    const w = await workerWith({ KEY_LIMITER_LIMIT: "2" });
    const { key } = await createKey(w);
    for (let i = 0; i < 2; i += 1) assert.equal((await generateAs(w, key, uniquePrompt("binding"))).status, 200);
    const prompt = uniquePrompt("binding over");
    const res = await generateAs(w, key, prompt);
    assertRateLimited(res);
    assert.equal(res.headers.get("ratelimit-limit"), "2");
    assert.equal((await createsFor(prompt)).length, 0);
    // Also on the Replicate-compatible API.
    const proxied = await w.fetch("/replicate/v1/models/black-forest-labs/flux-schnell/predictions", {
      method: "POST",
      headers: { ...as(key), "content-type": "application/json" },
      body: JSON.stringify({ input: { prompt } }),
    });
    assert.equal(proxied.status, 429);
    assert.equal((await createsFor(prompt)).length, 0);
  });

  test("a key restricted to some models cannot run others through /replicate/v1 either", async () => {
    const w = await worker();
    const { key } = await createKey(w, { models: ["black-forest-labs/flux-schnell"] });
    const create = (path, body) =>
      w.fetch(`/replicate/v1${path}`, { method: "POST", headers: { ...as(key), "content-type": "application/json" }, body: JSON.stringify(body) });
    const refused = uniquePrompt("restricted dev");
    const dev = await create("/models/black-forest-labs/flux-dev/predictions", { input: { prompt: refused } });
    assert.equal(dev.status, 403);
    assert.match((await dev.json()).detail, /may run only: black-forest-labs\/flux-schnell/);
    const sdxlVersion = "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc";
    assert.equal((await create("/predictions", { version: sdxlVersion, input: { prompt: refused } })).status, 403);
    assert.equal((await create("/deployments/acme/thing/predictions", { input: { prompt: refused } })).status, 403);
    assert.equal((await createsFor(refused)).length, 0, "nothing reached Replicate");
    const allowed = uniquePrompt("restricted schnell");
    const ok = await create("/models/black-forest-labs/flux-schnell/predictions", { input: { prompt: allowed, megapixels: "0.25" } });
    assert.ok([200, 201, 202].includes(ok.status), `${ok.status} ${await ok.clone().text()}`);
    assert.equal((await createsFor(allowed)).length, 1);
  });

  test("the daily quota", async () => {
    const w = await worker();
    const { key } = await createKey(w, { per_day: 1 });
    assert.equal((await generateAs(w, key, uniquePrompt("quota"))).status, 200);
    const prompt = uniquePrompt("quota over");
    const res = await generateAs(w, key, prompt);
    assertRateLimited(res);
    assert.equal(res.headers.get("ratelimit-limit"), "1");
    assert.equal((await createsFor(prompt)).length, 0);
  });

  test("a revoked key is refused at once", async () => {
    const w = await worker();
    const { id, key } = await createKey(w);
    assert.equal((await generateAs(w, key, uniquePrompt("before revoke"))).status, 200);
    const revoked = await w.fetch(`/admin/keys/${id}`, { method: "DELETE", headers: ADMIN });
    assert.equal(revoked.status, 200);
    assert.ok((await revoked.json()).revoked_at);
    const prompt = uniquePrompt("after revoke");
    assert.equal((await generateAs(w, key, prompt)).status, 401);
    assert.equal((await w.fetch("/usage", { headers: as(key) })).status, 401);
    assert.equal((await createsFor(prompt)).length, 0);
  });

  test("usage counts a generation, what it stored and its predict time", async () => {
    const w = await worker();
    const { id, key } = await createKey(w);
    const res = await generateAs(w, key, uniquePrompt("usage"));
    assert.equal(res.status, 200);
    await stored(w, (await res.json()).id);
    const usage = await eventually(async () => {
      const body = await (await w.fetch("/usage", { headers: as(key) })).json();
      return body.usage.images_stored === 1 && body.usage.predict_time_ms > 0 && body;
    }, 8000, "usage of the stored image");
    assert.equal(usage.subject, id);
    assert.equal(usage.usage.generations, 1);
    assert.ok(usage.usage.bytes_stored > 0);
    const day = new Date().toISOString().slice(0, 10);
    const admin = await (await w.fetch(`/admin/usage?day=${day}`, { headers: ADMIN })).json();
    assert.equal(admin.usage.find((u) => u.subject === id).usage.generations, 1);
  });

  test("generations at once are each counted, in this isolate at once and in KV after the answers", async () => {
    const w = await worker();
    const { id, key } = await createKey(w);
    const answers = await Promise.all([1, 2, 3, 4, 5].map((n) => generateAs(w, key, uniquePrompt(`burst ${n}`))));
    assert.deepEqual(answers.map((r) => r.status), [200, 200, 200, 200, 200]);
    // Counted before any write to KV lands: this isolate adds what it has not written yet.
    const seen = await (await w.fetch("/usage", { headers: as(key) })).json();
    assert.equal(seen.usage.generations, 5);
    // Written to KV after the answers, with nothing lost between the writes.
    const day = new Date().toISOString().slice(0, 10);
    const kv = await w.mf.getKVNamespace("IMAGE_META");
    const written = await eventually(async () => {
      const usage = JSON.parse((await kv.get(`usage:${id}:${day}`)) ?? "{}");
      return usage.generations === 5 && usage;
    }, 8000, "five generations written to KV");
    assert.equal(written.generations, 5);
    assert.notEqual(await kv.get(`usage-day:${day}:${id}`), null, "the day's index of subjects lists the key");
  });

  test("a generation's usage is written once, with its images' (one KV write to the key per generation)", async () => {
    const w = await worker();
    const { id, key } = await createKey(w);
    const prompt = uniquePrompt("one usage write");
    // The output's download takes 1.5 s: the copy into R2 ends that much after the answer.
    await addRule({ when: { outputOf: prompt }, then: { latencyMs: 1500 } });
    const res = await generateAs(w, key, prompt);
    assert.equal(res.status, 200);
    const image = (await res.json()).id;
    const kv = await w.mf.getKVNamespace("IMAGE_META");
    const usageKey = `usage:${id}:${new Date().toISOString().slice(0, 10)}`;
    // This isolate counts the generation at once.
    const counted = await (await w.fetch("/usage", { headers: as(key) })).json();
    assert.equal(counted.usage.generations, 1);
    // Until the copy is done, KV holds no usage for the key: the generation
    // is not written on its own, ahead of its image.
    const seen = [];
    for (let stop = Date.now() + 1000; Date.now() < stop; ) {
      const text = await kv.get(usageKey);
      if (text !== null) seen.push(JSON.parse(text));
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.deepEqual(seen, [], "usage written before the image was stored");
    await stored(w, image);
    const written = await eventually(async () => {
      const usage = JSON.parse((await kv.get(usageKey)) ?? "{}");
      return usage.images_stored === 1 && usage;
    }, 8000, "the usage written with the image");
    assert.equal(written.generations, 1, "the generation counted in the same write");
    assert.ok(written.bytes_stored > 0);
  });

  test("a generation that keeps nothing (it failed) still has its count written to KV, once answered", async () => {
    const w = await worker();
    const { id, key } = await createKey(w);
    const prompt = uniquePrompt("failed generation usage");
    await addRule({ when: { prompt }, then: { fail: "CUDA out of memory" } });
    const res = await generateAs(w, key, prompt);
    assert.equal(res.status, 502);
    const kv = await w.mf.getKVNamespace("IMAGE_META");
    const usageKey = `usage:${id}:${new Date().toISOString().slice(0, 10)}`;
    const written = await eventually(async () => {
      const usage = JSON.parse((await kv.get(usageKey)) ?? "{}");
      return usage.generations === 1 && usage;
    }, 8000, "the failed generation's count written to KV");
    assert.equal(written.images_stored ?? 0, 0);
  });

  test("one key cannot list or delete another's images", async () => {
    const w = await worker();
    const a = await createKey(w);
    const b = await createKey(w);
    const res = await generateAs(w, a.key, uniquePrompt("mine"));
    const { id } = await res.json();
    await stored(w, id);
    const listA = await (await w.fetch("/images?limit=10", { headers: as(a.key) })).json();
    assert.deepEqual(listA.images.map((i) => i.id), [id]);
    assert.equal(listA.images[0].status, "stored");
    const listB = await (await w.fetch("/images", { headers: as(b.key) })).json();
    assert.deepEqual(listB.images, []);
    assert.equal((await w.fetch(`/image/${id}`, { method: "DELETE", headers: as(b.key) })).status, 404);
    assert.equal((await w.fetch(`/image/${id}`)).status, 200);
    assert.equal((await w.fetch(`/image/${id}`, { method: "DELETE", headers: as(a.key) })).status, 204);
    assert.equal((await w.fetch(`/image/${id}`)).status, 404);
    const after = await (await w.fetch("/images", { headers: as(a.key) })).json();
    assert.deepEqual(after.images, []);
  });

  test("images list newest first, cursor-paged", async () => {
    const w = await worker();
    const { key } = await createKey(w);
    const ids = [];
    for (let i = 0; i < 3; i += 1) ids.push((await (await generateAs(w, key, uniquePrompt("page"))).json()).id);
    const first = await (await w.fetch("/images?limit=2", { headers: as(key) })).json();
    assert.equal(first.images.length, 2);
    assert.ok(first.cursor);
    const second = await (await w.fetch(`/images?limit=2&cursor=${encodeURIComponent(first.cursor)}`, { headers: as(key) })).json();
    assert.deepEqual([...first.images, ...second.images].map((i) => i.id), ids.reverse());
  });

  test("preflights from an allowed and a refused origin", async () => {
    const w = await workerWith({ CORS_ORIGINS: "https://app.example.com" });
    const preflight = (path, origin, method = "POST") =>
      w.fetch(path, {
        method: "OPTIONS",
        headers: { origin, "access-control-request-method": method, "access-control-request-headers": "authorization, content-type" },
      });
    for (const path of ["/generate", "/images", "/usage", "/models", "/replicate/v1/predictions"]) {
      const ok = await preflight(path, "https://app.example.com");
      assert.equal(ok.status, 204, path);
      assert.equal(ok.headers.get("access-control-allow-origin"), "https://app.example.com", path);
      assert.equal(ok.headers.get("access-control-allow-credentials"), "true");
      const refused = await preflight(path, "https://evil.example");
      assert.equal(refused.headers.get("access-control-allow-origin"), null, path);
    }
    const del = await preflight("/image/x.png", "https://app.example.com", "DELETE");
    assert.equal(del.headers.get("access-control-allow-origin"), "https://app.example.com");
    const read = await w.fetch("/image/x.png", { method: "OPTIONS", headers: { origin: "https://evil.example", "access-control-request-method": "GET" } });
    assert.equal(read.headers.get("access-control-allow-origin"), "*");
    assert.equal(read.headers.get("access-control-allow-credentials"), null);
    const actual = await w.fetch("/models", { headers: { origin: "https://evil.example" } });
    assert.equal(actual.headers.get("access-control-allow-origin"), null);
  });

  test("the keys command creates, lists and revokes against a worker", async () => {
    const w = await worker();
    const saved = process.env.AUTH_TOKEN;
    const log = console.log;
    const errorLog = console.error;
    process.env.AUTH_TOKEN = AUTH_TOKEN;
    console.log = () => {};
    console.error = () => {};
    try {
      const url = ["--url", w.url.toString()];
      const created = await keysCommand(["create", "from the command", "--per-day", "7", ...url]);
      madeKeys.push(created.key);
      assert.equal(created.limits.per_day, 7);
      const listed = await keysCommand(["list", ...url]);
      assert.ok(listed.some((k) => k.id === created.id && k.name === "from the command"));
      const revoked = await keysCommand(["revoke", created.id, ...url]);
      assert.equal(revoked.id, created.id);
      const after = await keysCommand(["list", ...url]);
      assert.ok(after.find((k) => k.id === created.id).revoked_at);
    } finally {
      console.log = log;
      console.error = errorLog;
      if (saved === undefined) delete process.env.AUTH_TOKEN;
      else process.env.AUTH_TOKEN = saved;
    }
  });

  test("no key or token is kept in KV, only hashes", async () => {
    const w = await worker();
    const { key } = await createKey(w);
    assert.equal((await generateAs(w, key, uniquePrompt("scan"))).status, 200);
    const own = await generate(w, { prompt: uniquePrompt("scan own") }, { "x-replicate-token": USER_REPLICATE_TOKEN });
    assert.equal(own.status, 200);
    const kv = await w.mf.getKVNamespace("IMAGE_META");
    const secrets = [...madeKeys, ...madeKeys.map((k) => k.split("_")[2]), AUTH_TOKEN, USER_REPLICATE_TOKEN, SERVICE_REPLICATE_TOKEN];
    let cursor;
    let scanned = 0;
    do {
      const page = await kv.list({ cursor });
      for (const { name } of page.keys) {
        const value = await kv.get(name);
        scanned += 1;
        for (const secret of secrets) {
          assert.ok(!name.includes(secret), `KV key ${name} holds a secret`);
          assert.ok(!(value ?? "").includes(secret), `KV value of ${name} holds a secret`);
        }
      }
      cursor = page.list_complete ? undefined : page.cursor;
    } while (cursor);
    assert.ok(scanned > 0);
    const keyRecords = (await kv.list({ prefix: "key:" })).keys.length;
    assert.ok(keyRecords >= madeKeys.length - 1);
  });
});
