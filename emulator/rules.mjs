// Effects on any answer (API routes and output files).
const RESPONSE_EFFECTS = ["latencyMs", "httpStatus", "retryAfter", "body", "echoHeaders", "holdOpen"];
// Effects on output files (/delivery/...) only.
const DELIVERY_EFFECTS = [
  "contentType",
  "replaceBody",
  "redirectTo",
  "redirectStatus",
  "redirectHops",
  "hugeBytes",
  "unsized",
  "shortBody",
];
// Effects on creates only: how the prediction behaves.
const PREDICTION_EFFECTS = [
  "fail",
  "hang",
  "predictMs",
  "expireAfterMs",
  "truncate",
  "outputAs",
  "outputsBeforeComplete",
];
// Effects on creates only: how the create is validated.
const CREATE_EFFECTS = ["strictInputs"];
const KNOWN_EFFECTS = new Set([...RESPONSE_EFFECTS, ...DELIVERY_EFFECTS, ...PREDICTION_EFFECTS, ...CREATE_EFFECTS]);

const REDIRECT_STATUSES = [301, 302, 303, 307, 308];

export class RuleError extends Error {}

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

const isCount = (v) => Number.isSafeInteger(v) && v >= 0;

/** Type checks for the effects whose misuse would otherwise fail obscurely. */
const EFFECT_CHECKS = {
  retryAfter: [(v) => typeof v === "string" || typeof v === "number", "a string (sent verbatim) or a number"],
  redirectTo: [
    (v) => {
      try {
        return typeof v === "string" && /^https?:$/.test(new URL(v).protocol);
      } catch {
        return false;
      }
    },
    "an absolute http(s) URL",
  ],
  redirectStatus: [(v) => REDIRECT_STATUSES.includes(v), `one of ${REDIRECT_STATUSES.join(", ")}`],
  redirectHops: [(v) => isCount(v) && v <= 50, "an integer from 0 to 50"],
  hugeBytes: [(v) => isCount(v) && v > 0, "a positive integer"],
  unsized: [(v) => typeof v === "boolean", "a boolean"],
  shortBody: [(v) => typeof v === "boolean" || isCount(v), "true or a byte count"],
  echoHeaders: [(v) => typeof v === "boolean", "a boolean"],
  holdOpen: [(v) => typeof v === "boolean", "a boolean"],
  strictInputs: [(v) => typeof v === "boolean", "a boolean"],
  contentType: [(v) => typeof v === "string", "a string"],
  replaceBody: [(v) => typeof v === "string", "a string"],
};

function checkRule(rule) {
  if (!isPlainObject(rule)) throw new RuleError("rule must be an object");
  const { when = {}, then, times } = rule;
  if (!isPlainObject(when)) throw new RuleError("when must be an object");
  for (const key of ["prompt", "path", "method", "outputOf"]) {
    if (key in when && typeof when[key] !== "string") throw new RuleError(`when.${key} must be a string`);
  }
  if (!isPlainObject(then)) throw new RuleError("then must be an object");
  for (const key of Object.keys(then)) {
    if (!KNOWN_EFFECTS.has(key)) throw new RuleError(`unknown effect then.${key}`);
    const check = EFFECT_CHECKS[key];
    if (check && !check[0](then[key])) throw new RuleError(`then.${key} must be ${check[1]}`);
  }
  if (times !== undefined && times !== null && !(Number.isInteger(times) && times > 0)) {
    throw new RuleError("times must be a positive integer");
  }
}

/**
 * Test-controlled rules that shape how the emulator answers.
 * A request gathers the `then` of every matching rule (later rules override
 * earlier ones); a rule with `times` stops matching once used that often.
 */
export class RuleBook {
  constructor() {
    this.rules = [];
    this.nextId = 1;
  }

  add(rule) {
    checkRule(rule);
    const stored = {
      id: `rule_${this.nextId++}`,
      when: { ...(rule.when ?? {}) },
      then: { ...rule.then },
      times: rule.times ?? null,
      used: 0,
    };
    this.rules.push(stored);
    return stored;
  }

  remove(id) {
    const before = this.rules.length;
    this.rules = this.rules.filter((r) => r.id !== id);
    return this.rules.length !== before;
  }

  clear() {
    this.rules = [];
  }

  list() {
    return this.rules.map((r) => ({ ...r, remaining: r.times === null ? null : r.times - r.used }));
  }

  /**
   * request: { method, path, prompt (string|undefined), outputPrompt (the prompt of the
   * prediction whose output file is asked for), isApi, isCreate, isDelivery }
   * Returns the merged effects that apply to this request, consuming uses.
   */
  match(request) {
    const relevant = [...RESPONSE_EFFECTS];
    if (request.isCreate) relevant.push(...PREDICTION_EFFECTS, ...CREATE_EFFECTS);
    if (request.isDelivery) relevant.push(...DELIVERY_EFFECTS);
    const effects = {};
    for (const rule of this.rules) {
      if (rule.times !== null && rule.used >= rule.times) continue;
      if (!matches(rule.when, request)) continue;
      const applicable = Object.keys(rule.then).filter((k) => relevant.includes(k));
      if (applicable.length === 0) continue;
      rule.used += 1;
      for (const key of applicable) effects[key] = rule.then[key];
    }
    return effects;
  }
}

function matches(when, request) {
  if (when.method !== undefined && when.method.toUpperCase() !== request.method) return false;
  if (when.path !== undefined && !request.path.includes(when.path)) return false;
  if (when.prompt !== undefined) {
    if (!request.isApi || typeof request.prompt !== "string") return false;
    if (!request.prompt.includes(when.prompt)) return false;
  }
  if (when.outputOf !== undefined) {
    if (!request.isDelivery || typeof request.outputPrompt !== "string") return false;
    if (!request.outputPrompt.includes(when.outputOf)) return false;
  }
  return true;
}

export function predictionEffects(effects) {
  const out = {};
  for (const key of PREDICTION_EFFECTS) if (key in effects) out[key] = effects[key];
  return out;
}
