// openapi.json: linted with Redocly CLI (recommended rules), complete for the
// service's routes, its examples valid, and live answers of the worker
// checked against it with tests/openapi-check.mjs.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { AUTH_TOKEN, eventually, generate, uniquePrompt, worker } from "./harness.mjs";
import { startSite } from "./browser-harness.mjs";
import { checkAgainstSpec, checkResponse, requestProblems, schemaProblems, spec, specProblems } from "./openapi-check.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const auth = { authorization: `Bearer ${AUTH_TOKEN}` };
const METHODS = ["get", "put", "post", "delete", "patch", "head", "options"];

/**
 * Warnings of the recommended rules accepted on purpose: these operations
 * have no 4xx of their own (public, parameterless reads), and GET /generate
 * answers with a redirect, not a 2xx.
 */
const ACCEPTED_WARNINGS = new Set([
  "operation-4xx-response #/paths/~1health/get/responses",
  "operation-4xx-response #/paths/~1openapi.json/get/responses",
  "operation-4xx-response #/paths/~1models/get/responses",
  "operation-2xx-response #/paths/~1generate/get/responses",
]);

describe("openapi.json", () => {
  test("passes Redocly's recommended rules: no error, no warning but the accepted ones", () => {
    const cli = fileURLToPath(new URL("../node_modules/@redocly/cli/bin/cli.js", import.meta.url));
    const run = spawnSync(process.execPath, [cli, "lint", "public/openapi.json", "--format=json"], {
      cwd: root,
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true", NO_COLOR: "1" },
    });
    assert.equal(run.error, undefined, `redocly did not run: ${run.error}`);
    const start = run.stdout.indexOf("{");
    assert.ok(start >= 0, `redocly printed no report (exit ${run.status}):\n${run.stdout}\n${run.stderr}`);
    const report = JSON.parse(run.stdout.slice(start));
    const describeProblem = (p) => `${p.ruleId} ${p.location?.[0]?.pointer}: ${p.message}`;
    const errors = report.problems.filter((p) => p.severity === "error").map(describeProblem);
    assert.deepEqual(errors, [], "redocly lint errors");
    const warnings = report.problems
      .filter((p) => p.severity === "warn" && !ACCEPTED_WARNINGS.has(`${p.ruleId} ${p.location?.[0]?.pointer}`))
      .map(describeProblem);
    assert.deepEqual(warnings, [], "redocly lint warnings");
    assert.equal(run.status, 0, run.stderr);
  });

  test("describes every route of the service", () => {
    const routes = [
      "get /health",
      "get /openapi.json",
      "get /models",
      "get /generate",
      "post /generate",
      "get /generate/{predictionId}",
      "delete /generate/{predictionId}",
      "get /image/{id}",
      "delete /image/{id}",
      "get /images",
      "post /uploads",
      "get /usage",
      "post /admin/keys",
      "get /admin/keys",
      "delete /admin/keys/{id}",
      "get /admin/usage",
      "post /webhooks/replicate",
      "get /replicate/v1/{path}",
      "post /replicate/v1/{path}",
    ];
    const documented = Object.entries(spec.paths).flatMap(([path, item]) =>
      METHODS.filter((m) => item[m]).map((m) => `${m} ${path}`),
    );
    assert.deepEqual([...documented].sort(), [...routes].sort());
    assert.equal(spec.openapi, "3.1.0");
    assert.match(spec.paths["/replicate/v1/{path}"].description, /https:\/\/replicate\.com\/docs\/reference\/http/);
  });

  test("every operation has a summary, an id, a security decision and documented errors where it can fail", () => {
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const method of METHODS.filter((m) => item[m])) {
        const op = item[method];
        const where = `${method.toUpperCase()} ${path}`;
        assert.ok(op.summary, `${where}: summary`);
        assert.ok(op.operationId, `${where}: operationId`);
        assert.ok(Array.isArray(op.security), `${where}: security (an empty list for public routes)`);
        if (op.security.length) assert.ok(op.responses["401"] || op.responses["4XX"], `${where}: authenticated, so documents 401`);
      }
    }
  });

  test("every example matches its schema", () => {
    let checked = 0;
    const check = (pointer, media, where) => {
      if (!media.schema) return;
      const examples = [
        ...(media.example !== undefined ? [[`${where} example`, media.example]] : []),
        ...Object.entries(media.examples ?? {}).map(([name, ex]) => [`${where} examples.${name}`, ex.value]),
      ];
      for (const [label, value] of examples) {
        assert.deepEqual(schemaProblems(`${pointer}/schema`, value), [], label);
        checked += 1;
      }
    };
    const esc = (s) => s.replace(/~/g, "~0").replace(/\//g, "~1");
    const operations = [
      ...Object.entries(spec.paths).map(([path, item]) => [path, item, `#/paths/${esc(path)}`]),
      ...Object.entries(spec.webhooks ?? {}).map(([name, item]) => [`webhook ${name}`, item, `#/webhooks/${esc(name)}`]),
    ];
    for (const [path, item, pointer] of operations) {
      for (const method of METHODS.filter((m) => item[m])) {
        const op = item[method];
        const base = `${pointer}/${method}`;
        for (const [type, media] of Object.entries(op.requestBody?.content ?? {})) {
          check(`${base}/requestBody/content/${esc(type)}`, media, `${method} ${path} request ${type}`);
        }
        for (const [status, response] of Object.entries(op.responses)) {
          for (const [type, media] of Object.entries(response.content ?? {})) {
            check(`${base}/responses/${status}/content/${esc(type)}`, media, `${method} ${path} ${status} ${type}`);
          }
        }
      }
    }
    for (const [name, response] of Object.entries(spec.components.responses)) {
      for (const [type, media] of Object.entries(response.content ?? {})) {
        check(`#/components/responses/${name}/content/${esc(type)}`, media, `components.responses.${name} ${type}`);
      }
    }
    assert.ok(checked >= 30, `only ${checked} examples checked`);
  });

  test("the request forms of POST /generate", () => {
    assert.deepEqual(requestProblems("POST", "/generate", { prompt: "a cat", aspect_ratio: "16:9", model: "schnell" }), []);
    assert.deepEqual(requestProblems("POST", "/generate", { input: { prompt: "a cat", seed: 1 }, webhook: "https://hooks.example.net/x" }), []);
    assert.notDeepEqual(requestProblems("POST", "/generate", { input: { prompt: "a cat" }, prompt: "a dog" }), []);
    assert.notDeepEqual(requestProblems("POST", "/generate", { aspect_ratio: "1:1" }), []);
    assert.notDeepEqual(requestProblems("POST", "/generate", { prompt: "a", webhook_events_filter: ["done"] }), []);
  });
});

describe("checkAgainstSpec", () => {
  const ok = {
    status: "ok", service: "fluxgate", version: "0.1.0", r2: true, kv: true, replicate_token: true, auth_token: true,
    model: "black-forest-labs/flux-schnell", config_error: null, links_from_request_host: true,
  };
  const json = { "content-type": "application/json; charset=utf-8", "x-request-id": "req-1" };

  test("accepts a matching answer, with templates or concrete paths", () => {
    checkAgainstSpec("GET", "/health", 200, json, ok);
    checkAgainstSpec("GET", "/image/01m7z4g69m02ftsb7pe5frqmj5.webp", 404, json, { error: "Image not found" });
    checkAgainstSpec("GET", "/image/{id}", 200, { "content-type": "image/webp", "x-request-id": "r" }, new Uint8Array(8));
    checkAgainstSpec("DELETE", "/image/{id}", 204, { "x-request-id": "r" }, undefined);
    checkAgainstSpec("POST", "/replicate/v1/models/black-forest-labs/flux-schnell/predictions", 201, json, { id: "x" });
  });

  test("names every disagreement", () => {
    assert.throws(() => checkAgainstSpec("GET", "/health", 200, json, { ...ok, status: "fine" }), /status must be equal to one of the allowed values/);
    assert.throws(() => checkAgainstSpec("GET", "/health", 418, json, ok), /status 418 is not documented/);
    assert.throws(() => checkAgainstSpec("GET", "/health", 200, { "content-type": "application/json" }, ok), /X-Request-Id is required/);
    assert.throws(() => checkAgainstSpec("GET", "/health", 200, { ...json, "content-type": "text/html" }, ok), /text\/html is not documented/);
    assert.throws(() => checkAgainstSpec("GET", "/image/{id}", 503, json, { error: "Image not ready yet" }), /Retry-After is required/);
    assert.throws(() => checkAgainstSpec("GET", "/image/{id}", 503, { ...json, "retry-after": "soon" }, { error: "Image not ready yet" }), /Retry-After="soon"/);
    assert.throws(() => checkAgainstSpec("PUT", "/health", 405, json, {}), /not in openapi.json/);
    assert.throws(() => checkAgainstSpec("GET", "/nowhere", 200, json, {}), /no path/);
    assert.deepEqual(specProblems("POST", "/generate", 400, json, { details: "x" }).length, 1);
  });
});

describe("live answers match openapi.json", () => {
  test("GET /health", async () => {
    const w = await worker();
    const body = await checkResponse("GET", "/health", await w.fetch("/health"));
    assert.equal(body.status, "ok");
  });

  test("GET /models", async () => {
    const w = await worker();
    const body = await checkResponse("GET", "/models", await w.fetch("/models"));
    assert.equal(body.default, "schnell");
  });

  test("an error: GET /image/{id} for an unknown image", async () => {
    const w = await worker();
    const res = await w.fetch("/image/01m7z4g69m02ftsb7pe5frqmj5.webp");
    assert.equal(res.status, 404);
    await checkResponse("GET", "/image/{id}", res);
  });

  test("an error: POST /generate with an input out of range", async () => {
    const w = await worker();
    const res = await generate(w, { prompt: uniquePrompt("spec range"), num_outputs: 9 });
    assert.equal(res.status, 400);
    const body = await checkResponse("POST", "/generate", res);
    assert.match(JSON.stringify(body), /num_outputs/);
  });

  test("an error: POST /generate without credentials", async () => {
    const w = await worker();
    const res = await generate(w, { prompt: uniquePrompt("spec auth") }, {});
    assert.equal(res.status, 401);
    await checkResponse("POST", "/generate", res);
  });

  test("POST /generate, then the image", async () => {
    const w = await worker();
    const res = await generate(w, { prompt: uniquePrompt("spec generate") });
    assert.equal(res.status, 200);
    const body = await checkResponse("POST", "/generate", res);
    const image = await w.fetch(body.imageUrl);
    assert.ok([200, 503].includes(image.status), `image answered ${image.status}`);
    await checkResponse("GET", "/image/{id}", image);
  });

  test("GET /openapi.json is this document, a static file readable from any origin", async () => {
    const site = await startSite();
    try {
      const res = await site.fetch("/openapi.json", { headers: { origin: "https://docs.example" } });
      assert.equal(res.headers.get("access-control-allow-origin"), "*");
      assert.match(res.headers.get("content-type"), /^application\/json/);
      const body = await checkResponse("GET", "/openapi.json", res);
      assert.deepEqual(body, JSON.parse(readFileSync(new URL("../public/openapi.json", import.meta.url), "utf8")));
    } finally {
      await site.close();
    }
    // The worker itself no longer has the route: the file is never compiled in.
    const w = await worker();
    const direct = await w.fetch("/openapi.json");
    assert.equal(direct.status, 404);
    await direct.arrayBuffer();
  });
});
