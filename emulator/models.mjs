// The models the emulator runs, as Replicate publishes them: model objects,
// version ids and each version's `openapi_schema` (Cog's OpenAPI document,
// whose `components.schemas.Input` / `Output` drive validation and outputs).
// Values Replicate has not published verbatim (x-order of some models,
// most versions' created_at / cog_version, cover images) are plausible
// stand-ins; ids, fields, types, ranges, defaults and enums are the
// published ones.

export const FLUX_SCHNELL_VERSION = "c846a69991daf4c0e5d016514849d14ee5b2e6846ce6b9d6f21369e564cfe51e";
export const FLUX_SCHNELL_DEPLOYMENT_VERSION = "dp-4d0bcc010b3049749a251855f12800be";
export const FLUX_DEV_VERSION = "6e4a938f85952bdabcc15aa329178c4d681c52bf25a0342403287dc26944661d";
export const FLUX_11_PRO_VERSION = "96ccd0e758a1796926584ded2246369cdf8eb3d7c34475cf9c442be5e097d926";
export const SDXL_VERSION = "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc";
export const SD_INPAINTING_VERSION = "95b7223104132402a9ae91cc677285bc5eb997834bd2349fa486f53910fd68b3";
export const REAL_ESRGAN_VERSION = "f121d640bd286e1fdc67f9799164c1d5be36ff74576ee11c803ae5b665dd46aa";
export const FLUX_KONTEXT_PRO_VERSION = "897a70f5a7dbd8a0611413b3b98cf417b45f266bd595c571a22947619d9ae462";
export const FLUX_FILL_PRO_VERSION = "41c767bcbfffe54ef8f05eb4d0100f9314790f7fc43a7b88d73ec06839deddb9";

/** What predictions created through /v1/models/{owner}/{name}/predictions report as `version`. */
export const HIDDEN_VERSION = "hidden";

const URI_LIST_OUTPUT = { type: "array", items: { type: "string", format: "uri" }, title: "Output" };
const URI_OUTPUT = { type: "string", title: "Output", format: "uri" };

function enumComponent(title, values, type = "string") {
  return { enum: values, type, title, description: "An enumeration." };
}

function ref(name) {
  return [{ $ref: `#/components/schemas/${name}` }];
}

const FLUX_ASPECT_RATIOS = ["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"];

const response200 = (schema) => ({
  "200": { description: "Successful Response", content: { "application/json": { schema } } },
});
const response422 = {
  "422": {
    description: "Validation Error",
    content: { "application/json": { schema: { $ref: "#/components/schemas/HTTPValidationError" } } },
  },
};
const preferHeader = { in: "header", name: "prefer", required: false, schema: { type: "string", title: "Prefer" } };
const predictionIdParam = { in: "path", name: "prediction_id", required: true, schema: { type: "string", title: "Prediction ID" } };

/** Cog's OpenAPI document around a model's Input/Output schemas and enum components. */
function cogOpenapi({ input, output, components = {} }) {
  return {
    info: { title: "Cog", version: "0.1.0" },
    paths: {
      "/": { get: { summary: "Root", operationId: "root__get", responses: response200({ title: "Response Root  Get" }) } },
      "/shutdown": {
        post: { summary: "Start Shutdown", operationId: "start_shutdown_shutdown_post", responses: response200({ title: "Response Start Shutdown Shutdown Post" }) },
      },
      "/predictions": {
        post: {
          summary: "Predict",
          description: "Run a single prediction on the model",
          operationId: "predict_predictions_post",
          parameters: [preferHeader],
          requestBody: { content: { "application/json": { schema: { $ref: "#/components/schemas/PredictionRequest" } } } },
          responses: { ...response200({ $ref: "#/components/schemas/PredictionResponse" }), ...response422 },
        },
      },
      "/health-check": {
        get: { summary: "Healthcheck", operationId: "healthcheck_health_check_get", responses: response200({ title: "Response Healthcheck Health Check Get" }) },
      },
      "/predictions/{prediction_id}": {
        put: {
          summary: "Predict Idempotent",
          description: "Run a single prediction on the model (idempotent creation).",
          operationId: "predict_idempotent_predictions__prediction_id__put",
          parameters: [predictionIdParam, preferHeader],
          requestBody: {
            content: {
              "application/json": { schema: { allOf: ref("PredictionRequest"), title: "Prediction Request" } },
            },
            required: true,
          },
          responses: { ...response200({ $ref: "#/components/schemas/PredictionResponse" }), ...response422 },
        },
      },
      "/predictions/{prediction_id}/cancel": {
        post: {
          summary: "Cancel",
          description: "Cancel a running prediction",
          operationId: "cancel_predictions__prediction_id__cancel_post",
          parameters: [predictionIdParam],
          responses: { ...response200({ title: "Response Cancel Predictions  Prediction Id  Cancel Post" }), ...response422 },
        },
      },
    },
    openapi: "3.0.2",
    components: {
      schemas: {
        Input: input,
        Output: output,
        Status: enumComponent("Status", ["starting", "processing", "succeeded", "canceled", "failed"]),
        WebhookEvent: enumComponent("WebhookEvent", ["start", "output", "logs", "completed"]),
        ValidationError: {
          type: "object",
          title: "ValidationError",
          required: ["loc", "msg", "type"],
          properties: {
            loc: { type: "array", items: { anyOf: [{ type: "string" }, { type: "integer" }] }, title: "Location" },
            msg: { type: "string", title: "Message" },
            type: { type: "string", title: "Error Type" },
          },
        },
        PredictionRequest: {
          type: "object",
          title: "PredictionRequest",
          properties: {
            id: { type: "string", title: "Id" },
            input: { $ref: "#/components/schemas/Input" },
            webhook: { type: "string", title: "Webhook", format: "uri", maxLength: 65536, minLength: 1 },
            created_at: { type: "string", title: "Created At", format: "date-time" },
            output_file_prefix: { type: "string", title: "Output File Prefix" },
            webhook_events_filter: {
              type: "array",
              items: { $ref: "#/components/schemas/WebhookEvent" },
              default: ["start", "output", "logs", "completed"],
            },
          },
        },
        PredictionResponse: {
          type: "object",
          title: "PredictionResponse",
          properties: {
            id: { type: "string", title: "Id" },
            logs: { type: "string", title: "Logs", default: "" },
            error: { type: "string", title: "Error" },
            input: { $ref: "#/components/schemas/Input" },
            output: { $ref: "#/components/schemas/Output" },
            status: { $ref: "#/components/schemas/Status" },
            metrics: { type: "object", title: "Metrics" },
            version: { type: "string", title: "Version" },
            created_at: { type: "string", title: "Created At", format: "date-time" },
            started_at: { type: "string", title: "Started At", format: "date-time" },
            completed_at: { type: "string", title: "Completed At", format: "date-time" },
          },
        },
        HTTPValidationError: {
          type: "object",
          title: "HTTPValidationError",
          properties: { detail: { type: "array", items: { $ref: "#/components/schemas/ValidationError" }, title: "Detail" } },
        },
        ...components,
      },
    },
  };
}

// Shared field texts of the FLUX family (cog-flux).
const FLUX_SEED = { type: "integer", title: "Seed", description: "Random seed. Set for reproducible generation" };
const FLUX_GO_FAST_DESCRIPTION =
  "Run faster predictions with model optimized for speed (currently fp8 quantized); disable to run in original bf16. Note that outputs will not be deterministic when this is enabled, even if you set a seed.";
const OUTPUT_QUALITY_DESCRIPTION =
  "Quality when saving the output images, from 0 to 100. 100 is best quality, 0 is lowest quality. Not relevant for .png outputs";
const FLUX_COMPONENTS = {
  megapixels: enumComponent("megapixels", ["1", "0.25"]),
  aspect_ratio: enumComponent("aspect_ratio", FLUX_ASPECT_RATIOS),
  output_format: enumComponent("output_format", ["webp", "jpg", "png"]),
};

const FLUX_SCHNELL_SCHEMA = cogOpenapi({
  input: {
    type: "object",
    title: "Input",
    required: ["prompt"],
    properties: {
      seed: { ...FLUX_SEED, "x-order": 4 },
      prompt: { type: "string", title: "Prompt", "x-order": 0, description: "Prompt for generated image" },
      go_fast: { type: "boolean", title: "Go Fast", default: true, "x-order": 8, description: FLUX_GO_FAST_DESCRIPTION },
      megapixels: { allOf: ref("megapixels"), default: "1", "x-order": 9, description: "Approximate number of megapixels for generated image" },
      num_outputs: { type: "integer", title: "Num Outputs", default: 1, maximum: 4, minimum: 1, "x-order": 2, description: "Number of outputs to generate" },
      aspect_ratio: { allOf: ref("aspect_ratio"), default: "1:1", "x-order": 1, description: "Aspect ratio for the generated image" },
      output_format: { allOf: ref("output_format"), default: "webp", "x-order": 5, description: "Format of the output images" },
      output_quality: { type: "integer", title: "Output Quality", default: 80, maximum: 100, minimum: 0, "x-order": 6, description: OUTPUT_QUALITY_DESCRIPTION },
      num_inference_steps: {
        type: "integer",
        title: "Num Inference Steps",
        default: 4,
        maximum: 4,
        minimum: 1,
        "x-order": 3,
        description: "Number of denoising steps. 4 is recommended, and lower number of steps produce lower quality outputs, faster.",
      },
      disable_safety_checker: { type: "boolean", title: "Disable Safety Checker", default: false, "x-order": 7, description: "Disable safety checker for generated images." },
    },
  },
  output: URI_LIST_OUTPUT,
  components: FLUX_COMPONENTS,
});

const FLUX_DEV_SCHEMA = cogOpenapi({
  input: {
    type: "object",
    title: "Input",
    required: ["prompt"],
    properties: {
      seed: { ...FLUX_SEED, "x-order": 7 },
      image: {
        type: "string",
        title: "Image",
        format: "uri",
        "x-order": 2,
        description: "Input image for image to image mode. The aspect ratio of your output will match this image",
      },
      prompt: { type: "string", title: "Prompt", "x-order": 0, description: "Prompt for generated image" },
      go_fast: { type: "boolean", title: "Go Fast", default: true, "x-order": 11, description: FLUX_GO_FAST_DESCRIPTION },
      guidance: { type: "number", title: "Guidance", default: 3, maximum: 10, minimum: 0, "x-order": 6, description: "Guidance for generated image" },
      megapixels: { allOf: ref("megapixels"), default: "1", "x-order": 12, description: "Approximate number of megapixels for generated image" },
      num_outputs: { type: "integer", title: "Num Outputs", default: 1, maximum: 4, minimum: 1, "x-order": 4, description: "Number of outputs to generate" },
      aspect_ratio: { allOf: ref("aspect_ratio"), default: "1:1", "x-order": 1, description: "Aspect ratio for the generated image" },
      output_format: { allOf: ref("output_format"), default: "webp", "x-order": 8, description: "Format of the output images" },
      output_quality: { type: "integer", title: "Output Quality", default: 80, maximum: 100, minimum: 0, "x-order": 9, description: OUTPUT_QUALITY_DESCRIPTION },
      prompt_strength: {
        type: "number",
        title: "Prompt Strength",
        default: 0.8,
        maximum: 1,
        minimum: 0,
        "x-order": 3,
        description: "Prompt strength when using img2img. 1.0 corresponds to full destruction of information in image",
      },
      num_inference_steps: {
        type: "integer",
        title: "Num Inference Steps",
        default: 28,
        maximum: 50,
        minimum: 1,
        "x-order": 5,
        description: "Number of denoising steps. Recommended range is 28-50, and lower number of steps produce lower quality outputs, faster.",
      },
      disable_safety_checker: { type: "boolean", title: "Disable Safety Checker", default: false, "x-order": 10, description: "Disable safety checker for generated images." },
    },
  },
  output: URI_LIST_OUTPUT,
  components: FLUX_COMPONENTS,
});

const FLUX_11_PRO_DIMENSION = (name) =>
  `${name} of the generated image in text-to-image mode. Only used when aspect_ratio=custom. Must be a multiple of 32 (if it's not, it will be rounded to nearest multiple of 32). Note: Ignored in img2img and inpainting modes.`;

const FLUX_11_PRO_SCHEMA = cogOpenapi({
  input: {
    type: "object",
    title: "Input",
    required: ["prompt"],
    properties: {
      seed: { ...FLUX_SEED, "x-order": 6 },
      width: { type: "integer", title: "Width", maximum: 1440, minimum: 256, "x-order": 3, description: FLUX_11_PRO_DIMENSION("Width") },
      height: { type: "integer", title: "Height", maximum: 1440, minimum: 256, "x-order": 4, description: FLUX_11_PRO_DIMENSION("Height") },
      prompt: { type: "string", title: "Prompt", "x-order": 0, description: "Text prompt for image generation" },
      aspect_ratio: {
        enum: ["custom", "1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3"],
        type: "string",
        title: "aspect_ratio",
        description: "Aspect ratio for the generated image",
        default: "1:1",
        "x-order": 2,
      },
      image_prompt: {
        type: "string",
        title: "Image Prompt",
        format: "uri",
        "x-order": 1,
        description:
          "Image to use with Flux Redux. This is used together with the text prompt to guide the generation towards the composition of the image_prompt. Must be jpeg, png, gif, or webp.",
      },
      output_format: {
        enum: ["webp", "jpg", "png"],
        type: "string",
        title: "output_format",
        description: "Format of the output images.",
        default: "webp",
        "x-order": 8,
      },
      output_quality: { type: "integer", title: "Output Quality", default: 80, maximum: 100, minimum: 0, "x-order": 9, description: OUTPUT_QUALITY_DESCRIPTION },
      safety_tolerance: {
        type: "integer",
        title: "Safety Tolerance",
        default: 2,
        maximum: 6,
        minimum: 1,
        "x-order": 5,
        description: "Safety tolerance, 1 is most strict and 6 is most permissive",
      },
      prompt_upsampling: {
        type: "boolean",
        title: "Prompt Upsampling",
        default: false,
        "x-order": 7,
        description: "Automatically modify the prompt for more creative generation",
      },
    },
  },
  output: URI_OUTPUT,
});

const SDXL_SCHEMA = cogOpenapi({
  input: {
    type: "object",
    title: "Input",
    properties: {
      mask: {
        type: "string",
        title: "Mask",
        format: "uri",
        "x-order": 3,
        description: "Input mask for inpaint mode. Black areas will be preserved, white areas will be inpainted.",
      },
      seed: { type: "integer", title: "Seed", "x-order": 11, description: "Random seed. Leave blank to randomize the seed" },
      image: { type: "string", title: "Image", format: "uri", "x-order": 2, description: "Input image for img2img or inpaint mode" },
      width: { type: "integer", title: "Width", default: 1024, "x-order": 4, description: "Width of output image" },
      height: { type: "integer", title: "Height", default: 1024, "x-order": 5, description: "Height of output image" },
      prompt: { type: "string", title: "Prompt", default: "An astronaut riding a rainbow unicorn", "x-order": 0, description: "Input prompt" },
      refine: { allOf: ref("refine"), default: "no_refiner", "x-order": 12, description: "Which refine style to use" },
      scheduler: { allOf: ref("scheduler"), default: "K_EULER", "x-order": 7, description: "scheduler" },
      lora_scale: {
        type: "number",
        title: "Lora Scale",
        default: 0.6,
        maximum: 1,
        minimum: 0,
        "x-order": 16,
        description: "LoRA additive scale. Only applicable on trained models.",
      },
      num_outputs: { type: "integer", title: "Num Outputs", default: 1, maximum: 4, minimum: 1, "x-order": 6, description: "Number of images to output." },
      refine_steps: {
        type: "integer",
        title: "Refine Steps",
        "x-order": 14,
        description: "For base_image_refiner, the number of steps to refine, defaults to num_inference_steps",
      },
      guidance_scale: { type: "number", title: "Guidance Scale", default: 7.5, maximum: 50, minimum: 1, "x-order": 9, description: "Scale for classifier-free guidance" },
      apply_watermark: {
        type: "boolean",
        title: "Apply Watermark",
        default: true,
        "x-order": 15,
        description:
          "Applies a watermark to enable determining if an image is generated in downstream applications. If you have other provisions for generating or deploying images safely, you can use this to disable watermarking.",
      },
      high_noise_frac: {
        type: "number",
        title: "High Noise Frac",
        default: 0.8,
        maximum: 1,
        minimum: 0,
        "x-order": 13,
        description: "For expert_ensemble_refiner, the fraction of noise to use",
      },
      negative_prompt: { type: "string", title: "Negative Prompt", default: "", "x-order": 1, description: "Input Negative Prompt" },
      prompt_strength: {
        type: "number",
        title: "Prompt Strength",
        default: 0.8,
        maximum: 1,
        minimum: 0,
        "x-order": 10,
        description: "Prompt strength when using img2img / inpaint. 1.0 corresponds to full destruction of information in image",
      },
      replicate_weights: {
        type: "string",
        title: "Replicate Weights",
        "x-order": 17,
        description: "Replicate LoRA weights to use. Leave blank to use the default weights.",
      },
      num_inference_steps: { type: "integer", title: "Num Inference Steps", default: 50, maximum: 500, minimum: 1, "x-order": 8, description: "Number of denoising steps" },
      disable_safety_checker: {
        type: "boolean",
        title: "Disable Safety Checker",
        default: false,
        "x-order": 18,
        description:
          "Disable safety checker for generated images. This feature is only available through the API. See [https://replicate.com/docs/how-does-replicate-work#safety](https://replicate.com/docs/how-does-replicate-work#safety)",
      },
    },
  },
  output: URI_LIST_OUTPUT,
  components: {
    refine: enumComponent("refine", ["no_refiner", "expert_ensemble_refiner", "base_image_refiner"]),
    scheduler: enumComponent("scheduler", ["DDIM", "DPMSolverMultistep", "HeunDiscrete", "KarrasDPM", "K_EULER_ANCESTRAL", "K_EULER", "PNDM"]),
  },
});

const SD_SIZES = Array.from({ length: 16 }, (_, i) => (i + 1) * 64);

const SD_INPAINTING_SCHEMA = cogOpenapi({
  input: {
    type: "object",
    title: "Input",
    required: ["image", "mask"],
    properties: {
      mask: {
        type: "string",
        title: "Mask",
        format: "uri",
        "x-order": 3,
        description: "Black and white image to use as mask for inpainting over the image provided. White pixels are inpainted and black pixels are preserved.",
      },
      seed: { type: "integer", title: "Seed", "x-order": 10, description: "Random seed. Leave blank to randomize the seed" },
      image: { type: "string", title: "Image", format: "uri", "x-order": 2, description: "Initial image to generate variations of. Will be resized to height x width" },
      width: { allOf: ref("width"), default: 512, "x-order": 5, description: "Width of generated image in pixels. Needs to be a multiple of 64" },
      height: { allOf: ref("height"), default: 512, "x-order": 4, description: "Height of generated image in pixels. Needs to be a multiple of 64" },
      prompt: { type: "string", title: "Prompt", default: "a vision of paradise. unreal engine", "x-order": 0, description: "Input prompt" },
      scheduler: { allOf: ref("scheduler"), default: "DPMSolverMultistep", "x-order": 9, description: "Choose a scheduler." },
      num_outputs: { type: "integer", title: "Num Outputs", default: 1, maximum: 4, minimum: 1, "x-order": 6, description: "Number of images to generate." },
      guidance_scale: { type: "number", title: "Guidance Scale", default: 7.5, maximum: 20, minimum: 1, "x-order": 8, description: "Scale for classifier-free guidance" },
      negative_prompt: { type: "string", title: "Negative Prompt", "x-order": 1, description: "Specify things to not see in the output" },
      num_inference_steps: { type: "integer", title: "Num Inference Steps", default: 50, maximum: 500, minimum: 1, "x-order": 7, description: "Number of denoising steps" },
      disable_safety_checker: {
        type: "boolean",
        title: "Disable Safety Checker",
        default: false,
        "x-order": 11,
        description:
          "Disable safety checker for generated images. This feature is only available through the API. See [https://replicate.com/docs/how-does-replicate-work#safety](https://replicate.com/docs/how-does-replicate-work#safety)",
      },
    },
  },
  output: URI_LIST_OUTPUT,
  components: {
    width: enumComponent("width", SD_SIZES, "integer"),
    height: enumComponent("height", SD_SIZES, "integer"),
    scheduler: enumComponent("scheduler", ["DDIM", "K_EULER", "DPMSolverMultistep", "K_EULER_ANCESTRAL", "PNDM", "KLMS"]),
  },
});

const REAL_ESRGAN_SCHEMA = cogOpenapi({
  input: {
    type: "object",
    title: "Input",
    required: ["image"],
    properties: {
      image: { type: "string", title: "Image", format: "uri", "x-order": 0, description: "Input image" },
      scale: { type: "number", title: "Scale", default: 4, maximum: 10, minimum: 0, "x-order": 1, description: "Factor to scale image by" },
      face_enhance: { type: "boolean", title: "Face Enhance", default: false, "x-order": 2, description: "Run GFPGAN face enhancement along with upscaling" },
    },
  },
  output: URI_OUTPUT,
});

const FLUX_KONTEXT_PRO_SCHEMA = cogOpenapi({
  input: {
    type: "object",
    title: "Input",
    required: ["prompt"],
    properties: {
      seed: { type: "integer", title: "Seed", "x-order": 4, nullable: true, description: "Random seed. Set for reproducible generation" },
      prompt: {
        type: "string",
        title: "Prompt",
        "x-order": 0,
        description: "Text description of what you want to generate, or the instruction on how to edit the given image.",
      },
      input_image: {
        type: "string",
        title: "Input Image",
        format: "uri",
        "x-order": 1,
        nullable: true,
        description: "Image to use as reference. Must be jpeg, png, gif, or webp.",
      },
      aspect_ratio: {
        allOf: ref("aspect_ratio"),
        default: "match_input_image",
        "x-order": 2,
        description: "Aspect ratio of the generated image. Use 'match_input_image' to match the aspect ratio of the input image.",
      },
      output_format: { allOf: ref("output_format"), default: "png", "x-order": 5, description: "Output format for the generated image" },
      safety_tolerance: {
        type: "integer",
        title: "Safety Tolerance",
        default: 2,
        maximum: 6,
        minimum: 0,
        "x-order": 6,
        description: "Safety tolerance, 0 is most strict and 6 is most permissive. 2 is currently the maximum allowed when input images are used.",
      },
      prompt_upsampling: { type: "boolean", title: "Prompt Upsampling", default: false, "x-order": 3, description: "Automatic prompt improvement" },
    },
  },
  output: URI_OUTPUT,
  components: {
    aspect_ratio: enumComponent("aspect_ratio", [
      "match_input_image", "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4", "21:9", "9:21", "2:1", "1:2",
    ]),
    output_format: enumComponent("output_format", ["jpg", "png"]),
  },
});

const FLUX_FILL_PRO_SCHEMA = cogOpenapi({
  input: {
    type: "object",
    title: "Input",
    required: ["prompt", "image"],
    properties: {
      mask: {
        type: "string",
        title: "Mask",
        format: "uri",
        "x-order": 2,
        nullable: true,
        description:
          "A black-and-white image that describes the part of the image to inpaint. Black areas will be preserved while white areas will be inpainted. Must have the same size as image. Optional if you provide an alpha mask in the original image. Must be jpeg, png, gif, or webp.",
      },
      seed: { type: "integer", title: "Seed", "x-order": 4, nullable: true, description: "Random seed. Set for reproducible generation" },
      image: {
        type: "string",
        title: "Image",
        format: "uri",
        "x-order": 1,
        description: "The image to inpaint. Can contain an alpha mask. Must be jpeg, png, gif, or webp.",
      },
      steps: {
        type: "integer",
        title: "Steps",
        default: 50,
        maximum: 50,
        minimum: 15,
        "x-order": 5,
        description: "Number of diffusion steps. Higher values yield finer details but increase processing time.",
      },
      prompt: { type: "string", title: "Prompt", "x-order": 0, description: "Text prompt for image generation" },
      guidance: {
        type: "number",
        title: "Guidance",
        default: 60,
        maximum: 100,
        minimum: 1.5,
        "x-order": 7,
        description:
          "Controls the balance between adherence to the text prompt and image quality/diversity. Higher values make the output more closely match the prompt but may reduce overall image quality. Lower values allow for more creative freedom but might produce results less relevant to the prompt.",
      },
      outpaint: { allOf: ref("outpaint"), default: "None", "x-order": 3, description: "A quick option for outpainting an input image. Mask will be ignored." },
      output_format: { allOf: ref("output_format"), default: "jpg", "x-order": 9, description: "Format of the output images." },
      safety_tolerance: {
        type: "integer",
        title: "Safety Tolerance",
        default: 2,
        maximum: 6,
        minimum: 1,
        "x-order": 8,
        description: "Safety tolerance, 1 is most strict and 6 is most permissive",
      },
      prompt_upsampling: {
        type: "boolean",
        title: "Prompt Upsampling",
        default: false,
        "x-order": 6,
        description: "Automatically modify the prompt for more creative generation",
      },
    },
  },
  output: URI_OUTPUT,
  components: {
    outpaint: enumComponent("outpaint", [
      "None", "Zoom out 1.5x", "Zoom out 2x", "Make square", "Left outpaint", "Right outpaint", "Top outpaint", "Bottom outpaint",
    ]),
    output_format: enumComponent("output_format", ["jpg", "png"]),
  },
});

/**
 * Every model the emulator serves. `kind` picks the image pipeline
 * (emulator/pipelines.mjs); `predictionVersion` is the `version` reported by
 * predictions created through the model route (official models only).
 */
export const MODELS = [
  {
    kind: "flux-schnell",
    owner: "black-forest-labs",
    name: "flux-schnell",
    official: true,
    predictionVersion: FLUX_SCHNELL_DEPLOYMENT_VERSION,
    baseRunCount: 412_345_678,
    info: {
      cover_image_url: "https://tjzk.replicate.delivery/models_models_featured_image/67c990ba-bb67-4355-822f-2bd8c42b2f0d/flux-schnell.webp",
      created_at: "2024-07-30T00:32:11.473557Z",
      description: "The fastest image generation model tailored for local development and personal use",
      github_url: "https://github.com/replicate/cog-flux",
      license_url: "https://github.com/black-forest-labs/flux/blob/main/model_licenses/LICENSE-FLUX1-schnell",
      paper_url: null,
      weights_url: "https://huggingface.co/black-forest-labs/FLUX.1-schnell",
    },
    versions: [{ id: FLUX_SCHNELL_VERSION, created_at: "2024-10-08T18:53:51.617838Z", cog_version: "0.9.25", openapi_schema: FLUX_SCHNELL_SCHEMA }],
  },
  {
    kind: "flux-dev",
    owner: "black-forest-labs",
    name: "flux-dev",
    official: true,
    predictionVersion: HIDDEN_VERSION,
    baseRunCount: 31_204_117,
    info: {
      cover_image_url: "https://tjzk.replicate.delivery/models_models_featured_image/cb4203e5-9ece-42e7-b326-98ff3fa35c3a/Replicate_Prediction_15.webp",
      created_at: "2024-07-29T23:25:06.100855Z",
      description: "A 12 billion parameter rectified flow transformer capable of generating images from text descriptions",
      github_url: "https://github.com/replicate/cog-flux",
      license_url: "https://github.com/black-forest-labs/flux/blob/main/model_licenses/LICENSE-FLUX1-dev",
      paper_url: null,
      weights_url: "https://huggingface.co/black-forest-labs/FLUX.1-dev",
    },
    versions: [{ id: FLUX_DEV_VERSION, created_at: "2025-01-29T22:40:09.518373Z", cog_version: "0.9.25", openapi_schema: FLUX_DEV_SCHEMA }],
  },
  {
    kind: "flux-1.1-pro",
    owner: "black-forest-labs",
    name: "flux-1.1-pro",
    official: true,
    predictionVersion: HIDDEN_VERSION,
    baseRunCount: 48_771_902,
    info: {
      cover_image_url: "https://tjzk.replicate.delivery/models_models_featured_image/a36275e2-34d4-4b3d-83cd-f9aaf73c9386/https___replicate.delive_o40qpZ.webp",
      created_at: "2024-10-02T14:08:46.442112Z",
      description: "Faster, better FLUX Pro. Text-to-image model with excellent image quality, prompt adherence, and output diversity.",
      github_url: null,
      license_url: "https://replicate.com/black-forest-labs/flux-1.1-pro#license",
      paper_url: null,
      weights_url: null,
    },
    versions: [{ id: FLUX_11_PRO_VERSION, created_at: "2025-03-12T16:20:31.735431Z", cog_version: "0.13.7", openapi_schema: FLUX_11_PRO_SCHEMA }],
  },
  {
    kind: "sdxl",
    owner: "stability-ai",
    name: "sdxl",
    official: false,
    predictionVersion: null,
    baseRunCount: 66_336_540,
    info: {
      cover_image_url: "https://tjzk.replicate.delivery/models_models_featured_image/9065f9e3-40da-4742-8cb8-adfa8e794c0d/sdxl_cover.jpg",
      created_at: "2023-07-26T17:53:09.882651Z",
      description: "A text-to-image generative AI model that creates beautiful images",
      github_url: "https://github.com/replicate/cog-sdxl",
      license_url: "https://github.com/Stability-AI/generative-models/blob/main/model_licenses/LICENSE-SDXL1.0",
      paper_url: "https://arxiv.org/abs/2307.01952",
      weights_url: null,
    },
    defaultExample: {
      completed_at: "2023-10-12T17:10:12.909279Z",
      created_at: "2023-10-12T17:10:07.956869Z",
      data_removed: false,
      error: null,
      id: "dzsqmb3bg4lqpjkz2iptjqgccm",
      input: {
        width: 768,
        height: 768,
        prompt: "An astronaut riding a rainbow unicorn, cinematic, dramatic",
        refine: "expert_ensemble_refiner",
        scheduler: "K_EULER",
        lora_scale: 0.6,
        num_outputs: 1,
        guidance_scale: 7.5,
        apply_watermark: false,
        high_noise_frac: 0.8,
        negative_prompt: "",
        prompt_strength: 0.8,
        num_inference_steps: 25,
      },
      logs: "",
      metrics: { predict_time: 4.981337, total_time: 4.95241 },
      model: "stability-ai/sdxl",
      output: ["https://pbxt.replicate.delivery/YXbcLudoHBIYHV6L0HbcTx5iRzLFMwygLr3vhGpZI35caXbE/out-0.png"],
      started_at: "2023-10-12T17:10:07.927942Z",
      status: "succeeded",
      urls: {
        get: "https://api.replicate.com/v1/predictions/dzsqmb3bg4lqpjkz2iptjqgccm",
        cancel: "https://api.replicate.com/v1/predictions/dzsqmb3bg4lqpjkz2iptjqgccm/cancel",
      },
      version: "c221b2b8ef527988fb59bf24a8b97c4561f1c671f73bd389f866bfb27c061316",
      webhook: null,
    },
    versions: [{ id: SDXL_VERSION, created_at: "2024-05-23T23:26:26.222931Z", cog_version: "0.9.5", openapi_schema: SDXL_SCHEMA }],
  },
  {
    kind: "sd-inpainting",
    owner: "stability-ai",
    name: "stable-diffusion-inpainting",
    official: false,
    predictionVersion: null,
    baseRunCount: 20_118_344,
    info: {
      cover_image_url: "https://tjzk.replicate.delivery/models_models_cover_image/stable-diffusion-inpainting.png",
      created_at: "2022-12-02T17:40:01.152489Z",
      description: "Fill in masked parts of images with Stable Diffusion",
      github_url: "https://github.com/replicate/cog-stable-diffusion-inpainting",
      license_url: "https://huggingface.co/stabilityai/stable-diffusion-2/blob/main/LICENSE-MODEL",
      paper_url: null,
      weights_url: null,
    },
    versions: [{ id: SD_INPAINTING_VERSION, created_at: "2023-07-22T00:44:12.421302Z", cog_version: "0.8.1", openapi_schema: SD_INPAINTING_SCHEMA }],
  },
  {
    kind: "real-esrgan",
    owner: "nightmareai",
    name: "real-esrgan",
    official: false,
    predictionVersion: null,
    baseRunCount: 72_548_226,
    info: {
      cover_image_url: "https://tjzk.replicate.delivery/models_models_cover_image/real-esrgan.png",
      created_at: "2022-06-22T01:08:15.680509Z",
      description: "Real-ESRGAN with optional face correction and adjustable upscale",
      github_url: "https://github.com/NightmareAI/Real-ESRGAN",
      license_url: "https://github.com/xinntao/Real-ESRGAN/blob/master/LICENSE",
      paper_url: "https://arxiv.org/abs/2107.10833",
      weights_url: null,
    },
    versions: [{ id: REAL_ESRGAN_VERSION, created_at: "2024-07-11T19:51:14.713018Z", cog_version: "0.10.0-alpha17", openapi_schema: REAL_ESRGAN_SCHEMA }],
  },
  {
    kind: "flux-kontext-pro",
    owner: "black-forest-labs",
    name: "flux-kontext-pro",
    official: true,
    predictionVersion: HIDDEN_VERSION,
    baseRunCount: 27_390_415,
    info: {
      cover_image_url: "https://tjzk.replicate.delivery/models_models_featured_image/0a64a6c1-ef2c-4d6d-9ac0-e4c33cc44b0a/kontext-pro.jpg",
      created_at: "2025-05-27T08:26:25.135215Z",
      description:
        "A state-of-the-art text-based image editing model that delivers high-quality outputs with excellent prompt following and consistent results for transforming images through natural language",
      github_url: null,
      license_url: "https://replicate.com/black-forest-labs/flux-kontext-pro#license",
      paper_url: null,
      weights_url: "https://huggingface.co/black-forest-labs",
    },
    versions: [{ id: FLUX_KONTEXT_PRO_VERSION, created_at: "2025-12-09T11:37:52.106634Z", cog_version: "0.16.8", openapi_schema: FLUX_KONTEXT_PRO_SCHEMA }],
  },
  {
    kind: "flux-fill-pro",
    owner: "black-forest-labs",
    name: "flux-fill-pro",
    official: true,
    predictionVersion: HIDDEN_VERSION,
    baseRunCount: 4_920_873,
    info: {
      cover_image_url: "https://tjzk.replicate.delivery/models_models_featured_image/a0e09bd2-5b4e-4b50-9cf0-d2b2bd7ddf5e/flux-fill-pro.jpg",
      created_at: "2024-11-20T20:56:37.431006Z",
      description:
        "Professional inpainting and outpainting model with state-of-the-art performance. Edit or extend images with natural, seamless results.",
      github_url: null,
      license_url: "https://replicate.com/black-forest-labs/flux-fill-pro#license",
      paper_url: null,
      weights_url: null,
    },
    versions: [{ id: FLUX_FILL_PRO_VERSION, created_at: "2026-03-02T09:14:27.583104Z", cog_version: "0.16.8", openapi_schema: FLUX_FILL_PRO_SCHEMA }],
  },
];

for (const model of MODELS) {
  model.slug = `${model.owner}/${model.name}`;
  model.latestVersion = model.versions[0];
  const output = model.latestVersion.openapi_schema.components.schemas.Output;
  model.outputShape = output.type === "array" ? "list" : "single";
}

export function findModel(owner, name) {
  return MODELS.find((m) => m.owner === owner && m.name === name) ?? null;
}

/** { model, version } for a 64-hex version id of any model, or null. */
export function findVersion(id) {
  for (const model of MODELS) {
    const version = model.versions.find((v) => v.id === id);
    if (version) return { model, version };
  }
  return null;
}

/** The names of the Input fields that take a file URL (`format: uri`). */
export function uriFields(model) {
  const { properties } = model.latestVersion.openapi_schema.components.schemas.Input;
  return Object.keys(properties)
    .filter((name) => properties[name].format === "uri")
    .sort((a, b) => (properties[a]["x-order"] ?? 0) - (properties[b]["x-order"] ?? 0));
}
