import { Worker } from "node:worker_threads";
import sharp from "sharp";
import { renderPixels } from "./pixels.mjs";
import { CONTENT_TYPES, imageDimensions } from "./schema.mjs";

let worker = null;
let workerBroken = false;
let nextJobId = 1;
const pendingJobs = new Map();

function failPending(error) {
  for (const { reject } of pendingJobs.values()) reject(error);
  pendingJobs.clear();
}

function getWorker() {
  if (workerBroken) return null;
  if (worker) return worker;
  try {
    worker = new Worker(new URL("./render-worker.mjs", import.meta.url));
  } catch {
    workerBroken = true;
    return null;
  }
  worker.unref();
  worker.on("message", ({ id, pixels, error }) => {
    const job = pendingJobs.get(id);
    if (!job) return;
    pendingJobs.delete(id);
    if (pendingJobs.size === 0) worker?.unref();
    if (error) job.reject(new Error(error));
    else job.resolve(Buffer.from(pixels));
  });
  worker.on("error", (error) => {
    workerBroken = true;
    worker = null;
    failPending(error);
  });
  worker.on("exit", () => {
    worker = null;
    failPending(new Error("render worker exited"));
  });
  return worker;
}

/** Renders pixels off the main thread when possible, so the server stays responsive. */
export function renderPixelsOffThread(params) {
  const w = getWorker();
  if (!w) return Promise.resolve(renderPixels(params));
  return new Promise((resolve, reject) => {
    const id = nextJobId++;
    pendingJobs.set(id, { resolve, reject });
    w.ref();
    w.postMessage({ id, params });
  }).catch(() => renderPixels(params));
}

export async function encode(pixels, width, height, format, quality) {
  const image = sharp(pixels, { raw: { width, height, channels: 3 } });
  if (format === "png") return image.png({ compressionLevel: 6 }).toBuffer();
  if (format === "jpg") return image.jpeg({ quality: Math.max(1, quality) }).toBuffer();
  return image.webp({ quality, effort: 2 }).toBuffer();
}

/** Small LRU of encoded images, keyed by every parameter that changes the bytes. */
export class ImageCache {
  constructor(maxEntries = 48) {
    this.maxEntries = maxEntries;
    this.entries = new Map();
  }

  get(key, produce) {
    const existing = this.entries.get(key);
    if (existing) {
      this.entries.delete(key);
      this.entries.set(key, existing);
      return existing;
    }
    const promise = produce();
    this.entries.set(key, promise);
    promise.catch(() => this.entries.delete(key));
    while (this.entries.size > this.maxEntries) {
      this.entries.delete(this.entries.keys().next().value);
    }
    return promise;
  }

  clear() {
    this.entries.clear();
  }
}

const sharedCache = new ImageCache();

/**
 * Encodes one flux-schnell output image (text to image) for a validated input.
 * Resolves to { bytes, contentType, extension, width, height }.
 */
export async function generateImage({ input, seed, index, cache = sharedCache }) {
  const [width, height] = imageDimensions(input.aspect_ratio, input.megapixels);
  const format = input.output_format;
  const quality = input.output_quality;
  const key = JSON.stringify([input.prompt, seed, index, width, height, format, format === "png" ? null : quality]);
  const bytes = await cache.get(key, async () => {
    const pixels = await renderPixelsOffThread({ prompt: input.prompt, seed, index, width, height });
    return encode(pixels, width, height, format, quality);
  });
  return { bytes, contentType: CONTENT_TYPES[format], extension: format, width, height };
}
