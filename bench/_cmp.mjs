import { Miniflare } from "miniflare";
import { startEmulator, startWorker, AUTH_TOKEN, REPLICATE_TOKEN } from "./services.mjs";
import { load } from "./load.mjs";
import { cpuMs, childrenMatching, settled } from "./proc.mjs";
const emu = await startEmulator();
const w = await startWorker(emu.url);
const before = new Set(childrenMatching(process.pid, "workerd"));
const mf = new Miniflare({ scriptPath: "bench/_ref-worker.mjs", modules: true, compatibilityDate: "2026-07-01", r2Buckets: ["IMAGES"], kvNamespaces: ["IMAGE_META"], bindings: { API: emu.url, TOKEN: REPLICATE_TOKEN } });
const refUrl = (await mf.ready).origin;
const refPid = childrenMatching(process.pid, "workerd").find(p => !before.has(p) && p !== w.pid);
const res = await fetch(w.url + "/generate", { method: "POST", headers: { authorization: "Bearer " + AUTH_TOKEN, "content-type": "application/json" }, body: JSON.stringify({ input: { prompt: "fluxgate benchmark small", seed: 11, output_format: "jpg", output_quality: 80 } }) });
const { id } = await res.json();
await new Promise(r => setTimeout(r, 1500));
const bytes = Buffer.from(await (await fetch(w.url + "/image/" + id)).arrayBuffer());
await (await mf.getR2Bucket("IMAGES")).put(id, bytes, { httpMetadata: { contentType: "image/jpeg" } });
async function phase(name, pid, opts) {
  await load({ ...opts, seconds: 1 });
  await settled(pid);
  const c0 = cpuMs(pid);
  const r = await load({ seconds: 4, ...opts });
  const c1 = await settled(pid);
  console.log(name.padEnd(12), "c" + opts.connections, "rps", r.rps.toFixed(0), "p50", r.p50.toFixed(2), "p99", r.p99.toFixed(2), "cpu/req", ((c1 - c0) / r.ok).toFixed(2));
}
for (const round of [1, 2]) for (const c of [1, 32]) {
  await phase("rust image", w.pid, { url: w.url + "/image/" + id, connections: c });
  await phase("js image", refPid, { url: refUrl + "/r2/" + id, connections: c });
  await phase("rust health", w.pid, { url: w.url + "/health", connections: c });
  await phase("js noop", refPid, { url: refUrl + "/noop", connections: c });
}
await mf.dispose(); await w.mf.dispose(); await emu.close();
