import { randomInt } from "node:crypto";
import { isoMillis, isoNanos, nowNs, randomId, randomStreamToken, secondsBetween } from "./clock.mjs";
import { ImageCache } from "./images.mjs";
import { PredictionError } from "./inputs.mjs";
import { findModel } from "./models.mjs";
import { renderOutputs } from "./pipelines.mjs";
import { WEBHOOK_EVENTS } from "./webhooks.mjs";

export const TERMINAL_STATUSES = new Set(["succeeded", "failed", "canceled", "aborted"]);

const DEFAULT_FAILURE = "Prediction failed for an unknown reason. It might have run out of memory? (exitcode -9)";
const BAR_PARTIALS = " ▏▎▍▌▋▊▉";

function progressBar(done, total, rate) {
  const frac = total === 0 ? 1 : done / total;
  const percent = String(Math.floor(frac * 100)).padStart(3, " ");
  const cells = frac * 10;
  const full = Math.floor(cells);
  let bar = "█".repeat(full);
  if (full < 10) {
    const partial = BAR_PARTIALS[Math.floor((cells - full) * 8)];
    bar += partial === " " ? "" : partial;
  }
  bar = bar.padEnd(10, " ");
  const timing = done === 0 ? "[00:00<?, ?it/s]" : `[00:00<00:00, ${rate.toFixed(2)}it/s]`;
  return `${percent}%|${bar}| ${done}/${total} ${timing}`;
}

function stepCount(input) {
  const steps = input.num_inference_steps ?? input.steps;
  return Number.isInteger(steps) ? steps : null;
}

function inputProperties(prediction) {
  return prediction.modelDef?.latestVersion.openapi_schema.components.schemas.Input.properties ?? {};
}

function startLogs(prediction) {
  const { seed, input } = prediction;
  const steps = stepCount(input);
  let logs = "seed" in inputProperties(prediction) ? `Using seed: ${seed}\n` : "";
  if (typeof input.go_fast === "boolean") {
    logs += `${input.go_fast ? "running quantized prediction" : "running bf16 prediction"}\nUsing seed: ${seed}\n`;
  }
  if (steps !== null) logs += `${progressBar(0, steps, 0)}\n`;
  return logs;
}

function progressLogs(prediction, seconds) {
  const steps = stepCount(prediction.input);
  let logs = startLogs(prediction);
  if (steps === null) return logs;
  const rate = steps / Math.max(seconds, 0.001);
  if (steps > 1) logs += `${progressBar(steps - 1, steps, rate * 1.1)}\n`;
  logs += `${progressBar(steps, steps, rate)}\n`;
  return logs;
}

function finalLogs(prediction, seconds) {
  if (!("num_outputs" in inputProperties(prediction))) return progressLogs(prediction, seconds);
  const n = prediction.files?.length ?? 1;
  return `${progressLogs(prediction, seconds)}Total safe images: ${n} out of ${n}\n`;
}

/**
 * Owns every prediction: creation, the timer-driven lifecycle
 * (starting -> processing -> succeeded/failed), cancellation, deadlines,
 * data retention and the encoded output files.
 */
export class PredictionStore {
  constructor({ predictMs, retentionMs, apiBase, deliveryBase, webhooks, loadInput = null, imageCache = new ImageCache() }) {
    this.loadInput = loadInput;
    this.predictMs = predictMs;
    this.retentionMs = retentionMs;
    this.apiBase = apiBase;
    this.deliveryBase = deliveryBase;
    this.webhooks = webhooks;
    this.imageCache = imageCache;
    this.byId = new Map();
    this.waits = new Set();
    this.nextSeq = 1;
    this.createdCount = 0;
    this.createdByModel = new Map();
  }

  /**
   * params: { model ("owner/name"), modelDef (from models.mjs; defaults to the model's entry), version,
   * deployment, input (validated), behavior, webhook, webhookEventsFilter, cancelAfterMs }
   */
  create({ model, modelDef, version, deployment = null, input, behavior = {}, webhook = null, webhookEventsFilter = null, cancelAfterMs = null }) {
    modelDef ??= findModel(...model.split("/"));
    const createdNs = nowNs();
    const prediction = {
      id: randomId(),
      seq: this.nextSeq++,
      model,
      modelDef,
      version,
      deployment,
      input,
      seed: Number.isInteger(input.seed) ? input.seed : randomInt(0, 65536),
      status: "starting",
      logs: "",
      output: null,
      error: null,
      dataRemoved: false,
      createdNs,
      startedNs: null,
      completedNs: null,
      deadlineNs: cancelAfterMs === null ? null : createdNs + BigInt(Math.round(cancelAfterMs * 1e6)),
      files: null,
      dataUris: null,
      behavior,
      predictMs: Number.isFinite(behavior.predictMs) ? Math.max(0, behavior.predictMs) : this.predictMs,
      webhook,
      webhookEvents: new Set(webhookEventsFilter ?? WEBHOOK_EVENTS),
      streamToken: randomStreamToken(),
      timers: new Set(),
      listeners: new Set(),
      rendering: null,
    };
    this.byId.set(prediction.id, prediction);
    this.createdCount += 1;
    this.createdByModel.set(model, (this.createdByModel.get(model) ?? 0) + 1);

    const startDelay = Math.round(prediction.predictMs / 3);
    this.#schedule(prediction, startDelay, () => this.#startProcessing(prediction));
    if (cancelAfterMs !== null) {
      this.#schedule(prediction, cancelAfterMs, () => this.#deadlinePassed(prediction));
    }
    this.#emit(prediction, "start");
    return prediction;
  }

  get(id) {
    const prediction = this.byId.get(id);
    if (prediction) this.#applyRetention(prediction);
    return prediction;
  }

  /** Newest first. */
  list() {
    const all = [...this.byId.values()].sort((a, b) => b.seq - a.seq);
    for (const p of all) this.#applyRetention(p);
    return all;
  }

  cancel(prediction) {
    if (TERMINAL_STATUSES.has(prediction.status)) return prediction;
    this.#finishWithout(prediction, "canceled");
    return prediction;
  }

  isTerminal(prediction) {
    return TERMINAL_STATUSES.has(prediction.status);
  }

  /** Resolves when the prediction is terminal or has its output, or after timeoutMs. */
  waitForOutputOrEnd(prediction, timeoutMs) {
    const done = () => this.isTerminal(prediction) || prediction.output !== null;
    if (done() || timeoutMs <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        prediction.listeners.delete(listener);
        this.waits.delete(finish);
        resolve();
      };
      const listener = () => {
        if (done()) finish();
      };
      const timer = setTimeout(finish, timeoutMs);
      timer.unref?.();
      prediction.listeners.add(listener);
      this.waits.add(finish);
    });
  }

  /** The stored bytes of output file `name` (out-0.webp, output.png), or null when absent or removed. */
  file(id, name) {
    const prediction = this.get(id);
    if (!prediction || prediction.dataRemoved || !prediction.files || prediction.output === null) return null;
    const index = prediction.files.findIndex((f, i) => this.#fileName(prediction, f, i) === name);
    if (index === -1) return null;
    return { ...prediction.files[index], truncate: Boolean(prediction.behavior.truncate) };
  }

  #fileName(prediction, file, index) {
    return prediction.modelDef?.outputShape === "single" ? `output.${file.extension}` : `out-${index}.${file.extension}`;
  }

  toJSON(prediction, { includeLogs = true } = {}) {
    this.#applyRetention(prediction);
    const apiBase = this.apiBase();
    const body = {
      id: prediction.id,
      model: prediction.model,
      version: prediction.version,
      input: prediction.input,
    };
    if (includeLogs) body.logs = prediction.logs;
    body.output = this.#outputValue(prediction);
    body.data_removed = prediction.dataRemoved;
    body.error = prediction.error;
    body.source = "api";
    if (prediction.deployment) body.deployment = prediction.deployment;
    body.status = prediction.status;
    body.created_at = isoMillis(prediction.createdNs);
    if (prediction.startedNs !== null) body.started_at = isoNanos(prediction.startedNs);
    if (prediction.completedNs !== null) body.completed_at = isoNanos(prediction.completedNs);
    if (prediction.deadlineNs !== null) body.deadline = isoNanos(prediction.deadlineNs);
    body.urls = {
      cancel: `${apiBase}/v1/predictions/${prediction.id}/cancel`,
      get: `${apiBase}/v1/predictions/${prediction.id}`,
      stream: `https://stream.replicate.com/v1/files/${prediction.streamToken}`,
      web: `https://replicate.com/p/${prediction.id}`,
    };
    const metrics = this.#metrics(prediction);
    if (metrics) body.metrics = metrics;
    return body;
  }

  clear() {
    for (const finish of [...this.waits]) finish();
    for (const prediction of this.byId.values()) this.#clearTimers(prediction);
    this.byId.clear();
  }

  close() {
    this.clear();
  }

  #outputValue(prediction) {
    if (prediction.dataRemoved || prediction.output === null) return null;
    let urls;
    if (prediction.behavior.outputAs === "data") {
      prediction.dataUris ??= prediction.files.map(
        (f) => `data:${f.contentType};base64,${f.bytes.toString("base64")}`,
      );
      urls = [...prediction.dataUris];
    } else {
      const base = this.deliveryBase();
      urls = prediction.files.map((f, i) => `${base}/${prediction.id}/${this.#fileName(prediction, f, i)}`);
    }
    return prediction.modelDef?.outputShape === "single" ? urls[0] : urls;
  }

  #metrics(prediction) {
    if (prediction.completedNs === null) return null;
    const metrics = {};
    if (prediction.status === "succeeded") metrics.image_count = prediction.files?.length ?? prediction.input.num_outputs ?? 1;
    if (prediction.startedNs !== null) metrics.predict_time = secondsBetween(prediction.startedNs, prediction.completedNs);
    metrics.total_time = secondsBetween(prediction.createdNs, prediction.completedNs);
    return metrics;
  }

  #applyRetention(prediction) {
    if (prediction.dataRemoved || prediction.completedNs === null) return;
    const keepMs = Number.isFinite(prediction.behavior.expireAfterMs) ? prediction.behavior.expireAfterMs : this.retentionMs;
    if (nowNs() < prediction.completedNs + BigInt(Math.round(keepMs * 1e6))) return;
    prediction.dataRemoved = true;
    prediction.output = null;
    prediction.files = null;
    prediction.dataUris = null;
  }

  #schedule(prediction, delayMs, fn) {
    const timer = setTimeout(() => {
      prediction.timers.delete(timer);
      fn();
    }, Math.max(0, delayMs));
    timer.unref?.();
    prediction.timers.add(timer);
  }

  #clearTimers(prediction) {
    for (const t of prediction.timers) clearTimeout(t);
    prediction.timers.clear();
  }

  #changed(prediction) {
    for (const listener of [...prediction.listeners]) listener();
  }

  #emit(prediction, event) {
    this.#changed(prediction);
    if (!prediction.webhook || !prediction.webhookEvents.has(event)) return;
    this.webhooks.send(prediction.webhook, event, this.toJSON(prediction));
  }

  #startProcessing(prediction) {
    if (prediction.status !== "starting") return;
    prediction.status = "processing";
    prediction.startedNs = nowNs();
    prediction.logs = startLogs(prediction);
    const { behavior } = prediction;
    if (!behavior.hang && !behavior.fail) {
      prediction.rendering = this.#render(prediction);
      prediction.rendering.catch(() => {});
    }
    this.#emit(prediction, "logs");
    if (behavior.hang) return;
    const remaining = prediction.predictMs - Math.round(prediction.predictMs / 3);
    this.#schedule(prediction, remaining, () => this.#finishProcessing(prediction));
  }

  #render(prediction) {
    return renderOutputs({
      model: prediction.modelDef,
      input: prediction.input,
      seed: prediction.seed,
      cache: this.imageCache,
      loadImage: (field, url) => {
        if (!this.loadInput) throw new PredictionError(`input ${field} cannot be fetched`);
        return this.loadInput(prediction, field, url);
      },
    });
  }

  async #finishProcessing(prediction) {
    if (prediction.status !== "processing") return;
    const { behavior } = prediction;
    if (behavior.fail) {
      const message = typeof behavior.fail === "string" ? behavior.fail : DEFAULT_FAILURE;
      this.#complete(prediction, "failed", { error: message, logs: `${startLogs(prediction)}${message}\n` });
      return;
    }
    let files;
    try {
      files = await prediction.rendering;
    } catch (error) {
      if (prediction.status !== "processing") return;
      const message = error instanceof PredictionError ? error.message : `Error encoding output: ${error?.message ?? error}`;
      this.#complete(prediction, "failed", { error: message, logs: `${startLogs(prediction)}${message}\n` });
      return;
    }
    if (prediction.status !== "processing") return;
    prediction.files = files;
    prediction.output = files.map((_, i) => i);
    const seconds = secondsBetween(prediction.startedNs, nowNs());
    if (behavior.outputsBeforeComplete) {
      prediction.logs = progressLogs(prediction, seconds);
      this.#emit(prediction, "output");
      const holdMs = Number.isFinite(behavior.outputsBeforeComplete)
        ? behavior.outputsBeforeComplete
        : Math.max(500, prediction.predictMs);
      this.#schedule(prediction, holdMs, () => {
        if (prediction.status !== "processing") return;
        this.#complete(prediction, "succeeded", { logs: finalLogs(prediction, seconds) });
      });
      return;
    }
    this.#emit(prediction, "output");
    this.#complete(prediction, "succeeded", { logs: finalLogs(prediction, seconds) });
  }

  #complete(prediction, status, { error = null, logs } = {}) {
    this.#clearTimers(prediction);
    prediction.status = status;
    prediction.error = error;
    if (logs !== undefined) prediction.logs = logs;
    prediction.completedNs = nowNs();
    this.#emit(prediction, "completed");
  }

  #finishWithout(prediction, status) {
    prediction.rendering = null;
    this.#complete(prediction, status);
  }

  #deadlinePassed(prediction) {
    if (TERMINAL_STATUSES.has(prediction.status)) return;
    this.#finishWithout(prediction, prediction.status === "starting" ? "aborted" : "canceled");
  }
}
