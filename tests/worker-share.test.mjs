// How the bench sorts a main-thread sample by the worker's code nearest to
// it (bench/worker-share.mjs), on made-up stacks as `perf script` prints
// them (leaf first), and how the report shows the result.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { shareSection } from "../bench/report.mjs";
import { callerOf, WORKER_GROUPS } from "../bench/worker-share.mjs";

const [OWN, CROSSING, RUNTIME] = WORKER_GROUPS;
const GLUE = "target/bench-named/index.js";
const frame = (symbol, dso = "workerd") => ({ symbol, dso });
const wasm = (name) => frame(`JS:${name}-812-liftoff`, "[JIT]");
const js = (name, file, line = 1) => frame(`JS:^${name} ${file}:${line}:120`, "[JIT]");
const ENTRY = [frame("workerd::api::ServiceWorkerGlobalScope::request"), frame("kj::EventLoop::turn")];

describe("a main-thread sample, by the worker's code nearest to it", () => {
  test("the wasm's own instructions, and the floor's JavaScript", () => {
    assert.deepEqual(callerOf([wasm("fluxgate::edge::store::Store::copy::{{closure}}"), js("fetch", GLUE), ...ENTRY], GLUE), [OWN, "wasm"]);
    const floor = "bench/floor-worker.mjs";
    assert.deepEqual(callerOf([js("putRecord", floor, 210), ...ENTRY], floor), [OWN, "JavaScript"]);
    // The floor with checks imports the floor beside it: both are the worker's.
    assert.deepEqual(callerOf([js("putRecord", floor, 210), ...ENTRY], "bench/floor-checks-worker.mjs"), [OWN, "JavaScript"]);
  });

  test("the runtime under a call, named by the API entered, from the glue or from JavaScript alike", () => {
    const put = [
      frame("tcmalloc::tcmalloc_internal::alloc_small"),
      frame("kj::Url::toString"),
      frame("workerd::api::KvNamespace::put"),
      frame("Builtins_CallApiCallbackGeneric"),
    ];
    assert.deepEqual(callerOf([...put, js("__wbg_put_a1a3a4439e9d35b6", GLUE), wasm("fluxgate::edge::kv::KvNamespace::put"), ...ENTRY], GLUE), [
      RUNTIME,
      "KvNamespace::put",
    ]);
    assert.deepEqual(callerOf([...put, js("putRecord", "bench/floor-worker.mjs"), ...ENTRY], "bench/floor-worker.mjs"), [RUNTIME, "KvNamespace::put"]);
    // No API frame: the V8 builtin entered, else the kind of the leaf.
    assert.deepEqual(callerOf([frame("v8::internal::JsonParser::Parse"), frame("Builtins_JsonParse"), js("__wbg_parse_0fc53dead14b3b42", GLUE), ...ENTRY], GLUE), [
      RUNTIME,
      "V8 JsonParse",
    ]);
    assert.deepEqual(callerOf([frame("clear_page_erms", "[kernel.kallsyms]"), wasm("dlmalloc::malloc"), ...ENTRY], GLUE), [RUNTIME, "kernel"]);
  });

  test("crossing between wasm and JavaScript: the glue's own JavaScript, V8's wasm builtins beneath wasm", () => {
    assert.deepEqual(callerOf([js("u", GLUE, 2), wasm("fluxgate::edge::net::send::{{closure}}"), ...ENTRY], GLUE), [
      CROSSING,
      "the glue's JavaScript (strings, closures, imports' wrappers)",
    ]);
    assert.deepEqual(callerOf([frame("Builtins_WasmLiftoffFrameSetup"), wasm("core::slice::split_at"), ...ENTRY], GLUE), [
      CROSSING,
      "V8's wasm builtins beneath wasm (frame setup, wrappers)",
    ]);
  });

  test("Miniflare's JavaScript, and nothing of the worker's", () => {
    const [miniflare] = callerOf([frame("v8::internal::Runtime_Foo"), js("put", "namespace.worker.js", 254), ...ENTRY], GLUE);
    assert.match(miniflare, /^Miniflare's local KV, R2/);
    // Miniflare's frame nearer than the worker's: the sample is Miniflare's.
    assert.match(callerOf([js("", "miniflare:shared", 185), wasm("fluxgate::x"), ...ENTRY], GLUE)[0], /^Miniflare/);
    const [nothing, leaf] = callerOf([frame("finish_task_switch", "[kernel.kallsyms]"), ...ENTRY], GLUE);
    assert.match(nothing, /^nothing of the worker's on the stack/);
    assert.equal(leaf, "kernel");
  });
});

describe("the report's section on the worker's share", () => {
  const side = (own, crossing, runtime, miniflare, nothing) => ({
    main: own + crossing + runtime + miniflare + nothing,
    share: own + crossing + runtime,
    groups: Object.fromEntries([...WORKER_GROUPS, "miniflare", "nothing"].map((g, i) => [g, [own, crossing, runtime, miniflare, nothing][i]])),
  });
  const results = {
    share: {
      floor: { a: side(0.55, 0.2, 1.0, 3.0, 9.0), b: side(0.01, 0, 0.55, 3.1, 8.5) },
      aa: { a: side(0.55, 0.2, 1.0, 3.0, 9.0), b: side(0.54, 0.21, 1.02, 3.5, 8.0) },
      isolates: 8,
      generations: 24,
      warmup: 4,
      seconds: 98,
    },
  };

  test("each comparison's share and its parts, the whole thread beside them", () => {
    const { tables, notes } = shareSection(results);
    const [floor, aa] = tables[0].rows;
    assert.deepEqual(floor, ["fluxgate - floor", "1.75", "0.56", "+1.190", "+0.540", "+0.200", "+0.450", "+0.400", "+1.590"]);
    assert.deepEqual(aa.slice(0, 4), ["fluxgate - fluxgate (A/A)", "1.75", "1.77", "-0.020"]);
    assert.match(notes[0], /24 generations on each of 8 new isolates a side after 4,/);
  });

  test("the floor in Rust's row, between the floor's and the A/A, when it was measured", () => {
    const lean = { a: side(0.55, 0.2, 1.0, 3.0, 9.0), b: side(0.25, 0.1, 0.8, 3.0, 9.2) };
    const rows = shareSection({ share: { ...results.share, lean } }).tables[0].rows;
    assert.deepEqual(
      rows.map((r) => r[0]),
      ["fluxgate - floor", "fluxgate - floor in Rust (lean)", "fluxgate - fluxgate (A/A)"],
    );
    assert.deepEqual(rows[1].slice(3, 6), ["+0.600", "+0.300", "+0.100"]);
  });

  test("why it was not measured, when it could not run; nothing when not asked", () => {
    const section = shareSection({ share: { error: "no `perf` on this machine (Debian: linux-perf)" } });
    assert.match(section.title, /The worker's share of the main thread/);
    assert.deepEqual(section.notes, ["not measured: no `perf` on this machine (Debian: linux-perf)"]);
    assert.equal(shareSection({ share: null }), null);
  });
});
