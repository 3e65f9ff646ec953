// The same request twice gives the same image without paying twice: what
// the emulator received tells how many predictions were made.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AUTH_TOKEN, createsFor, generate, stored, uniquePrompt, worker, workerWith } from "./harness.mjs";

const auth = { authorization: `Bearer ${AUTH_TOKEN}` };

function get(w, prompt, headers = {}) {
  return w.fetch(`/generate?prompt=${encodeURIComponent(prompt)}&megapixels=0.25`, { headers: { ...auth, ...headers } });
}

describe("the cache of identical requests", () => {
  test("the same GET twice makes one prediction, and says so", async () => {
    const w = await worker();
    const prompt = uniquePrompt("cache get");
    const first = await get(w, prompt);
    assert.equal(first.status, 302);
    assert.equal(first.headers.get("x-cache"), "MISS");
    const a = await first.json();
    assert.equal(a.cached, false);
    const second = await get(w, prompt);
    assert.equal(second.status, 302);
    assert.equal(second.headers.get("x-cache"), "HIT");
    const b = await second.json();
    assert.equal(b.cached, true);
    assert.equal(b.imageUrl, a.imageUrl);
    assert.equal(second.headers.get("location"), a.imageUrl);
    assert.equal((await createsFor(prompt)).length, 1);
  });

  test("POST with a seed twice makes one prediction; without a seed, two", async () => {
    const w = await worker();
    const seeded = uniquePrompt("cache seed");
    const r1 = await (await generate(w, { prompt: seeded, seed: 5, megapixels: "0.25" })).json();
    const res2 = await generate(w, { input: { megapixels: "0.25", seed: 5, prompt: seeded } });
    assert.equal(res2.headers.get("x-cache"), "HIT", "keys in another order are the same request");
    assert.equal((await res2.json()).id, r1.id);
    assert.equal((await createsFor(seeded)).length, 1);

    const unseeded = uniquePrompt("cache no seed");
    const u1 = await generate(w, { prompt: unseeded, megapixels: "0.25" });
    assert.equal(u1.headers.get("x-cache"), "BYPASS");
    await generate(w, { prompt: unseeded, megapixels: "0.25" });
    assert.equal((await createsFor(unseeded)).length, 2);
  });

  test("Cache-Control: no-cache makes a new prediction", async () => {
    const w = await worker();
    const prompt = uniquePrompt("cache no-cache");
    await get(w, prompt);
    const again = await get(w, prompt, { "cache-control": "no-cache" });
    assert.equal(again.headers.get("x-cache"), "MISS");
    assert.equal((await createsFor(prompt)).length, 2);
  });

  test("two identical requests at once make one prediction", async () => {
    const w = await worker();
    const prompt = uniquePrompt("cache concurrent");
    const [a, b] = await Promise.all([get(w, prompt), get(w, prompt)]);
    assert.equal(a.headers.get("location"), b.headers.get("location"));
    assert.deepEqual([a.headers.get("x-cache"), b.headers.get("x-cache")].sort(), ["HIT", "MISS"]);
    assert.equal((await createsFor(prompt)).length, 1);
  });

  test("a cached answer is given only while its images exist", async () => {
    const w = await worker();
    const prompt = uniquePrompt("cache deleted");
    const first = await (await get(w, prompt)).json();
    await stored(w, first.id);
    await (await w.mf.getR2Bucket("IMAGES")).delete(first.id);
    const kv = await w.mf.getKVNamespace("IMAGE_META");
    await kv.delete(`image:${first.id}`);
    const again = await get(w, prompt);
    assert.equal(again.headers.get("x-cache"), "MISS");
    assert.equal((await createsFor(prompt)).length, 2);
  });

  test("a cache hit counts apart from generations in the caller's usage", async () => {
    const w = await worker();
    const prompt = uniquePrompt("cache usage");
    const before = (await (await w.fetch("/usage", { headers: auth })).json()).usage;
    await get(w, prompt);
    await get(w, prompt);
    const after = (await (await w.fetch("/usage", { headers: auth })).json()).usage;
    assert.equal(after.generations - before.generations, 1);
    assert.equal(after.cache_hits - before.cache_hits, 1);
  });

  test("CACHE_MODE=off: every request makes a prediction", async () => {
    const w = await workerWith({ CACHE_MODE: "off" });
    const prompt = uniquePrompt("cache off");
    await get(w, prompt);
    const again = await get(w, prompt);
    assert.equal(again.headers.get("x-cache"), "BYPASS");
    assert.equal((await createsFor(prompt)).length, 2);
  });
});
