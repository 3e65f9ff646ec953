// Every model the registry offers: chosen per request, each input checked
// against that model's own published schema before anything is sent,
// every output shape kept, and images going in as well as out.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import sharp from "sharp";
import { addRule, AUTH_TOKEN, createsFor, generate, received, stored, uniquePrompt, worker } from "./harness.mjs";

const T = { timeout: 60_000 };

/** A small PNG as a data: URI: left half red, right half blue (or a mask: left black, right white). */
async function pngDataUri(width = 64, height = 64, mask = false) {
  const half = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      const left = x < width / 2;
      const rgb = mask ? (left ? [0, 0, 0] : [255, 255, 255]) : left ? [220, 20, 20] : [20, 20, 220];
      half.set(rgb, i);
    }
  }
  const png = await sharp(half, { raw: { width, height, channels: 3 } }).png().toBuffer();
  return `data:image/png;base64,${png.toString("base64")}`;
}

/** A valid input per short name of wrangler.toml's registry. */
async function inputs() {
  const image = await pngDataUri();
  const mask = await pngDataUri(64, 64, true);
  return {
    schnell: { prompt: uniquePrompt("schnell"), megapixels: "0.25" },
    dev: { prompt: uniquePrompt("dev"), num_inference_steps: 4 },
    pro: { prompt: uniquePrompt("pro") },
    sdxl: { prompt: uniquePrompt("sdxl"), width: 256, height: 256 },
    inpaint: { prompt: uniquePrompt("inpaint"), image, mask },
    upscale: { image, scale: 2 },
    kontext: { prompt: uniquePrompt("kontext"), input_image: image },
    fill: { prompt: uniquePrompt("fill"), image, mask },
  };
}

async function imageSize(url) {
  const res = await fetch(url);
  assert.equal(res.status, 200, `${url}: ${res.status}`);
  const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
  return { width: meta.width, height: meta.height };
}

describe("GET /models", () => {
  test("lists every configured model with its inputs read from its schema", T, async () => {
    const w = await worker();
    const res = await w.fetch("/models");
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.default, "schnell");
    const names = body.models.map((m) => m.name);
    assert.deepEqual(names, ["schnell", "dev", "pro", "sdxl", "inpaint", "upscale", "kontext", "fill"]);
    const schnell = body.models.find((m) => m.name === "schnell");
    assert.equal(schnell.model, "black-forest-labs/flux-schnell");
    const steps = schnell.inputs.find((f) => f.name === "num_inference_steps");
    assert.deepEqual([steps.type, steps.minimum, steps.maximum], ["integer", 1, 4]);
    assert.deepEqual(schnell.inputs.find((f) => f.name === "output_format").allowed, ["webp", "jpg", "png"]);
    const upscale = body.models.find((m) => m.name === "upscale");
    assert.equal(upscale.version, "f121d640bd286e1fdc67f9799164c1d5be36ff74576ee11c803ae5b665dd46aa");
    assert.deepEqual(upscale.image_inputs, ["image"]);
    assert.deepEqual(body.models.find((m) => m.name === "inpaint").image_inputs.sort(), ["image", "mask"]);
  });
});

describe("each model through /generate", () => {
  test("every model generates and its output is stored", T, async () => {
    const w = await worker();
    for (const [model, input] of Object.entries(await inputs())) {
      const res = await generate(w, { model, input });
      const text = await res.text();
      assert.equal(res.status, 200, `${model}: ${text.slice(0, 300)}`);
      const body = JSON.parse(text);
      assert.ok(body.imageUrl.startsWith(`${w.url.origin}/image/`), model);
      await stored(w, body.id);
    }
  });

  test("a field outside a model's schema is a 400 naming it, for every model, nothing sent", T, async () => {
    const w = await worker();
    for (const [model, input] of Object.entries(await inputs())) {
      const prompt = input.prompt ?? uniquePrompt(`${model} extra`);
      const res = await generate(w, { model, input: { ...input, prompt: input.prompt, not_in_schema: 1 } });
      const body = await res.json();
      assert.equal(res.status, 400, `${model}: ${JSON.stringify(body)}`);
      assert.equal(body.error, "Invalid input");
      assert.match(body.details, /not_in_schema/, model);
      assert.equal((await createsFor(prompt)).length, 0, model);
    }
  });

  test("a range or enum violation names the field and what is allowed", async () => {
    const w = await worker();
    let res = await generate(w, { model: "sdxl", input: { prompt: uniquePrompt("sdxl range"), num_outputs: 9 } });
    assert.equal(res.status, 400);
    assert.match((await res.json()).details, /num_outputs/);
    res = await generate(w, { model: "pro", input: { prompt: uniquePrompt("pro enum"), output_format: "gif" } });
    assert.equal(res.status, 400);
    assert.match((await res.json()).details, /output_format/);
  });

  test("GET takes model too; unknown models are a 400 listing the available ones", async () => {
    const w = await worker();
    const prompt = uniquePrompt("get dev");
    const res = await w.fetch(`/generate?model=dev&prompt=${encodeURIComponent(prompt)}&num_inference_steps=4`, {
      headers: { authorization: `Bearer ${AUTH_TOKEN}` },
    });
    assert.equal(res.status, 302);
    const [create] = await createsFor(prompt);
    assert.equal(create.path, "/v1/models/black-forest-labs/flux-dev/predictions");
    const unknown = await generate(w, { model: "nope", prompt: "x" });
    assert.equal(unknown.status, 400);
    assert.match((await unknown.json()).details, /schnell, dev, pro/);
  });

  test("a pinned model is created with its version; a service-key caller cannot run unlisted models", async () => {
    const w = await worker();
    const prompt = uniquePrompt("sdxl pinned");
    const res = await generate(w, { model: "sdxl", prompt, width: 256, height: 256 });
    assert.equal(res.status, 200);
    const [create] = await createsFor(prompt);
    assert.equal(create.path, "/v1/predictions");
    assert.equal(create.body.version, "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc");
    const other = await generate(w, { model: "someone/else", prompt: uniquePrompt("unlisted") });
    assert.equal(other.status, 403);
  });

  test("single-URL outputs (flux-1.1-pro) are kept as one image", T, async () => {
    const w = await worker();
    const res = await generate(w, { model: "pro", prompt: uniquePrompt("pro single"), output_format: "png" });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.images, undefined);
    assert.equal((await stored(w, body.id)).content_type, "image/png");
  });
});

describe("images in", () => {
  test("an upscale of an image this service generated: the input's size times the scale", T, async () => {
    const w = await worker();
    const first = await (await generate(w, { prompt: uniquePrompt("to upscale"), megapixels: "0.25", output_format: "png" })).json();
    await stored(w, first.id);
    const before = await imageSize(first.imageUrl);
    const res = await generate(w, { model: "upscale", input: { image: first.imageUrl, scale: 2 } });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    await stored(w, body.id);
    const after = await imageSize(body.imageUrl);
    assert.deepEqual(after, { width: before.width * 2, height: before.height * 2 });
    const fetched = await received(`/image/${first.id}`);
    assert.equal(fetched.length, 0, "the emulator's own request log holds only its API");
  });

  test("an image handed out a moment ago, its copy still under way, is taken at once; an unknown one is a 400", T, async () => {
    const w = await worker();
    const prompt = uniquePrompt("upscaled before stored");
    // The copy's fetch of the output is held back: the answer comes first.
    await addRule({ when: { outputOf: prompt }, then: { latencyMs: 1500 }, times: 1 });
    const first = await (await generate(w, { prompt, megapixels: "0.25", output_format: "png" })).json();
    const kv = await w.mf.getKVNamespace("IMAGE_META");
    assert.equal(JSON.parse(await kv.get(`image:${first.id}`)).status, "pending", "not stored yet");
    const res = await generate(w, { model: "upscale", input: { image: first.imageUrl, scale: 2 } });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    await stored(w, body.id);
    const [before, after] = [await imageSize(first.imageUrl), await imageSize(body.imageUrl)];
    assert.deepEqual(after, { width: before.width * 2, height: before.height * 2 });

    const unknown = "01m80bdpxaxpca2ash7ta17sw7.png";
    const refused = await generate(w, { model: "upscale", input: { image: `${w.url.origin}/image/${unknown}`, scale: 2 } });
    assert.equal(refused.status, 400);
    assert.match((await refused.json()).details, new RegExp(`image ${unknown.replace(".", "\\.")} is not stored here`));
  });
});

describe("multipart", () => {
  test("img2img with a file uploaded by multipart: the emulator fetched the upload, the output derives from it", T, async () => {
    const w = await worker();
    const png = Buffer.from((await pngDataUri(128, 128)).split(",")[1], "base64");
    const form = new FormData();
    const prompt = uniquePrompt("img2img multipart");
    form.set("model", "dev");
    form.set("prompt", prompt);
    form.set("prompt_strength", "0.3");
    form.set("num_inference_steps", "4");
    form.set("image", new Blob([png], { type: "image/png" }), "start.png");
    const res = await w.fetch("/generate", { method: "POST", headers: { authorization: `Bearer ${AUTH_TOKEN}` }, body: form });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    const [create] = await createsFor(prompt);
    assert.match(create.body.input.image, /\/upload\/[0-9a-f]{32}\.png$/);
    assert.equal(create.body.input.prompt_strength, 0.3, "typed by the schema");
    const fetches = await (await fetch(`${w.emulator.url}/_control/fetches?prediction=${body.predictionId}`)).json();
    assert.ok(fetches.some((f) => f.url === create.body.input.image && f.status === 200), JSON.stringify(fetches));
    await stored(w, body.id);
    // The left half of the input is red: with a low prompt strength the output keeps it.
    const out = await sharp(Buffer.from(await (await fetch(body.imageUrl)).arrayBuffer())).resize(2, 1, { fit: "fill" }).raw().toBuffer();
    assert.ok(out[0] > out[2], `left half stays reddish: ${[...out]}`);
  });
});

describe("each model through /replicate/v1", () => {
  test("every model runs through the Replicate-compatible API with outputs kept", T, async () => {
    const w = await worker();
    const versions = {
      sdxl: "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc",
      inpaint: "95b7223104132402a9ae91cc677285bc5eb997834bd2349fa486f53910fd68b3",
      upscale: "f121d640bd286e1fdc67f9799164c1d5be36ff74576ee11c803ae5b665dd46aa",
    };
    const official = { schnell: "flux-schnell", dev: "flux-dev", pro: "flux-1.1-pro", kontext: "flux-kontext-pro", fill: "flux-fill-pro" };
    for (const [name, input] of Object.entries(await inputs())) {
      const path = versions[name] ? "/replicate/v1/predictions" : `/replicate/v1/models/black-forest-labs/${official[name]}/predictions`;
      const body = versions[name] ? { version: versions[name], input } : { input };
      const res = await w.fetch(path, {
        method: "POST",
        headers: { authorization: `Bearer ${AUTH_TOKEN}`, "content-type": "application/json", prefer: "wait" },
        body: JSON.stringify(body),
      });
      const p = await res.json();
      assert.equal(p.status, "succeeded", `${name}: ${JSON.stringify(p).slice(0, 300)}`);
      for (const url of [p.output].flat()) {
        assert.ok(url.startsWith(`${w.url.origin}/image/`), `${name}: ${url}`);
        await stored(w, url.split("/").pop());
      }
    }
  });
});
