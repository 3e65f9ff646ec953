const RESPONSE_EFFECTS = ["latencyMs", "httpStatus", "retryAfter", "body", "contentType", "replaceBody"];
const PREDICTION_EFFECTS = [
  "fail",
  "hang",
  "predictMs",
  "expireAfterMs",
  "truncate",
  "outputAs",
  "outputsBeforeComplete",
];
const KNOWN_EFFECTS = new Set([...RESPONSE_EFFECTS, ...PREDICTION_EFFECTS]);

export class RuleError extends Error {}

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function checkRule(rule) {
  if (!isPlainObject(rule)) throw new RuleError("rule must be an object");
  const { when = {}, then, times } = rule;
  if (!isPlainObject(when)) throw new RuleError("when must be an object");
  for (const key of ["prompt", "path", "method"]) {
    if (key in when && typeof when[key] !== "string") throw new RuleError(`when.${key} must be a string`);
  }
  if (!isPlainObject(then)) throw new RuleError("then must be an object");
  for (const key of Object.keys(then)) {
    if (!KNOWN_EFFECTS.has(key)) throw new RuleError(`unknown effect then.${key}`);
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
   * request: { method, path, prompt (string|undefined), isApi, isCreate }
   * Returns the merged effects that apply to this request, consuming uses.
   */
  match(request) {
    const relevant = request.isCreate ? [...RESPONSE_EFFECTS, ...PREDICTION_EFFECTS] : RESPONSE_EFFECTS;
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
  return true;
}

export function predictionEffects(effects) {
  const out = {};
  for (const key of PREDICTION_EFFECTS) if (key in effects) out[key] = effects[key];
  return out;
}
