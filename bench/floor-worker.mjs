// The floor for fluxgate's figures: a minimal JavaScript worker that makes the
// same platform calls as fluxgate's routes and nothing else (no validation,
// no error handling, no checks on the bytes). Run in the same Miniflare
// setup, its latency and CPU are what workerd, Miniflare and the local KV/R2
// simulators cost by themselves; fluxgate minus the floor is fluxgate's own
// code. Keep it in step with the calls fluxgate makes per request:
//
//   GET /health        a JSON answer, no I/O (src/edge/health.rs)
//   POST /generate     src/edge/generate.rs, persist.rs, store.rs:
//                      fetch: create with Prefer: wait (the emulator answers
//                        it finished, so no poll follows);
//                      before answering, concurrently (persist::write_records,
//                        Store::put_record, Store::put_prediction_index):
//                        KV put image:<id> (the record, pending, with its
//                        KV metadata), KV put pending:<id> (with a TTL),
//                        KV put prediction:<prediction id> (ids and input);
//                      answer; then in waitUntil (Store::persist):
//                        R2 head <id> (Store::already_stored),
//                        fetch the output (Store::copy_from),
//                        R2 put <id> streaming the body (fluxgate also tees
//                          it to read 16 bytes and pipes it through a
//                          FixedLengthStream: that is its own cost),
//                        concurrently KV put image:<id> (stored) and
//                          KV delete pending:<id> (Store::put_record)
//   GET /image/{id}    R2 get, body streamed (src/edge/image.rs, from_r2
//                      without conditional or range headers)
//
// fluxgate's /replicate/v1 routes have no equivalent here.
const PENDING_TTL_SECONDS = 2 * 60 * 60;

export default {
  async fetch(request, env, ctx) {
    const { pathname } = new URL(request.url);
    if (pathname === "/health") return Response.json({ status: "ok", service: "floor" });
    if (pathname === "/generate" && request.method === "POST") return generate(request, env, ctx);
    if (pathname.startsWith("/image/")) return image(env, pathname.slice("/image/".length));
    return Response.json({ error: "Not found" }, { status: 404 });
  },
};

async function generate(request, env, ctx) {
  const { input } = await request.json();
  const created = await fetch(`${env.REPLICATE_API_BASE}/v1/models/${env.REPLICATE_MODEL}/predictions`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${env.REPLICATE_API_TOKEN}`,
      "content-type": "application/json",
      prefer: "wait=60",
    },
    body: JSON.stringify({ input }),
  });
  const prediction = await created.json();
  const id = `${prediction.id}.${input.output_format ?? "webp"}`;
  const record = {
    id,
    prediction_id: prediction.id,
    model: env.REPLICATE_MODEL,
    status: "pending",
    source_url: prediction.output[0],
    created_at: new Date().toISOString(),
    attempts: 0,
  };
  await Promise.all([
    putRecord(env, record),
    env.IMAGE_META.put(`pending:${id}`, "", { expirationTtl: PENDING_TTL_SECONDS }),
    env.IMAGE_META.put(`prediction:${prediction.id}`, JSON.stringify({ ids: [id], input })),
  ]);
  ctx.waitUntil(persist(env, record));
  return Response.json({ id, imageUrl: `${new URL(request.url).origin}/image/${id}`, predictionId: prediction.id });
}

async function persist(env, record) {
  await env.IMAGES.head(record.id);
  const upstream = await fetch(record.source_url);
  const contentType = upstream.headers.get("content-type");
  const stored = await env.IMAGES.put(record.id, upstream.body, { httpMetadata: { contentType } });
  const done = { ...record, status: "stored", content_type: contentType, size: stored.size, attempts: 1 };
  await Promise.all([putRecord(env, done), env.IMAGE_META.delete(`pending:${record.id}`)]);
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
