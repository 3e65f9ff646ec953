// The bench's verdict on a paired CPU target (bench/paired.mjs), on made-up
// differences: what `npm run bench` prints as met, NOT met or within resolution.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { verdict } from "../bench/paired.mjs";

const range = (median, min, max) => ({ median, min, max });

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
