// Images sent in: POST /uploads, the public /upload/{id} models fetch them
// from, Replicate's Files API under /replicate/v1/files (driven with the
// official JavaScript client, and its run() with a Buffer input fetched by
// the emulator from the worker), each caller seeing only their own files,
// and the cron removing uploads past their retention.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import Replicate from "replicate";
import sharp from "sharp";
import { REAL_ESRGAN_VERSION } from "../emulator/server.mjs";
import { AUTH_TOKEN, declaredPost, USER_REPLICATE_TOKEN, workerWith } from "./harness.mjs";

const T = { timeout: 60_000 };

/**
 * The worker these tests run on: an instance of its own (the shipped
 * settings), so that the removals made here never race other files' scans
 * of the shared instance's KV and R2.
 */
function worker() {
  return workerWith({ UPLOAD_RETENTION_HOURS: "24" });
}

const SERVICE = { authorization: `Bearer ${AUTH_TOKEN}` };
const UPLOAD_URL = /\/upload\/([0-9a-f]{32}\.(png|jpg|webp|gif))$/;

/** A small image of the given format, distinct per call. */
let shade = 0;
async function image(format = "png", width = 40, height = 24) {
  shade = (shade + 37) % 256;
  return sharp({ create: { width, height, channels: 3, background: { r: shade, g: 120, b: 200 } } })
    .toFormat(format)
    .toBuffer();
}

/** POST /uploads with the image in a `file` part. */
function upload(w, bytes, { filename = "picture.png", type = "application/octet-stream", headers = SERVICE } = {}) {
  const form = new FormData();
  form.append("file", new Blob([bytes], { type }), filename);
  return w.fetch("/uploads", { method: "POST", headers, body: form });
}

async function uploaded(w, bytes, options) {
  const res = await upload(w, bytes, options);
  assert.equal(res.status, 201, await res.clone().text());
  return res.json();
}

/** The official client pointed at the worker. */
function client(w, auth = AUTH_TOKEN) {
  return new Replicate({ auth, baseUrl: `${w.url.origin}/replicate/v1`, useFileOutput: false });
}

async function kv(w) {
  return w.mf.getKVNamespace("IMAGE_META");
}

async function bucket(w) {
  return w.mf.getR2Bucket("IMAGES");
}

function assertProtected(res) {
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  assert.equal(res.headers.get("content-security-policy"), "default-src 'none'; sandbox");
}

describe("POST /uploads", () => {
  test("an image is stored and served at its URL, typed by its magic numbers", T, async () => {
    const w = await worker();
    const bytes = await image("png");
    const body = await uploaded(w, bytes, { type: "image/gif" });
    assert.deepEqual(Object.keys(body).sort(), ["content_type", "expires_at", "id", "size", "url"]);
    assert.equal(body.content_type, "image/png");
    assert.equal(body.size, bytes.length);
    assert.equal(body.url, `${w.url.origin}/upload/${body.id}`);
    assert.match(body.url, UPLOAD_URL);
    const expires = Date.parse(body.expires_at) - Date.now();
    assert.ok(expires > 23.9 * 3600e3 && expires <= 24 * 3600e3, body.expires_at);

    const res = await fetch(body.url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "image/png");
    assertProtected(res);
    const etag = res.headers.get("etag");
    assert.ok(etag, "an ETag");
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);

    const again = await fetch(body.url, { headers: { "if-none-match": etag } });
    assert.equal(again.status, 304);
    const head = await fetch(body.url, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), String(bytes.length));
    assertProtected(head);

    const r = JSON.parse(await (await kv(w)).get(`upload:${body.id}`));
    assert.equal(r.owner, "service");
    assert.equal(r.size, bytes.length);
    assert.match(r.sha256, /^[0-9a-f]{64}$/);
    assert.match(r.md5, /^[0-9a-f]{32}$/);
    assert.equal(r.name, "picture.png");
  });

  test("a raw image/* body works too, and the bytes decide the type", T, async () => {
    const w = await worker();
    const bytes = await image("jpeg");
    const res = await w.fetch("/uploads", { method: "POST", headers: { ...SERVICE, "content-type": "image/png" }, body: bytes });
    assert.equal(res.status, 201);
    const body = await res.json();
    assert.equal(body.content_type, "image/jpeg");
    assert.match(body.id, /\.jpg$/);
    const served = await fetch(body.url);
    assert.equal(served.headers.get("content-type"), "image/jpeg");
    assert.deepEqual(Buffer.from(await served.arrayBuffer()), bytes);
  });

  test("ids are unguessable: two uploads of the same bytes differ", T, async () => {
    const w = await worker();
    const bytes = await image("png");
    const [a, b] = [await uploaded(w, bytes), await uploaded(w, bytes)];
    assert.notEqual(a.id, b.id);
  });

  test("what is not an image is refused, and nothing is stored", T, async () => {
    const w = await worker();
    const before = (await (await bucket(w)).list({ prefix: "uploads/" })).objects.length;
    const html = Buffer.from("<html><script>alert(1)</script></html>");
    const res = await upload(w, html, { filename: "x.png", type: "image/png" });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error, "Not an image");
    const svg = await upload(w, Buffer.from("<svg xmlns='http://www.w3.org/2000/svg'/>"), { type: "image/svg+xml" });
    assert.equal(svg.status, 400);
    const raw = await w.fetch("/uploads", { method: "POST", headers: { ...SERVICE, "content-type": "image/png" }, body: html });
    assert.equal(raw.status, 400);
    const text = await w.fetch("/uploads", { method: "POST", headers: { ...SERVICE, "content-type": "text/plain" }, body: "hi" });
    assert.equal(text.status, 415);
    const form = new FormData();
    form.append("other", new Blob([await image()]), "a.png");
    const noFile = await w.fetch("/uploads", { method: "POST", headers: SERVICE, body: form });
    assert.equal(noFile.status, 400);
    assert.equal((await noFile.json()).error, "No file");
    assert.equal((await (await bucket(w)).list({ prefix: "uploads/" })).objects.length, before);
  });

  test("an image over MAX_UPLOAD_BYTES is a 413, declared or not", T, async () => {
    const w = await worker();
    const big = 11 * 1024 * 1024;
    // Refused on the declared length alone: not a byte of the body is sent.
    const raw = await declaredPost(w, "/uploads", big, { ...SERVICE, "content-type": "image/png" });
    assert.equal(raw.status, 413);
    assert.match((await raw.json()).details, /10485760/);
    const form = { ...SERVICE, "content-type": "multipart/form-data; boundary=x" };
    assert.equal((await declaredPost(w, "/uploads", big, form)).status, 413);
    const files = await declaredPost(w, "/replicate/v1/files", big, form);
    assert.deepEqual([files.status, (await files.json()).status], [413, 413]);

    const small = await workerWith({ MAX_UPLOAD_BYTES: "4096" });
    const over = Buffer.alloc(5000);
    (await image("png")).copy(over);
    const inForm = await upload(small, over);
    assert.equal(inForm.status, 413, "within the form's room, over the image limit");
    const streamed = await small.fetch("/uploads", {
      method: "POST",
      headers: { ...SERVICE, "content-type": "image/png" },
      body: new ReadableStream({
        start(c) {
          c.enqueue(new Uint8Array(over));
          c.close();
        },
      }),
      duplex: "half",
    });
    assert.equal(streamed.status, 413, "no Content-Length: read up to the cap");
    assert.equal((await upload(small, await image("png"))).status, 201);
  });

  test("uploading needs the same auth as /generate", T, async () => {
    const w = await worker();
    const bytes = await image();
    assert.equal((await upload(w, bytes, { headers: {} })).status, 401);
    assert.equal((await upload(w, bytes, { headers: { authorization: "Bearer wrong" } })).status, 401);
    const made_up = await upload(w, bytes, { headers: { "x-replicate-token": "r8_made_up_token_0123456789abcdef" } });
    assert.equal(made_up.status, 401, "a token Replicate refuses stores nothing");
    const user = await uploaded(w, bytes, { headers: { "x-replicate-token": USER_REPLICATE_TOKEN } });
    const r = JSON.parse(await (await kv(w)).get(`upload:${user.id}`));
    assert.match(r.owner, /^tok_[0-9a-f]{16}$/);
    assert.ok(!JSON.stringify(r).includes(USER_REPLICATE_TOKEN));
  });

  test("ranges and ETags are answered at /upload/{id}: 206, 416, 304", T, async () => {
    const w = await worker();
    const bytes = await image("png", 64, 48);
    const { url } = await uploaded(w, bytes);
    const size = bytes.length;
    const etag = (await fetch(url, { method: "HEAD" })).headers.get("etag");

    for (const [range, start, end] of [["bytes=0-9", 0, 9], ["bytes=-7", size - 7, size - 1], [`bytes=${size - 3}-`, size - 3, size - 1]]) {
      const res = await fetch(url, { headers: { range } });
      assert.equal(res.status, 206, range);
      assert.equal(res.headers.get("content-range"), `bytes ${start}-${end}/${size}`, range);
      assert.equal(res.headers.get("accept-ranges"), "bytes");
      assert.equal(res.headers.get("etag"), etag);
      assertProtected(res);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes.subarray(start, end + 1), range);
    }
    const past = await fetch(url, { headers: { range: `bytes=${size}-` } });
    assert.equal(past.status, 416);
    assert.equal(past.headers.get("content-range"), `bytes */${size}`);
    assertProtected(past);
    await past.arrayBuffer();

    const unchanged = await fetch(url, { headers: { "if-none-match": etag, range: "bytes=0-9" } });
    assert.equal(unchanged.status, 304, "a matching ETag comes before the range");
    assert.equal(unchanged.headers.get("etag"), etag);
    assert.match(unchanged.headers.get("cache-control"), /^public, max-age=\d+$/);
    assertProtected(unchanged);
    const several = await fetch(url, { headers: { range: "bytes=0-1,5-6" } });
    assert.equal(several.status, 200, "several ranges: the whole upload");
    assert.deepEqual(Buffer.from(await several.arrayBuffer()), bytes);
  });

  test("unknown and malformed ids are 404s, still protected", T, async () => {
    const w = await worker();
    for (const id of ["0123456789abcdef0123456789abcdef.png", "nope.png", "..%2Fimage.png"]) {
      const res = await w.fetch(`/upload/${id}`);
      assert.equal(res.status, 404, id);
      assertProtected(res);
    }
  });

  test("bytes whose expiry has passed are a 404 even before the sweep", T, async () => {
    const w = await worker();
    const id = "00000000000000000000000000000001.png";
    await (await bucket(w)).put(`uploads/${id}`, await image("png"), {
      httpMetadata: { contentType: "image/png" },
      customMetadata: { expires_at_ms: String(Date.now() - 1000), owner: "service" },
    });
    assert.equal((await w.fetch(`/upload/${id}`)).status, 404);
  });
});

describe("/replicate/v1/files with the official client", () => {
  test("files.create, get, list, delete", T, async () => {
    const w = await worker();
    const replicate = client(w);
    const bytes = await image("webp");
    const file = await replicate.files.create(bytes, { customer_reference_id: "123" });
    for (const key of ["id", "name", "content_type", "size", "etag", "checksums", "metadata", "created_at", "expires_at", "urls"]) {
      assert.ok(key in file, key);
    }
    assert.equal(file.content_type, "image/webp");
    assert.equal(file.size, bytes.length);
    assert.deepEqual(file.metadata, { customer_reference_id: "123" });
    assert.match(file.name, /^buffer_\d+$/);
    assert.equal(file.etag, file.checksums.md5);
    assert.match(file.checksums.sha256, /^[0-9a-f]{64}$/);
    assert.equal(file.urls.get, `${w.url.origin}/upload/${file.id}`);
    assert.equal(Date.parse(file.expires_at) - Date.parse(file.created_at), 24 * 3600e3);
    const served = await fetch(file.urls.get);
    assert.deepEqual(Buffer.from(await served.arrayBuffer()), bytes);

    assert.deepEqual(await replicate.files.get(file.id), file);
    const page = await replicate.files.list();
    assert.equal(page.previous, null);
    assert.ok(page.results.some((f) => f.id === file.id));
    assert.deepEqual(page.results[0], file, "newest first");

    const download = await w.fetch(`/replicate/v1/files/${file.id}/download`, { headers: SERVICE });
    assert.equal(download.status, 200);
    assert.equal(download.headers.get("content-type"), "image/webp");
    assertProtected(download);
    assert.deepEqual(Buffer.from(await download.arrayBuffer()), bytes);

    assert.equal(await replicate.files.delete(file.id), true);
    await assert.rejects(replicate.files.get(file.id), (e) => e.response?.status === 404);
    assert.equal((await fetch(file.urls.get)).status, 404);
    assert.equal(await (await bucket(w)).head(`uploads/${file.id}`), null);
    assert.ok(!(await replicate.files.list()).results.some((f) => f.id === file.id));
  });

  test("the Files API answers in Replicate's shapes and refuses non-images", T, async () => {
    const w = await worker();
    const form = new FormData();
    form.append("content", new Blob([Buffer.from("just text")]), "notes.txt");
    const res = await w.fetch("/replicate/v1/files", { method: "POST", headers: SERVICE, body: form });
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.equal(body.status, 400);
    assert.match(body.detail, /Not an image/);
    const missing = await w.fetch("/replicate/v1/files/0123456789abcdef0123456789abcdef.png", { headers: SERVICE });
    assert.equal(missing.status, 404);
    assert.deepEqual(await missing.json(), { title: "Not Found", detail: "File not found", status: 404 });
    const json = await w.fetch("/replicate/v1/files", { method: "POST", headers: { ...SERVICE, "content-type": "application/json" }, body: "{}" });
    assert.equal(json.status, 400);
    const unauth = await w.fetch("/replicate/v1/files");
    assert.equal(unauth.status, 401);
    // Nothing of it reached Replicate (other files' tests may call the emulator's /v1/files themselves).
    const upstream = await (await fetch(`${w.emulator.url}/_control/requests?path=/v1/files`)).json();
    assert.equal(upstream.filter((r) => r.headers["user-agent"]?.startsWith("fluxgate/")).length, 0);
  });

  test("another caller cannot see, download or delete a file", T, async () => {
    const w = await worker();
    const mine = await client(w).files.create(await image("png"));
    const theirs = client(w, USER_REPLICATE_TOKEN);
    await assert.rejects(theirs.files.get(mine.id), (e) => e.response?.status === 404);
    assert.ok(!(await theirs.files.list()).results.some((f) => f.id === mine.id));
    const headers = { authorization: `Bearer ${USER_REPLICATE_TOKEN}` };
    assert.equal((await w.fetch(`/replicate/v1/files/${mine.id}/download`, { headers })).status, 404);
    assert.equal((await w.fetch(`/replicate/v1/files/${mine.id}`, { method: "DELETE", headers })).status, 404);
    assert.equal((await client(w).files.get(mine.id)).id, mine.id, "still there for its owner");

    const own = await theirs.files.create(await image("png"));
    assert.equal((await theirs.files.get(own.id)).id, own.id);
    await assert.rejects(client(w).files.get(own.id), (e) => e.response?.status === 404);
    await assert.rejects(client(w, "r8_made_up_token_0123456789abcdef").files.list(), (e) => e.response?.status === 401);
  });

  test("GET /files pages through the caller's files, newest first", T, async () => {
    const w = await workerWith({ UPLOAD_RETENTION_HOURS: "2" });
    const bytes = await image("png");
    const ids = [];
    for (let i = 0; i < 52; i += 1) ids.push((await uploaded(w, bytes)).id);
    const first = await (await w.fetch("/replicate/v1/files", { headers: SERVICE })).json();
    assert.equal(first.results.length, 50);
    assert.equal(first.previous, null);
    assert.match(first.next, new RegExp(`^${w.url.origin.replace(/[.]/g, "\\.")}/replicate/v1/files\\?cursor=`));
    assert.deepEqual(first.results.slice(0, 3).map((f) => f.id), ids.slice(-3).reverse());
    const second = await (await fetch(first.next, { headers: SERVICE })).json();
    const seen = [...first.results, ...second.results].map((f) => f.id);
    assert.equal(new Set(seen).size, seen.length, "no file twice");
    for (const id of ids) assert.ok(seen.includes(id), id);
    const expires = Date.parse(first.results[0].expires_at) - Date.parse(first.results[0].created_at);
    assert.equal(expires, 2 * 3600e3, "UPLOAD_RETENTION_HOURS");
  });

  test("run() with a Buffer: uploaded to /files, fetched by the model from the worker, upscaled", T, async () => {
    const w = await worker();
    const bytes = await image("png", 30, 20);
    const output = await client(w).run(`nightmareai/real-esrgan:${REAL_ESRGAN_VERSION}`, {
      input: { image: bytes, scale: 2 },
    });
    assert.equal(typeof output, "string");
    const creates = (await (await fetch(`${w.emulator.url}/_control/requests?path=/v1/predictions`)).json()).filter(
      (r) => r.method === "POST" && r.body?.version === REAL_ESRGAN_VERSION && r.headers["user-agent"]?.startsWith("fluxgate/"),
    );
    const sent = creates.map((r) => r.body.input.image).find((url) => url?.startsWith(`${w.url.origin}/upload/`));
    assert.match(sent ?? "", new RegExp(`^${w.url.origin.replace(/[.]/g, "\\.")}/upload/[0-9a-f]{32}\\.png$`));
    const fetches = await (await fetch(`${w.emulator.url}/_control/fetches`)).json();
    const fetched = fetches.find((f) => f.url === sent);
    assert.ok(fetched, "the emulator fetched the upload from the worker");
    assert.equal(fetched.via, "http");
    assert.equal(fetched.status, 200);
    assert.equal(fetched.bytes, bytes.length);

    const res = await fetch(output);
    assert.equal(res.status, 200);
    const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
    assert.deepEqual([meta.width, meta.height], [60, 40]);
  });
});

// The Python client, when a Python with `replicate` installed is at hand
// (FLUXGATE_PYTHON, else python3): an open file uploaded with files.create,
// and passed to run() (which uploads it the same way).
const PYTHON = process.env.FLUXGATE_PYTHON || "python3";
const PYTHON_SCRIPT = `
import json, os, sys
import replicate
client = replicate.Client(api_token=os.environ["TOKEN"], base_url=os.environ["BASE"])
with open(sys.argv[1], "rb") as f:
    created = client.files.create(f, metadata={"from": "python"})
fetched = client.files.get(created.id)
with open(sys.argv[1], "rb") as f:
    output = client.run(os.environ["MODEL"], input={"image": f, "scale": 2}, use_file_output=False)
print(json.dumps({"created": created.dict(), "fetched": fetched.dict(), "output": str(output)}))
`;
const run = promisify(execFile);
const python = await run(PYTHON, ["-c", "import replicate"]).then(
  () => true,
  () => false,
);

describe("/replicate/v1/files with the Python client", () => {
  test("files.create and run() with an open file", { ...T, skip: !python && `no ${PYTHON} with replicate installed` }, async () => {
    const w = await worker();
    const dir = await mkdtemp(join(tmpdir(), "fluxgate-uploads-"));
    const path = join(dir, "photo.png");
    const bytes = await image("png", 16, 12);
    await writeFile(path, bytes);
    const { stdout } = await run(PYTHON, ["-c", PYTHON_SCRIPT, path], {
      env: {
        ...process.env,
        TOKEN: AUTH_TOKEN,
        BASE: `${w.url.origin}/replicate`,
        MODEL: `nightmareai/real-esrgan:${REAL_ESRGAN_VERSION}`,
      },
    });
    const { created, fetched, output } = JSON.parse(stdout);
    assert.equal(created.name, "photo.png");
    assert.equal(created.content_type, "image/png");
    assert.equal(created.size, bytes.length);
    assert.deepEqual(created.metadata, { from: "python" });
    assert.equal(created.urls.get, `${w.url.origin}/upload/${created.id}`);
    assert.equal(fetched.id, created.id);
    const res = await fetch(output);
    const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
    assert.deepEqual([meta.width, meta.height], [32, 24]);
    const fetches = await (await fetch(`${w.emulator.url}/_control/fetches`)).json();
    assert.ok(fetches.some((f) => f.url.startsWith(`${w.url.origin}/upload/`) && f.status === 200 && f.bytes === bytes.length));
  });
});

describe("retention", () => {
  test("the cron removes expired uploads (bytes, record, index), and keeps live ones", T, async () => {
    const w = await worker();
    const namespace = await kv(w);
    const r2 = await bucket(w);
    const expired = await uploaded(w, await image("png"));
    const unsummarized = await uploaded(w, await image("png"));
    const live = await uploaded(w, await image("png"));
    const past = Date.now() - 2 * 24 * 3600e3;
    const old = {
      created_at: new Date(past).toISOString(),
      expires_at: new Date(past + 24 * 3600e3).toISOString(),
    };
    const { value, metadata } = await namespace.getWithMetadata(`upload:${expired.id}`);
    assert.equal(metadata.owner, "service");
    await namespace.put(`upload:${expired.id}`, JSON.stringify({ ...JSON.parse(value), ...old }), {
      metadata: { ...metadata, expires_at_ms: past + 24 * 3600e3 },
    });
    // A record the sweep cannot read: its summary (the key's metadata) decides.
    const garbled = await uploaded(w, await image("png"));
    const g = await namespace.getWithMetadata(`upload:${garbled.id}`);
    await namespace.put(`upload:${garbled.id}`, "not json", { metadata: { ...g.metadata, expires_at_ms: past } });
    const u = JSON.parse(await namespace.get(`upload:${unsummarized.id}`));
    await namespace.put(`upload:${unsummarized.id}`, JSON.stringify({ ...u, ...old }));
    // Bytes whose record is already gone and whose expiry has passed.
    const orphan = "000000000000000000000000000000ff.png";
    await r2.put(`uploads/${orphan}`, await image("png"), {
      httpMetadata: { contentType: "image/png" },
      customMetadata: { expires_at_ms: String(past), owner: "service" },
    });

    await (await w.mf.getWorker()).scheduled({ cron: "*/5 * * * *" });

    for (const id of [expired.id, unsummarized.id, garbled.id, orphan]) {
      assert.equal(await r2.head(`uploads/${id}`), null, `bytes of ${id} removed`);
      assert.equal(await namespace.get(`upload:${id}`), null, `record of ${id} removed`);
      const res = await w.fetch(`/upload/${id}`);
      assert.equal(res.status, 404);
      assertProtected(res);
    }
    const index = await namespace.list({ prefix: "uploads-of:service:" });
    for (const id of [expired.id, garbled.id]) {
      assert.ok(!index.keys.some((k) => k.name.endsWith(id)), `index entry of ${id} removed`);
    }
    assert.ok(index.keys.some((k) => k.name.endsWith(live.id)));
    assert.ok(await r2.head(`uploads/${live.id}`), "a live upload is kept");
    assert.equal((await fetch(live.url)).status, 200);
  });

  test("records and index entries expire by TTL with the upload", T, async () => {
    const w = await worker();
    const body = await uploaded(w, await image("png"));
    const { keys } = await (await kv(w)).list({ prefix: `upload:${body.id}` });
    assert.equal(keys.length, 1);
    const ttl = keys[0].expiration * 1000 - Date.now();
    assert.ok(ttl > 23.9 * 3600e3 && ttl <= 24 * 3600e3 + 1000, String(ttl));
    assert.equal(keys[0].metadata.owner, "service");
  });
});
