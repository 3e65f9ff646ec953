import { STATUS_CODES } from "node:http";

export const NOT_FOUND = { detail: "Not found." };

export function readBody(req, limitBytes = 110 * 1024 * 1024) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > limitBytes) {
        reject(Object.assign(new Error("body too large"), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/** Parses a request body for the request log: JSON when it is JSON, else text, else null. */
export function describeBody(raw) {
  if (!raw || raw.length === 0) return null;
  const text = raw.toString("utf8");
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function sendJson(res, status, body, headers = {}) {
  const payload = Buffer.from(JSON.stringify(body));
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": payload.length,
    ...headers,
  });
  res.end(payload);
}

export function sendNotFound(res) {
  sendJson(res, 404, NOT_FOUND);
}

export function sendMethodNotAllowed(res, method, allowed) {
  sendJson(res, 405, { detail: `Method "${method}" not allowed.` }, { Allow: allowed.join(", ") });
}

/** The answer used when a rule forces an HTTP status. */
export function forcedResponse(status, retryAfter, body) {
  const headers = {};
  let payload = body;
  if (status === 429) {
    const seconds = retryAfter ?? 1;
    headers["Retry-After"] = String(seconds);
    payload ??= { detail: `Request was throttled. Your rate limit resets in ~${seconds}s.`, status: 429 };
  } else {
    if (retryAfter !== undefined && retryAfter !== null) headers["Retry-After"] = String(retryAfter);
    if (status >= 500) payload ??= { detail: "Internal server error" };
    else payload ??= { detail: STATUS_CODES[status] ?? "Error", status };
  }
  return { headers, payload };
}

export function sendForced(res, status, retryAfter, body) {
  const { headers, payload } = forcedResponse(status, retryAfter, body);
  if (typeof payload === "string") {
    const bytes = Buffer.from(payload);
    res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": bytes.length, ...headers });
    res.end(bytes);
    return;
  }
  sendJson(res, status, payload, headers);
}

/**
 * Reads `Prefer: wait` / `Prefer: wait=N`. Returns the wait in seconds (1..60),
 * or null when the client did not ask to wait.
 */
export function parsePreferWait(header, maxSeconds = 60) {
  if (!header) return null;
  for (const part of String(header).split(/[,;]/)) {
    const [name, value] = part.trim().split("=").map((s) => s.trim());
    if (name.toLowerCase() !== "wait") continue;
    if (value === undefined || value === "") return maxSeconds;
    const seconds = Number.parseInt(value, 10);
    if (!Number.isFinite(seconds)) return maxSeconds;
    return Math.min(maxSeconds, Math.max(1, seconds));
  }
  return null;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms).unref?.());
}
