// The API contract's own examples (the ones the README shows), run as written: curl,
// JavaScript fetch and Python requests, with only the host and the tokens
// replaced.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { AUTH_TOKEN, USER_REPLICATE_TOKEN, worker } from "./harness.mjs";

const run = promisify(execFile);
const IMAGE_URL = /\/image\/[0-9a-z]{26}\.(webp|png|jpg)$/;

/** curl with the seed's arguments; answers status, redirect and body. */
async function curl(args) {
  const { stdout } = await run("curl", ["-s", "-w", "\n%{http_code} %{redirect_url}", ...args]);
  const lines = stdout.split("\n");
  const [status, redirect] = lines.pop().split(" ");
  return { status: Number(status), redirect, body: lines.join("\n") };
}

async function hasPythonRequests() {
  try {
    await run("python3", ["-c", "import requests"]);
    return true;
  } catch {
    return false;
  }
}

describe("the contract's examples", () => {
  test("curl: GET /generate with service authentication redirects to the image", async () => {
    const { url } = await worker();
    for (const prompt of ["a%20beautiful%20sunset", "a%20cat%20wearing%20sunglasses"]) {
      const res = await curl(["-H", `Authorization: Bearer ${AUTH_TOKEN}`, `${url.origin}/generate?prompt=${prompt}`]);
      assert.equal(res.status, 302);
      assert.match(res.redirect, IMAGE_URL);
    }
  });

  test("curl: GET /generate with the user's own token in the query", async () => {
    const { url } = await worker();
    const res = await curl([`${url.origin}/generate?prompt=a%20cat%20wearing%20sunglasses&replicate_token=${USER_REPLICATE_TOKEN}`]);
    assert.equal(res.status, 302);
    assert.match(res.redirect, IMAGE_URL);
  });

  test("curl: POST /generate, simple format, service auth and user token", async () => {
    const { url } = await worker();
    const service = await curl(["-X", "POST", "-H", `Authorization: Bearer ${AUTH_TOKEN}`, "-H", "Content-Type: application/json",
      "-d", '{"prompt": "a futuristic city"}', `${url.origin}/generate`]);
    assert.equal(service.status, 200);
    assert.match(JSON.parse(service.body).imageUrl, IMAGE_URL);
    const user = await curl(["-X", "POST", "-H", "Content-Type: application/json",
      "-d", `{"prompt": "a futuristic city", "replicate_token": "${USER_REPLICATE_TOKEN}"}`, `${url.origin}/generate`]);
    assert.equal(user.status, 200);
    const { id, imageUrl } = JSON.parse(user.body);
    assert.equal(imageUrl, `${url.origin}/image/${id}`);
  });

  test("curl: POST /generate, full control with the token in a header", async () => {
    const { url } = await worker();
    const res = await curl(["-X", "POST", "-H", "Content-Type: application/json", "-H", `X-Replicate-Token: ${USER_REPLICATE_TOKEN}`,
      "-d", '{ "input": { "prompt": "a futuristic city", "aspect_ratio": "1:1", "output_format": "webp" } }', `${url.origin}/generate`]);
    assert.equal(res.status, 200);
    assert.match(JSON.parse(res.body).id, /\.webp$/);
  });

  test("curl: the full-control example's flux-dev fields are refused by name (flux-schnell has no guidance_scale)", async () => {
    const { url } = await worker();
    const res = await curl(["-X", "POST", "-H", "Content-Type: application/json",
      "-d", `{ "input": { "prompt": "a futuristic city at sunset", "aspect_ratio": "16:9", "output_format": "png", "guidance_scale": 3.5, "num_inference_steps": 8, "seed": 42 }, "replicate_token": "${USER_REPLICATE_TOKEN}" }`,
      `${url.origin}/generate`]);
    assert.equal(res.status, 400);
    assert.match(JSON.parse(res.body).details, /guidance_scale/);
    // The same request within flux-schnell's schema works.
    const fixed = await curl(["-X", "POST", "-H", "Content-Type: application/json",
      "-d", `{ "input": { "prompt": "a futuristic city at sunset", "aspect_ratio": "16:9", "output_format": "png", "num_inference_steps": 4, "seed": 42 }, "replicate_token": "${USER_REPLICATE_TOKEN}" }`,
      `${url.origin}/generate`]);
    assert.equal(fixed.status, 200);
    assert.equal(JSON.parse(fixed.body).seed, 42);
  });

  test("curl: GET /image/{id} needs no authentication", async () => {
    const { url } = await worker();
    const made = await curl(["-X", "POST", "-H", `Authorization: Bearer ${AUTH_TOKEN}`, "-H", "Content-Type: application/json",
      "-d", '{"input": {"prompt": "a lighthouse", "output_format": "png"}}', `${url.origin}/generate`]);
    const { id } = JSON.parse(made.body);
    const { stdout } = await run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code} %{content_type} %{size_download}", `${url.origin}/image/${id}`]);
    const [status, type, size] = stdout.split(" ");
    assert.equal(status, "200");
    assert.equal(type, "image/png");
    assert.ok(Number(size) > 10_000);
  });

  test("JavaScript: fetch with service auth and with the user's token", async () => {
    const { url } = await worker();
    const base = url.origin;
    const response = await fetch(`${base}/generate`, {
      method: "POST",
      headers: { Authorization: `Bearer ${AUTH_TOKEN}`, "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "a magical forest with glowing mushrooms" }),
    });
    const result = await response.json();
    assert.match(result.imageUrl, IMAGE_URL);
    const responseWithUserToken = await fetch(`${base}/generate`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Replicate-Token": USER_REPLICATE_TOKEN },
      body: JSON.stringify({ prompt: "a magical forest with glowing mushrooms" }),
    });
    const resultWithUserToken = await responseWithUserToken.json();
    assert.match(resultWithUserToken.imageUrl, IMAGE_URL);
  });

  test("Python: requests with service auth and with the user's token", async (t) => {
    if (!(await hasPythonRequests())) return t.skip("python3 with requests is not installed");
    const { url } = await worker();
    const script = `
import requests, sys
base = sys.argv[1]
response = requests.post(base + '/generate', headers={'Authorization': 'Bearer ${AUTH_TOKEN}', 'Content-Type': 'application/json'}, json={'prompt': 'a serene mountain landscape'})
result = response.json()
print(f"Generated image: {result['imageUrl']}")
response_with_user_token = requests.post(base + '/generate', headers={'Content-Type': 'application/json', 'X-Replicate-Token': '${USER_REPLICATE_TOKEN}'}, json={'prompt': 'a serene mountain landscape'})
result_with_user_token = response_with_user_token.json()
print(f"Generated image: {result_with_user_token['imageUrl']}")
`;
    const { stdout } = await run("python3", ["-c", script, url.origin]);
    const lines = stdout.trim().split("\n");
    assert.equal(lines.length, 2);
    for (const line of lines) assert.match(line, /^Generated image: http:\/\/127\.0\.0\.1:\d+\/image\/[0-9a-z]{26}\.webp$/);
  });
});
