import { createHash, createHmac, randomBytes } from "node:crypto";
import { randomId } from "./clock.mjs";

export const WEBHOOK_EVENTS = ["start", "output", "logs", "completed"];

export const CONTROLLED_MODES = ["valid", "forged", "tampered", "stale", "replay", "duplicate", "out-of-order"];

function tamperedOutput(output) {
  const forged = "https://attacker.invalid/forged.png";
  if (Array.isArray(output)) return [forged];
  return forged;
}

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
  constructor({ secret = DEFAULT_WEBHOOK_SECRET, retryDelaysMs = [1000, 5000, 15000, 40000], timeoutMs = 10000, enabled = true } = {}) {
    this.secret = secret;
    this.enabled = enabled;
    this.retryDelaysMs = retryDelaysMs;
    this.timeoutMs = timeoutMs;
    this.deliveries = [];
    this.timers = new Set();
    this.controllers = new Set();
  }

  /** Delivers a prediction's event to its webhook (unless deliveries are off: `sendWebhooks: false`). */
  send(url, event, prediction) {
    if (!this.enabled) return;
    const body = JSON.stringify(prediction);
    const messageId = `msg_${randomId(27)}`;
    const terminal = event === "completed";
    this.#attempt(url, event, messageId, body, terminal, 1);
  }

  async #attempt(url, event, messageId, body, terminal, attempt) {
    const timestamp = Math.floor(Date.now() / 1000);
    const headers = this.#headers(messageId, timestamp, body, this.secret);
    const record = await this.#post(url, { id: messageId, event, attempt, headers, body });
    const ok = record.status >= 200 && record.status < 300;
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

  #headers(messageId, timestamp, body, secret) {
    return {
      "content-type": "application/json",
      "user-agent": "Replicate-Webhook/1.0",
      "webhook-id": messageId,
      "webhook-timestamp": String(timestamp),
      "webhook-signature": `v1,${signWebhook(secret, messageId, timestamp, body)}`,
    };
  }

  /** One POST, recorded in `deliveries`; resolves to the record. Redirects are not followed. */
  async #post(url, { id, event, attempt = 1, headers, body, control }) {
    const record = { id, event, url, attempt, status: null, error: null, at: Date.now(), headers, body: JSON.parse(body) };
    if (control) record.control = control;
    this.deliveries.push(record);
    const controller = new AbortController();
    this.controllers.add(controller);
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    try {
      const response = await fetch(url, { method: "POST", headers, body, redirect: "manual", signal: controller.signal });
      record.status = response.status;
      await response.arrayBuffer().catch(() => {});
    } catch (error) {
      record.error = String(error?.cause?.message ?? error?.message ?? error);
    } finally {
      clearTimeout(timer);
      this.controllers.delete(controller);
    }
    return record;
  }

  /**
   * Deliveries a well-behaved sender would not make, for hardening receivers.
   * mode: "valid" | "forged" (signed with another key) | "tampered" (body changed after signing) |
   * "stale" (timestamp ageSeconds old, 600 by default) | "replay" (one message sent twice, same
   * id, timestamp and signature; or a logged delivery resent verbatim when messageId names one) |
   * "duplicate" (the same payload twice under two ids) | "out-of-order" (this payload, then
   * `earlier`, the prediction as it was before, both validly signed).
   * Resolves to the delivery records, in sending order.
   */
  async deliverControlled({ url, mode = "valid", event = "completed", payload, earlier = null, ageSeconds = 600, messageId = null }) {
    const now = Math.floor(Date.now() / 1000);
    const control = mode;
    const fresh = (p, timestamp = now, secret = this.secret) => {
      const id = `msg_${randomId(27)}`;
      const body = JSON.stringify(p);
      return { id, body, headers: this.#headers(id, timestamp, body, secret) };
    };
    const send = (m, ev = event) => this.#post(url, { id: m.id, event: ev, headers: m.headers, body: m.body, control });
    switch (mode) {
      case "valid":
        return [await send(fresh(payload))];
      case "forged": {
        const other = `whsec_${randomBytes(24).toString("base64")}`;
        return [await send(fresh(payload, now, other))];
      }
      case "tampered": {
        const m = fresh(payload);
        const changed = { ...payload, status: "succeeded", error: null, output: tamperedOutput(payload.output) };
        return [await send({ ...m, body: JSON.stringify(changed) })];
      }
      case "stale":
        return [await send(fresh(payload, now - ageSeconds))];
      case "replay": {
        if (messageId) {
          const logged = this.deliveries.find((d) => d.id === messageId);
          if (!logged) throw new Error(`no delivery ${messageId} in the log`);
          return [await this.#post(url, { id: logged.id, event: logged.event, headers: logged.headers, body: JSON.stringify(logged.body), control })];
        }
        const m = fresh(payload);
        return [await send(m), await send(m)];
      }
      case "duplicate":
        return [await send(fresh(payload)), await send(fresh(payload))];
      case "out-of-order": {
        const first = await send(fresh(payload));
        return [first, await send(fresh(earlier ?? payload), earlier?.status === "starting" ? "start" : "output")];
      }
      default:
        throw new Error(`unknown mode ${mode}`);
    }
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
