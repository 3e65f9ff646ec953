// The floor (bench/floor-worker.mjs) with fluxgate's per-request checks and
// log lines done in plain JavaScript: the same KV, R2 and fetch calls, plus
// what fluxgate does around them (see `checks` there). Paired against
// fluxgate as the A/A build:
//   BENCH_A2_SCRIPT=bench/floor-checks-worker.mjs BENCH_ONLY=paired BENCH_KINDS=generate npm run bench
// the A/A column then reads "this floor - fluxgate".
import floor, { checks } from "./floor-worker.mjs";

checks.on = true;

export default floor;
