// The floor (bench/floor-worker.mjs) is what fluxgate's CPU is measured
// against; it is a fair floor only while it makes the same KV, R2 and fetch
// calls per request as fluxgate. Both are run wrapped in a recorder
// (bench/platform-calls.mjs) and their calls compared.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { recordGeneration as generation, shapes, startRecorded } from "../bench/platform-calls.mjs";
import { startEmulator } from "../bench/services.mjs";
import { GENERATE_INPUT, generate } from "../bench/paired.mjs";

describe("platform calls per request", () => {
  let emulator, fluxgate, floor, floorChecks;
  before(async () => {
    emulator = await startEmulator();
    // One after the other: each start finds its own new workerd process.
    fluxgate = await startRecorded(emulator.url, "build/index.js", "fluxgate");
    floor = await startRecorded(emulator.url, "bench/floor-worker.mjs", "floor");
    floorChecks = await startRecorded(emulator.url, "bench/floor-checks-worker.mjs", "floor-checks");
  });
  after(async () => {
    await Promise.all([fluxgate?.mf.dispose(), floor?.mf.dispose(), floorChecks?.mf.dispose()]);
    await emulator?.close();
  });

  test("POST /generate: fluxgate and the floor make the same calls", async () => {
    // The first generation also reads the model's schema (kept per isolate after).
    await generation(fluxgate);
    await generation(floor);
    const ours = await generation(fluxgate);
    const theirs = await generation(floor);
    assert.deepEqual(shapes(ours.calls), shapes(theirs.calls));
    // What that is: one create, one output fetch, one R2 put and no R2
    // head (nobody else can have stored a new prediction's bytes); the
    // owner's usage read and written once (the generation with its
    // images, bytes and predict time, after the copies).
    const made = shapes(ours.calls);
    assert.equal(made.filter((c) => c.startsWith("fetch POST /v1/models/")).length, 1);
    assert.equal(made.filter((c) => c === "fetch GET /delivery/<output>").length, 1);
    assert.deepEqual(made.filter((c) => c.startsWith("R2.")), ["R2.put"]);
    assert.deepEqual(made.filter((c) => c.startsWith("KV.get usage:")), ["KV.get usage:service:<day>"]);
    assert.deepEqual(made.filter((c) => c.startsWith("KV.put usage:")), ["KV.put usage:service:<day>"]);
  });

  test("the floor with fluxgate's checks makes the floor's calls, and checks", async () => {
    await floorChecks.calls(); // the start's /health
    const refused = await fetch(`${floorChecks.url}/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ input: GENERATE_INPUT }),
    });
    assert.equal(refused.status, 401);
    assert.match(refused.headers.get("x-request-id") ?? "", /^[0-9a-f]{16}$/);
    assert.deepEqual(await floorChecks.calls(), []);
    await generation(floorChecks);
    const checked = await generation(floorChecks);
    const plain = await generation(floor);
    assert.deepEqual(shapes(checked.calls), shapes(plain.calls));
    // Stored as the type its first bytes show: the one upstream declared.
    const types = [];
    for (const [worker, id] of [[floorChecks, checked.id], [floor, plain.id]]) {
      const res = await fetch(`${worker.url}/image/${id}`);
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      types.push(res.headers.get("content-type"));
      await worker.calls();
    }
    assert.match(types[0], /^image\//);
    assert.equal(types[0], types[1]);
  });

  test("GET /image/{id} and GET /health: the same calls", async () => {
    const ours = await generation(fluxgate);
    const theirs = await generation(floor);
    const calls = [];
    for (const [worker, id] of [[fluxgate, ours.id], [floor, theirs.id]]) {
      const res = await fetch(`${worker.url}/image/${id}`);
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      const image = shapes(await worker.calls());
      await (await fetch(`${worker.url}/health`)).arrayBuffer();
      const health = shapes(await worker.calls());
      await (await fetch(`${worker.url}/health`)).arrayBuffer();
      const again = shapes(await worker.calls());
      calls.push({ image, health, again });
    }
    const [a, b] = calls;
    assert.deepEqual(a.image, ["R2.get"]);
    assert.deepEqual(b.image, a.image);
    // The lost count is read from KV at most once per 10 s per isolate
    // (the start's first /health read it): a /health right after another reads nothing.
    for (const { health, again } of calls) {
      assert.ok(health.length === 0 || (health.length === 1 && health[0] === "KV.get stats:"), String(health));
      assert.deepEqual(again, []);
    }
  });

  test("GET /health: a stale lost count is read from KV once, however many requests find it stale", async () => {
    // Both read it here at the latest; past ten seconds it is stale.
    await Promise.all([fluxgate, floor].map(async (w) => (await fetch(`${w.url}/health`)).arrayBuffer()));
    await new Promise((r) => setTimeout(r, 10_200));
    for (const [worker, name] of [[fluxgate, "fluxgate"], [floor, "floor"]]) {
      await worker.calls();
      const answers = await Promise.all(
        Array.from({ length: 12 }, async () => {
          const res = await fetch(`${worker.url}/health`);
          return { status: res.status, body: await res.json() };
        }),
      );
      const reads = shapes(await worker.calls()).filter((c) => c === "KV.get stats:");
      assert.deepEqual(reads, ["KV.get stats:"], name);
      for (const { status, body } of answers) {
        assert.equal(status, 200);
        assert.equal(typeof body.lost_images, "number");
      }
    }
  });

  test("a run of generations writes the owner's usage at most once a second, every one counted", async () => {
    const kv = await fluxgate.mf.getKVNamespace("IMAGE_META");
    const key = `usage:service:${new Date().toISOString().slice(0, 10)}`;
    const generationsInKv = async () => JSON.parse((await kv.get(key)) ?? "{}").generations ?? 0;
    // Settled: the earlier tests' writes are done and more than a second old.
    await new Promise((r) => setTimeout(r, 1500));
    await fluxgate.calls();
    const before = await generationsInKv();
    const started = Date.now();
    const count = 6;
    for (let i = 0; i < count; i++) await generate(fluxgate, { ...GENERATE_INPUT, seed: 100 + i });
    const answered = Date.now() - started;
    // Until all of them are in KV.
    while ((await generationsInKv()) < before + count && Date.now() - started < 15000) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const elapsed = Date.now() - started;
    assert.equal(await generationsInKv(), before + count, "every generation is counted in KV");
    const writes = (await fluxgate.calls()).filter((c) => c.startsWith("KV.put usage:")).length;
    // Writes a second apart, all between the first request and now.
    const allowed = 1 + Math.floor(elapsed / 1000);
    const seen = `${writes} usage writes in ${elapsed} ms (answered in ${answered} ms)`;
    assert.ok(writes >= 1 && writes <= allowed, seen);
    assert.ok(writes < count, seen);
  });

  test("an answer never waits for a usage write: outputs stored before the answer are counted after it", async () => {
    // The model answers data: URIs, which are stored before the answer.
    const prompt = `inline outputs ${Date.now()}`;
    const rule = await fetch(`${emulator.url}/_control/rules`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ when: { prompt }, then: { outputAs: "data" } }),
    });
    assert.equal(rule.status, 201);
    const kv = await fluxgate.mf.getKVNamespace("IMAGE_META");
    const key = `usage:service:${new Date().toISOString().slice(0, 10)}`;
    const inKv = async () => JSON.parse((await kv.get(key)) ?? "{}");
    // Until KV holds one more generation and image than `from`, and more predict time.
    const counted = async (from) => {
      for (const started = Date.now(); ; ) {
        const now = await inKv();
        const more = (field) => (now[field] ?? 0) - (from[field] ?? 0);
        if (more("generations") === 1 && more("images_stored") === 1 && more("predict_time_ms") > 0) return now;
        assert.ok(Date.now() - started < 10000, `KV still holds ${JSON.stringify(now)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    // What earlier generations counted is all in KV (unchanged for 1.2 s).
    let from = await inKv();
    for (;;) {
      await new Promise((r) => setTimeout(r, 1200));
      const now = await inKv();
      if (JSON.stringify(now) === JSON.stringify(from)) break;
      from = now;
    }
    await generate(fluxgate, { prompt, seed: 1 });
    // All of the first generation written: nothing is being written, and
    // the key's next write waits out a second from the last.
    from = await counted(from);
    await fluxgate.calls();
    const { bytes } = await generate(fluxgate, { prompt, seed: 2 });
    const before = await fluxgate.calls();
    assert.ok(JSON.parse(bytes).id, "answered with the image");
    assert.ok(before.some((c) => c.startsWith("R2.put")), "stored before the answer");
    // Had the answer waited for the usage write, the write would be among the calls before it.
    assert.deepEqual(before.filter((c) => c.startsWith("KV.put usage:")), [], before.join(", "));
    // It is written after.
    await counted(from);
  });
});
