// The bench's verdict on a paired CPU target (bench/paired.mjs), on made-up
// differences: what `npm run bench` prints as met, NOT met or within resolution.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { intervalCoverage, medianInterval, summarize, verdict } from "../bench/paired.mjs";

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
