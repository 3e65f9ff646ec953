// What an operator runs the service by: one structured JSON line per
// request (with the X-Request-Id it answered), lines for copies, webhook
// deliveries and cron runs; never a token, and no more of a prompt than a
// short prefix.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DEFAULT_WEBHOOK_SECRET } from "../emulator/server.mjs";
import { AUTH_TOKEN, eventually, generate, SERVICE_REPLICATE_TOKEN, stored, uniquePrompt, USER_REPLICATE_TOKEN, workerWith } from "./harness.mjs";

describe("log lines", () => {
  test("a line per request, a line per copy, webhook and cron lines; no token, a short prompt prefix", async () => {
    const w = await workerWith({ REPLICATE_WEBHOOK_SECRET: DEFAULT_WEBHOOK_SECRET, EXTRA_WEBHOOK_HOSTS: "127.0.0.1" });
    const prompt = `${uniquePrompt("logged")} ${"and a long tail ".repeat(10)}`;
    const res = await generate(w, { prompt, megapixels: "0.25" });
    assert.equal(res.status, 200);
    const requestId = res.headers.get("x-request-id");
    assert.match(requestId, /^[0-9a-f]{16}$/);
    const { id, predictionId } = await res.json();
    await stored(w, id);
    const own = await generate(w, { prompt: uniquePrompt("own token"), megapixels: "0.25" }, { "x-replicate-token": USER_REPLICATE_TOKEN });
    assert.equal(own.status, 200);
    await (await w.mf.getWorker()).scheduled({ cron: "*/5 * * * *" });

    const lines = await eventually(() => {
      const all = w.logLines();
      return all.some((l) => l.copy === id) && all.some((l) => l.scheduled === "copies") && all;
    }, 10000, "the copy and cron lines");
    const line = lines.find((l) => l.request_id === requestId);
    assert.ok(line, "the request's line, under the id it answered with");
    assert.equal(line.method, "POST");
    assert.equal(line.route, "/generate");
    assert.equal(line.status, 200);
    assert.equal(typeof line.duration_ms, "number");
    assert.equal(line.caller, "service");
    assert.equal(line.model, "black-forest-labs/flux-schnell");
    assert.equal(line.prediction_id, predictionId);
    assert.equal(line.cache_hit, false);
    const prefix = line.prompt.replace(/…$/, "");
    assert.ok(prefix.length <= 32 && prefix.length > 8 && prompt.startsWith(prefix), `a short prefix of the prompt: ${line.prompt}`);
    const ownLine = lines.find((l) => l.request_id === own.headers.get("x-request-id"));
    assert.equal(ownLine.caller, "own token");

    const copy = lines.find((l) => l.copy === id);
    assert.equal(copy.status, "stored");
    assert.equal(copy.prediction_id, predictionId);
    assert.ok(copy.bytes > 0);
    assert.ok(lines.some((l) => l.scheduled === "jobs"), "the cron's line about jobs");
    const delivery = lines.find((l) => l.route === "/webhooks/replicate" && l.prediction_id === predictionId);
    assert.equal(delivery?.status, 200, "Replicate's delivery to the service, logged");

    const text = w.logs.join("\n");
    for (const secret of [AUTH_TOKEN, SERVICE_REPLICATE_TOKEN, USER_REPLICATE_TOKEN, DEFAULT_WEBHOOK_SECRET]) {
      assert.ok(!text.includes(secret), "no secret in any line");
    }
    assert.ok(!text.includes("and a long tail and a long tail"), "no long prompt");
  });
});
