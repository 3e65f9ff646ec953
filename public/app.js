// fluxgate playground: plain JavaScript, no build step, no dependencies.
// Talks to the same origin's API: GET /models, POST /uploads, POST /generate
// (Prefer: respond-async), GET and DELETE /generate/{id} (its status URL: progress
// and cancel), GET /images, DELETE /image/{id}.
"use strict";

(() => {
  const CREDENTIAL_KEY = "fluxgate.credential";
  const MODEL_KEY = "fluxgate.model";
  const GALLERY_PAGE = 12;
  const POLL_MIN_MS = 700;
  const RUN_LIMIT_MS = 10 * 60 * 1000;
  const ENDED = ["failed", "canceled", "aborted"];

  const $ = (id) => document.getElementById(id);

  /** Creates an element with attributes and children (strings become text). */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value === true) node.setAttribute(key, "");
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // ------------------------------------------------------------------ API

  /** An answer that was not 2xx, in the API's `{error, details}` terms. */
  class ApiError extends Error {
    constructor(status, body, headers) {
      const error = body && typeof body.error === "string" && body.error ? body.error : status ? `HTTP ${status}` : "Request failed";
      super(error);
      this.status = status;
      this.error = error;
      this.details = body ? body.details : undefined;
      this.retryAfter = headers ? headers.get("Retry-After") : null;
      this.requestId = headers ? headers.get("X-Request-Id") : null;
    }
  }

  function localError(error, details) {
    return new ApiError(0, { error, details });
  }

  function credential() {
    try {
      const saved = JSON.parse(localStorage.getItem(CREDENTIAL_KEY) || "null");
      if (saved && typeof saved.value === "string") return { kind: saved.kind === "replicate" ? "replicate" : "key", value: saved.value };
    } catch {
      /* storage unavailable or corrupt: no credential */
    }
    return { kind: "key", value: "" };
  }

  function authHeaders() {
    const { kind, value } = credential();
    const token = value.trim();
    if (!token) return {};
    return kind === "replicate" ? { "X-Replicate-Token": token } : { Authorization: `Bearer ${token}` };
  }

  async function readBody(res) {
    if (res.status === 204 || res.status === 304) return null;
    const type = res.headers.get("Content-Type") || "";
    if (type.includes("json")) return res.json().catch(() => null);
    const text = await res.text().catch(() => "");
    return text ? { error: text.trim().slice(0, 300) } : null;
  }

  /** fetch with the caller's credential; resolves `{status, data, headers}` for 2xx, throws ApiError otherwise. */
  async function api(path, { method = "GET", headers = {}, json, body, auth = true, signal } = {}) {
    const h = new Headers(headers);
    if (auth) for (const [k, v] of Object.entries(authHeaders())) h.set(k, v);
    if (json !== undefined) {
      h.set("Content-Type", "application/json");
      body = JSON.stringify(json);
    }
    let res;
    try {
      res = await fetch(path, { method, headers: h, body, signal });
    } catch (e) {
      if (signal && signal.aborted) throw e;
      throw new ApiError(0, { error: "Network error", details: `The service could not be reached (${e.message}).` });
    }
    const data = await readBody(res);
    if (!res.ok) throw new ApiError(res.status, data, res.headers);
    return { status: res.status, data, headers: res.headers };
  }

  /** Retry-After (seconds or an HTTP date) in ms, clamped to [250 ms, 10 s]. */
  function retryAfterMs(value, fallback = 1000) {
    if (!value) return fallback;
    let ms = /^\d+$/.test(value.trim()) ? Number(value) * 1000 : Date.parse(value) - Date.now();
    if (!Number.isFinite(ms)) ms = fallback;
    return Math.min(10000, Math.max(250, ms));
  }

  function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal && signal.aborted) return reject(signal.reason);
      const timer = setTimeout(resolve, ms);
      if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
    });
  }

  // --------------------------------------------------------------- errors

  function describe(value) {
    if (value === undefined || value === null || value === "") return "";
    if (typeof value === "string") return value;
    return JSON.stringify(value, null, 2);
  }

  function hintFor(err) {
    if (err.status === 401 || err.status === 403) return "Check the key or token under Access.";
    if (err.status === 429) {
      const s = err.retryAfter ? Math.ceil(retryAfterMs(err.retryAfter, 0) / 1000) : null;
      return s ? `Too many requests: try again in ${s} s.` : "Too many requests: try again shortly.";
    }
    if (err.status >= 500) return "The service or the model had a problem; trying again may help.";
    return "";
  }

  function showError(box, err) {
    box.replaceChildren();
    const title = el("p", { class: "error-title" }, err.error || err.message || "Something went wrong");
    if (err.status) title.append(el("span", { class: "error-status", text: `HTTP ${err.status}` }));
    box.append(title);
    const details = describe(err.details);
    if (details) box.append(el("p", { class: "error-details", text: details }));
    const hint = hintFor(err);
    if (hint) box.append(el("p", { class: "error-hint", text: hint }));
    if (err.requestId) box.append(el("p", { class: "error-hint" }, "Request id: ", el("code", { text: err.requestId })));
    box.hidden = false;
  }

  function clearError(box) {
    box.hidden = true;
    box.replaceChildren();
  }

  // ---------------------------------------------------------- credentials

  const kindText = {
    key: { label: "API key", placeholder: "fg_…", header: "Authorization: Bearer <key>", after: ".", set: "API key set" },
    replicate: { label: "Replicate token", placeholder: "r8_…", header: "X-Replicate-Token", after: ": runs on your own Replicate account.", set: "Replicate token set" },
  };

  function saveCredential() {
    const kind = document.querySelector('input[name="credential-kind"]:checked').value;
    const value = $("credential").value.trim();
    try {
      if (value) localStorage.setItem(CREDENTIAL_KEY, JSON.stringify({ kind, value }));
      else localStorage.removeItem(CREDENTIAL_KEY);
    } catch {
      /* private mode: the key lives as long as the page */
    }
    paintCredential();
  }

  function paintCredential() {
    const kind = document.querySelector('input[name="credential-kind"]:checked').value;
    const text = kindText[kind];
    $("credential-label").textContent = text.label;
    $("credential").placeholder = text.placeholder;
    $("credential-help-text").replaceChildren("Sent as ", el("code", { text: text.header }), text.after);
    const { value, kind: savedKind } = credential();
    const summary = $("access-summary");
    summary.textContent = value ? kindText[savedKind].set : "No key set";
    summary.dataset.set = String(Boolean(value));
    $("credential-forget").hidden = !value;
  }

  function initCredential() {
    const { kind, value } = credential();
    document.querySelector(`input[name="credential-kind"][value="${kind}"]`).checked = true;
    $("credential").value = value;
    $("access").open = !value;
    paintCredential();
    for (const radio of document.querySelectorAll('input[name="credential-kind"]')) {
      radio.addEventListener("change", () => { saveCredential(); loadGallery(true); });
    }
    $("credential").addEventListener("input", saveCredential);
    $("credential").addEventListener("change", () => loadGallery(true));
    $("credential-show").addEventListener("click", (e) => {
      const input = $("credential");
      const show = input.type === "password";
      input.type = show ? "text" : "password";
      e.currentTarget.textContent = show ? "Hide" : "Show";
      e.currentTarget.setAttribute("aria-pressed", String(show));
    });
    $("credential-forget").addEventListener("click", () => {
      $("credential").value = "";
      saveCredential();
      $("credential").focus();
      loadGallery(true);
    });
  }

  // --------------------------------------------------------------- health

  async function loadHealth() {
    const badge = $("health");
    const text = badge.querySelector(".health-text");
    try {
      const res = await fetch("/health");
      const body = await res.json().catch(() => ({}));
      const state = body.status || (res.ok ? "ok" : "down");
      badge.dataset.state = state;
      const label = { ok: "Service ok", degraded: "Service degraded", misconfigured: "Service misconfigured" }[state] || `Service: ${state}`;
      text.textContent = body.version ? `${label} · v${body.version}` : label;
      if (Array.isArray(body.missing) && body.missing.length) badge.title = `Missing: ${body.missing.join(", ")}`;
    } catch {
      badge.dataset.state = "down";
      text.textContent = "Service unreachable";
    }
  }

  // --------------------------------------------------------------- models

  let models = [];
  let defaultModel = null;

  function humanize(name) {
    const words = name.replace(/_/g, " ").trim();
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  function currentModel() {
    const name = $("model").value;
    return models.find((m) => m.name === name) || models.find((m) => m.name === defaultModel) || null;
  }

  async function loadModels() {
    const select = $("model");
    const help = $("model-help");
    try {
      const { data } = await api("/models", { auth: false });
      models = Array.isArray(data && data.models) ? data.models : [];
      defaultModel = (data && data.default) || (models.find((m) => m.default) || {}).name || null;
      select.replaceChildren(
        ...models.map((m) => el("option", { value: m.name }, m.name === defaultModel ? `${m.name} (default)` : m.name)),
      );
      let saved = null;
      try { saved = localStorage.getItem(MODEL_KEY); } catch { /* none */ }
      select.value = models.some((m) => m.name === saved) ? saved : defaultModel || (models[0] && models[0].name) || "";
      onModelChange();
    } catch (err) {
      models = [];
      select.replaceChildren(el("option", { value: "" }, "Default model"));
      help.textContent = `The model list could not be loaded (${err.error}${err.status ? `, ${err.status}` : ""}). Generate still runs the service's default model with a prompt.`;
      renderInputs(null);
    }
  }

  function onModelChange() {
    const model = currentModel();
    const help = $("model-help");
    if (model) {
      help.replaceChildren(el("code", { text: model.model + (model.version ? `:${model.version.slice(0, 12)}…` : "") }));
      try { localStorage.setItem(MODEL_KEY, model.name); } catch { /* none */ }
    }
    renderInputs(model);
  }

  function isPromptInput(input) {
    return input.name === "prompt" && !input.image && !(input.allowed && input.allowed.length);
  }

  /** The form controls of `model`'s inputs (the prompt has its own box). */
  function renderInputs(model) {
    const box = $("inputs");
    box.replaceChildren();
    const inputs = model && Array.isArray(model.inputs) ? model.inputs : [];
    const prompt = inputs.find(isPromptInput);
    const max = (prompt && prompt.max_length) || 2000;
    $("prompt").maxLength = max;
    updateCounter();
    const rest = inputs.filter((i) => !isPromptInput(i));
    for (const input of rest) box.append(control(input));
    const badge = $("options-count");
    badge.textContent = String(rest.length);
    badge.hidden = rest.length === 0;
    $("options").hidden = rest.length === 0;
  }

  function label(input, id) {
    const text = humanize(input.name);
    const range = input.minimum !== undefined || input.maximum !== undefined
      ? ` ${input.minimum ?? "…"}–${input.maximum ?? "…"}` : "";
    return el("label", { class: "field-label", for: id, title: input.name },
      text, input.required ? " *" : "", range ? el("span", { class: "range", text: range }) : null);
  }

  function helpFor(input, id) {
    const bits = [];
    if (input.description) bits.push(/[.!?]$/.test(input.description.trim()) ? input.description.trim() : `${input.description.trim()}.`);
    if (input.default !== undefined && input.default !== null && input.type !== "boolean") bits.push(`Default: ${describe(input.default)}.`);
    return bits.length ? el("p", { class: "help", id: `${id}-help`, text: bits.join(" ") }) : null;
  }

  function control(input) {
    const id = `in-${input.name}`;
    const described = input.description || input.default !== undefined ? `${id}-help` : undefined;
    const allowed = Array.isArray(input.allowed) ? input.allowed : [];
    const field = el("div", { class: "field", "data-input": input.name });

    if (input.type === "boolean") {
      const box = el("input", { type: "checkbox", id, name: input.name, "aria-describedby": input.description ? `${id}-help` : undefined });
      box.checked = input.default === true;
      field.append(el("label", { class: "check", for: id }, box, humanize(input.name)));
      if (input.description) field.append(el("p", { class: "help", id: `${id}-help`, text: input.description }));
      return field;
    }

    field.append(label(input, id));
    let widget;
    if (input.image) {
      field.classList.add("wide");
      widget = el("input", { type: "file", id, name: input.name, accept: "image/*", multiple: input.type === "array", "aria-describedby": described });
    } else if (allowed.length) {
      widget = el("select", { id, name: input.name, "aria-describedby": described });
      if (input.default === undefined) widget.append(el("option", { value: "" }, input.required ? "Choose…" : "(not set)"));
      allowed.forEach((value, i) => widget.append(el("option", { value: String(i) }, String(value))));
      const at = allowed.findIndex((v) => v === input.default || String(v) === String(input.default));
      if (at >= 0) widget.value = String(at);
    } else if (input.type === "integer" || input.type === "number") {
      widget = el("input", {
        type: "number", id, name: input.name, inputmode: input.type === "integer" ? "numeric" : "decimal",
        min: input.minimum, max: input.maximum, step: input.type === "integer" ? 1 : "any",
        placeholder: input.default !== undefined && input.default !== null ? String(input.default) : "", "aria-describedby": described,
      });
    } else {
      const long = /prompt|text|caption/.test(input.name);
      if (long) field.classList.add("wide");
      widget = el(long ? "textarea" : "input", {
        type: long ? undefined : "text", id, name: input.name, rows: long ? 2 : undefined,
        placeholder: input.type === "array" ? "Comma-separated values" : input.type === "any" ? "A JSON value" :
          input.default !== undefined && input.default !== null ? describe(input.default) : "",
        "aria-describedby": described, spellcheck: "false",
      });
    }
    field.append(widget);
    const help = helpFor(input, id);
    if (help) field.append(help);
    return field;
  }

  /** The inputs the form sets (only those that differ from the default), and the files to upload. */
  function collectInputs(model) {
    const values = {};
    const files = [];
    const problems = [];
    const inputs = model && Array.isArray(model.inputs) ? model.inputs : [];
    for (const input of inputs) {
      if (isPromptInput(input)) continue;
      const node = $(`in-${input.name}`);
      if (!node) continue;
      const allowed = Array.isArray(input.allowed) ? input.allowed : [];
      if (input.image) {
        if (node.files && node.files.length) files.push({ name: input.name, list: [...node.files], many: input.type === "array" });
      } else if (input.type === "boolean") {
        if (node.checked !== (input.default === true)) values[input.name] = node.checked;
      } else if (allowed.length) {
        if (node.value !== "") {
          const value = allowed[Number(node.value)];
          if (value !== input.default) values[input.name] = value;
        }
      } else if (input.type === "integer" || input.type === "number") {
        if (node.validity && node.validity.badInput) problems.push(`${input.name} must be a number`);
        else if (node.value.trim() !== "") values[input.name] = Number(node.value);
      } else if (node.value.trim() !== "") {
        const raw = node.value.trim();
        if (input.type === "array") values[input.name] = raw.split(/\s*[,\n]\s*/).filter(Boolean);
        else if (input.type === "any") {
          try { values[input.name] = JSON.parse(raw); } catch { problems.push(`${input.name} must be a JSON value`); }
        } else values[input.name] = raw;
      }
    }
    return { values, files, problems };
  }

  // ------------------------------------------------------------- generate

  let run = null;
  const objectUrls = [];

  function setStep(step, failed = false) {
    const list = $("progress");
    list.hidden = false;
    const order = ["starting", "processing", "storing", "done"];
    const at = order.indexOf(step);
    for (const li of list.children) {
      const i = order.indexOf(li.dataset.step);
      const state = i < at ? "done" : i === at ? (failed ? "failed" : step === "done" ? "done" : "active") : "";
      li.dataset.state = state;
      if (state === "active") li.setAttribute("aria-current", "step");
      else li.removeAttribute("aria-current");
    }
    list.dataset.step = step;
  }

  function setStatus(text, spinning = false) {
    const status = $("status");
    status.replaceChildren();
    if (spinning) status.append(el("span", { class: "spinner", "aria-hidden": "true" }));
    status.append(text);
  }

  /** "7 s", "1 min 05 s": the time since Generate was pressed. */
  function elapsedText(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  }

  /** The running clock beside the status (outside the live region: it would be read out every second). */
  function paintElapsed() {
    const clock = $("elapsed");
    if (!run) {
      clock.hidden = true;
      return;
    }
    clock.textContent = elapsedText(Date.now() - run.started);
    clock.hidden = false;
  }

  /** Brings the result panel into view when it is below the fold (narrow screens). */
  function revealResult() {
    const panel = document.querySelector(".result");
    const top = panel.getBoundingClientRect().top;
    if (top > window.innerHeight - 96 || top < 0) {
      const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
      panel.scrollIntoView({ block: "start", behavior: smooth ? "smooth" : "auto" });
    }
  }

  function setBusy(busy) {
    $("generate").disabled = busy;
    $("generate").textContent = busy ? "Generating…" : "Generate";
    $("cancel").hidden = !busy;
    $("cancel").disabled = false;
    $("cancel").textContent = "Cancel";
    $("generate-form").setAttribute("aria-busy", String(busy));
  }

  function resetOutput() {
    while (objectUrls.length) URL.revokeObjectURL(objectUrls.pop());
    $("output").replaceChildren();
    $("output").classList.remove("multi");
    $("meta").hidden = true;
    $("meta").replaceChildren();
  }

  function showMeta(pairs) {
    const meta = $("meta");
    meta.replaceChildren();
    for (const [k, v] of pairs) {
      if (v === undefined || v === null || v === "") continue;
      meta.append(el("dt", { text: k }), el("dd", { text: String(v) }));
    }
    meta.hidden = meta.children.length === 0;
  }

  /** The aspect ratio the form asks for ("16:9" becomes "16 / 9"), or square. */
  function aspectRatio() {
    const select = $("in-aspect_ratio");
    const text = select && select.selectedOptions[0] ? select.selectedOptions[0].textContent : "";
    const m = /^(\d+(?:\.\d+)?):(\d+(?:\.\d+)?)$/.exec(text);
    return m ? `${m[1]} / ${m[2]}` : "1 / 1";
  }

  /** One tile per image, waiting until its bytes are there. */
  function tiles(images) {
    const out = $("output");
    out.replaceChildren();
    out.classList.toggle("multi", images.length > 1);
    const ratio = aspectRatio();
    return images.map((image, i) => {
      const figure = el("figure", { class: "shot", "data-image-id": image.id },
        el("div", { class: "waiting" }, el("span", { class: "spinner", "aria-hidden": "true" }), images.length > 1 ? `Image ${i + 1}…` : "Waiting for the image…"));
      figure.style.aspectRatio = ratio;
      out.append(figure);
      return figure;
    });
  }

  /** GETs an image, waiting out 503 "not ready yet" answers per Retry-After. */
  async function fetchImage(url, signal, onWait) {
    const deadline = Date.now() + 120000;
    for (;;) {
      let res;
      try {
        res = await fetch(url, { signal });
      } catch (e) {
        if (signal.aborted) throw e;
        throw new ApiError(0, { error: "Network error", details: `The image could not be loaded (${e.message}).` });
      }
      if (res.ok) return res.blob();
      if (res.status === 503 && Date.now() < deadline) {
        const wait = retryAfterMs(res.headers.get("Retry-After"));
        await res.body?.cancel().catch(() => {});
        onWait(wait);
        await sleep(wait, signal);
        continue;
      }
      throw new ApiError(res.status, await readBody(res), res.headers);
    }
  }

  async function showImages(images, prompt, signal) {
    const figures = tiles(images);
    setStep("storing");
    setStatus("Storing the image…", true);
    await Promise.all(images.map(async (image, i) => {
      const blob = await fetchImage(image.imageUrl, signal, (ms) => setStatus(`Storing the image… trying again in ${Math.ceil(ms / 1000)} s`, true));
      const src = URL.createObjectURL(blob);
      objectUrls.push(src);
      const img = el("img", { src, alt: prompt, "data-image-url": image.imageUrl });
      await new Promise((resolve) => { img.onload = resolve; img.onerror = resolve; });
      figures[i].style.aspectRatio = "";
      figures[i].replaceChildren(img, el("figcaption", {}, el("a", { href: image.imageUrl, target: "_blank", rel: "noopener", text: "Open image" })));
    }));
  }

  function imagesOf(body) {
    if (body && Array.isArray(body.images) && body.images.length) return body.images.filter((i) => i && i.imageUrl);
    if (body && body.imageUrl) return [{ id: body.id, imageUrl: body.imageUrl }];
    return [];
  }

  /** How an asynchronous generation ended when it did not succeed: its last status answer. */
  class Ended extends Error {
    constructor(body) {
      super(body.status);
      this.body = body;
    }
  }

  /** The status URL's path: the page talks to its own origin, whatever base the links were built on. */
  function statusPath(accepted) {
    if (accepted.statusUrl) {
      try { return new URL(accepted.statusUrl, location.href).pathname; } catch { /* below */ }
    }
    return `/generate/${encodeURIComponent(accepted.predictionId)}`;
  }

  /** How long to wait before reading the status again: its Retry-After, never under POLL_MIN_MS. */
  function pollDelay(retryAfter, fallback = 1000) {
    return Math.max(POLL_MIN_MS, retryAfterMs(retryAfter, fallback));
  }

  /**
   * Polls the status URL of an async generation until it ends: resolves
   * with its last status and its images once it succeeded, throws Ended when
   * it failed or was canceled.
   */
  async function follow(accepted, retryAfter, signal) {
    let body = accepted;
    let images = imagesOf(accepted);
    let wait = pollDelay(retryAfter);
    for (;;) {
      const status = body.status || "starting";
      if (status === "succeeded") return { body, images };
      if (ENDED.includes(status)) throw new Ended(body);
      setStep(status === "processing" ? "processing" : "starting");
      setStatus(status === "processing" ? "Processing: the model is working…" : "Starting: waiting for the model…", true);
      if (Date.now() - run.started > RUN_LIMIT_MS) throw localError("Still not finished", "Gave up waiting after 10 minutes; the image may still appear in the gallery.");
      await sleep(wait, signal);
      try {
        const res = await api(run.statusUrl, { signal });
        body = res.data || {};
        wait = pollDelay(res.headers.get("Retry-After"));
      } catch (err) {
        // Busy or unreachable for a moment: ask again later; anything else ends the wait.
        if (!(err instanceof ApiError) || ![0, 429, 502, 503, 504].includes(err.status)) throw err;
        wait = pollDelay(err.retryAfter, 2000);
        continue;
      }
      const more = imagesOf(body);
      if (more.length) images = more;
    }
  }

  /** The output area once a generation ended without images. */
  function showNoImage(text) {
    resetOutput();
    $("output").append(el("div", { class: "placeholder ended" }, el("p", { text })));
  }

  async function upload(file, signal) {
    const form = new FormData();
    form.append("file", file, file.name);
    const { data } = await api("/uploads", { method: "POST", body: form, signal });
    return data.url;
  }

  async function onGenerate(event) {
    event.preventDefault();
    if (run) return;
    const errorBox = $("error");
    clearError(errorBox);
    const prompt = $("prompt").value.trim();
    if (!prompt) {
      showError(errorBox, localError("Write a prompt first", "The prompt says what the image shows."));
      $("prompt").focus();
      return;
    }
    const model = currentModel();
    const { values, files, problems } = collectInputs(model);
    if (problems.length) {
      showError(errorBox, localError("Check the inputs", problems.join("\n")));
      revealResult();
      return;
    }
    const controller = new AbortController();
    run = { controller, started: Date.now(), statusUrl: null, canceling: false, ended: null, clock: null };
    const current = run;
    const { signal } = controller;
    setBusy(true);
    resetOutput();
    $("placeholder")?.remove();
    setStep("starting");
    paintElapsed();
    current.clock = setInterval(paintElapsed, 500);
    revealResult();
    try {
      for (const f of files) {
        const urls = [];
        for (const file of f.list) {
          setStatus(`Uploading ${file.name}…`, true);
          urls.push(await upload(file, signal));
        }
        values[f.name] = f.many ? urls : urls[0];
      }
      setStatus("Sending the request…", true);
      const body = { prompt, ...values };
      if (model && $("model").value) body.model = model.name;
      const res = await api("/generate", { method: "POST", json: body, headers: { Prefer: "respond-async" }, signal });
      let data = res.data || {};
      showMeta([["Model", data.model || (model && model.model)], ["Prediction", data.predictionId]]);
      let images;
      if (res.status === 202) {
        current.statusUrl = statusPath(data);
        tiles(imagesOf(data).length ? imagesOf(data) : [{ id: "pending" }]);
        ({ body: data, images } = await follow(data, res.headers.get("Retry-After"), signal));
        $("cancel").hidden = true; // it succeeded: nothing left to cancel
      } else {
        images = imagesOf(data);
      }
      if (!images.length) throw localError("No image", "The generation finished without an image.");
      clearError(errorBox);
      await showImages(images, prompt, signal);
      setStep("done");
      const took = elapsedText(Date.now() - current.started);
      setStatus(images.length > 1 ? `Done in ${took}: ${images.length} images.` : `Done in ${took}.`);
      showMeta([
        ["Model", data.model || (model && model.model)],
        ["Prediction", data.predictionId],
        ["Seed", data.seed],
        ["Image", images.map((i) => i.imageUrl).join("\n")],
        ["Cached", data.cached ? "yes" : undefined],
      ]);
      loadGallery(true);
    } catch (err) {
      const took = elapsedText(Date.now() - current.started);
      const ended = err instanceof Ended ? err.body : current.ended;
      setStep($("progress").dataset.step || "starting", true);
      if (ended && ended.status === "failed") {
        setStatus(`Failed after ${took}.`);
        showError(errorBox, new ApiError(0, { error: "Generation failed", details: ended.error }));
        showNoImage("No image: the generation failed.");
      } else if (ended) {
        setStatus(`Canceled after ${took}.`);
        // Canceled here: the status says it. Canceled elsewhere: say so, with Replicate's words.
        if (!current.canceling) showError(errorBox, new ApiError(0, { error: "Generation canceled", details: ended.error }));
        showNoImage("No image: the generation was canceled.");
      } else if (signal.aborted) {
        setStatus("Canceled.");
        showNoImage("No image: the generation was canceled.");
      } else {
        setStatus("");
        showError(errorBox, err instanceof ApiError ? err : localError("Something went wrong", err.message));
        if (!$("output").querySelector("img")) resetOutput();
      }
    } finally {
      clearInterval(current.clock);
      run = null;
      paintElapsed();
      setBusy(false);
    }
  }

  /** Cancel: DELETE on the status URL once there is one (before that, the request is abandoned). */
  async function onCancel() {
    const current = run;
    if (!current || current.canceling) return;
    current.canceling = true;
    const button = $("cancel");
    button.disabled = true;
    button.textContent = "Canceling…";
    if (!current.statusUrl) {
      current.controller.abort(new DOMException("Canceled", "AbortError"));
      return;
    }
    try {
      const { data } = await api(current.statusUrl, { method: "DELETE" });
      if (run !== current) return;
      if (data && ENDED.includes(data.status)) {
        current.ended = data;
        current.controller.abort(new DOMException("Canceled", "AbortError"));
      }
      // Otherwise it succeeded first: the images are on their way.
    } catch (err) {
      if (run !== current) return;
      current.canceling = false;
      button.disabled = false;
      button.textContent = "Cancel";
      showError($("error"), err);
    }
  }

  // -------------------------------------------------------------- gallery

  let galleryCursor = null;
  let galleryLoading = null;
  const dateFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", year: "numeric", hour: "numeric", minute: "2-digit" });

  function formatDate(value) {
    const date = new Date(typeof value === "number" ? value : String(value));
    return Number.isNaN(date.getTime()) ? "" : dateFormat.format(date);
  }

  function formatSize(bytes) {
    if (typeof bytes !== "number" || !Number.isFinite(bytes)) return "";
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  /** Shows `url` in `img`; an image still being stored (503) is fetched again after Retry-After. */
  function showStored(img, url, holder) {
    img.addEventListener("error", async () => {
      const note = el("span", { class: "pending", text: "Storing…" });
      img.replaceWith(note);
      try {
        const blob = await fetchImage(url, new AbortController().signal, () => {});
        const src = URL.createObjectURL(blob);
        img.src = src;
        note.replaceWith(img);
      } catch (err) {
        note.textContent = err.status === 410 ? "Image lost" : "Not available";
      }
    }, { once: true });
    img.src = url;
    holder.append(img);
  }

  function card(image) {
    const prompt = image.prompt || "(no prompt)";
    const media = el("a", { class: "card-img", href: image.url, target: "_blank", rel: "noopener", tabindex: "-1", "aria-hidden": "true" });
    if (image.status === "lost") media.append(el("span", { class: "pending", text: "Image lost" }));
    else showStored(el("img", { alt: prompt, decoding: "async" }), image.url, media);
    const shortModel = image.model ? String(image.model).split(":")[0].split("/").pop() : "";
    const when = formatDate(image.created_at);
    const datetime = typeof image.created_at === "number" ? new Date(image.created_at).toISOString() : image.created_at;
    const del = el("button", { type: "button", class: "btn btn-quiet btn-small", "aria-label": `Delete image: ${prompt}`, text: "Delete" });
    const item = el("li", { class: "card", "data-id": image.id },
      media,
      el("div", { class: "card-body" },
        el("p", { class: "card-prompt", title: prompt, text: prompt }),
        el("p", { class: "card-meta", title: image.model || "" }, [shortModel, formatSize(image.size)].filter(Boolean).join(" · ")),
        when ? el("p", { class: "card-meta" }, el("time", { datetime, text: when })) : null,
        el("div", { class: "card-actions" },
          el("a", { href: image.url, target: "_blank", rel: "noopener", "aria-label": `Open image: ${prompt}`, text: "Open" }),
          del)));
    del.addEventListener("click", () => confirmDelete(image, item));
    return item;
  }

  async function loadGallery(reset = false) {
    if (galleryLoading && !reset) return galleryLoading;
    const list = $("gallery");
    const status = $("gallery-status");
    const more = $("gallery-more");
    const errorBox = $("gallery-error");
    if (!credential().value) {
      list.replaceChildren();
      more.hidden = true;
      clearError(errorBox);
      status.textContent = "Set an API key or your Replicate token under Access to see your images.";
      return;
    }
    if (reset) galleryCursor = null;
    const cursor = galleryCursor;
    status.textContent = "Loading images…";
    more.disabled = true;
    const load = (async () => {
      try {
        const query = new URLSearchParams({ limit: String(GALLERY_PAGE) });
        if (cursor) query.set("cursor", cursor);
        const { data } = await api(`/images?${query}`);
        if (galleryLoading !== load) return;
        clearError(errorBox);
        const images = Array.isArray(data && data.images) ? data.images : [];
        if (!cursor) list.replaceChildren();
        const seen = new Set([...list.children].map((li) => li.dataset.id));
        for (const image of images) if (!seen.has(image.id)) list.append(card(image));
        galleryCursor = (data && data.cursor) || null;
        more.hidden = !galleryCursor;
        status.textContent = list.children.length ? `${list.children.length} image${list.children.length === 1 ? "" : "s"}${galleryCursor ? " so far" : ""}, newest first.` : "No images yet: generate one above.";
      } catch (err) {
        if (galleryLoading !== load) return;
        status.textContent = "";
        if (!cursor) list.replaceChildren();
        showError(errorBox, err);
      } finally {
        more.disabled = false;
        if (galleryLoading === load) galleryLoading = null;
      }
    })();
    galleryLoading = load;
    return load;
  }

  function confirmDelete(image, item) {
    const dialog = $("confirm-delete");
    const thumb = $("confirm-thumb");
    thumb.src = image.url;
    thumb.alt = image.prompt || "";
    dialog.returnValue = "";
    dialog.addEventListener("close", async () => {
      if (dialog.returnValue !== "delete") return;
      const status = $("gallery-status");
      try {
        await api(`/image/${encodeURIComponent(image.id)}`, { method: "DELETE" });
        item.remove();
        clearError($("gallery-error"));
        status.textContent = "Image deleted.";
        const shown = $("output").querySelector(`[data-image-id="${CSS.escape(image.id)}"]`);
        if (shown) shown.remove();
      } catch (err) {
        showError($("gallery-error"), err);
      }
    }, { once: true });
    dialog.showModal();
  }

  // ----------------------------------------------------------------- wire

  function updateCounter() {
    const prompt = $("prompt");
    $("prompt-count").textContent = `${prompt.value.length} / ${prompt.maxLength > 0 ? prompt.maxLength : 2000}`;
  }

  function init() {
    initCredential();
    $("generate-form").addEventListener("submit", onGenerate);
    $("cancel").addEventListener("click", onCancel);
    $("model").addEventListener("change", onModelChange);
    $("prompt").addEventListener("input", updateCounter);
    $("prompt").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.metaKey || e.ctrlKey)) $("generate-form").requestSubmit();
    });
    $("gallery-refresh").addEventListener("click", () => loadGallery(true));
    $("gallery-more").addEventListener("click", () => loadGallery(false));
    updateCounter();
    loadHealth();
    loadModels();
    loadGallery(true);
  }

  init();
})();
