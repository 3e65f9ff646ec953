import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import net from "node:net";
import { describe, test } from "node:test";
import { AUTH_TOKEN, SERVICE_REPLICATE_TOKEN, worker, workerWith } from "./harness.mjs";

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

  test("503 degraded, saying what is missing, when the service cannot work", async () => {
    const w = await workerWith({ AUTH_TOKEN: "", REPLICATE_API_TOKEN: "", ALLOW_USER_TOKENS: "false" });
    const res = await w.fetch("/health");
    assert.equal(res.status, 503);
    const body = await res.json();
    assert.equal(body.status, "degraded");
    assert.equal(body.missing.length, 2);
    assert.match(body.missing.join(" "), /REPLICATE_API_TOKEN/);
    assert.match(body.missing.join(" "), /AUTH_TOKEN/);
    assert.ok(res.headers.get("x-request-id"));
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

describe("connections", () => {
  /** Sends a POST on a raw keep-alive socket; tells whether the server closed it after answering. */
  function closedAfterAnswer(url, path, type, body) {
    return new Promise((resolve) => {
      const socket = net.connect(Number(url.port), url.hostname);
      let answer = "";
      let closed = false;
      socket.on("data", (d) => (answer += d));
      socket.on("close", () => (closed = true));
      socket.on("error", () => (closed = true));
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: ${type}\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: keep-alive\r\n\r\n${body}`,
      );
      setTimeout(() => {
        socket.destroy();
        resolve({ closed, status: Number(answer.slice(9, 12)) });
      }, 400);
    });
  }

  test("a POST answered without reading its body leaves the connection reusable", async () => {
    const w = await worker();
    const body = JSON.stringify({ input: { prompt: "x".repeat(2000) } });
    for (const [path, type, status] of [
      ["/replicate/v1/predictions", "application/json", 401],
      ["/generate", "text/plain", 415],
      ["/nope", "application/json", 404],
    ]) {
      const answer = await closedAfterAnswer(w.url, path, type, body);
      assert.equal(answer.status, status, path);
      assert.equal(answer.closed, false, `${path}: the connection was closed`);
    }
  });
});
