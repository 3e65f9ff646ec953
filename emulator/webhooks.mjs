import { createHash, createHmac } from "node:crypto";
import { randomId } from "./clock.mjs";

export const WEBHOOK_EVENTS = ["start", "output", "logs", "completed"];

export const DEFAULT_WEBHOOK_SECRET = `whsec_${createHash("sha256").update("replicate-emulator").digest("base64")}`;

export function signWebhook(secret, id, timestamp, body) {
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  return createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64");
}

/**
 * Delivers prediction webhooks signed the way Replicate signs them.
 * Only the terminal ("completed") delivery is retried. Redirects are not followed.
 */
export class WebhookSender {
  constructor({ secret = DEFAULT_WEBHOOK_SECRET, retryDelaysMs = [1000, 5000, 15000, 40000], timeoutMs = 10000 } = {}) {
    this.secret = secret;
    this.retryDelaysMs = retryDelaysMs;
    this.timeoutMs = timeoutMs;
    this.deliveries = [];
    this.timers = new Set();
    this.controllers = new Set();
  }

  send(url, event, prediction) {
    const body = JSON.stringify(prediction);
    const messageId = `msg_${randomId(27)}`;
    const terminal = event === "completed";
    this.#attempt(url, event, messageId, body, terminal, 1);
  }

  async #attempt(url, event, messageId, body, terminal, attempt) {
    const timestamp = Math.floor(Date.now() / 1000);
    const headers = {
      "content-type": "application/json",
      "user-agent": "Replicate-Webhook/1.0",
      "webhook-id": messageId,
      "webhook-timestamp": String(timestamp),
      "webhook-signature": `v1,${signWebhook(this.secret, messageId, timestamp, body)}`,
    };
    const record = { id: messageId, event, url, attempt, status: null, error: null, at: Date.now(), headers, body: JSON.parse(body) };
    this.deliveries.push(record);
    const controller = new AbortController();
    this.controllers.add(controller);
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    let ok = false;
    try {
      const response = await fetch(url, { method: "POST", headers, body, redirect: "manual", signal: controller.signal });
      record.status = response.status;
      ok = response.status >= 200 && response.status < 300;
      await response.arrayBuffer().catch(() => {});
    } catch (error) {
      record.error = String(error?.cause?.message ?? error?.message ?? error);
    } finally {
      clearTimeout(timer);
      this.controllers.delete(controller);
    }
    if (ok || !terminal || this.closed) return;
    const delay = this.retryDelaysMs[attempt - 1];
    if (delay === undefined) return;
    const retry = setTimeout(() => {
      this.timers.delete(retry);
      this.#attempt(url, event, messageId, body, terminal, attempt + 1);
    }, delay);
    retry.unref?.();
    this.timers.add(retry);
  }

  clear() {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.deliveries.length = 0;
  }

  close() {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const c of this.controllers) c.abort();
  }
}
