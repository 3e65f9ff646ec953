// How output files are served, including the misbehaviours tests ask for:
// redirects (to another host, or chains on this host), huge bodies streamed
// without buffering, bodies without Content-Length, bodies shorter than their
// Content-Length, other bytes or another Content-Type.
import { randomBytes } from "node:crypto";

const FILLER = Buffer.alloc(64 * 1024);
/** How many bytes of the real image lead a hugeBytes body. */
export const HUGE_PREFIX_BYTES = 1024;

/** Writes a chunk, waiting for the socket to drain. False when the client went away. */
function writeChunk(res, chunk) {
  return new Promise((resolve) => {
    if (res.destroyed) return resolve(false);
    if (res.write(chunk)) return resolve(true);
    const done = (value) => {
      res.off("drain", onDrain);
      res.off("close", onClose);
      resolve(value);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    res.once("drain", onDrain);
    res.once("close", onClose);
  });
}

/**
 * Serves `file` ({ bytes, contentType, truncate? }) shaped by delivery effects:
 * contentType, replaceBody, hugeBytes, unsized, shortBody (and the prediction's truncate).
 */
export async function serveFile(req, res, file, effects = {}, headers = {}) {
  const bytes = typeof effects.replaceBody === "string" ? Buffer.from(effects.replaceBody) : file.bytes;
  const huge = Number.isSafeInteger(effects.hugeBytes) && effects.hugeBytes > 0;
  const total = huge ? effects.hugeBytes : bytes.length;
  const prefix = huge ? bytes.subarray(0, Math.min(HUGE_PREFIX_BYTES, total)) : bytes;
  let send = total;
  if (Number.isSafeInteger(effects.shortBody) && effects.shortBody !== true) send = Math.min(effects.shortBody, Math.max(0, total - 1));
  else if (effects.shortBody === true || file.truncate) send = Math.floor(total / 2);
  const short = send < total;

  const head = {
    "Content-Type": typeof effects.contentType === "string" ? effects.contentType : file.contentType,
    ...headers,
  };
  if (!effects.unsized) head["Content-Length"] = total;
  res.writeHead(200, head);
  if (req.method === "HEAD") return res.end();

  let sent = 0;
  if (prefix.length > 0 && send > 0) {
    const first = prefix.subarray(0, Math.min(prefix.length, send));
    if (!(await writeChunk(res, first))) return;
    sent = first.length;
  }
  while (sent < send) {
    const n = Math.min(FILLER.length, send - sent);
    if (!(await writeChunk(res, n === FILLER.length ? FILLER : FILLER.subarray(0, n)))) return;
    sent += n;
  }
  if (short) {
    // Flush what was written, then drop the connection mid-body.
    res.write("", () => res.destroy());
    return;
  }
  res.end();
}

export function sendRedirect(res, status, location) {
  res.writeHead(status, { Location: location, "Content-Length": 0 });
  res.end();
}

/** Every request header as received, one `Name: value` line each. */
export function echoedHeaders(req) {
  const lines = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
  return lines.join("\n");
}

/** Holds the request open, never answering, until the client or the emulator closes it. */
export function holdOpen(res) {
  return new Promise((resolve) => {
    if (res.destroyed) return resolve();
    res.once("close", resolve);
  });
}

/**
 * Redirect chains: the first request of a chain records its effects under a
 * token; the hops that follow (`?hop=<token>.<n>`) replay them without
 * matching rules again, so `times` counts a chain once.
 */
export class RedirectPlans {
  constructor(max = 1000) {
    this.max = max;
    this.plans = new Map();
  }

  create(effects) {
    const token = randomBytes(6).toString("hex");
    this.plans.set(token, { effects });
    while (this.plans.size > this.max) this.plans.delete(this.plans.keys().next().value);
    return token;
  }

  /** { token, hops, effects } for a `hop` query value, or null. */
  lookup(value) {
    const match = /^([0-9a-f]{12})\.(\d+)$/.exec(value ?? "");
    const plan = match ? this.plans.get(match[1]) : null;
    return plan ? { token: match[1], hops: Number(match[2]), effects: plan.effects } : null;
  }

  clear() {
    this.plans.clear();
  }
}
