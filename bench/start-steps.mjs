// Where fluxgate's start goes, step by step: new Miniflare to the first
// answer of the floor alone, of the floor with fluxgate's wasm module loaded
// (Miniflare puts its bytes in workerd's configuration; workerd decodes and
// validates it), of the floor with fluxgate's glue loaded too (the
// wasm instantiated and started), and of fluxgate answering. Each step is
// the previous one plus one thing; differences of medians over rounds, the
// steps interleaved within a round. Each start's CPU is split between
// Miniflare's JavaScript (this process) and the new workerd process: only the
// latter has a counterpart on Cloudflare.
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { median } from "./paired.mjs";
import { root, startWorker } from "./services.mjs";

const DIR = join(root, "target", "start-steps");

function writeSteps() {
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(DIR, { recursive: true });
  copyFileSync(join(root, "build/index_bg.wasm"), join(DIR, "index_bg.wasm"));
  // Copied as .mjs: Miniflare reads an imported .js as CommonJS.
  copyFileSync(join(root, "build/index.js"), join(DIR, "glue.mjs"));
  writeFileSync(
    join(DIR, "floor-with-wasm.mjs"),
    `import floor from "../../bench/floor-worker.mjs";\nimport wasm from "./index_bg.wasm";\nglobalThis.loaded = wasm;\nexport default floor;\n`,
  );
  writeFileSync(
    join(DIR, "floor-with-glue.mjs"),
    `import floor from "../../bench/floor-worker.mjs";\nimport glue from "./glue.mjs";\nglobalThis.loaded = glue;\nexport default floor;\n`,
  );
}

export const STEPS = [
  { name: "the floor", script: "bench/floor-worker.mjs" },
  { name: "+ fluxgate's wasm module loaded", script: "target/start-steps/floor-with-wasm.mjs" },
  { name: "+ its glue loaded (the wasm instantiated, started)", script: "target/start-steps/floor-with-glue.mjs" },
  { name: "fluxgate answering", script: "build/index.js" },
];

/** Medians of new Miniflare -> first answer per step, over `rounds` rounds. */
export async function measureStartSteps(emulatorUrl, rounds = 5) {
  writeSteps();
  const times = STEPS.map(() => []);
  const miniflareCpu = STEPS.map(() => []);
  const workerdCpu = STEPS.map(() => []);
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < STEPS.length; i++) {
      const at = (i + round) % STEPS.length;
      const worker = await startWorker(emulatorUrl, STEPS[at].script);
      times[at].push(worker.firstAnswerMs);
      miniflareCpu[at].push(worker.startCpu.miniflareMs);
      workerdCpu[at].push(worker.startCpu.workerdMs);
      await worker.mf.dispose();
    }
  }
  const step = (series, i) => (i === 0 ? null : median(series[i]) - median(series[i - 1]));
  return STEPS.map((s, i) => ({
    name: s.name,
    medianMs: median(times[i]),
    stepMs: step(times, i),
    ms: times[i],
    // CPU of the start, medians: Miniflare's (Node) and workerd's, and each step's share.
    miniflareCpuMs: median(miniflareCpu[i]),
    miniflareCpuStepMs: step(miniflareCpu, i),
    workerdCpuMs: median(workerdCpu[i]),
    workerdCpuStepMs: step(workerdCpu, i),
  }));
}
