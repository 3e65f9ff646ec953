// Who may generate, with which Replicate token: asserted from what the
// emulator received.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  AUTH_TOKEN,
  SERVICE_REPLICATE_TOKEN,
  USER_REPLICATE_TOKEN,
  createsFor,
  generate,
  uniquePrompt,
  worker,
  workerWith,
} from "./harness.mjs";

const UNAUTHORIZED = { error: "Unauthorized access 🚫" };

async function tokenUsedFor(prompt) {
  const creates = await createsFor(prompt);
  assert.equal(creates.length, 1, "exactly one create reached Replicate");
  return creates[0].headers.authorization;
}

describe("credentials", () => {
  test("service auth uses the service's Replicate token", async () => {
    const w = await worker();
    const prompt = uniquePrompt("service");
    const res = await generate(w, { prompt });
    assert.equal(res.status, 200);
    assert.equal(await tokenUsedFor(prompt), `Bearer ${SERVICE_REPLICATE_TOKEN}`);
  });

  test("X-Replicate-Token needs no service auth", async () => {
    const w = await worker();
    const prompt = uniquePrompt("header");
    const res = await generate(w, { prompt }, { "x-replicate-token": USER_REPLICATE_TOKEN });
    assert.equal(res.status, 200);
    assert.equal(await tokenUsedFor(prompt), `Bearer ${USER_REPLICATE_TOKEN}`);
  });

  test("replicate_token in the body is used, and never forwarded as input", async () => {
    const w = await worker();
    const prompt = uniquePrompt("body");
    const res = await generate(w, { prompt, replicate_token: USER_REPLICATE_TOKEN }, {});
    assert.equal(res.status, 200);
    const [create] = await createsFor(prompt);
    assert.equal(create.headers.authorization, `Bearer ${USER_REPLICATE_TOKEN}`);
    assert.ok(!JSON.stringify(create.body).includes(USER_REPLICATE_TOKEN));
  });

  test("the header beats the body, the body beats service auth", async () => {
    const w = await worker();
    let prompt = uniquePrompt("priority");
    let res = await generate(w, { prompt, replicate_token: "r8_some_other_token" }, { "x-replicate-token": USER_REPLICATE_TOKEN });
    assert.equal(res.status, 200);
    assert.equal(await tokenUsedFor(prompt), `Bearer ${USER_REPLICATE_TOKEN}`);

    prompt = uniquePrompt("priority");
    res = await generate(w, { prompt, replicate_token: USER_REPLICATE_TOKEN }, { authorization: `Bearer ${AUTH_TOKEN}` });
    assert.equal(res.status, 200);
    assert.equal(await tokenUsedFor(prompt), `Bearer ${USER_REPLICATE_TOKEN}`);
  });

  test("replicate_token in the query works for GET", async () => {
    const w = await worker();
    const prompt = uniquePrompt("query");
    const res = await w.fetch(`/generate?prompt=${encodeURIComponent(prompt)}&replicate_token=${USER_REPLICATE_TOKEN}`);
    assert.equal(res.status, 302);
    assert.equal(await tokenUsedFor(prompt), `Bearer ${USER_REPLICATE_TOKEN}`);
  });

  test("no credentials, or a wrong bearer: 401 and nothing sent", async () => {
    const w = await worker();
    const prompt = uniquePrompt("denied");
    for (const headers of [{}, { authorization: "Bearer wrong" }, { authorization: AUTH_TOKEN }, { authorization: `Basic ${AUTH_TOKEN}` }]) {
      const res = await generate(w, { prompt }, headers);
      assert.equal(res.status, 401, JSON.stringify(headers));
      assert.deepEqual(await res.json(), UNAUTHORIZED);
    }
    const res = await w.fetch(`/generate?prompt=${encodeURIComponent(prompt)}`);
    assert.equal(res.status, 401);
    assert.deepEqual(await res.json(), UNAUTHORIZED);
    assert.equal((await createsFor(prompt)).length, 0);
  });

  test("authentication comes before input validation", async () => {
    const w = await worker();
    const res = await generate(w, { input: { prompt: "x", guidance_scale: 3.5 } }, {});
    assert.equal(res.status, 401);
    assert.deepEqual(await res.json(), UNAUTHORIZED);
    const authed = await generate(w, { input: { prompt: "x", guidance_scale: 3.5 } });
    assert.equal(authed.status, 400);
  });

  test("a user token Replicate rejects: 401 Invalid Replicate token", async () => {
    const w = await worker();
    const res = await generate(w, { prompt: uniquePrompt("bad user token") }, { "x-replicate-token": "r8_not_a_real_token" });
    assert.equal(res.status, 401);
    const body = await res.json();
    assert.equal(body.error, "Invalid Replicate token");
    assert.ok(!JSON.stringify(body).includes("r8_not_a_real_token"));
  });

  test("the service's own token rejected: 502 server misconfiguration", async () => {
    const w = await workerWith({ REPLICATE_API_TOKEN: "r8_revoked_service_token" });
    const res = await generate(w, { prompt: uniquePrompt("revoked") });
    assert.equal(res.status, 502);
    const body = await res.json();
    assert.equal(body.error, "Server misconfiguration");
    assert.ok(!JSON.stringify(body).includes("r8_revoked_service_token"));
  });

  test("an operator can turn user tokens off", async () => {
    const w = await workerWith({ ALLOW_USER_TOKENS: "false" });
    const prompt = uniquePrompt("user tokens off");
    const res = await generate(w, { prompt }, { "x-replicate-token": USER_REPLICATE_TOKEN });
    assert.equal(res.status, 401);
    const body = await res.json();
    assert.equal(body.error, UNAUTHORIZED.error);
    assert.match(body.details, /disabled/);
    assert.equal((await createsFor(prompt)).length, 0);
    // Service auth still works there.
    assert.equal((await generate(w, { prompt: uniquePrompt("service still works") })).status, 200);
  });

  test("no token is stored in KV or R2 metadata", async () => {
    const w = await worker();
    const prompt = uniquePrompt("no secrets stored");
    const res = await generate(w, { prompt, replicate_token: USER_REPLICATE_TOKEN });
    assert.equal(res.status, 200);
    const kv = await w.mf.getKVNamespace("IMAGE_META");
    const { keys } = await kv.list();
    assert.ok(keys.length > 0);
    for (const { name, metadata } of keys) {
      const value = (await kv.get(name)) ?? ""; // a pending: entry may be gone by now
      for (const secret of [USER_REPLICATE_TOKEN, SERVICE_REPLICATE_TOKEN, AUTH_TOKEN]) {
        assert.ok(!value.includes(secret), `${name} holds a token`);
        assert.ok(!JSON.stringify(metadata ?? {}).includes(secret), `${name}'s metadata holds a token`);
      }
    }
  });
});
