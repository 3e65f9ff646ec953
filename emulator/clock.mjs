import { randomBytes } from "node:crypto";

const EPOCH_NS_AT_START = BigInt(Date.now()) * 1_000_000n;
const HRTIME_AT_START = process.hrtime.bigint();

/** Current wall-clock time in nanoseconds since the Unix epoch (BigInt). */
export function nowNs() {
  return EPOCH_NS_AT_START + (process.hrtime.bigint() - HRTIME_AT_START);
}

/** ISO timestamp with millisecond precision: 2025-01-15T10:03:39.896Z */
export function isoMillis(ns) {
  return new Date(Number(ns / 1_000_000n)).toISOString();
}

/** ISO timestamp with nanosecond precision: 2025-01-15T10:03:40.584470194Z */
export function isoNanos(ns) {
  const seconds = ns / 1_000_000_000n;
  const fraction = (ns % 1_000_000_000n).toString().padStart(9, "0");
  return `${new Date(Number(seconds) * 1000).toISOString().slice(0, 19)}.${fraction}Z`;
}

export function secondsBetween(fromNs, toNs) {
  return Number(toNs - fromNs) / 1e9;
}

const ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

export function randomId(length = 26) {
  const bytes = randomBytes(length);
  let id = "";
  for (let i = 0; i < length; i++) id += ID_ALPHABET[bytes[i] & 31];
  return id;
}

const STREAM_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

export function randomStreamToken() {
  const bytes = randomBytes(52);
  let token = "";
  for (const b of bytes) token += STREAM_ALPHABET[b & 31];
  return `bcwr-${token}`;
}

const DURATION_UNITS = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/**
 * Parses a Go-style duration as used by the Cancel-After header
 * ("30s", "5m", "1h30m45s", "1.5s", "500ms"). Returns milliseconds or null.
 */
export function parseDuration(text) {
  if (typeof text !== "string") return null;
  const trimmed = text.trim();
  if (trimmed === "") return null;
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * 1000;
  const pattern = /(\d+(?:\.\d+)?)(ms|h|m|s)/gy;
  let total = 0;
  let consumed = 0;
  let match;
  while ((match = pattern.exec(trimmed)) !== null) {
    total += Number(match[1]) * DURATION_UNITS[match[2]];
    consumed = pattern.lastIndex;
  }
  if (consumed !== trimmed.length) return null;
  return total;
}
