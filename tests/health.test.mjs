import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { AUTH_TOKEN, SERVICE_REPLICATE_TOKEN, worker } from "./harness.mjs";

const cargoVersion = readFileSync(new URL("../Cargo.toml", import.meta.url), "utf8").match(/^version = "([^"]+)"/m)[1];

describe("GET /health", () => {
  test("reports version and configured bindings as JSON", async () => {
    const w = await worker();
    const res = await w.fetch("/health");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /^application\/json/);
    const body = await res.json();
    assert.equal(body.status, "ok");
    assert.equal(body.service, "fluxgate");
    assert.equal(body.version, cargoVersion);
    assert.equal(body.r2, true);
    assert.equal(body.kv, true);
    assert.equal(body.replicate_token, true);
    assert.equal(body.model, "black-forest-labs/flux-schnell");
  });

  test("never shows a secret", async () => {
    const w = await worker();
    const text = await (await w.fetch("/health")).text();
    assert.ok(!text.includes(SERVICE_REPLICATE_TOKEN));
    assert.ok(!text.includes(AUTH_TOKEN));
  });

  test("other methods get a JSON 405 with Allow", async () => {
    const w = await worker();
    const res = await w.fetch("/health", { method: "POST" });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get("allow"), "GET, HEAD");
    assert.equal((await res.json()).error, "Method Not Allowed");
  });
});

describe("unknown paths", () => {
  for (const path of ["/", "/nope", "/health/extra", "/image"]) {
    test(`${path} is a JSON 404`, async () => {
      const w = await worker();
      const res = await w.fetch(path);
      assert.equal(res.status, 404);
      assert.match(res.headers.get("content-type"), /^application\/json/);
      assert.deepEqual(await res.json(), { error: "Not Found" });
    });
  }
});
