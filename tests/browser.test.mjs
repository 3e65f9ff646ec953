// The playground (public/) in Chromium, against the worker and the emulator.
// Screenshots of each state land in tests/artifacts/ (gitignored).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import { AUTH_TOKEN, USER_REPLICATE_TOKEN, collectPageErrors, launchBrowser, screenshot, startSite } from "./browser-harness.mjs";
import { addRule as addEmulatorRule, uniquePrompt } from "./harness.mjs";

const T = { timeout: 180_000 };
const PHONE = { width: 375, height: 812 };

/** Types a credential into the Access box, as a person would. */
async function setKey(page, value, kind = "key") {
  const access = page.locator("#access");
  if (!(await access.evaluate((d) => d.open))) await access.locator("summary").click();
  await page.check(`input[name="credential-kind"][value="${kind}"]`);
  await page.fill("#credential", value);
  await page.press("#credential", "Tab");
}

describe("playground", () => {
  let site;
  let browser;
  /** The image test (a) generated, for (b). */
  let generated = null;

  before(async () => {
    site = await startSite();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await site?.close();
  });

  /** A fresh page (own storage) on the playground, its errors collected. */
  async function open(options = {}) {
    const page = await browser.page(options);
    const errors = collectPageErrors(page);
    await page.goto(site.url, { waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => document.getElementById("model-help").textContent !== "Loading models…");
    return { page, errors };
  }

  async function waitForImage(page) {
    await page.waitForFunction(
      () => [...document.querySelectorAll("#output img")].some((i) => i.complete && i.naturalWidth > 0)
        || !document.getElementById("error").hidden,
      null,
      { timeout: 60_000 },
    );
    const error = page.locator("#error");
    if (await error.isVisible()) assert.fail(`the page shows an error: ${await error.innerText()}`);
  }

  /** Records the API calls the page makes and the progress steps it shows. */
  async function record(page) {
    const calls = [];
    page.on("response", (res) => {
      const url = new URL(res.url());
      if (url.origin === new URL(site.url).origin && !/\.(css|js)$|^\/$/.test(url.pathname)) {
        calls.push({ method: res.request().method(), path: url.pathname, query: url.search, status: res.status(), headers: res.request().headers(), at: Date.now() });
      }
    });
    await page.evaluate(() => {
      window.__steps = [];
      const list = document.getElementById("progress");
      new MutationObserver(() => {
        const step = list.dataset.step;
        if (step && window.__steps.at(-1) !== step) window.__steps.push(step);
      }).observe(list, { attributes: true, attributeFilter: ["data-step"] });
    });
    return { calls, steps: () => page.evaluate(() => window.__steps) };
  }

  /** Adds a rule to this site's emulator (see emulator/rules.mjs). */
  const addRule = (rule) => addEmulatorRule(rule, site.emulator);

  test("serves the page at / with its stylesheet and script, working offline", T, async () => {
    const res = await site.fetch("/");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /^text\/html/);
    assert.match(res.headers.get("content-security-policy") ?? "", /default-src 'self'/, "public/_headers applies");
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    const html = await res.text();
    assert.match(html, /<title>fluxgate playground<\/title>/);
    const rules = await site.fetch("/_headers");
    assert.equal(rules.status, 404, "the _headers file itself is not served");
    await rules.body?.cancel();
    assert.doesNotMatch(html, /https?:\/\/(?!www\.w3\.org)/, "no external resources");
    for (const [path, type] of [["/app.css", /^text\/css/], ["/app.js", /javascript/]]) {
      const asset = await site.fetch(path);
      assert.equal(asset.status, 200, path);
      assert.match(asset.headers.get("content-type"), type, path);
    }
    const api = await site.fetch("/health");
    assert.match(api.headers.get("content-type"), /json/, "API routes still reach the worker");

    const { page, errors } = await open();
    const external = [];
    page.on("request", (r) => { if (!r.url().startsWith(site.url) && !r.url().startsWith("data:") && !r.url().startsWith("blob:")) external.push(r.url()); });
    await page.reload();
    await page.waitForLoadState("networkidle");
    assert.deepEqual(external, []);
    assert.equal(await page.title(), "fluxgate playground");
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test("the model picker is filled from GET /models and shows the model's inputs as labelled controls", T, async () => {
    const { page, errors } = await open();
    const options = await page.locator("#model option").evaluateAll((os) => os.map((o) => o.value));
    assert.ok(options.includes("schnell"), `no schnell in the model picker; the page says: ${await page.locator("#model-help").innerText()}`);
    assert.equal(await page.inputValue("#model"), "schnell");
    await page.click("#options summary");
    const steps = page.locator("#in-num_outputs");
    assert.equal(await steps.getAttribute("type"), "number");
    assert.equal(await steps.getAttribute("min"), "1");
    assert.equal(await steps.getAttribute("max"), "4");
    assert.equal(await page.locator("#in-aspect_ratio").evaluate((s) => s.tagName), "SELECT");
    assert.equal(await page.locator("#in-aspect_ratio option:checked").innerText(), "1:1");
    assert.equal(await page.locator("#in-go_fast").isChecked(), true);
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll("input, select, textarea")]
        .filter((c) => c.type !== "hidden" && c.labels.length === 0 && !c.getAttribute("aria-label"))
        .map((c) => c.id || c.name),
    );
    assert.deepEqual(unlabelled, [], "every control has a label");
    await screenshot(page, "models-inputs");
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test("(a) generating from the page shows the image", T, async () => {
    const { page, errors } = await open();
    await setKey(page, AUTH_TOKEN);
    const { calls, steps } = await record(page);
    const prompt = uniquePrompt("a lighthouse on a cliff at dusk");
    await page.fill("#prompt", prompt);
    await page.click("#generate");
    await waitForImage(page);
    await page.waitForSelector('#progress li[data-step="done"][data-state="done"]');
    const img = page.locator("#output img").first();
    assert.equal(await img.getAttribute("alt"), prompt);
    const imageUrl = await img.getAttribute("data-image-url");
    assert.match(imageUrl, /\/image\/[^/]+$/);
    generated = { prompt, imageUrl, id: imageUrl.split("/").pop(), calls, steps: await steps() };
    await page.waitForLoadState("networkidle");
    await screenshot(page, "a-generated");
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test("Generate shows the steps it goes through, in order, ending in done", T, async () => {
    assert.ok(generated, "test (a) generated an image");
    const post = generated.calls.find((c) => c.method === "POST" && c.path === "/generate");
    assert.ok(post, "the page POSTed /generate");
    assert.equal(post.headers.authorization, `Bearer ${AUTH_TOKEN}`);
    const order = ["starting", "processing", "storing", "done"];
    const seen = generated.steps.filter((s) => order.includes(s));
    assert.deepEqual(seen, [...seen].sort((a, b) => order.indexOf(a) - order.indexOf(b)), `steps in order: ${seen}`);
    assert.ok(seen.includes("done"), `step done shown (${seen})`);
  });

  test("a slow generation shows its progress (status, seconds), polling the status URL per Retry-After, then the image", T, async () => {
    const { page, errors } = await open();
    await setKey(page, AUTH_TOKEN);
    const { calls, steps } = await record(page);
    const prompt = uniquePrompt("a slow lighthouse");
    await addRule({ when: { prompt }, then: { predictMs: 4000 } });
    await page.fill("#prompt", prompt);
    await page.click("#generate");

    await page.waitForSelector('#progress li[data-step="processing"][data-state="active"]');
    assert.match(await page.locator("#status").innerText(), /Processing/);
    assert.equal(await page.locator("#output .shot .waiting").count(), 1, "a tile waits for the announced image");
    assert.equal(await page.locator("#cancel").isVisible(), true, "Cancel while it runs");
    const clock = page.locator("#elapsed");
    assert.match(await clock.innerText(), /^\d+ s$/);
    const first = await clock.innerText();
    await page.waitForFunction((was) => document.getElementById("elapsed").textContent !== was, first);
    await screenshot(page, "progress");

    await waitForImage(page);
    await page.waitForSelector('#progress li[data-step="done"][data-state="done"]');
    assert.match(await page.locator("#status").innerText(), /^Done in \d+ s\.$/);
    assert.equal(await clock.isHidden(), true, "the clock stops");
    assert.equal(await page.locator("#cancel").isHidden(), true);
    const seen = await steps();
    assert.ok(seen.indexOf("starting") < seen.indexOf("processing") && seen.indexOf("processing") < seen.indexOf("done"), `steps: ${seen}`);

    const post = calls.find((c) => c.method === "POST" && c.path === "/generate");
    assert.equal(post.status, 202);
    assert.equal(post.headers.prefer, "respond-async");
    const polls = calls.filter((c) => c.method === "GET" && /^\/generate\/[a-z0-9]+$/.test(c.path));
    assert.ok(polls.length >= 2, `the status URL was read ${polls.length} times`);
    const gaps = polls.slice(1).map((c, i) => c.at - polls[i].at);
    assert.ok(gaps.every((g) => g >= 900), `reads honour Retry-After: 1 (gaps ${gaps} ms)`);
    await page.waitForLoadState("networkidle");
    await screenshot(page, "progress-done");
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test("Cancel sends DELETE to the status URL and shows the generation canceled (phone width)", T, async () => {
    const { page, errors } = await open({ viewport: PHONE });
    await setKey(page, AUTH_TOKEN);
    const prompt = uniquePrompt("a generation to cancel");
    await addRule({ when: { prompt }, then: { predictMs: 20000 } });
    await page.fill("#prompt", prompt);
    await page.click("#generate");
    await page.waitForSelector("#output .shot[data-image-id]");
    const id = await page.locator("#output .shot").first().getAttribute("data-image-id");
    await page.waitForSelector('#progress li[data-state="active"]');
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= PHONE.width, `no sideways scrolling while it runs (content is ${width} px wide)`);
    await page.waitForFunction(() => /^[1-9]\d* s$/.test(document.getElementById("elapsed").textContent));
    await page.evaluate(() => document.querySelector(".result").scrollIntoView({ block: "start", behavior: "instant" }));
    await screenshot(page, "progress-phone", { fullPage: false });

    const deleted = page.waitForResponse((r) => r.request().method() === "DELETE" && /^\/generate\/[a-z0-9]+$/.test(new URL(r.url()).pathname));
    await page.click("#cancel");
    const answer = await deleted;
    assert.equal(answer.status(), 200);
    assert.equal((await answer.json()).status, "canceled");
    await page.waitForFunction(() => /^Canceled after \d+ s\.$/.test(document.getElementById("status").textContent));
    assert.equal(await page.locator('#progress li[data-state="failed"]').count(), 1);
    assert.equal(await page.locator("#error").isHidden(), true, "canceled here: not shown as an error");
    assert.match(await page.locator("#output").innerText(), /canceled/);
    assert.equal(await page.locator("#cancel").isHidden(), true);
    assert.equal(await page.locator("#generate").isEnabled(), true);
    const image = await site.fetch(`/image/${id}`);
    assert.equal(image.status, 404, "the announced image is withdrawn");
    await screenshot(page, "canceled", { fullPage: false });
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test("a generation that fails shows Replicate's error", T, async () => {
    const { page, errors } = await open();
    await setKey(page, AUTH_TOKEN);
    const prompt = uniquePrompt("a failing generation");
    await addRule({ when: { prompt }, then: { fail: "NSFW content detected" } });
    await page.fill("#prompt", prompt);
    await page.click("#generate");
    const box = page.locator("#error");
    await box.waitFor({ state: "visible" });
    const text = await box.innerText();
    assert.match(text, /Generation failed/);
    assert.match(text, /NSFW content detected/);
    assert.match(await page.locator("#status").innerText(), /^Failed after \d+ s\.$/);
    assert.equal(await page.locator('#progress li[data-state="failed"]').count(), 1);
    await screenshot(page, "failed");
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test("an image answered 503 (not ready yet) is fetched again after Retry-After", T, async () => {
    const { page } = await open();
    await setKey(page, AUTH_TOKEN);
    const hits = [];
    await page.route("**/image/**", async (route) => {
      hits.push(Date.now());
      if (hits.length <= 2) {
        await route.fulfill({ status: 503, headers: { "Retry-After": "1", "Content-Type": "application/json" }, body: JSON.stringify({ error: "Image not ready yet" }) });
      } else {
        await route.continue();
      }
    });
    await page.fill("#prompt", uniquePrompt("retry after"));
    await page.click("#generate");
    await waitForImage(page);
    assert.ok(hits.length >= 3, `image fetched ${hits.length} times: the page tried again after the 503s`);
    await page.context().close();
  });

  test("(b) the new image is in the gallery, newest first, and is deleted after a confirmation", T, async () => {
    assert.ok(generated, "test (a) generated an image");
    const { page, errors } = await open();
    await setKey(page, AUTH_TOKEN);
    const card = page.locator(`#gallery li[data-id="${generated.id}"]`);
    await card.waitFor({ timeout: 15_000 }).catch(async () => {
      const shown = await page.locator("#gallery-error").innerText().catch(() => "");
      assert.fail(`the image is not in the gallery${shown ? `; the page says: ${shown}` : ""}`);
    });
    const times = await page.locator("#gallery li time").evaluateAll((ts) => ts.map((t) => Date.parse(t.getAttribute("datetime"))));
    assert.ok(times.length > 0 && times.every((t) => Number.isFinite(t)), "each card says when");
    assert.deepEqual(times, [...times].sort((a, b) => b - a), "newest first");
    assert.equal(await card.locator(".card-prompt").innerText(), generated.prompt);
    await page.waitForFunction((id) => {
      const img = document.querySelector(`#gallery li[data-id="${id}"] img`);
      return img && img.complete && img.naturalWidth > 0;
    }, generated.id);
    await screenshot(page, "b-gallery");

    await card.getByRole("button", { name: /^Delete image/ }).click();
    const dialog = page.locator("#confirm-delete");
    await dialog.waitFor({ state: "visible" });
    await screenshot(page, "b-confirm-delete", { fullPage: false });
    await dialog.getByRole("button", { name: "Delete" }).click();
    await card.waitFor({ state: "detached" });
    assert.match(await page.locator("#gallery-status").innerText(), /deleted/i);
    const gone = await site.fetch(`/image/${generated.id}`);
    assert.equal(gone.status, 404);
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test("the gallery loads more pages with the cursor", T, async () => {
    const { page } = await open();
    const asked = [];
    const image = (i) => ({
      id: `01m7z4g69m02ftsb7pe5frq${String(i).padStart(3, "0")}.webp`,
      url: `data:image/svg+xml,${encodeURIComponent(`<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8" fill="hsl(${i * 27} 60% 55%)"/></svg>`)}`,
      prompt: `picture ${i}`, model: "black-forest-labs/flux-schnell", created_at: new Date(Date.UTC(2026, 6, 30, 12, 60 - i)).toISOString(),
      content_type: "image/webp", size: 40_000 + i, status: "stored",
    });
    await page.route("**/images?*", async (route) => {
      const url = new URL(route.request().url());
      asked.push(url.searchParams.get("cursor"));
      const first = !url.searchParams.get("cursor");
      const images = first ? Array.from({ length: 12 }, (_, i) => image(i)) : [image(12)];
      await route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify({ images, cursor: first ? "page-2" : null }) });
    });
    await setKey(page, AUTH_TOKEN);
    await page.waitForFunction(() => document.querySelectorAll("#gallery li").length === 12);
    const more = page.getByRole("button", { name: "Load more" });
    await more.click();
    await page.waitForFunction(() => document.querySelectorAll("#gallery li").length === 13);
    assert.ok(asked.includes("page-2"), `cursors asked: ${asked}`);
    assert.equal(await more.isHidden(), true, "no more pages");
    await page.context().close();
  });

  test("(c) an invalid input is shown as the API's error and details", T, async () => {
    const { page, errors } = await open();
    await setKey(page, AUTH_TOKEN);
    await page.fill("#prompt", uniquePrompt("too many"));
    if ((await page.locator("#in-num_outputs").count()) === 0) {
      assert.fail(`no num_outputs control; the page says: ${await page.locator("#model-help").innerText()}`);
    }
    await page.click("#options summary");
    await page.fill("#in-num_outputs", "9");
    await page.click("#generate");
    const box = page.locator("#error");
    await box.waitFor({ state: "visible", timeout: 30_000 });
    const text = await box.innerText();
    assert.match(text, /400/);
    assert.match(text, /num_outputs/);
    assert.equal(await page.locator('#progress li[data-state="failed"]').count(), 1);
    await screenshot(page, "c-invalid-input");
    await page.setViewportSize(PHONE);
    await screenshot(page, "c-invalid-input-phone");
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test("a refused key is shown as the API's 401", T, async () => {
    const { page } = await open();
    await setKey(page, "fg_wrongwrong_00000000000000000000000000000000");
    await page.fill("#prompt", uniquePrompt("refused"));
    await page.click("#generate");
    const box = page.locator("#error");
    await box.waitFor({ state: "visible", timeout: 30_000 });
    const text = await box.innerText();
    assert.match(text, /Unauthorized/);
    assert.match(text, /401/);
    assert.match(text, /Check the key/);
    await screenshot(page, "c-unauthorized");
    await page.context().close();
  });

  test("one's own Replicate token is kept in the browser and sent as X-Replicate-Token", T, async () => {
    const { page } = await open();
    await setKey(page, USER_REPLICATE_TOKEN, "replicate");
    const stored = await page.evaluate(() => JSON.parse(localStorage.getItem("fluxgate.credential")));
    assert.deepEqual(stored, { kind: "replicate", value: USER_REPLICATE_TOKEN });
    assert.equal(await page.locator("#credential-label").innerText(), "Replicate token");
    const sent = page.waitForRequest((r) => r.method() === "POST" && new URL(r.url()).pathname === "/generate");
    await page.fill("#prompt", uniquePrompt("own token"));
    await page.click("#generate");
    const headers = (await sent).headers();
    assert.equal(headers["x-replicate-token"], USER_REPLICATE_TOKEN);
    assert.equal(headers.authorization, undefined);
    await waitForImage(page);
    await page.reload();
    assert.equal(await page.inputValue("#credential"), USER_REPLICATE_TOKEN, "remembered across reloads");
    assert.equal(await page.locator('input[name="credential-kind"][value="replicate"]').isChecked(), true);
    await page.context().close();
  });

  test("usable at a phone's width (375 px), in the dark", T, async () => {
    const { page, errors } = await open({ viewport: PHONE, colorScheme: "dark" });
    await setKey(page, AUTH_TOKEN);
    await page.fill("#prompt", uniquePrompt("a red fox in snow"));
    await page.click("#generate");
    await waitForImage(page);
    await page.waitForLoadState("networkidle");
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= PHONE.width, `no sideways scrolling (content is ${width} px wide)`);
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = background.match(/\d+/g).map(Number);
    assert.ok(r + g + b < 120, `dark background (${background})`);
    await screenshot(page, "phone-dark-generated");
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test("light at desktop width, before anything is generated", T, async () => {
    const { page, errors } = await open({ colorScheme: "light" });
    await page.waitForLoadState("networkidle");
    await screenshot(page, "empty-light");
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = background.match(/\d+/g).map(Number);
    assert.ok(r + g + b > 600, `light background (${background})`);
    assert.deepEqual(errors, []);
    await page.context().close();
  });
});

describe("playground with an image model", () => {
  let site;
  let browser;

  before(async () => {
    site = await startSite({
      bindings: { MODELS: "schnell = black-forest-labs/flux-schnell\nkontext = black-forest-labs/flux-kontext-pro", DEFAULT_MODEL: "schnell" },
    });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await site?.close();
  });

  test("an image input is uploaded with POST /uploads and sent to /generate as its URL", T, async () => {
    const page = await browser.page();
    await page.goto(site.url, { waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => document.getElementById("model-help").textContent !== "Loading models…");
    const options = await page.locator("#model option").evaluateAll((os) => os.map((o) => o.value));
    assert.ok(options.includes("kontext"), `no kontext in the model picker; the page says: ${await page.locator("#model-help").innerText()}`);
    await setKey(page, AUTH_TOKEN);
    await page.selectOption("#model", "kontext");
    await page.click("#options summary");
    const file = page.locator('#inputs input[type="file"]').first();
    const field = await file.getAttribute("name");
    const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: "#3366cc" } }).png().toBuffer();
    await file.setInputFiles({ name: "input.png", mimeType: "image/png", buffer: png });
    const bodies = [];
    page.on("request", (r) => {
      if (r.method() === "POST" && new URL(r.url()).pathname === "/generate") bodies.push(r.postDataJSON());
    });
    const uploaded = page.waitForResponse((r) => r.request().method() === "POST" && new URL(r.url()).pathname === "/uploads");
    await page.fill("#prompt", uniquePrompt("make it a watercolour"));
    await page.click("#generate");
    const upload = await uploaded;
    assert.equal(upload.status(), 201);
    const { url } = await upload.json();
    await waitForResult(page);
    assert.equal(bodies.length, 1);
    assert.equal(bodies[0].model, "kontext");
    assert.equal(bodies[0][field], url);
    await screenshot(page, "image-input");
    await page.context().close();
  });

  async function waitForResult(page) {
    await page.waitForFunction(
      () => document.querySelector("#output img") || !document.getElementById("error").hidden,
      null,
      { timeout: 60_000 },
    );
    const error = page.locator("#error");
    if (await error.isVisible()) assert.fail(`the page shows an error: ${await error.innerText()}`);
  }
});
