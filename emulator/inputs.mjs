// Fetches a prediction's file inputs (any Input field with `format: uri`) the
// way a model's container does: http(s) URLs (redirects followed), `data:`
// URIs, and Replicate file URLs (`…/v1/files/{id}`) resolved from the
// emulator's own file store. Every attempt lands in the fetch log.
import sharp from "sharp";

/** A failure that ends the prediction `failed` with this message as `error`. */
export class PredictionError extends Error {}

const READABLE_FORMATS = new Set(["jpeg", "png", "webp", "gif", "tiff"]);

function describeUrl(url) {
  if (!url.startsWith("data:")) return url;
  const comma = url.indexOf(",");
  const head = comma === -1 ? url.slice(0, 40) : url.slice(0, comma);
  return `${head},… (${url.length} characters)`;
}

async function readCapped(response, maxBytes) {
  const declared = Number(response.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel().catch(() => {});
    throw new PredictionError(`input is ${declared} bytes, more than the ${maxBytes} allowed`);
  }
  const chunks = [];
  let size = 0;
  for await (const chunk of response.body ?? []) {
    size += chunk.length;
    if (size > maxBytes) throw new PredictionError(`input is more than the ${maxBytes} bytes allowed`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * new InputFetcher({ resolveFile(url) -> {bytes, contentType}|null|undefined, timeoutMs, maxBytes })
 * fetcher.load(prediction, field, url) -> { bytes, width, height, format, hasAlpha }
 */
export class InputFetcher {
  constructor({ resolveFile = () => undefined, timeoutMs = 10_000, maxBytes = 32 * 1024 * 1024, maxPixels = 40_000_000 } = {}) {
    this.resolveFile = resolveFile;
    this.timeoutMs = timeoutMs;
    this.maxBytes = maxBytes;
    this.maxPixels = maxPixels;
    this.log = [];
    this.controllers = new Set();
  }

  async load(predictionId, field, url) {
    const record = {
      prediction: predictionId,
      field,
      url: describeUrl(url),
      via: null,
      status: null,
      contentType: null,
      bytes: null,
      error: null,
      at: Date.now(),
    };
    this.log.push(record);
    try {
      const { bytes, contentType } = await this.#fetch(url, record);
      record.bytes = bytes.length;
      record.contentType = contentType;
      const image = await this.#decode(bytes, contentType);
      record.image = { format: image.format, width: image.width, height: image.height };
      return image;
    } catch (error) {
      const reason = error instanceof PredictionError ? error.message : String(error?.cause?.message ?? error?.message ?? error);
      record.error = reason;
      throw new PredictionError(`Failed to load input ${field} (${describeUrl(url)}): ${reason}`);
    }
  }

  async #fetch(url, record) {
    let parsed;
    try {
      parsed = new URL(url);
    } catch {
      throw new PredictionError("not a URL");
    }
    const stored = this.resolveFile(parsed);
    if (stored !== undefined) {
      record.via = "files";
      if (stored === null) {
        record.status = 404;
        throw new PredictionError("file not found");
      }
      record.status = 200;
      return stored;
    }
    if (parsed.protocol === "data:") {
      record.via = "data";
    } else if (parsed.protocol === "http:" || parsed.protocol === "https:") {
      record.via = "http";
    } else {
      throw new PredictionError(`unsupported URL scheme ${parsed.protocol}`);
    }
    const controller = new AbortController();
    this.controllers.add(controller);
    const timer = setTimeout(() => controller.abort(new Error(`timed out after ${this.timeoutMs} ms`)), this.timeoutMs);
    try {
      const response = await fetch(url, { signal: controller.signal, redirect: "follow" });
      record.status = response.status;
      if (response.redirected) record.finalUrl = response.url;
      if (!response.ok) {
        await response.body?.cancel().catch(() => {});
        throw new PredictionError(`HTTP ${response.status}`);
      }
      const bytes = await readCapped(response, this.maxBytes);
      return { bytes, contentType: response.headers.get("content-type") };
    } catch (error) {
      if (controller.signal.aborted && !(error instanceof PredictionError)) {
        throw new PredictionError(String(controller.signal.reason?.message ?? "aborted"));
      }
      throw error;
    } finally {
      clearTimeout(timer);
      this.controllers.delete(controller);
    }
  }

  async #decode(bytes, contentType) {
    let meta;
    try {
      meta = await sharp(bytes, { limitInputPixels: this.maxPixels }).metadata();
    } catch {
      meta = null;
    }
    if (!meta || !READABLE_FORMATS.has(meta.format) || !meta.width || !meta.height) {
      const what = contentType ? ` (${contentType})` : "";
      throw new PredictionError(`cannot identify image file: ${bytes.length} bytes${what} are not a jpeg, png, gif, webp or tiff image`);
    }
    if (meta.width * meta.height > this.maxPixels) {
      throw new PredictionError(`image is ${meta.width}x${meta.height}, more than ${this.maxPixels} pixels`);
    }
    return { bytes, format: meta.format, width: meta.width, height: meta.height, hasAlpha: Boolean(meta.hasAlpha) };
  }

  clear() {
    this.log.length = 0;
  }

  close() {
    for (const c of this.controllers) c.abort(new Error("emulator closed"));
  }
}
