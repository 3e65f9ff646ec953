export default {
  async fetch(req, env, ctx) {
    const url = new URL(req.url);
    if (url.pathname === "/noop") return new Response("ok");
    if (url.pathname.startsWith("/r2/")) {
      const obj = await env.IMAGES.get(url.pathname.slice(4));
      if (!obj) return new Response("nf", { status: 404 });
      return new Response(obj.body, { headers: { "content-type": obj.httpMetadata?.contentType ?? "x", etag: obj.httpEtag, "content-length": String(obj.size) } });
    }
    if (url.pathname === "/gen") {
      const body = await req.json();
      const res = await fetch(env.API + "/v1/models/black-forest-labs/flux-schnell/predictions", {
        method: "POST", headers: { authorization: "Bearer " + env.TOKEN, prefer: "wait", "content-type": "application/json" }, body: JSON.stringify(body) });
      const p = await res.json();
      const id = p.id + ".webp";
      const record = { id, prediction_id: p.id, input: body.input, status: "pending", source_url: p.output[0] };
      if (url.searchParams.get("kv") !== "0") await env.IMAGE_META.put("image:" + id, JSON.stringify(record), { metadata: { status: "pending" } });
      if (url.searchParams.get("persist") !== "0") ctx.waitUntil((async () => {
        const up = await fetch(record.source_url);
        await env.IMAGES.put(id, up.body, { httpMetadata: { contentType: "image/webp" } });
        const head = await env.IMAGES.get(id, { range: { length: 16 } });
        await head.arrayBuffer();
        record.status = "stored";
        await env.IMAGE_META.put("image:" + id, JSON.stringify(record), { metadata: { status: "stored" } });
      })());
      return Response.json({ id });
    }
    return new Response("nf", { status: 404 });
  },
};
