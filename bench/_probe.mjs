import { startEmulator, startWorker, AUTH_TOKEN } from "./services.mjs";
import { load } from "./load.mjs";
import { cpuMs, rssBytes } from "./proc.mjs";
const emu = await startEmulator();
console.log(emu);
const w = await startWorker(emu.url);
console.log(w.url, w.pid, w.readyMs, w.firstAnswerMs, cpuMs(w.pid), rssBytes(w.pid));
const c0 = cpuMs(w.pid);
const h = await load({ url: w.url + "/health", connections: 1, seconds: 3 });
console.log(h, (cpuMs(w.pid) - c0) / h.ok);
const body = JSON.stringify({ input: { prompt: "bench", seed: 7 } });
const d = await load({ url: emu.url + "/v1/models/black-forest-labs/flux-schnell/predictions", method: "POST", connections: 1, seconds: 3,
  headers: { authorization: "Bearer r8_bench_service_token", prefer: "wait", "content-type": "application/json" }, body });
console.log("direct", d);
const ids = [];
const c1 = cpuMs(w.pid);
const g = await load({ url: w.url + "/generate", method: "POST", connections: 1, seconds: 3,
  headers: { authorization: "Bearer " + AUTH_TOKEN, "content-type": "application/json" }, body, onBody: (s, b) => { if (s === 200) ids.push(JSON.parse(b).id); else console.log(s, b) } });
console.log("worker", g, ids.length, ids[0], (cpuMs(w.pid) - c1) / g.ok);
await new Promise(r => setTimeout(r, 2000));
const kv = await w.mf.getKVNamespace("IMAGE_META");
const l = await kv.list({ prefix: "image:" });
console.log(l.keys.length, l.keys[0], l.list_complete, l.cursor);
await w.mf.dispose(); await emu.close();
