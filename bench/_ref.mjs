import { Miniflare } from "miniflare";
import { startEmulator, startWorker, AUTH_TOKEN, REPLICATE_TOKEN } from "./services.mjs";
import { load } from "./load.mjs";
import { cpuMs, childrenMatching, settled } from "./proc.mjs";
const emu = await startEmulator();
const before = new Set(childrenMatching(process.pid, "workerd"));
const mf = new Miniflare({ scriptPath: "bench/_ref-worker.mjs", modules: true, compatibilityDate: "2026-07-01", r2Buckets: ["IMAGES"], kvNamespaces: ["IMAGE_META"], bindings: { API: emu.url, TOKEN: REPLICATE_TOKEN } });
const url = (await mf.ready).origin;
const pid = childrenMatching(process.pid, "workerd").find(p => !before.has(p));
async function phase(name, opts) {
  await load({ ...opts, seconds: 1 });
  await settled(pid);
  const c0 = cpuMs(pid);
  const r = await load({ seconds: 4, ...opts });
  const c1 = await settled(pid);
  console.log(name.padEnd(28), "c" + opts.connections, "rps", r.rps.toFixed(0), "p50", r.p50.toFixed(2), "p99", r.p99.toFixed(2), "cpu/req", ((c1 - c0) / r.ok).toFixed(2));
}
await phase("js noop", { url: url + "/noop", connections: 1 });
const body = JSON.stringify({ input: { prompt: "fluxgate benchmark", seed: 7 } });
const hdr = { "content-type": "application/json" };
await phase("js gen (no kv, no persist)", { url: url + "/gen?kv=0&persist=0", method: "POST", headers: hdr, body, connections: 1 });
await phase("js gen (kv, no persist)", { url: url + "/gen?persist=0", method: "POST", headers: hdr, body, connections: 1 });
await phase("js gen (kv + persist)", { url: url + "/gen", method: "POST", headers: hdr, body, connections: 1 });
await phase("js gen (kv + persist)", { url: url + "/gen", method: "POST", headers: hdr, body, connections: 16 });
// images
const bucket = await mf.getR2Bucket("IMAGES");
const { readFileSync } = await import("node:fs");
const { generateImage } = await import("../emulator/images.mjs");
const small = await generateImage({ input: { prompt: "fluxgate benchmark small", seed: 11, output_format: "jpg", output_quality: 80, aspect_ratio: "1:1", megapixels: "1" }, seed: 11, index: 0 });
const big = await generateImage({ input: { prompt: "fluxgate benchmark large", seed: 2, output_format: "png", aspect_ratio: "9:21", megapixels: "1" }, seed: 2, index: 0 });
await bucket.put("small.jpg", small.bytes, { httpMetadata: { contentType: "image/jpeg" } });
await bucket.put("big.png", big.bytes, { httpMetadata: { contentType: "image/png" } });
console.log(small.bytes.length, big.bytes.length);
for (const c of [1, 32]) {
  await phase("js r2 small", { url: url + "/r2/small.jpg", connections: c });
  await phase("js r2 big", { url: url + "/r2/big.png", connections: c });
}
await mf.dispose(); await emu.close();
process.exit(0);
