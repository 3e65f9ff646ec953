// The emulator's models, file inputs, Files API, misbehaviour controls and
// controlled webhook deliveries.
import { test, describe, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import {
  startEmulator,
  FLUX_11_PRO_VERSION,
  FLUX_DEV_VERSION,
  FLUX_FILL_PRO_VERSION,
  FLUX_KONTEXT_PRO_VERSION,
  FLUX_SCHNELL_VERSION,
  HIDDEN_VERSION,
  MODELS,
  REAL_ESRGAN_VERSION,
  SD_INPAINTING_VERSION,
  SDXL_VERSION,
} from "../emulator/server.mjs";

const TOKEN = "r8_test";

let emulator;
let base;

function api(path, { method = "GET", body, headers = {}, token = TOKEN, rawBody } = {}) {
  const allHeaders = { "Content-Type": "application/json", ...headers };
  if (token !== null) allHeaders.Authorization = `Bearer ${token}`;
  return fetch(`${base}${path}`, {
    method,
    headers: allHeaders,
    body: rawBody ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
}

/** Creates a prediction, waiting for it. `target` is "owner/name" (model route) or a version string. */
async function run(target, input, { wait = true, headers = {} } = {}) {
  const viaModel = /^[^/:]+\/[^/:]+$/.test(target) && !target.includes(":");
  const path = viaModel ? `/v1/models/${target}/predictions` : "/v1/predictions";
  const body = viaModel ? { input } : { version: target, input };
  const res = await api(path, { method: "POST", body, headers: wait ? { Prefer: "wait=10", ...headers } : headers });
  return { res, body: await res.json() };
}

async function addRule(rule) {
  const res = await fetch(`${base}/_control/rules`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(rule),
  });
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()).id;
}

async function download(url, init) {
  const res = await fetch(url, init);
  return { res, bytes: Buffer.from(await res.arrayBuffer()) };
}

async function rgb(bytes) {
  const { data, info } = await sharp(bytes).removeAlpha().toColourspace("srgb").raw().toBuffer({ resolveWithObject: true });
  const at = (x, y) => {
    const i = (y * info.width + x) * 3;
    return [data[i], data[i + 1], data[i + 2]];
  };
  return { data, width: info.width, height: info.height, at };
}

/** Mean luminance of a rectangle. */
function meanLuma(img, x0, y0, x1, y1) {
  let sum = 0;
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) {
    const [r, g, b] = img.at(x, y);
    sum += 0.299 * r + 0.587 * g + 0.114 * b;
  }
  return sum / ((x1 - x0) * (y1 - y0));
}

const near = (a, b, tolerance = 6) => a.every((v, i) => Math.abs(v - b[i]) <= tolerance);

/** A png split into four flat quadrants: red, green / blue, white. */
function quadrants(width, height) {
  const data = Buffer.alloc(width * height * 3);
  const colors = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]];
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
    const q = (y < height / 2 ? 0 : 2) + (x < width / 2 ? 0 : 1);
    colors[q].forEach((v, ch) => (data[(y * width + x) * 3 + ch] = v));
  }
  return sharp(data, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

/** A png black on the left half and white on the right half. */
function halves(width, height) {
  const data = Buffer.alloc(width * height);
  for (let y = 0; y < height; y++) data.fill(255, y * width + width / 2, (y + 1) * width);
  return sharp(data, { raw: { width, height, channels: 1 } }).png().toBuffer();
}

const dataUri = (bytes, type = "image/png") => `data:${type};base64,${bytes.toString("base64")}`;

/** A one-route HTTP server; resolves to { url, hits, close() }. */
async function serveOnce(handler) {
  const hits = [];
  const server = createServer((req, res) => {
    hits.push({ method: req.method, url: req.url, headers: req.headers });
    handler(req, res);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    hits,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(resolve);
    }),
  };
}

let quadPng;
let maskPng;

describe("Replicate emulator: models, inputs, files, controls", () => {
  before(async () => {
    emulator = await startEmulator({ port: 0, predictMs: 20, webhookSecret: "whsec_dGVzdC1zZWNyZXQtZm9yLXRoZS1lbXVsYXRvcg==" });
    base = emulator.url;
    quadPng = await quadrants(64, 64);
    maskPng = await halves(64, 64);
  });

  after(async () => {
    await emulator.close();
  });

  beforeEach(() => {
    emulator.state.reset();
  });

  describe("models", () => {
    test("every model runs and answers its schema's output shape", async () => {
      const image = dataUri(quadPng);
      const mask = dataUri(maskPng);
      const cases = [
        ["black-forest-labs/flux-schnell", { prompt: "p", megapixels: "0.25", num_outputs: 2 }, "list", "webp", [512, 512]],
        ["black-forest-labs/flux-dev", { prompt: "p", megapixels: "0.25", output_format: "png" }, "list", "png", [512, 512]],
        ["black-forest-labs/flux-1.1-pro", { prompt: "p", aspect_ratio: "custom", width: 300, height: 256, output_format: "jpg" }, "single", "jpeg", [288, 256]],
        [SDXL_VERSION, { prompt: "p", width: 128, height: 96 }, "list", "png", [128, 96]],
        [`stability-ai/stable-diffusion-inpainting:${SD_INPAINTING_VERSION}`, { prompt: "p", image, mask, width: 128, height: 64 }, "list", "png", [128, 64]],
        [REAL_ESRGAN_VERSION, { image, scale: 2 }, "single", "png", [128, 128]],
        ["black-forest-labs/flux-kontext-pro", { prompt: "p", input_image: image, output_format: "jpg" }, "single", "jpeg", [1024, 1024]],
        ["black-forest-labs/flux-fill-pro", { prompt: "p", image, mask }, "single", "jpeg", [64, 64]],
      ];
      const results = await Promise.all(cases.map(([target, input]) => run(target, input)));
      for (const [i, [target, , shape, format, size]] of cases.entries()) {
        const { res, body } = results[i];
        assert.equal(res.status, 201, `${target}: ${JSON.stringify(body)}`);
        assert.equal(body.status, "succeeded", `${target}: ${body.error}`);
        const urls = shape === "list" ? body.output : [body.output];
        if (shape === "list") assert.ok(Array.isArray(body.output), target);
        else assert.equal(typeof body.output, "string", target);
        for (const [n, url] of urls.entries()) {
          const name = shape === "list" ? `out-${n}` : "output";
          assert.match(url, new RegExp(`^${base}/delivery/${body.id}/${name}\\.(webp|png|jpg)$`), target);
        }
        const { res: file, bytes } = await download(urls[0]);
        assert.equal(file.status, 200, target);
        const meta = await sharp(bytes).metadata();
        assert.equal(meta.format, format, target);
        assert.deepEqual([meta.width, meta.height], size, target);
        assert.equal(body.metrics.image_count, urls.length, target);
      }
      assert.equal(results[0].body.output.length, 2);
    });

    test("the model route reports the deployment or hidden version; version creates report the version", async () => {
      const dev = await run("black-forest-labs/flux-dev", { prompt: "v", megapixels: "0.25" }, { wait: false });
      assert.equal(dev.res.status, 202);
      assert.equal(dev.body.version, HIDDEN_VERSION);
      assert.equal(dev.body.model, "black-forest-labs/flux-dev");
      const forms = [
        [FLUX_DEV_VERSION, "black-forest-labs/flux-dev", FLUX_DEV_VERSION],
        [`black-forest-labs/flux-dev:${FLUX_DEV_VERSION}`, "black-forest-labs/flux-dev", FLUX_DEV_VERSION],
        ["black-forest-labs/flux-1.1-pro", "black-forest-labs/flux-1.1-pro", HIDDEN_VERSION],
        [`stability-ai/sdxl:${SDXL_VERSION}`, "stability-ai/sdxl", SDXL_VERSION],
      ];
      for (const [version, model, expected] of forms) {
        const res = await api("/v1/predictions", { method: "POST", body: { version, input: { prompt: "v" } } });
        const body = await res.json();
        assert.equal(res.status, 202, `${version}: ${JSON.stringify(body)}`);
        assert.equal(body.model, model);
        assert.equal(body.version, expected);
      }
    });

    test("outputAs data keeps each output shape: one data: URI, or a list of them", async () => {
      await addRule({ when: { prompt: "inline" }, then: { outputAs: "data" } });
      const single = await run("black-forest-labs/flux-1.1-pro", { prompt: "inline", aspect_ratio: "custom", width: 256, height: 256, output_format: "png" });
      assert.equal(typeof single.body.output, "string");
      assert.ok(single.body.output.startsWith("data:image/png;base64,"));
      const meta = await sharp(Buffer.from(single.body.output.split(",")[1], "base64")).metadata();
      assert.deepEqual([meta.format, meta.width, meta.height], ["png", 256, 256]);
      const list = await run(SDXL_VERSION, { prompt: "inline", width: 64, height: 64, num_outputs: 2 });
      assert.equal(list.body.output.length, 2);
      assert.ok(list.body.output.every((u) => u.startsWith("data:image/png;base64,")));
    });

    test("unknown models and versions: 404 and 422 in Replicate's shape", async () => {
      const invalid = {
        title: "Invalid version or not permitted",
        detail: "The specified version does not exist (or perhaps you don't have permission to use it?)",
        status: 422,
      };
      for (const version of [
        "stability-ai/sdxl", // community models need a version
        "95b7223104132402a9ae91cc677285bc5eb997f76ab45f93e1cbd4b4e08d6e29", // not a published version
        `stability-ai/sdxl:${REAL_ESRGAN_VERSION}`, // another model's version
        "nobody/nothing",
      ]) {
        const res = await api("/v1/predictions", { method: "POST", body: { version, input: { prompt: "x" } } });
        assert.equal(res.status, 422, version);
        assert.deepEqual(await res.json(), invalid);
      }
      const community = await api("/v1/models/stability-ai/sdxl/predictions", { method: "POST", body: { input: { prompt: "x" } } });
      assert.equal(community.status, 404);
      assert.deepEqual(await community.json(), { detail: "The requested resource could not be found.", status: 404 });
      for (const path of [
        "/v1/models/nobody/nothing",
        "/v1/models/nobody/nothing/versions",
        `/v1/models/stability-ai/sdxl/versions/${REAL_ESRGAN_VERSION}`,
        "/v1/models/nobody/nothing/predictions",
      ]) {
        const res = await api(path, { method: path.endsWith("predictions") ? "POST" : "GET", body: path.endsWith("predictions") ? { input: {} } : undefined });
        assert.equal(res.status, 404, path);
        assert.deepEqual(await res.json(), { detail: "Not found." });
      }
      assert.equal(emulator.state.predictions.byId.size, 0);
    });

    test("model and version objects carry each published openapi_schema", async () => {
      const expected = {
        "black-forest-labs/flux-schnell": [FLUX_SCHNELL_VERSION, true, "array"],
        "black-forest-labs/flux-dev": [FLUX_DEV_VERSION, true, "array"],
        "black-forest-labs/flux-1.1-pro": [FLUX_11_PRO_VERSION, true, "string"],
        "stability-ai/sdxl": [SDXL_VERSION, false, "array"],
        "stability-ai/stable-diffusion-inpainting": [SD_INPAINTING_VERSION, false, "array"],
        "nightmareai/real-esrgan": [REAL_ESRGAN_VERSION, false, "string"],
        "black-forest-labs/flux-kontext-pro": [FLUX_KONTEXT_PRO_VERSION, true, "string"],
        "black-forest-labs/flux-fill-pro": [FLUX_FILL_PRO_VERSION, true, "string"],
      };
      assert.deepEqual(MODELS.map((m) => m.slug).sort(), Object.keys(expected).sort());
      for (const [slug, [versionId, official, outputType]] of Object.entries(expected)) {
        const model = await (await api(`/v1/models/${slug}`)).json();
        assert.equal(`${model.owner}/${model.name}`, slug);
        assert.equal(model.url, `https://replicate.com/${slug}`);
        assert.equal(model.is_official, official, slug);
        assert.equal(model.latest_version.id, versionId, slug);
        assert.match(versionId, /^[0-9a-f]{64}$/);
        const schemas = model.latest_version.openapi_schema.components.schemas;
        assert.equal(model.latest_version.openapi_schema.openapi, "3.0.2");
        assert.equal(schemas.Input.type, "object");
        assert.equal(schemas.Output.type, outputType, slug);
        for (const [name, prop] of Object.entries(schemas.Input.properties)) {
          assert.ok(prop.type || prop.allOf || prop.enum, `${slug} ${name}`);
          assert.ok(Number.isInteger(prop["x-order"]), `${slug} ${name} x-order`);
          for (const { $ref } of prop.allOf ?? []) assert.ok(schemas[$ref.split("/").pop()].enum, `${slug} ${name} ${$ref}`);
        }
        const version = await api(`/v1/models/${slug}/versions/${versionId}`);
        assert.equal(version.status, 200);
        assert.deepEqual(await version.json(), model.latest_version);
        const list = await (await api(`/v1/models/${slug}/versions`)).json();
        assert.deepEqual(list, { next: null, previous: null, results: [model.latest_version] });
      }
      const sdxl = await (await api("/v1/models/stability-ai/sdxl")).json();
      const input = sdxl.latest_version.openapi_schema.components.schemas.Input;
      // Served as Replicate stores it: shorter keys first.
      assert.deepEqual(Object.keys(input.properties).slice(0, 6), ["mask", "seed", "image", "width", "height", "prompt"]);
      assert.deepEqual(Object.keys(input.properties.mask), ["type", "title", "format", "x-order", "description"]);
      assert.equal(input.required, undefined);
      assert.deepEqual(input.properties.scheduler.allOf, [{ $ref: "#/components/schemas/scheduler" }]);
      assert.equal(sdxl.latest_version.cog_version, "0.9.5");
      assert.equal(sdxl.default_example.version, "c221b2b8ef527988fb59bf24a8b97c4561f1c671f73bd389f866bfb27c061316");
      const inpainting = await (await api("/v1/models/stability-ai/stable-diffusion-inpainting")).json();
      const ipSchemas = inpainting.latest_version.openapi_schema.components.schemas;
      assert.deepEqual(ipSchemas.Input.required, ["image", "mask"]);
      assert.equal(ipSchemas.width.type, "integer");
      const esrgan = await (await api("/v1/models/nightmareai/real-esrgan")).json();
      assert.deepEqual(esrgan.latest_version.openapi_schema.components.schemas.Input.properties.image.format, "uri");
    });
  });

  describe("validation from the schemas", () => {
    const minimal = {
      "black-forest-labs/flux-schnell": { prompt: "x" },
      "black-forest-labs/flux-dev": { prompt: "x" },
      "black-forest-labs/flux-1.1-pro": { prompt: "x" },
      [SDXL_VERSION]: { prompt: "x" },
      [SD_INPAINTING_VERSION]: { image: "https://example.com/i.png", mask: "https://example.com/m.png" },
      [REAL_ESRGAN_VERSION]: { image: "https://example.com/i.png" },
      "black-forest-labs/flux-kontext-pro": { prompt: "x" },
      "black-forest-labs/flux-fill-pro": { prompt: "x", image: "https://example.com/i.png" },
    };

    test("with strictInputs, a field outside the schema is a 422 naming it, for every model", async () => {
      await addRule({ when: {}, then: { strictInputs: true } });
      for (const [target, input] of Object.entries(minimal)) {
        const { res, body } = await run(target, { ...input, not_in_schema: 1 }, { wait: false });
        assert.equal(res.status, 422, target);
        assert.equal(body.title, "Input validation failed");
        assert.equal(body.detail, "- input: Additional property not_in_schema is not allowed\n", target);
        assert.deepEqual(body.invalid_fields, [
          { type: "additional_property_not_allowed", field: "input", description: "Additional property not_in_schema is not allowed" },
        ]);
      }
      assert.equal(emulator.state.predictions.byId.size, 0);
    });

    test("by default unknown fields are dropped, as Replicate does", async () => {
      const { res, body } = await run(REAL_ESRGAN_VERSION, { image: "https://example.invalid/x.png", guidance_scale: 3 }, { wait: false });
      assert.equal(res.status, 202);
      assert.deepEqual(body.input, { face_enhance: false, image: "https://example.invalid/x.png", scale: 4 });
      assert.equal(body.output, null);
    });

    test("types, enums, ranges, formats and required fields of each model", async () => {
      const cases = [
        ["black-forest-labs/flux-dev", { prompt: "x", prompt_strength: 1.5 }, "input.prompt_strength", "number_lte"],
        ["black-forest-labs/flux-dev", { prompt: "x", image: "not a uri" }, "input.image", "format"],
        ["black-forest-labs/flux-1.1-pro", { prompt: "x", width: 100 }, "input.width", "number_gte"],
        ["black-forest-labs/flux-1.1-pro", { prompt: "x", aspect_ratio: "21:9" }, "input.aspect_ratio", "enum"],
        [SDXL_VERSION, { prompt: "x", scheduler: "EULER" }, "input.scheduler", "enum"],
        [SDXL_VERSION, { width: "wide" }, "input.width", "invalid_type"],
        [SD_INPAINTING_VERSION, { image: "https://example.com/i.png" }, "input.mask", "required"],
        [SD_INPAINTING_VERSION, { image: "https://example.com/i.png", mask: "https://example.com/m.png", width: 100 }, "input.width", "enum"],
        [REAL_ESRGAN_VERSION, { image: "https://example.com/i.png", scale: 11 }, "input.scale", "number_lte"],
        [REAL_ESRGAN_VERSION, { image: 7 }, "input.image", "invalid_type"],
        ["black-forest-labs/flux-kontext-pro", { prompt: "x", output_format: "webp" }, "input.output_format", "enum"],
        ["black-forest-labs/flux-kontext-pro", { prompt: "x", safety_tolerance: 7 }, "input.safety_tolerance", "number_lte"],
        ["black-forest-labs/flux-fill-pro", { prompt: "x", image: "https://example.com/i.png", steps: 10 }, "input.steps", "number_gte"],
        ["black-forest-labs/flux-fill-pro", { prompt: "x" }, "input.image", "required"],
      ];
      for (const [target, input, field, type] of cases) {
        const { res, body } = await run(target, input, { wait: false });
        assert.equal(res.status, 422, `${target} ${field}`);
        assert.equal(body.invalid_fields.length, 1, JSON.stringify(body));
        assert.equal(body.invalid_fields[0].field, field);
        assert.equal(body.invalid_fields[0].type, type, field);
        assert.ok(body.detail.startsWith(`- ${field}: `), body.detail);
      }
      // Nullable fields accept null.
      const nullable = await run("black-forest-labs/flux-kontext-pro", { prompt: "x", input_image: null, seed: null }, { wait: false });
      assert.equal(nullable.res.status, 202);
    });
  });

  describe("image inputs", () => {
    test("real-esrgan returns the input's pixels at exactly scale x its size", async () => {
      const input = await quadrants(40, 30);
      for (const [scale, size] of [[3, [120, 90]], [2.5, [100, 75]]]) {
        const { body } = await run(REAL_ESRGAN_VERSION, { image: dataUri(input), scale });
        assert.equal(body.status, "succeeded", body.error);
        const out = await rgb((await download(body.output)).bytes);
        assert.deepEqual([out.width, out.height], size);
        const [w, h] = size;
        assert.ok(near(out.at(Math.floor(w / 4), Math.floor(h / 4)), [255, 0, 0]));
        assert.ok(near(out.at(Math.floor((3 * w) / 4), Math.floor(h / 4)), [0, 255, 0]));
        assert.ok(near(out.at(Math.floor(w / 4), Math.floor((3 * h) / 4)), [0, 0, 255]));
        assert.ok(near(out.at(Math.floor((3 * w) / 4), Math.floor((3 * h) / 4)), [255, 255, 255]));
      }
    });

    test("inpainting keeps the input where the mask is black and generates where it is white", async () => {
      const image = dataUri(quadPng);
      const mask = dataUri(maskPng);
      const runs = await Promise.all([
        run(SD_INPAINTING_VERSION, { prompt: "fill", image, mask, width: 64, height: 64, seed: 1 }),
        run(SDXL_VERSION, { prompt: "fill", image, mask, width: 64, height: 64, seed: 1 }),
        run("black-forest-labs/flux-fill-pro", { prompt: "fill", image, mask, seed: 1, output_format: "png" }),
      ]);
      const input = await rgb(quadPng);
      for (const { body } of runs) {
        assert.equal(body.status, "succeeded", `${body.model}: ${body.error}`);
        const out = await rgb((await download([body.output].flat()[0])).bytes);
        assert.deepEqual([out.width, out.height], [64, 64]);
        let kept = 0;
        let changed = 0;
        for (let y = 0; y < 64; y++) {
          for (let x = 0; x < 32; x++) if (near(out.at(x, y), input.at(x, y), 0)) kept++;
          for (let x = 32; x < 64; x++) if (!near(out.at(x, y), input.at(x, y), 10)) changed++;
        }
        assert.equal(kept, 32 * 64, `${body.model}: every black-mask pixel kept`);
        assert.ok(changed > 32 * 64 * 0.8, `${body.model}: ${changed} white-mask pixels generated`);
      }
    });

    test("flux-fill-pro uses the image's alpha channel as a mask, and outpaints around the image", async () => {
      const rgba = Buffer.alloc(64 * 64 * 4);
      for (let p = 0; p < 64 * 64; p++) {
        rgba.set([10, 200, 30, p % 64 < 32 ? 255 : 0], p * 4);
      }
      const transparent = await sharp(rgba, { raw: { width: 64, height: 64, channels: 4 } }).png().toBuffer();
      const alpha = await run("black-forest-labs/flux-fill-pro", { prompt: "alpha", image: dataUri(transparent), output_format: "png" });
      const out = await rgb((await download(alpha.body.output)).bytes);
      assert.deepEqual(out.at(5, 5), [10, 200, 30]);
      assert.notDeepEqual(out.at(60, 5), [10, 200, 30]);

      const zoom = await run("black-forest-labs/flux-fill-pro", { prompt: "zoom", image: dataUri(quadPng), outpaint: "Zoom out 2x", output_format: "png" });
      const zoomed = await rgb((await download(zoom.body.output)).bytes);
      assert.deepEqual([zoomed.width, zoomed.height], [128, 128]);
      assert.deepEqual(zoomed.at(32 + 5, 32 + 5), [255, 0, 0]);
      assert.deepEqual(zoomed.at(32 + 60, 32 + 60), [255, 255, 255]);

      const plain = await run("black-forest-labs/flux-fill-pro", { prompt: "no mask", image: dataUri(quadPng) });
      assert.equal(plain.body.status, "failed");
      assert.match(plain.body.error, /mask/);
    });

    test("img2img output is derived from the input and differs from text-to-image", async () => {
      const input = { prompt: "derive", seed: 9, megapixels: "0.25", output_format: "png" };
      const [withImage, without] = await Promise.all([
        run("black-forest-labs/flux-dev", { ...input, image: dataUri(await halves(256, 256)), prompt_strength: 0.3 }),
        run("black-forest-labs/flux-dev", input),
      ]);
      const a = await rgb((await download(withImage.body.output[0])).bytes);
      const b = await rgb((await download(without.body.output[0])).bytes);
      assert.deepEqual([a.width, a.height], [512, 512]);
      assert.ok(!a.data.equals(b.data), "img2img differs from text-to-image");
      const brighter = (img) => meanLuma(img, 256, 0, 512, 512) - meanLuma(img, 0, 0, 256, 512);
      assert.ok(brighter(a) > 120, `right half brighter by ${brighter(a)}`);
      assert.ok(Math.abs(brighter(a) - brighter(b) - 0.7 * 255) < 10, "the input weighs 1 - prompt_strength");

      const sdxl = await run(SDXL_VERSION, { prompt: "derive", seed: 9, image: dataUri(await halves(96, 64)), prompt_strength: 0.2 });
      const s = await rgb((await download(sdxl.body.output[0])).bytes);
      assert.deepEqual([s.width, s.height], [96, 64], "sdxl img2img keeps the input's size");
      assert.ok(meanLuma(s, 48, 0, 96, 64) - meanLuma(s, 0, 0, 48, 64) > 150);

      const kontext = await run("black-forest-labs/flux-kontext-pro", { prompt: "edit", input_image: dataUri(await halves(256, 128)) });
      const k = await rgb((await download(kontext.body.output)).bytes);
      assert.deepEqual([k.width, k.height], [1456, 720], "the input's aspect ratio at about 1 megapixel");
      assert.ok(meanLuma(k, k.width / 2, 0, k.width, k.height) - meanLuma(k, 0, 0, k.width / 2, k.height) > 80);
    });

    test("http inputs are fetched (also from the emulator's own outputs) and logged", async () => {
      const png = await quadrants(32, 32);
      const origin = await serveOnce((req, res) => {
        res.writeHead(200, { "Content-Type": "image/png", "Content-Length": png.length });
        res.end(png);
      });
      try {
        const url = `${origin.url}/inputs/photo.png?sig=abc`;
        const { body } = await run(REAL_ESRGAN_VERSION, { image: url, scale: 1 });
        assert.equal(body.status, "succeeded", body.error);
        assert.deepEqual(origin.hits.map((h) => h.url), ["/inputs/photo.png?sig=abc"]);
        const fetches = await (await fetch(`${base}/_control/fetches?prediction=${body.id}`)).json();
        assert.equal(fetches.length, 1);
        assert.deepEqual(
          { field: fetches[0].field, url: fetches[0].url, via: fetches[0].via, status: fetches[0].status, bytes: fetches[0].bytes, error: fetches[0].error },
          { field: "image", url, via: "http", status: 200, bytes: png.length, error: null },
        );
        assert.deepEqual(fetches[0].image, { format: "png", width: 32, height: 32 });
      } finally {
        await origin.close();
      }

      const first = await run(SDXL_VERSION, { prompt: "chain", width: 64, height: 48 });
      const upscaled = await run(REAL_ESRGAN_VERSION, { image: first.body.output[0], scale: 0.5 });
      assert.equal(upscaled.body.status, "succeeded", upscaled.body.error);
      const meta = await sharp((await download(upscaled.body.output)).bytes).metadata();
      assert.deepEqual([meta.width, meta.height], [32, 24]);
      // Only the emulator itself asked for the first output.
      assert.equal(emulator.state.listRequests(`/delivery/${first.body.id}/`).length, 1);
      assert.equal(emulator.state.fetches.at(-1).via, "http");
    });

    test("a failed fetch, a non-image or an unsupported scheme fails the prediction with a clear error", async () => {
      const origin = await serveOnce((req, res) => {
        if (req.url === "/text") {
          res.writeHead(200, { "Content-Type": "text/html" });
          res.end("<html>not an image</html>");
        } else {
          res.writeHead(404);
          res.end();
        }
      });
      try {
        const cases = [
          [`${origin.url}/missing.png`, /^Failed to load input image \(http:\/\/127\.0\.0\.1:\d+\/missing\.png\): HTTP 404$/],
          [`${origin.url}/text`, /cannot identify image file.*text\/html/],
          ["data:text/plain;base64,aGVsbG8=", /cannot identify image file/],
          ["file:///etc/passwd", /unsupported URL scheme file:/],
          ["http://127.0.0.1:9/refused.png", /Failed to load input image/],
        ];
        const results = await Promise.all(cases.map(([image]) => run(REAL_ESRGAN_VERSION, { image })));
        for (const [i, [image, pattern]] of cases.entries()) {
          const { body } = results[i];
          assert.equal(body.status, "failed", image);
          assert.match(body.error, pattern);
          assert.equal(body.output, null);
          assert.ok(body.logs.includes(body.error));
        }
        const fetches = emulator.state.fetches;
        assert.equal(fetches.length, cases.length);
        assert.ok(fetches.every((f) => typeof f.error === "string"));
        const failedMask = await run(SD_INPAINTING_VERSION, { image: dataUri(quadPng), mask: `${origin.url}/gone.png` });
        assert.match(failedMask.body.error, /^Failed to load input mask /);
      } finally {
        await origin.close();
      }
    });
  });

  describe("files API", () => {
    async function upload(content, fields = {}) {
      const form = new FormData();
      form.set("content", content.blob, content.name);
      for (const [k, v] of Object.entries(fields)) form.set(k, v);
      return fetch(`${base}/v1/files`, { method: "POST", headers: { Authorization: `Bearer ${TOKEN}` }, body: form });
    }

    test("upload, read, list, download, use as an input, delete", async () => {
      const bytes = await quadrants(20, 10);
      const res = await upload(
        { blob: new Blob([bytes], { type: "image/png" }), name: "part-name.png" },
        { filename: "photo.png", type: "image/png", metadata: JSON.stringify({ customer_reference_id: "123" }) },
      );
      assert.equal(res.status, 201);
      assert.equal(res.headers.get("content-type"), "application/json; charset=UTF-8");
      const file = await res.json();
      const md5 = createHash("md5").update(bytes).digest("hex");
      assert.deepEqual(Object.keys(file), ["id", "name", "content_type", "size", "etag", "checksums", "metadata", "created_at", "expires_at", "urls"]);
      assert.match(file.id, /^[A-Za-z0-9+/]+$/);
      assert.equal(file.name, "photo.png");
      assert.equal(file.content_type, "image/png");
      assert.equal(file.size, bytes.length);
      assert.equal(file.etag, md5);
      assert.deepEqual(file.checksums, { sha256: createHash("sha256").update(bytes).digest("hex"), md5 });
      assert.deepEqual(file.metadata, { customer_reference_id: "123" });
      assert.match(file.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.equal(Date.parse(file.expires_at) - Date.parse(file.created_at), 24 * 3600 * 1000);
      assert.equal(file.urls.get, `${base}/v1/files/${file.id}`);

      assert.deepEqual(await (await api(`/v1/files/${file.id}`)).json(), file);
      const list = await (await api("/v1/files")).json();
      assert.deepEqual(list, { next: null, previous: null, results: [file] });
      const got = await download(`${file.urls.get}/download`, { headers: { Authorization: `Bearer ${TOKEN}` } });
      assert.equal(got.res.status, 200);
      assert.equal(got.res.headers.get("content-type"), "image/png");
      assert.ok(got.bytes.equals(bytes));
      assert.equal((await fetch(`${file.urls.get}/download`)).status, 401);

      // Defaults: name and type from the part, metadata {}.
      const bare = await (await upload({ blob: new Blob(["hello"], { type: "text/plain" }), name: "note.txt" })).json();
      assert.deepEqual([bare.name, bare.content_type, bare.size, bare.metadata], ["note.txt", "text/plain", 5, {}]);

      // urls.get works as a model input; the emulator resolves it from its store.
      const upscale = await run(REAL_ESRGAN_VERSION, { image: file.urls.get, scale: 2 });
      assert.equal(upscale.body.status, "succeeded", upscale.body.error);
      const meta = await sharp((await download(upscale.body.output)).bytes).metadata();
      assert.deepEqual([meta.width, meta.height], [40, 20]);
      assert.equal(emulator.state.fetches.at(-1).via, "files");

      const del = await api(`/v1/files/${file.id}`, { method: "DELETE" });
      assert.equal(del.status, 204);
      assert.equal((await del.text()).length, 0);
      const gone = await api(`/v1/files/${file.id}`);
      assert.equal(gone.status, 404);
      assert.deepEqual(await gone.json(), { detail: "File not found" });
      const after = await run(REAL_ESRGAN_VERSION, { image: file.urls.get });
      assert.equal(after.body.status, "failed");
      assert.match(after.body.error, /file not found/);
    });

    test("uploads are bounded and need a content part", async () => {
      const small = await startEmulator({ maxFileBytes: 1000 });
      try {
        const form = new FormData();
        form.set("content", new Blob([Buffer.alloc(1500)]), "big.bin");
        const res = await fetch(`${small.url}/v1/files`, { method: "POST", headers: { Authorization: `Bearer ${TOKEN}` }, body: form });
        assert.equal(res.status, 413);
        assert.equal(res.headers.get("content-type"), "application/problem+json");
        assert.deepEqual(await res.json(), { detail: "Files must be less than 1000 bytes in size" });
        const huge = await fetch(`${small.url}/v1/files`, {
          method: "POST",
          headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "multipart/form-data; boundary=x" },
          body: Buffer.alloc(2 * 1024 * 1024),
        });
        assert.equal(huge.status, 413);
      } finally {
        await small.close();
      }
      const noContent = new FormData();
      noContent.set("filename", "x.png");
      const res = await fetch(`${base}/v1/files`, { method: "POST", headers: { Authorization: `Bearer ${TOKEN}` }, body: noContent });
      assert.equal(res.status, 400);
      assert.match((await res.json()).detail, /content/);
      const notMultipart = await api("/v1/files", { method: "POST", body: { content: "x" } });
      assert.equal(notMultipart.status, 400);
    });
  });

  describe("misbehaviour controls", () => {
    /** The URL of a small output file of a prediction for `prompt`. */
    async function output(prompt) {
      const { body } = await run(SDXL_VERSION, { prompt, width: 64, height: 64 });
      assert.equal(body.status, "succeeded");
      return body.output[0];
    }

    test("redirectTo answers a redirect to another host; internal-secret is recognizable and logged", async () => {
      const { otherHost, sameHost } = emulator.state.internalSecretUrls;
      assert.equal(otherHost, `http://localhost:${emulator.port}/_control/internal-secret`);
      await addRule({ when: { outputOf: "redirect me" }, then: { redirectTo: otherHost } });
      await addRule({ when: { outputOf: "temporary" }, then: { redirectTo: sameHost, redirectStatus: 307 }, times: 1 });
      const url = await output("redirect me");
      const res = await fetch(url, { redirect: "manual" });
      assert.equal(res.status, 302);
      assert.equal(res.headers.get("location"), otherHost);
      const plainUrl = await output("not redirected");
      assert.equal((await fetch(plainUrl, { redirect: "manual" })).status, 200, "outputOf scopes the rule");

      const secret = await fetch(sameHost);
      assert.equal(secret.headers.get("content-type"), "text/plain; charset=utf-8");
      assert.equal(await secret.text(), `${emulator.state.internalSecret}\n`);
      assert.match(emulator.state.internalSecret, /^INTERNAL-SECRET-[0-9a-f]{24}$/);
      assert.equal(emulator.state.listRequests("/_control/internal-secret").length, 1);

      const temp = await output("temporary");
      const first = await fetch(temp, { redirect: "manual" });
      assert.equal(first.status, 307);
      assert.equal(first.headers.get("location"), sameHost);
      assert.equal((await fetch(temp, { redirect: "manual" })).status, 200, "times: 1 used up");
    });

    test("redirectHops redirects N times on the same host, then serves (or goes on to redirectTo)", async () => {
      await addRule({ when: { outputOf: "hops" }, then: { redirectHops: 3 }, times: 1 });
      const url = await output("hops");
      let next = url;
      const locations = [];
      for (;;) {
        const res = await fetch(next, { redirect: "manual" });
        if (res.status !== 302) {
          assert.equal(res.status, 200);
          assert.equal(res.headers.get("content-type"), "image/png");
          break;
        }
        next = res.headers.get("location");
        locations.push(next);
        assert.ok(locations.length <= 3);
      }
      assert.equal(locations.length, 3);
      for (const location of locations) assert.ok(location.startsWith(`${url}?hop=`), location);
      assert.equal((await fetch(url)).redirected, false, "a chain counts once against times");

      await addRule({ when: { outputOf: "then away" }, then: { redirectHops: 2, redirectTo: emulator.state.internalSecretUrls.otherHost, redirectStatus: 308 } });
      const awayUrl = await output("then away");
      const away = await fetch(awayUrl);
      assert.ok(away.redirected);
      assert.match(await away.text(), /^INTERNAL-SECRET-/);
      const hops = emulator.state.listRequests(new URL(awayUrl).pathname);
      assert.deepEqual(hops.map((r) => Boolean(r.query.hop)), [false, true, true]);
    });

    test("hugeBytes streams N bytes: an image header then filler, with or without Content-Length", async () => {
      const size = 8 * 1024 * 1024 + 123;
      await addRule({ when: { outputOf: "huge" }, then: { hugeBytes: size, unsized: true } });
      await addRule({ when: { outputOf: "sized" }, then: { hugeBytes: size } });
      const unsized = await fetch(await output("huge"));
      assert.equal(unsized.status, 200);
      assert.equal(unsized.headers.get("content-length"), null);
      assert.equal(unsized.headers.get("transfer-encoding"), "chunked");
      let received = 0;
      let head = null;
      for await (const chunk of unsized.body) {
        head ??= Buffer.from(chunk.subarray(0, 12));
        received += chunk.length;
      }
      assert.equal(received, size);
      assert.deepEqual([...head.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

      const sized = await fetch(await output("sized"));
      assert.equal(Number(sized.headers.get("content-length")), size);
      const reader = sized.body.getReader();
      const { value } = await reader.read();
      assert.equal(Buffer.from(value.subarray(1, 4)).toString(), "PNG");
      await reader.cancel();
    });

    test("shortBody declares more than it sends and drops the connection", async () => {
      await addRule({ when: { outputOf: "short" }, then: { shortBody: true } });
      await addRule({ when: { outputOf: "huge short" }, then: { hugeBytes: 1_000_000, shortBody: 1000, unsized: true } });
      const res = await fetch(await output("short"));
      const declared = Number(res.headers.get("content-length"));
      assert.ok(declared > 1000);
      await assert.rejects(res.arrayBuffer());
      const chunked = await fetch(await output("huge short"));
      await assert.rejects(chunked.arrayBuffer());
    });

    test("replaceBody with unsized and contentType combine", async () => {
      await addRule({ when: { outputOf: "html" }, then: { replaceBody: "<html>x</html>", contentType: "text/html", unsized: true } });
      const res = await fetch(await output("html"));
      assert.equal(res.headers.get("content-type"), "text/html");
      assert.equal(res.headers.get("content-length"), null);
      assert.equal(await res.text(), "<html>x</html>");
    });

    test("echoHeaders answers an error whose detail carries every request header verbatim", async () => {
      await addRule({ when: { path: "/v1/models/black-forest-labs/flux-dev", method: "GET" }, then: { echoHeaders: true }, times: 1 });
      const res = await api("/v1/models/black-forest-labs/flux-dev", { headers: { "X-Trace-Id": "trace-42" } });
      assert.equal(res.status, 500);
      const body = await res.json();
      assert.equal(body.status, 500);
      assert.ok(body.detail.includes(`authorization: Bearer ${TOKEN}`) || body.detail.includes(`Authorization: Bearer ${TOKEN}`), body.detail);
      assert.match(body.detail, /^x-trace-id: trace-42$/im);
      await addRule({ when: { outputOf: "leak" }, then: { echoHeaders: true, httpStatus: 403 } });
      const leak = await fetch(await output("leak"), { headers: { Authorization: "Bearer r8_delivery" } });
      assert.equal(leak.status, 403);
      assert.match((await leak.json()).detail, /Bearer r8_delivery/);
    });

    test("retryAfter is sent verbatim, however large", async () => {
      await addRule({ when: { prompt: "slow down" }, then: { httpStatus: 429, retryAfter: "99999999999999999999" } });
      const { res, body } = await run("black-forest-labs/flux-schnell", { prompt: "slow down" });
      assert.equal(res.status, 429);
      assert.equal(res.headers.get("retry-after"), "99999999999999999999");
      assert.match(body.detail, /^Request was throttled/);
      await addRule({ when: { path: "/v1/account" }, then: { httpStatus: 503, retryAfter: "Wed, 21 Oct 2015 07:28:00 GMT" } });
      assert.equal((await api("/v1/account")).headers.get("retry-after"), "Wed, 21 Oct 2015 07:28:00 GMT");
    });

    test("holdOpen never answers a create; hang answers but never finishes", async () => {
      await addRule({ when: { prompt: "held" }, then: { holdOpen: true } });
      const started = Date.now();
      await assert.rejects(
        fetch(`${base}/v1/models/black-forest-labs/flux-schnell/predictions`, {
          method: "POST",
          headers: { Authorization: `Bearer ${TOKEN}` },
          body: JSON.stringify({ input: { prompt: "held" } }),
          signal: AbortSignal.timeout(250),
        }),
        (error) => error.name === "TimeoutError",
      );
      assert.ok(Date.now() - started >= 240);
      assert.equal(emulator.state.predictions.byId.size, 0, "no prediction was created");

      await addRule({ when: { prompt: "hung" }, then: { hang: true } });
      const { res, body } = await run("black-forest-labs/flux-schnell", { prompt: "hung" }, { wait: false });
      assert.equal(res.status, 202);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(emulator.state.getPrediction(body.id).status, "processing");
    });

    test("bad effects are refused", async () => {
      for (const then of [{ redirectTo: "/relative" }, { redirectStatus: 200 }, { hugeBytes: -1 }, { retryAfter: {} }, { shortBody: "yes" }]) {
        const res = await fetch(`${base}/_control/rules`, { method: "POST", body: JSON.stringify({ then }) });
        assert.equal(res.status, 400, JSON.stringify(then));
        assert.match((await res.json()).detail, /^then\.\w+ must be /);
      }
    });
  });

  describe("webhooks", () => {
    const SECRET = "whsec_dGVzdC1zZWNyZXQtZm9yLXRoZS1lbXVsYXRvcg==";

    function verifies({ headers, body }) {
      const expected = createHmac("sha256", Buffer.from(SECRET.slice(6), "base64"))
        .update(`${headers["webhook-id"]}.${headers["webhook-timestamp"]}.${body}`)
        .digest();
      return headers["webhook-signature"]
        .split(" ")
        .map((s) => Buffer.from(s.split(",")[1], "base64"))
        .some((s) => s.length === expected.length && timingSafeEqual(s, expected));
    }

    test("controlled deliveries: valid, forged, tampered, stale, replayed, duplicated, out of order", async () => {
      const received = [];
      const receiver = await serveOnce((req, res) => {
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => {
          received.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
          res.writeHead(204).end();
        });
      });
      try {
        assert.deepEqual(await (await api("/v1/webhooks/default/secret")).json(), { key: SECRET });
        const { body: prediction } = await run(SDXL_VERSION, { prompt: "hooked", width: 64, height: 64 });
        const deliver = async (mode, extra = {}) => {
          received.length = 0;
          const res = await fetch(`${base}/_control/webhooks/deliver`, {
            method: "POST",
            body: JSON.stringify({ url: `${receiver.url}/hook`, prediction: prediction.id, mode, ...extra }),
          });
          assert.equal(res.status, 200, mode);
          const { deliveries } = await res.json();
          assert.equal(deliveries.length, received.length, mode);
          assert.ok(deliveries.every((d) => d.status === 204 && d.control === mode));
          return [...received];
        };
        const now = Date.now() / 1000;

        const [valid] = await deliver("valid");
        assert.ok(verifies(valid));
        assert.equal(JSON.parse(valid.body).id, prediction.id);
        assert.equal(JSON.parse(valid.body).status, "succeeded");

        const [forged] = await deliver("forged");
        assert.ok(!verifies(forged));
        const [tampered] = await deliver("tampered");
        assert.ok(!verifies(tampered));
        assert.deepEqual(JSON.parse(tampered.body).output, ["https://attacker.invalid/forged.png"]);

        const [stale] = await deliver("stale");
        assert.ok(verifies(stale));
        assert.ok(Math.abs(now - Number(stale.headers["webhook-timestamp"]) - 600) < 5);
        const [older] = await deliver("stale", { ageSeconds: 3600 });
        assert.ok(Math.abs(now - Number(older.headers["webhook-timestamp"]) - 3600) < 5);

        const replay = await deliver("replay");
        assert.equal(replay.length, 2);
        assert.deepEqual(replay[0].headers["webhook-id"], replay[1].headers["webhook-id"]);
        assert.equal(replay[0].headers["webhook-signature"], replay[1].headers["webhook-signature"]);
        assert.equal(replay[0].body, replay[1].body);
        assert.ok(verifies(replay[1]));
        const [again] = await deliver("replay", { messageId: valid.headers["webhook-id"] });
        assert.deepEqual([again.headers["webhook-id"], again.headers["webhook-timestamp"], again.body], [
          valid.headers["webhook-id"], valid.headers["webhook-timestamp"], valid.body,
        ]);

        const duplicate = await deliver("duplicate");
        assert.notEqual(duplicate[0].headers["webhook-id"], duplicate[1].headers["webhook-id"]);
        assert.equal(duplicate[0].body, duplicate[1].body);
        assert.ok(duplicate.every(verifies));

        const order = await deliver("out-of-order");
        assert.deepEqual(order.map((d) => JSON.parse(d.body).status), ["succeeded", "processing"]);
        assert.equal(JSON.parse(order[1].body).output, null);
        assert.ok(order.every(verifies));

        const log = await (await fetch(`${base}/_control/webhooks`)).json();
        assert.equal(log.length, 12);
        const bad = await fetch(`${base}/_control/webhooks/deliver`, { method: "POST", body: JSON.stringify({ url: receiver.url, prediction: "nope" }) });
        assert.equal(bad.status, 404);
        const badMode = await fetch(`${base}/_control/webhooks/deliver`, {
          method: "POST",
          body: JSON.stringify({ url: receiver.url, prediction: prediction.id, mode: "sideways" }),
        });
        assert.equal(badMode.status, 400);
      } finally {
        await receiver.close();
      }
    });

    test("the CLI takes --webhook-secret and --strict-inputs", async () => {
      const script = fileURLToPath(new URL("../emulator/server.mjs", import.meta.url));
      const child = spawn(process.execPath, [script, "--port", "0", "--webhook-secret", "whsec_Y2xp", "--strict-inputs"], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      try {
        const line = await new Promise((resolve, reject) => {
          let out = "";
          child.stdout.on("data", (d) => {
            out += d;
            if (out.includes("\n")) resolve(out);
          });
          child.once("exit", (code) => reject(new Error(`exited ${code}`)));
        });
        const cliUrl = /listening on (\S+)/.exec(line)[1];
        const headers = { Authorization: `Bearer ${TOKEN}` };
        assert.deepEqual(await (await fetch(`${cliUrl}/v1/webhooks/default/secret`, { headers })).json(), { key: "whsec_Y2xp" });
        const strict = await fetch(`${cliUrl}/v1/models/black-forest-labs/flux-schnell/predictions`, {
          method: "POST",
          headers,
          body: JSON.stringify({ input: { prompt: "x", extra: true } }),
        });
        assert.equal(strict.status, 422);
      } finally {
        child.kill("SIGTERM");
        await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once("exit", resolve)));
      }
    });
  });
});
