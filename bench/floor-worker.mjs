// The floor for fluxgate's figures: a minimal JavaScript worker that makes the
// same platform calls as fluxgate's routes and nothing else (no validation,
// no error handling). Run in the same Miniflare setup, its latency and CPU are
// what workerd, Miniflare and the local KV/R2 simulators cost by themselves.
// Keep it in step with the calls fluxgate makes (src/edge/persist.rs, store.rs, image.rs):
//   GET /health          a JSON answer
//   POST /generate       create with Prefer: wait; KV put of the record
//                        (pending); answer; then in waitUntil: KV put of the
//                        prediction's index, fetch the output, stream it into
//                        R2, read its first 16 bytes back, KV put of the
//                        record (stored)
//   GET /image/{id}      R2 get, body streamed
export default {
  async fetch(request, env, ctx) {
    const { pathname } = new URL(request.url);
    if (pathname === "/health") return Response.json({ status: "ok" });
    if (pathname === "/generate" && request.method === "POST") return generate(request, env, ctx);
    if (pathname.startsWith("/image/")) return image(env, pathname.slice("/image/".length));
    return new Response("not found", { status: 404 });
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
  const record = { id, prediction_id: prediction.id, input, status: "pending", source_url: prediction.output[0] };
  await putRecord(env, record);
  ctx.waitUntil(persist(env, record));
  return Response.json({ id, imageUrl: `${new URL(request.url).origin}/image/${id}`, predictionId: prediction.id });
}

async function persist(env, record) {
  await env.IMAGE_META.put(`prediction:${record.prediction_id}`, JSON.stringify([record.id]));
  const upstream = await fetch(record.source_url);
  const contentType = upstream.headers.get("content-type");
  await env.IMAGES.put(record.id, upstream.body, { httpMetadata: { contentType } });
  const head = await env.IMAGES.get(record.id, { range: { length: 16 } });
  await head.arrayBuffer();
  await putRecord(env, { ...record, status: "stored", content_type: contentType, size: head.size });
}

function putRecord(env, record) {
  return env.IMAGE_META.put(`image:${record.id}`, JSON.stringify(record), {
    metadata: { status: record.status, content_type: record.content_type, size: record.size },
  });
}

async function image(env, id) {
  const object = await env.IMAGES.get(id);
  if (!object) return new Response("not found", { status: 404 });
  return new Response(object.body, {
    headers: {
      "content-type": object.httpMetadata?.contentType ?? "application/octet-stream",
      "content-length": String(object.size),
      etag: object.httpEtag,
      "cache-control": "public, max-age=31536000, immutable",
    },
  });
}
