// Every example of README.md that talks to a local fluxgate (the sh, js and
// python blocks whose code uses http://127.0.0.1:8787), run as written against a
// test worker configured as `npm start` configures it with the emulator
// (Replicate's webhook secret is the emulator's, and callers' webhooks may
// target 127.0.0.1 and localhost). Only the origin, the tokens and the webhook receiver are
// replaced: the README's local service token and placeholder Replicate token
// become the harness's, and the webhook goes to a host that never resolves instead
// of example.com. Shell blocks run in bash with -e and pipefail in a scratch
// directory; Python blocks run when `python3` (or $PYTHON) has the packages.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { DEFAULT_WEBHOOK_SECRET } from "../emulator/server.mjs";
import { AUTH_TOKEN, USER_REPLICATE_TOKEN, workerWith } from "./harness.mjs";

const README = readFileSync(new URL("../README.md", import.meta.url), "utf8");
const NODE_MODULES = fileURLToPath(new URL("../node_modules", import.meta.url));
const LOCAL_ORIGIN = "http://127.0.0.1:8787";
const LOCAL_AUTH_TOKEN = "local-dev-token";
const PLACEHOLDER_REPLICATE_TOKEN = "r8_YOUR_REPLICATE_TOKEN";
const PYTHON = process.env.PYTHON || "python3";
/** What `npm start` sets when it runs the emulator (scripts/start.mjs). */
const AS_NPM_START = { REPLICATE_WEBHOOK_SECRET: DEFAULT_WEBHOOK_SECRET, EXTRA_WEBHOOK_HOSTS: "127.0.0.1,localhost" };
const IMAGE_URL = /https?:\/\/[^\s"'<>]+\/image\/[0-9a-z]{26}\.(?:webp|png|jpg)/g;
const MAGIC = {
  webp: (b) => b.subarray(0, 4).toString("latin1") === "RIFF" && b.subarray(8, 12).toString("latin1") === "WEBP",
  png: (b) => b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])),
  jpg: (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff,
};

/** The fenced code blocks of a Markdown text: `{ lang, code, line }` (line: the opening fence's, 1-based). */
export function codeBlocks(markdown) {
  const blocks = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = lines[i].match(/^```(\w*)\s*$/);
    if (!open) continue;
    const start = i;
    const body = [];
    for (i += 1; i < lines.length && !/^```\s*$/.test(lines[i]); i++) body.push(lines[i]);
    blocks.push({ lang: open[1], code: body.join("\n") + "\n", line: start + 1 });
  }
  return blocks;
}

/** The code without its comments (`# ...` in sh and python, `// ...` in js), to tell examples from prose. */
function withoutComments({ lang, code }) {
  const comment = lang === "js" ? /(^|\s)\/\/\s.*$/ : /(^|\s)#.*$/;
  return code.split("\n").map((line) => line.replace(comment, "")).join("\n");
}

// The examples: blocks whose code (not a comment) talks to the local service.
const examples = codeBlocks(README).filter((b) => ["sh", "js", "python"].includes(b.lang) && withoutComments(b).includes(LOCAL_ORIGIN));

const scratch = mkdtempSync(join(tmpdir(), "fluxgate-readme-"));
symlinkSync(NODE_MODULES, join(scratch, "node_modules"), "dir"); // examples import "replicate"
after(() => rmSync(scratch, { recursive: true, force: true }));

function localize(code, origin) {
  return code
    .replaceAll(LOCAL_ORIGIN, origin)
    .replaceAll(LOCAL_AUTH_TOKEN, AUTH_TOKEN)
    .replaceAll(PLACEHOLDER_REPLICATE_TOKEN, USER_REPLICATE_TOKEN)
    .replaceAll("https://example.com/callback", "https://hooks.example.invalid/callback");
}

/** Runs a program; resolves to { code, stdout, stderr } whatever the exit status. */
function run(file, args, cwd, env) {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env: { ...process.env, ...env }, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

async function pythonHas(modules) {
  const { code } = await run(PYTHON, ["-c", `import ${modules.join(", ")}`], scratch, {});
  return code === 0;
}

/** Files the example wrote into its directory. */
function written(dir) {
  return readdirSync(dir).filter((name) => name !== "example.mjs");
}

describe("README examples, run as written against the worker", () => {
  for (const block of examples) {
    const firstLine = block.code.split("\n").find((l) => l.trim() && !l.trim().startsWith("#") && !l.trim().startsWith("//"));
    test(`README.md:${block.line} (${block.lang}) ${firstLine.trim().slice(0, 60)}`, { timeout: 40_000 }, async (t) => {
      const { url } = await workerWith(AS_NPM_START);
      const code = localize(block.code, url.origin);
      const dir = join(scratch, `line-${block.line}`);
      mkdirSync(dir);
      const env = { AUTH_TOKEN };

      let result;
      if (block.lang === "sh") {
        result = await run("bash", ["-e", "-o", "pipefail", "-c", code], dir, env);
      } else if (block.lang === "js") {
        writeFileSync(join(dir, "example.mjs"), code);
        result = await run(process.execPath, [join(dir, "example.mjs")], dir, env);
      } else {
        const modules = [...code.matchAll(/^import (\w+)/gm)].map((m) => m[1]).filter((m) => !["os", "sys", "json"].includes(m));
        if (!(await pythonHas(modules))) return t.skip(`${PYTHON} cannot import ${modules.join(", ")}`);
        result = await run(PYTHON, ["-c", code], dir, env);
      }
      const shown = `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;

      assert.equal(result.code, 0, shown);
      assert.doesNotMatch(result.stdout, /"error"\s*:/, shown);
      for (const [, status] of result.stdout.matchAll(/^HTTP\/[\d.]+ (\d{3})/gm)) assert.ok(Number(status) < 400, shown);

      // Every image URL it printed serves an image.
      const printed = [...new Set(result.stdout.match(IMAGE_URL) ?? [])];
      if (block.lang !== "sh") assert.ok(printed.length > 0, `no image URL printed\n${shown}`);
      for (const link of printed) {
        assert.ok(link.startsWith(`${url.origin}/image/`), `${link} is not on the worker`);
        const res = await fetch(link);
        assert.equal(res.status, 200, link);
        assert.match(res.headers.get("content-type"), /^image\//, link);
        await res.arrayBuffer();
      }

      // Every file it saved is an image of the type its name says.
      const files = written(dir);
      if (/\s-o\s+(?!\/dev\/null)/.test(code)) assert.ok(files.length > 0, `saved nothing\n${shown}`);
      for (const name of files) {
        const ext = name.split(".").pop();
        assert.ok(MAGIC[ext], `${name}: not an image name`);
        assert.ok(MAGIC[ext](readFileSync(join(dir, name))), `${name} does not hold a ${ext} image`);
      }
    });
  }

  test("the README has examples to run (sh, js and python)", () => {
    const langs = new Set(examples.map((b) => b.lang));
    for (const lang of ["sh", "js", "python"]) assert.ok(langs.has(lang), `no ${lang} example mentions ${LOCAL_ORIGIN}`);
  });
});
