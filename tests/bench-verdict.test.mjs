// The bench's verdicts (bench/paired.mjs) on a paired CPU target and on a
// latency against the reference build, on made-up figures and on figures of
// past runs: what `npm run bench` prints as met, NOT met or within resolution.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { intervalCoverage, latencyCalibration, latencyVerdict, medianInterval, summarize, verdict } from "../bench/paired.mjs";
import { targetSection } from "../bench/report.mjs";

const range = (median, min, max) => ({ median, min, max });
/** A summary of rounds of one set each: their values are the round medians. */
const rounds = (values) => summarize(values.map((v) => [v]));

describe("the bench's verdict on a CPU target", () => {
  test("a calibration finer than the limit: the range's upper end decides", () => {
    const aa = range(0, -0.05, 0.08);
    assert.equal(verdict(range(0.3, 0.2, 0.45), aa, 0.5), "met");
    assert.equal(verdict(range(0.3, 0.2, 0.55), aa, 0.5), "NOT met");
  });

  test("a calibration wider than the limit: the median decides once it is further from the limit than the calibration", () => {
    const aa = range(-0.1, -0.89, 0.22);
    // The last full run's generation: every round above the limit, the median 1.66 ms.
    assert.equal(verdict(range(1.66, 1.03, 1.89), aa, 0.5), "NOT met");
    assert.equal(verdict(range(-0.5, -0.9, 0.4), aa, 0.5), "met");
    assert.equal(verdict(range(1.2, 0.3, 1.9), aa, 0.5), "within resolution");
    assert.equal(verdict(range(-0.3, -0.6, 0.6), aa, 0.5), "within resolution");
  });
});

describe("the interval of the median of rounds", () => {
  test("its coverage is the binomial one", () => {
    // 1 - 2 / 2^n for the whole range; 1 - 2 (1 + n) / 2^n without one round at each end.
    assert.equal(intervalCoverage(4, 1), 1 - 2 / 16);
    assert.equal(intervalCoverage(10, 2), 1 - (2 * 11) / 1024);
    assert.equal(intervalCoverage(12, 3), 1 - (2 * (1 + 12 + 66)) / 4096);
  });

  test("up to seven rounds it is the range; from eight, it leaves out outliers while 90% coverage holds", () => {
    for (const n of [1, 2, 3, 4, 5, 6, 7]) {
      const values = Array.from({ length: n }, (_, i) => 10 - i);
      assert.deepEqual(medianInterval(values), { low: Math.min(...values), high: Math.max(...values), dropped: 0 });
    }
    const values = [5, 1, 9, 3, 7, 2, 8, 4, 6, 0];
    assert.deepEqual(medianInterval(values), { low: 1, high: 8, dropped: 1 });
    assert.ok(intervalCoverage(10, 2) >= 0.9 && intervalCoverage(10, 3) < 0.9);
    assert.equal(medianInterval(Array.from({ length: 8 }, (_, i) => i)).dropped, 1);
    assert.equal(medianInterval(Array.from({ length: 20 }, (_, i) => i)).dropped, 5);
  });

  test("more rounds narrow the resolution: a ten-round run's generation is NOT met, where its full ranges said within resolution", () => {
    // A ten-round run of POST /generate (BENCH_ROUNDS=10): every round above the
    // 0.5 ms limit; one A/A round at -1.07 ms.
    const difference = rounds([1.77, 1.15, 1.1, 1.07, 1.15, 2.09, 1.61, 1.94, 1.45, 1.75]);
    const aa = rounds([-1.07, 0.16, 0.07, -0.04, -0.58, -0.44, -0.24, -0.13, -0.2, -0.25]);
    assert.equal(verdict(difference, aa, 0.5), "NOT met");
    const { low, high, dropped } = aa;
    assert.deepEqual({ low, high, dropped }, { low: -0.58, high: 0.07, dropped: 1 });
    // Read over the whole ranges, the one outlying A/A round decides.
    const whole = (s) => range(s.median, s.min, s.max);
    assert.equal(verdict(whole(difference), whole(aa), 0.5), "within resolution");
    // A difference that is only sometimes above the limit stays undecided.
    assert.equal(verdict(rounds([0.2, 1.3, 0.4, 1.1, 0.9, 0.3, 1.2, 0.6, 1.0, 0.8]), aa, 0.5), "within resolution");
  });
});

describe("the bench's verdict on a latency against the reference", () => {
  const SLACK = 0.1;

  test("the A/A is the widest of the pairs it is given: the reference's two instances, each build's runs", () => {
    assert.equal(latencyCalibration([10, 10], [8, 10]), 1.25);
    // Each instance's runs agree, the two instances do not.
    assert.equal(latencyCalibration([5.7, 4.66], [2.79, 2.93], [5.1, 5.3], [2.88, 5.2]), 5.2 / 2.88);
    assert.equal(latencyCalibration([12, 8], [9, 9.5]), 1.5);
    // A build with one run (or none with a figure) has no spread.
    assert.equal(latencyCalibration([7], [null, 4]), 1);
    assert.equal(latencyCalibration([], []), 1);
  });

  test("an A/A within the slack: the ratio decides, as before", () => {
    assert.equal(latencyVerdict(1.1, 1.05, SLACK), "met");
    assert.equal(latencyVerdict(1.12, 1.09, SLACK), "NOT met");
    // POST /generate at 16 connections in the 15:49 run: both builds' runs within 4%.
    const aa = latencyCalibration([128.22, 124.18], [95.92, 92.74]);
    assert.ok(aa < 1.04);
    assert.equal(latencyVerdict(127.48 / 94.34, aa, SLACK), "NOT met");
  });

  test("an A/A wider than the slack: NOT met beyond it, met within it, undecided between", () => {
    // GET /health at 32 connections, p99, in the 15:49 run: the reference's two
    // runs read 30.5 and 130.4 ms, so fluxgate's 3.95x resolves nothing.
    const health = latencyCalibration([174.64, 124.4], [30.52, 130.35]);
    assert.equal(latencyVerdict(129.46 / 32.8, health, SLACK), "within resolution");
    // GET /image ~100 KB at one connection, p99: both builds' runs within 11%,
    // fluxgate's 1.62x is beyond 1.1 times that.
    const image = latencyCalibration([6.85, 7.58], [4.55, 4.22]);
    assert.ok(image > 1 + SLACK);
    assert.equal(latencyVerdict(7.4 / 4.55, image, SLACK), "NOT met");
    // A ratio under 1.1 / A/A is met; one above 1.1 but under 1.1 x A/A is not decided.
    assert.equal(latencyVerdict(0.8, 1.3, SLACK), "met");
    assert.equal(latencyVerdict(1.0, 1.3, SLACK), "within resolution");
    assert.equal(latencyVerdict(1.4, 1.3, SLACK), "within resolution");
    assert.equal(latencyVerdict(1.5, 1.3, SLACK), "NOT met");
  });

  test("the report prints the A/A beside each ratio", () => {
    const section = targetSection({
      targets: [],
      environment: { latencySlack: SLACK, latencyRunsPerBuild: 2 },
      reference: { rev: "bef49d1", sha: "bef49d1e24490dafb2993d30fde09c8a8a7512ff" },
      latency: { "GET /health c32": { fluxgate: { runs: [{ p99: 174.64 }, { p99: 124.4 }] }, reference: { runs: [{ p99: 30.52 }, { p99: 130.35 }] } } },
      latencyTargets: [{ name: "GET /health c32", pct: "p99", now: 129.46, before: 32.8, again: 61.2, ratio: 3.95, aa: 4.27, result: "within resolution" }],
    });
    const latency = section.tables[1];
    const columns = latency.columns.map((c) => c.title);
    const row = latency.rows[0];
    assert.equal(row[columns.indexOf("reference again ms")], "61.20");
    assert.equal(row[columns.indexOf("A/A")], "4.27x");
    assert.equal(row[columns.indexOf("fluxgate/reference")], "3.95x");
    assert.equal(row[columns.indexOf("result")], "within resolution");
    assert.match(section.notes.join("\n"), /A\/A, the resolution: the reference again against the reference/);
  });
});
