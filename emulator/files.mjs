// Replicate's Files API: multipart uploads (`content`, `filename`, `type`,
// `metadata`), file objects, listing, deletion and downloads. Files expire
// 24 hours after upload.
import { createHash, randomUUID } from "node:crypto";

export const DEFAULT_MAX_FILE_BYTES = 100 * 1024 * 1024;
const DAY_MS = 24 * 3600 * 1000;

export class FileError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

function sizeText(bytes) {
  if (bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)}MB`;
  return `${bytes} bytes`;
}

export function tooLarge(maxBytes) {
  return new FileError(413, `Files must be less than ${sizeText(maxBytes)} in size`);
}

/** Parses a multipart/form-data body with the platform's own parser. */
async function parseMultipart(contentType, body) {
  if (!/^multipart\/form-data\b/i.test(contentType ?? "")) {
    throw new FileError(400, "The request must be multipart/form-data with the file in a `content` part.");
  }
  try {
    return await new Request("http://emulator.invalid/v1/files", {
      method: "POST",
      headers: { "content-type": contentType },
      body,
    }).formData();
  } catch {
    throw new FileError(400, "The multipart/form-data body could not be parsed.");
  }
}

export class FileStore {
  constructor({ maxBytes = DEFAULT_MAX_FILE_BYTES, retentionMs = DAY_MS } = {}) {
    this.maxBytes = maxBytes;
    this.retentionMs = retentionMs;
    this.byId = new Map();
    this.nextSeq = 1;
  }

  /** Stores an upload; resolves to the stored record. Rejects with FileError. */
  async upload(contentType, body) {
    const form = await parseMultipart(contentType, body);
    const content = form.get("content");
    if (!content || typeof content === "string") {
      throw new FileError(400, "The file must be sent in a `content` part.");
    }
    if (content.size > this.maxBytes) throw tooLarge(this.maxBytes);
    const filename = form.get("filename") ?? (content.name || "file");
    if (typeof filename !== "string" || Buffer.byteLength(filename) > 255) {
      throw new FileError(422, "filename must be at most 255 bytes");
    }
    const type = form.get("type") ?? (content.type || "application/octet-stream");
    let metadata = {};
    const metadataText = form.get("metadata");
    if (metadataText !== null) {
      try {
        metadata = JSON.parse(typeof metadataText === "string" ? metadataText : await metadataText.text());
      } catch {
        throw new FileError(422, "metadata must be valid JSON");
      }
      if (metadata === null || typeof metadata !== "object" || Array.isArray(metadata)) {
        throw new FileError(422, "metadata must be a JSON object");
      }
    }
    const bytes = Buffer.from(await content.arrayBuffer());
    const md5 = createHash("md5").update(bytes).digest("hex");
    const createdMs = Date.now();
    const record = {
      id: Buffer.from(randomUUID()).toString("base64").replace(/=+$/, ""),
      seq: this.nextSeq++,
      name: filename,
      contentType: String(type),
      bytes,
      md5,
      sha256: createHash("sha256").update(bytes).digest("hex"),
      metadata,
      createdMs,
      expiresMs: createdMs + this.retentionMs,
    };
    this.byId.set(record.id, record);
    return record;
  }

  get(id) {
    const record = this.byId.get(id);
    if (!record) return null;
    if (Date.now() >= record.expiresMs) {
      this.byId.delete(id);
      return null;
    }
    return record;
  }

  delete(id) {
    return this.get(id) ? this.byId.delete(id) : false;
  }

  /** Newest first. */
  list() {
    return [...this.byId.keys()].map((id) => this.get(id)).filter(Boolean).sort((a, b) => b.seq - a.seq);
  }

  toJSON(record, apiBase) {
    return {
      id: record.id,
      name: record.name,
      content_type: record.contentType,
      size: record.bytes.length,
      etag: record.md5,
      checksums: { sha256: record.sha256, md5: record.md5 },
      metadata: record.metadata,
      created_at: new Date(record.createdMs).toISOString(),
      expires_at: new Date(record.expiresMs).toISOString(),
      urls: { get: `${apiBase}/v1/files/${record.id}` },
    };
  }

  clear() {
    this.byId.clear();
  }
}
