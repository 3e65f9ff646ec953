// Input validation driven by a version's published `openapi_schema`, and the
// model / version objects of the API.
import {
  FLUX_SCHNELL_DEPLOYMENT_VERSION,
  FLUX_SCHNELL_VERSION,
  findModel,
} from "./models.mjs";

export { FLUX_SCHNELL_DEPLOYMENT_VERSION, FLUX_SCHNELL_VERSION } from "./models.mjs";

export const FLUX_SCHNELL_OWNER = "black-forest-labs";
export const FLUX_SCHNELL_NAME = "flux-schnell";
export const FLUX_SCHNELL_MODEL = `${FLUX_SCHNELL_OWNER}/${FLUX_SCHNELL_NAME}`;

/** flux-schnell's output sizes at 1 megapixel. */
export const ASPECT_RATIOS = {
  "1:1": [1024, 1024],
  "16:9": [1344, 768],
  "21:9": [1536, 640],
  "3:2": [1216, 832],
  "2:3": [832, 1216],
  "4:5": [896, 1088],
  "5:4": [1088, 896],
  "3:4": [896, 1152],
  "4:3": [1152, 896],
  "9:16": [768, 1344],
  "9:21": [640, 1536],
};

export const CONTENT_TYPES = {
  webp: "image/webp",
  jpg: "image/jpeg",
  png: "image/png",
};

function jsonType(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function typeMatches(expected, value) {
  const actual = jsonType(value);
  if (expected === "number") return actual === "number" || actual === "integer";
  return actual === expected;
}

function quoteList(values) {
  return values.map((v) => JSON.stringify(v)).join(", ");
}

function isUri(value) {
  try {
    return /^[a-z][a-z0-9+.-]*:/i.test(value) && Boolean(new URL(value).protocol);
  } catch {
    return false;
  }
}

export class ValidationError extends Error {
  constructor(invalidFields) {
    super("Input validation failed");
    this.invalidFields = invalidFields;
  }

  toBody() {
    const detail = this.invalidFields.map((f) => `- ${f.field}: ${f.description}\n`).join("");
    return {
      title: "Input validation failed",
      detail,
      status: 422,
      invalid_fields: this.invalidFields,
    };
  }
}

/**
 * A property with its `allOf: [{$ref}]` enum component folded in:
 * { type, enum?, minimum?, maximum?, format?, nullable?, default? }.
 */
export function resolveProperty(schemas, prop) {
  let resolved = { ...prop };
  for (const part of prop.allOf ?? []) {
    const name = /^#\/components\/schemas\/(.+)$/.exec(part.$ref ?? "")?.[1];
    const component = name ? schemas[name] : null;
    if (component) resolved = { ...component, ...resolved };
  }
  delete resolved.allOf;
  return resolved;
}

/**
 * Validates `input` against an `openapi_schema` (Cog's document) the way
 * Replicate does, answering its 422 shape through ValidationError. Returns the
 * input with defaults applied and keys in alphabetical order. Unknown keys are
 * dropped, as Replicate does, or refused when `strict` is set.
 */
export function validateInput(openapiSchema, input, { strict = false } = {}) {
  const schemas = openapiSchema.components.schemas;
  const { properties, required = [] } = schemas.Input;
  if (input === undefined) {
    throw new ValidationError([{ type: "required", field: "(root)", description: "input is required" }]);
  }
  if (jsonType(input) !== "object") {
    throw new ValidationError([
      { type: "invalid_type", field: "input", description: `Invalid type. Expected: object, given: ${jsonType(input)}` },
    ]);
  }
  const invalid = [];
  for (const name of required) {
    if (!(name in input) || input[name] === undefined) {
      invalid.push({ type: "required", field: `input.${name}`, description: `${name} is required` });
    }
  }
  if (strict) {
    for (const name of Object.keys(input)) {
      if (!Object.hasOwn(properties, name)) {
        invalid.push({
          type: "additional_property_not_allowed",
          field: "input",
          description: `Additional property ${name} is not allowed`,
        });
      }
    }
  }
  const ordered = Object.keys(properties).sort((a, b) => (properties[a]["x-order"] ?? 0) - (properties[b]["x-order"] ?? 0));
  for (const name of ordered) {
    if (!(name in input)) continue;
    const field = resolveProperty(schemas, properties[name]);
    const value = input[name];
    const path = `input.${name}`;
    if (value === null && field.nullable) continue;
    if (!typeMatches(field.type, value)) {
      invalid.push({
        type: "invalid_type",
        field: path,
        description: `Invalid type. Expected: ${field.type}, given: ${jsonType(value)}`,
      });
      continue;
    }
    if (field.enum && !field.enum.includes(value)) {
      invalid.push({ type: "enum", field: path, description: `${path} must be one of the following: ${quoteList(field.enum)}` });
      continue;
    }
    if (field.minimum !== undefined && value < field.minimum) {
      invalid.push({ type: "number_gte", field: path, description: `Must be greater than or equal to ${field.minimum}` });
    }
    if (field.maximum !== undefined && value > field.maximum) {
      invalid.push({ type: "number_lte", field: path, description: `Must be less than or equal to ${field.maximum}` });
    }
    if (field.format === "uri" && !isUri(value)) {
      invalid.push({ type: "format", field: path, description: "Does not match format 'uri'" });
    }
  }
  if (invalid.length > 0) throw new ValidationError(invalid);

  const result = {};
  for (const name of Object.keys(properties)) {
    if (name in input) result[name] = input[name];
    else if ("default" in properties[name]) result[name] = properties[name].default;
  }
  return Object.fromEntries(Object.entries(result).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** flux-schnell's validation (see validateInput). */
export function validateFluxSchnellInput(input, options) {
  const model = findModel(FLUX_SCHNELL_OWNER, FLUX_SCHNELL_NAME);
  return validateInput(model.latestVersion.openapi_schema, input, options);
}

export function imageDimensions(aspectRatio, megapixels) {
  const [w, h] = ASPECT_RATIOS[aspectRatio] ?? ASPECT_RATIOS["1:1"];
  if (megapixels === "0.25") return [w / 2, h / 2];
  return [w, h];
}

/** Keys ordered as Replicate serves stored JSON: shorter keys first, then bytewise. */
export function jsonbOrdered(value) {
  if (Array.isArray(value)) return value.map(jsonbOrdered);
  if (value === null || typeof value !== "object") return value;
  const keys = Object.keys(value).sort((a, b) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(keys.map((k) => [k, jsonbOrdered(value[k])]));
}

const orderedSchemas = new WeakMap();

export function versionObject(version) {
  if (!orderedSchemas.has(version)) orderedSchemas.set(version, JSON.stringify(jsonbOrdered(version.openapi_schema)));
  return {
    id: version.id,
    created_at: version.created_at,
    cog_version: version.cog_version,
    openapi_schema: JSON.parse(orderedSchemas.get(version)),
  };
}

export function modelObject(model, runCount) {
  const { info } = model;
  return {
    cover_image_url: info.cover_image_url,
    created_at: info.created_at,
    default_example: model.defaultExample ?? null,
    description: info.description,
    github_url: info.github_url,
    is_official: model.official,
    latest_version: versionObject(model.latestVersion),
    license_url: info.license_url,
    name: model.name,
    owner: model.owner,
    paper_url: info.paper_url,
    run_count: runCount,
    url: `https://replicate.com/${model.slug}`,
    visibility: "public",
    weights_url: info.weights_url,
  };
}

export function fluxSchnellVersion() {
  return versionObject(findModel(FLUX_SCHNELL_OWNER, FLUX_SCHNELL_NAME).latestVersion);
}

export function fluxSchnellModel(runCount) {
  return modelObject(findModel(FLUX_SCHNELL_OWNER, FLUX_SCHNELL_NAME), runCount);
}

export function isFluxSchnell(owner, name) {
  return owner === FLUX_SCHNELL_OWNER && name === FLUX_SCHNELL_NAME;
}
