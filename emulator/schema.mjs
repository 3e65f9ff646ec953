export const FLUX_SCHNELL_OWNER = "black-forest-labs";
export const FLUX_SCHNELL_NAME = "flux-schnell";
export const FLUX_SCHNELL_MODEL = `${FLUX_SCHNELL_OWNER}/${FLUX_SCHNELL_NAME}`;
export const FLUX_SCHNELL_VERSION = "c846a69991daf4c0e5d016514849d14ee5b2e6846ce6b9d6f21369e564cfe51e";
export const FLUX_SCHNELL_DEPLOYMENT_VERSION = "dp-4d0bcc010b3049749a251855f12800be";
export const FLUX_SCHNELL_VERSION_CREATED_AT = "2024-10-08T18:53:51.617838Z";
export const FLUX_SCHNELL_COG_VERSION = "0.9.25";

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

export const OUTPUT_FORMATS = ["webp", "jpg", "png"];
export const MEGAPIXELS = ["1", "0.25"];

export const CONTENT_TYPES = {
  webp: "image/webp",
  jpg: "image/jpeg",
  png: "image/png",
};

const FIELDS = [
  {
    name: "prompt",
    type: "string",
    title: "Prompt",
    description: "Prompt for generated image",
  },
  {
    name: "seed",
    type: "integer",
    title: "Seed",
    description: "Random seed. Set for reproducible generation",
  },
  {
    name: "num_outputs",
    type: "integer",
    title: "Num Outputs",
    description: "Number of outputs to generate",
    default: 1,
    minimum: 1,
    maximum: 4,
  },
  {
    name: "aspect_ratio",
    type: "string",
    title: "aspect_ratio",
    description: "Aspect ratio for the generated image",
    default: "1:1",
    enum: Object.keys(ASPECT_RATIOS),
  },
  {
    name: "output_format",
    type: "string",
    title: "output_format",
    description: "Format of the output images",
    default: "webp",
    enum: OUTPUT_FORMATS,
  },
  {
    name: "output_quality",
    type: "integer",
    title: "Output Quality",
    description:
      "Quality when saving the output images, from 0 to 100. 100 is best quality, 0 is lowest quality. Not relevant for .png outputs",
    default: 80,
    minimum: 0,
    maximum: 100,
  },
  {
    name: "num_inference_steps",
    type: "integer",
    title: "Num Inference Steps",
    description: "Number of denoising steps. 4 is recommended, and lower number of steps produce lower quality outputs, faster.",
    default: 4,
    minimum: 1,
    maximum: 4,
  },
  {
    name: "disable_safety_checker",
    type: "boolean",
    title: "Disable Safety Checker",
    description: "Disable safety checker for generated images.",
    default: false,
  },
  {
    name: "go_fast",
    type: "boolean",
    title: "Go Fast",
    description:
      "Run faster predictions with model optimized for speed (currently fp8 quantized); disable to run in original bf16. Note that outputs will not be deterministic when this is enabled, even if you set a seed.",
    default: true,
  },
  {
    name: "megapixels",
    type: "string",
    title: "megapixels",
    description: "Approximate number of megapixels for generated image",
    default: "1",
    enum: MEGAPIXELS,
  },
];

const REQUIRED = ["prompt"];

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
 * Validates a flux-schnell input object and returns it with defaults applied,
 * keys in alphabetical order, unknown keys dropped. Throws ValidationError.
 */
export function validateFluxSchnellInput(input) {
  if (input === undefined) {
    throw new ValidationError([{ type: "required", field: "(root)", description: "input is required" }]);
  }
  if (jsonType(input) !== "object") {
    throw new ValidationError([
      {
        type: "invalid_type",
        field: "input",
        description: `Invalid type. Expected: object, given: ${jsonType(input)}`,
      },
    ]);
  }
  const invalid = [];
  for (const name of REQUIRED) {
    if (!(name in input) || input[name] === undefined) {
      invalid.push({ type: "required", field: `input.${name}`, description: `${name} is required` });
    }
  }
  for (const field of FIELDS) {
    if (!(field.name in input)) continue;
    const value = input[field.name];
    const path = `input.${field.name}`;
    if (!typeMatches(field.type, value)) {
      invalid.push({
        type: "invalid_type",
        field: path,
        description: `Invalid type. Expected: ${field.type}, given: ${jsonType(value)}`,
      });
      continue;
    }
    if (field.enum && !field.enum.includes(value)) {
      invalid.push({
        type: "enum",
        field: path,
        description: `${path} must be one of the following: ${quoteList(field.enum)}`,
      });
      continue;
    }
    if (field.minimum !== undefined && value < field.minimum) {
      invalid.push({
        type: "number_gte",
        field: path,
        description: `Must be greater than or equal to ${field.minimum}`,
      });
    }
    if (field.maximum !== undefined && value > field.maximum) {
      invalid.push({
        type: "number_lte",
        field: path,
        description: `Must be less than or equal to ${field.maximum}`,
      });
    }
  }
  if (invalid.length > 0) throw new ValidationError(invalid);

  const result = {};
  for (const field of FIELDS) {
    if (field.name in input) result[field.name] = input[field.name];
    else if ("default" in field) result[field.name] = field.default;
  }
  return Object.fromEntries(Object.entries(result).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export function imageDimensions(aspectRatio, megapixels) {
  const [w, h] = ASPECT_RATIOS[aspectRatio] ?? ASPECT_RATIOS["1:1"];
  if (megapixels === "0.25") return [w / 2, h / 2];
  return [w, h];
}

function openapiInputSchema() {
  const properties = {};
  const enumSchemas = {};
  FIELDS.forEach((field, order) => {
    const prop = { title: field.title, description: field.description, "x-order": order };
    if (field.enum) {
      enumSchemas[field.name] = {
        type: field.type,
        title: field.name,
        enum: field.enum,
        description: "An enumeration.",
      };
      prop.allOf = [{ $ref: `#/components/schemas/${field.name}` }];
    } else {
      prop.type = field.type;
    }
    if ("default" in field) prop.default = field.default;
    if (field.minimum !== undefined) prop.minimum = field.minimum;
    if (field.maximum !== undefined) prop.maximum = field.maximum;
    properties[field.name] = prop;
  });
  return { properties, enumSchemas };
}

export function fluxSchnellOpenapiSchema() {
  const { properties, enumSchemas } = openapiInputSchema();
  return {
    openapi: "3.0.2",
    info: { title: "Cog", version: "0.1.0" },
    paths: {},
    components: {
      schemas: {
        Input: { type: "object", title: "Input", required: [...REQUIRED], properties },
        Output: { type: "array", items: { type: "string", format: "uri" }, title: "Output" },
        Status: {
          title: "Status",
          description: "An enumeration.",
          enum: ["starting", "processing", "succeeded", "canceled", "failed"],
          type: "string",
        },
        ...enumSchemas,
      },
    },
  };
}

export function fluxSchnellVersion() {
  return {
    id: FLUX_SCHNELL_VERSION,
    created_at: FLUX_SCHNELL_VERSION_CREATED_AT,
    cog_version: FLUX_SCHNELL_COG_VERSION,
    openapi_schema: fluxSchnellOpenapiSchema(),
  };
}

export function fluxSchnellModel(runCount) {
  return {
    url: `https://replicate.com/${FLUX_SCHNELL_MODEL}`,
    owner: FLUX_SCHNELL_OWNER,
    name: FLUX_SCHNELL_NAME,
    description: "The fastest image generation model tailored for local development and personal use",
    visibility: "public",
    github_url: "https://github.com/black-forest-labs/flux",
    paper_url: null,
    license_url: "https://github.com/black-forest-labs/flux/blob/main/model_licenses/LICENSE-FLUX1-schnell",
    run_count: runCount,
    cover_image_url: "https://tjzk.replicate.delivery/models_models_featured_image/67c990ba-bb67-4355-822f-2bd8c42b2f0d/flux-schnell.webp",
    default_example: null,
    latest_version: fluxSchnellVersion(),
  };
}

export function isFluxSchnell(owner, name) {
  return owner === FLUX_SCHNELL_OWNER && name === FLUX_SCHNELL_NAME;
}
