// The floor for fluxgate's figures: a minimal JavaScript worker that makes the
// same platform calls as fluxgate's routes and nothing else (no validation,
// no error handling, no checks on the bytes). Run in the same Miniflare
// setup, its latency and CPU are what workerd, Miniflare and the local KV/R2
// simulators cost by themselves; fluxgate minus the floor is fluxgate's own
// code. Keep it in step with the calls fluxgate makes per request:
//
//   GET /health        KV get stats:lost, at most once per 10 s per isolate,
//                      one read at a time
//                      (src/edge/health.rs, Store::lost_count_recent)
//   POST /generate     src/edge/generate.rs, usage.rs, persist.rs, store.rs,
//                      called with AUTH_TOKEN (subject "service", no limits;
//                      the model's schema is kept per isolate after the
//                      first request, so no schema call follows):
//                      usage::admit counts the generation (written with
//                        the images' usage, after the copies);
//                      fetch: create with Prefer: wait (the emulator answers
//                        it finished, so no poll follows);
//                      before answering, concurrently (persist::keep_outputs,
//                        write_records, Store::put_record, put_prediction_index):
//                        KV put owner:service:<inverted time>:<id> (the
//                        owner's index), KV put image:<id> (the record,
//                        pending, with its KV metadata), KV put pending:<id>
//                        (with a TTL), KV put prediction:<prediction id>;
//                      answer; then in waitUntil: KV put cache:<sha-256>
//                        (the answer kept for an identical request, with a
//                        TTL: the input names a seed, and `Cache-Control:
//                        no-cache` still keeps it: cache::keep);
//                      and (Store::copy; no R2 head first: nobody else
//                        can have stored a new prediction's bytes):
//                        fetch the output (Store::copy_from),
//                        R2 put <id> streaming the body (fluxgate tees it
//                          and reads 16 bytes of one branch to check they
//                          are an image: that is its own cost),
//                        concurrently KV put image:<id> (stored) and
//                          KV delete pending:<id> (Store::put_record),
//                        once the copies are done (persist::keep_outputs),
//                          one usage::add of the generation, the images,
//                          their bytes and the predict_time: KV get + KV put
//                          of usage:service:<day> (and KV put
//                          usage-day:<day>:service when KV had no usage for
//                          the day yet), at most once a second, one writer
//                          at a time taking what was counted meanwhile
//   GET /image/{id}    R2 get, body streamed (src/edge/image.rs, from_r2
//                      without conditional or range headers)
//
// fluxgate's /replicate/v1 routes and POST /uploads have no equivalent here.
//
// With `checks.on` (bench/floor-checks-worker.mjs) it also does in
// JavaScript what fluxgate does per request besides those calls: the
// caller's token compared in constant time, a request id, the prompt
// checked, a deadline on each fetch, the output's first bytes checked to be
// an image (a tee, 16 bytes read from one branch, the other put into R2, its
// size compared with the declared length), the request's log line and the
// copy's, X-Request-Id on the answer. The calls stay the same.
const PENDING_TTL_SECONDS = 2 * 60 * 60;
const CACHE_TTL_SECONDS = 7 * 24 * 60 * 60;
const SUBJECT = "service";
/** A time later than any image's, in ms (owner index keys hold this - created). */
const INVERTED_FROM_MS = 9_999_999_999_999;

/** Set by bench/floor-checks-worker.mjs before the first request. */
export const checks = { on: false };

export default {
  async fetch(request, env, ctx) {
    if (!checks.on) return route(request, env, ctx);
    const started = Date.now();
    const requestId = hex(crypto.getRandomValues(new Uint8Array(8)));
    const noted = {};
    const { pathname } = new URL(request.url);
    let response;
    if (pathname === "/generate" && !authorized(request, env)) {
      response = Response.json({ error: "Unauthorized" }, { status: 401 });
    } else {
      response = await route(request, env, ctx, noted);
    }
    response.headers.set("X-Request-Id", requestId);
    const line = {
      request_id: requestId,
      method: request.method,
      route: pathname.startsWith("/image/") ? "/image/{id}" : pathname,
      status: response.status,
      duration_ms: Date.now() - started,
      caller: pathname === "/generate" ? SUBJECT : null,
      model: noted.model ?? null,
      prediction_id: noted.predictionId ?? null,
      prompt: noted.prompt?.slice(0, 32) ?? null,
      cache_hit: false,
      bytes: Number(response.headers.get("content-length")) || null,
    };
    console.log(JSON.stringify(line));
    return response;
  },
};

const encoder = new TextEncoder();
function authorized(request, env) {
  const given = encoder.encode(request.headers.get("authorization") ?? "");
  const expected = encoder.encode(`Bearer ${env.AUTH_TOKEN}`);
  return given.byteLength === expected.byteLength && crypto.subtle.timingSafeEqual(given, expected);
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/** The image type of an output's first bytes (PNG, JPEG, WebP), or null. */
function sniff(bytes) {
  if (bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return "image/png";
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "image/jpeg";
  const riff = String.fromCharCode(...bytes.subarray(0, 4)) === "RIFF";
  if (bytes.length >= 12 && riff && String.fromCharCode(...bytes.subarray(8, 12)) === "WEBP") return "image/webp";
  return null;
}

/** The floor's routes; `noted` (with checks only) collects what the log line says. */
async function route(request, env, ctx, noted) {
  const { pathname } = new URL(request.url);
  if (pathname === "/health") return health(env);
  if (pathname === "/generate" && request.method === "POST") return generate(request, env, ctx, noted);
  if (pathname.startsWith("/image/")) return image(env, pathname.slice("/image/".length));
  return Response.json({ error: "Not found" }, { status: 404 });
}

let lostSeen = null;
let lostReading = false;
async function health(env) {
  const now = Date.now();
  // Stale: one request reads KV, the others meanwhile answer the last reading.
  if (!lostSeen || (now - lostSeen.at >= 10_000 && !lostReading)) {
    lostReading = true;
    try {
      lostSeen = { count: Number((await env.IMAGE_META.get("stats:lost")) ?? 0), at: now };
    } finally {
      lostReading = false;
    }
  }
  return Response.json({ status: "ok", service: "floor", lost_images: lostSeen.count });
}

let model;
/** owner/name of the model /generate runs when none is named (DEFAULT_MODEL in MODELS), read once. */
function defaultModel(env) {
  if (!model) {
    const entries = Object.fromEntries((env.MODELS ?? "").split(",").map((e) => e.trim().split("=").map((p) => p.trim())));
    model = entries[env.DEFAULT_MODEL] ?? env.REPLICATE_MODEL ?? "black-forest-labs/flux-schnell";
  }
  return model;
}

/** What this isolate counted and has not written, and its one writer's state (usage::write). */
const ledger = { unwritten: null, writing: false, writtenAt: 0 };
/** KV takes about one write per second to a key (WRITE_SPACING_MS). */
const WRITE_SPACING_MS = 1000;

/**
 * Adds `delta` to the subject's usage of today (usage::add): counted at
 * once; one writer at a time reads, adds what was counted and writes, at
 * most once a second, until nothing counted is left.
 */
async function addUsage(env, delta) {
  ledger.unwritten ??= {};
  for (const [name, value] of Object.entries(delta)) ledger.unwritten[name] = (ledger.unwritten[name] ?? 0) + value;
  if (ledger.writing) return;
  ledger.writing = true;
  try {
    while (ledger.unwritten) {
      const wait = ledger.writtenAt + WRITE_SPACING_MS - Date.now();
      if (wait > 0) await scheduler.wait(wait);
      const day = new Date().toISOString().slice(0, 10);
      const key = `usage:${SUBJECT}:${day}`;
      const text = await env.IMAGE_META.get(key);
      const usage = text ? JSON.parse(text) : {};
      for (const [name, value] of Object.entries(ledger.unwritten)) usage[name] = (usage[name] ?? 0) + value;
      ledger.unwritten = null;
      ledger.writtenAt = Date.now();
      await env.IMAGE_META.put(key, JSON.stringify(usage));
      if (text === null) await env.IMAGE_META.put(`usage-day:${day}:${SUBJECT}`, "");
    }
  } finally {
    ledger.writing = false;
  }
}

async function generate(request, env, ctx, noted) {
  const { input } = await request.json();
  if (checks.on) {
    if (typeof input?.prompt !== "string" || input.prompt.trim() === "" || input.prompt.length > 10_000) {
      return Response.json({ error: "Invalid input" }, { status: 422 });
    }
    noted.model = defaultModel(env);
    noted.prompt = input.prompt;
  }
  const created = await fetch(`${env.REPLICATE_API_BASE}/v1/models/${defaultModel(env)}/predictions`, {
    method: "POST",
    signal: checks.on ? AbortSignal.timeout(60_000) : undefined,
    headers: {
      authorization: `Bearer ${env.REPLICATE_API_TOKEN}`,
      "content-type": "application/json",
      prefer: "wait=60",
    },
    body: JSON.stringify({ input }),
  });
  const prediction = await created.json();
  if (checks.on) noted.predictionId = prediction.id;
  const id = `${prediction.id}.${input.output_format ?? "webp"}`;
  const record = {
    id,
    prediction_id: prediction.id,
    model: defaultModel(env),
    status: "pending",
    source_url: prediction.output[0],
    created_at: new Date().toISOString(),
    owner: SUBJECT,
    attempts: 0,
  };
  const inverted = String(INVERTED_FROM_MS - Date.parse(record.created_at)).padStart(13, "0");
  await Promise.all([
    env.IMAGE_META.put(`owner:${SUBJECT}:${inverted}:${id}`, ""),
    putRecord(env, record),
    env.IMAGE_META.put(`pending:${id}`, "", { expirationTtl: PENDING_TTL_SECONDS }),
    env.IMAGE_META.put(`prediction:${prediction.id}`, JSON.stringify({ ids: [id], input })),
  ]);
  // Keyed by the request as fluxgate's is, so an identical request overwrites
  // the entry (in Miniflare that also deletes the old value's blob file).
  const cacheKey = `cache:${await sha256Hex(JSON.stringify({ model: record.model, input }))}`;
  ctx.waitUntil(
    env.IMAGE_META.put(
      cacheKey,
      JSON.stringify({ prediction_id: prediction.id, model: record.model, seed: input.seed ?? null, ids: [id] }),
      { expirationTtl: CACHE_TTL_SECONDS },
    ),
  );
  const predictTimeMs = Math.round((prediction.metrics?.predict_time ?? 0) * 1000);
  ctx.waitUntil(persist(env, record, predictTimeMs));
  return Response.json({ id, imageUrl: `${new URL(request.url).origin}/image/${id}`, predictionId: prediction.id });
}

async function persist(env, record, predictTimeMs) {
  if (checks.on) return persistChecked(env, record, predictTimeMs);
  const upstream = await fetch(record.source_url);
  const contentType = upstream.headers.get("content-type");
  const stored = await env.IMAGES.put(record.id, upstream.body, { httpMetadata: { contentType } });
  const done = { ...record, status: "stored", content_type: contentType, size: stored.size, attempts: 1 };
  await Promise.all([putRecord(env, done), env.IMAGE_META.delete(`pending:${record.id}`)]);
  await addUsage(env, { generations: 1, images_stored: 1, bytes_stored: stored.size, predict_time_ms: predictTimeMs });
}

/** persist, with the output's first bytes checked and the copy's log line (checks.on). */
async function persistChecked(env, record, predictTimeMs) {
  const upstream = await fetch(record.source_url, { signal: AbortSignal.timeout(25_000) });
  const length = Number(upstream.headers.get("content-length"));
  const [toStore, toSniff] = upstream.body.tee();
  const reader = toSniff.getReader();
  const { value } = await reader.read();
  reader.cancel();
  const contentType = value && sniff(value.subarray(0, 16));
  if (!contentType) {
    toStore.cancel();
    throw new Error("output is not an image");
  }
  const stored = await env.IMAGES.put(record.id, toStore, { httpMetadata: { contentType } });
  if (stored.size !== length) throw new Error(`stored ${stored.size} of ${length} bytes`);
  const done = { ...record, status: "stored", content_type: contentType, size: stored.size, attempts: 1 };
  await Promise.all([putRecord(env, done), env.IMAGE_META.delete(`pending:${record.id}`)]);
  const line = { copy: record.id, prediction_id: record.prediction_id, status: "stored", already: false, bytes: stored.size, attempts: 1, error: null };
  console.log(JSON.stringify(line));
  await addUsage(env, { generations: 1, images_stored: 1, bytes_stored: stored.size, predict_time_ms: predictTimeMs });
}

async function sha256Hex(text) {
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text))));
}

function putRecord(env, record) {
  return env.IMAGE_META.put(`image:${record.id}`, JSON.stringify(record), {
    metadata: {
      status: record.status,
      content_type: record.content_type,
      size: record.size,
      prediction_id: record.prediction_id,
      created_at: record.created_at,
    },
  });
}

async function image(env, id) {
  const object = await env.IMAGES.get(id);
  if (!object) return Response.json({ error: "Image not found" }, { status: 404 });
  return new Response(object.body, {
    headers: {
      "content-type": object.httpMetadata?.contentType ?? "application/octet-stream",
      "content-length": String(object.size),
      etag: object.httpEtag,
      "cache-control": "public, max-age=31536000, immutable",
    },
  });
}
