// What each model does with its input, deterministically: text to image
// (a pattern from prompt and seed), image to image (the input blended with
// the pattern), inpainting (the input kept where the mask is black, the
// pattern where it is white), outpainting and upscaling.
import sharp from "sharp";
import { encode, generateImage, renderPixelsOffThread } from "./images.mjs";
import { PredictionError } from "./inputs.mjs";
import { uriFields } from "./models.mjs";
import { ASPECT_RATIOS, CONTENT_TYPES } from "./schema.mjs";

/** Largest output the emulator renders (4096 x 4096); larger requests fail the prediction. */
export const MAX_OUTPUT_PIXELS = 4096 * 4096;

/** How much of the pattern a reference image gets when the model has no prompt_strength. */
export const REFERENCE_STRENGTH = 0.5;

const MEGAPIXEL = 1024 * 1024;

function roundTo(value, multiple) {
  return Math.max(multiple, Math.round(value / multiple) * multiple);
}

/** Width and height for an "a:b" ratio at about `megapixels`, in multiples of `multiple`. */
export function ratioDimensions(ratio, megapixels = 1, multiple = 16) {
  const [a, b] = ratio.split(":").map(Number);
  const width = Math.sqrt((megapixels * MEGAPIXEL * a) / b);
  return [roundTo(width, multiple), roundTo((width * b) / a, multiple)];
}

/** The input's aspect ratio at about `megapixels`. */
function matchDimensions(width, height, megapixels, multiple = 16) {
  return ratioDimensions(`${width}:${height}`, megapixels, multiple);
}

function checkSize(width, height) {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width >= 1 && height >= 1)) {
    throw new PredictionError(`Invalid output size ${width}x${height}`);
  }
  if (width * height > MAX_OUTPUT_PIXELS) {
    throw new PredictionError(`Output size ${width}x${height} is larger than ${MAX_OUTPUT_PIXELS} pixels`);
  }
}

async function rgbAt(image, width, height, fit = "fill") {
  const { data, info } = await sharp(image.bytes)
    .resize(width, height, { fit, position: "centre" })
    .removeAlpha()
    .toColourspace("srgb")
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new PredictionError(`unexpected ${info.channels}-channel image`);
  return data;
}

/** One byte a pixel: 0 keeps the input, 255 takes the generated pixel. */
async function maskAt(image, width, height) {
  const { data, info } = await sharp(image.bytes)
    .resize(width, height, { fit: "fill" })
    .flatten({ background: "#000000" })
    .toColourspace("b-w")
    .raw()
    .toBuffer({ resolveWithObject: true });
  return info.channels === 1 ? data : extractFirstChannel(data, info.channels);
}

/** Transparent pixels of `image` are the ones to inpaint. */
async function alphaMaskAt(image, width, height) {
  const { data } = await sharp(image.bytes)
    .resize(width, height, { fit: "fill" })
    .ensureAlpha()
    .extractChannel(3)
    .raw()
    .toBuffer({ resolveWithObject: true });
  for (let i = 0; i < data.length; i++) data[i] = 255 - data[i];
  return data;
}

function extractFirstChannel(data, channels) {
  const out = Buffer.alloc(data.length / channels);
  for (let i = 0; i < out.length; i++) out[i] = data[i * channels];
  return out;
}

function pattern(input, seed, index, width, height) {
  return renderPixelsOffThread({ prompt: input.prompt ?? "", seed, index, width, height });
}

/** base * (1 - strength) + generated * strength */
export function blend(base, generated, strength) {
  const out = Buffer.alloc(base.length);
  for (let i = 0; i < base.length; i++) out[i] = Math.round(base[i] + (generated[i] - base[i]) * strength);
  return out;
}

/** The base where the mask is 0 (black), the generated pixels where it is 255 (white). */
export function inpaint(base, generated, mask) {
  const out = Buffer.alloc(base.length);
  for (let p = 0; p < mask.length; p++) {
    const a = mask[p] / 255;
    for (let ch = 0; ch < 3; ch++) {
      const i = p * 3 + ch;
      out[i] = Math.round(base[i] + (generated[i] - base[i]) * a);
    }
  }
  return out;
}

async function file(pixels, width, height, format, quality = 90) {
  const bytes = await encode(pixels, width, height, format, quality);
  return { bytes, contentType: CONTENT_TYPES[format], extension: format, width, height };
}

function indexes(model, input) {
  const count = model.outputShape === "list" ? (input.num_outputs ?? 1) : 1;
  return Array.from({ length: count }, (_, i) => i);
}

/** Canvas size and where the input sits for flux-fill-pro's outpaint options. */
function outpaintLayout(mode, width, height) {
  const half = (v) => Math.round(v / 2);
  switch (mode) {
    case "Zoom out 1.5x":
    case "Zoom out 2x": {
      const factor = mode === "Zoom out 2x" ? 2 : 1.5;
      const W = Math.round(width * factor);
      const H = Math.round(height * factor);
      return { W, H, x: half(W - width), y: half(H - height) };
    }
    case "Make square": {
      const S = Math.max(width, height);
      return { W: S, H: S, x: half(S - width), y: half(S - height) };
    }
    case "Left outpaint":
      return { W: width + half(width), H: height, x: half(width), y: 0 };
    case "Right outpaint":
      return { W: width + half(width), H: height, x: 0, y: 0 };
    case "Top outpaint":
      return { W: width, H: height + half(height), x: 0, y: half(height) };
    case "Bottom outpaint":
      return { W: width, H: height + half(height), x: 0, y: 0 };
    default:
      return null;
  }
}

async function fillPro(input, seed, images) {
  const image = images.image;
  const format = input.output_format;
  const layout = outpaintLayout(input.outpaint, image.width, image.height);
  if (layout) {
    const { W, H, x, y } = layout;
    checkSize(W, H);
    const inner = await rgbAt(image, image.width, image.height);
    const base = Buffer.alloc(W * H * 3);
    const mask = Buffer.alloc(W * H, 255);
    for (let row = 0; row < image.height; row++) {
      inner.copy(base, ((y + row) * W + x) * 3, row * image.width * 3, (row + 1) * image.width * 3);
      mask.fill(0, (y + row) * W + x, (y + row) * W + x + image.width);
    }
    const generated = await pattern(input, seed, 0, W, H);
    return [await file(inpaint(base, generated, mask), W, H, format)];
  }
  const { width, height } = image;
  checkSize(width, height);
  let mask;
  if (images.mask) mask = await maskAt(images.mask, width, height);
  else if (image.hasAlpha) mask = await alphaMaskAt(image, width, height);
  else throw new PredictionError("No mask was given and the image has no alpha channel to use as a mask");
  const base = await rgbAt(image, width, height);
  const generated = await pattern(input, seed, 0, width, height);
  return [await file(inpaint(base, generated, mask), width, height, format)];
}

async function upscale(input, images) {
  const image = images.image;
  const width = Math.round(image.width * input.scale);
  const height = Math.round(image.height * input.scale);
  checkSize(width, height);
  const bytes = await sharp(image.bytes).resize(width, height, { fit: "fill" }).png({ compressionLevel: 6 }).toBuffer();
  return [{ bytes, contentType: CONTENT_TYPES.png, extension: "png", width, height }];
}

/**
 * Renders every output file of a prediction.
 * loadImage(field, url) resolves to { bytes, width, height, format, hasAlpha }
 * and rejects with PredictionError. Resolves to [{ bytes, contentType, extension, width, height }].
 */
export async function renderOutputs({ model, input, seed, loadImage, cache }) {
  // Every file input is fetched (and must be an image), used or not.
  const images = {};
  for (const field of uriFields(model)) {
    if (typeof input[field] === "string") images[field] = await loadImage(field, input[field]);
  }
  const list = indexes(model, input);
  switch (model.kind) {
    case "flux-schnell":
      return Promise.all(list.map((index) => generateImage({ input, seed, index, cache })));

    case "flux-dev": {
      if (!images.image) return Promise.all(list.map((index) => generateImage({ input, seed, index, cache })));
      const megapixels = input.megapixels === "0.25" ? 0.25 : 1;
      const [width, height] = matchDimensions(images.image.width, images.image.height, megapixels);
      const base = await rgbAt(images.image, width, height);
      return Promise.all(
        list.map(async (index) => {
          const generated = await pattern(input, seed, index, width, height);
          return file(blend(base, generated, input.prompt_strength), width, height, input.output_format, input.output_quality);
        }),
      );
    }

    case "flux-1.1-pro": {
      let width;
      let height;
      if (input.aspect_ratio === "custom") {
        const clampDim = (v) => Math.min(1440, Math.max(256, roundTo(v ?? 1024, 32)));
        width = clampDim(input.width);
        height = clampDim(input.height);
      } else {
        [width, height] = ASPECT_RATIOS[input.aspect_ratio] ?? ratioDimensions(input.aspect_ratio, 1, 32);
      }
      let pixels = await pattern(input, seed, 0, width, height);
      if (images.image_prompt) pixels = blend(await rgbAt(images.image_prompt, width, height, "cover"), pixels, REFERENCE_STRENGTH);
      return [await file(pixels, width, height, input.output_format, input.output_quality)];
    }

    case "sdxl": {
      const { image, mask } = images;
      let width = input.width;
      let height = input.height;
      if (image && !mask) ({ width, height } = image);
      checkSize(width, height);
      const base = image ? await rgbAt(image, width, height) : null;
      const maskPixels = image && mask ? await maskAt(mask, width, height) : null;
      return Promise.all(
        list.map(async (index) => {
          const generated = await pattern(input, seed, index, width, height);
          let pixels = generated;
          if (maskPixels) pixels = inpaint(base, generated, maskPixels);
          else if (base) pixels = blend(base, generated, input.prompt_strength);
          return file(pixels, width, height, "png");
        }),
      );
    }

    case "sd-inpainting": {
      const { width, height } = input;
      const base = await rgbAt(images.image, width, height);
      const maskPixels = await maskAt(images.mask, width, height);
      return Promise.all(
        list.map(async (index) => file(inpaint(base, await pattern(input, seed, index, width, height), maskPixels), width, height, "png")),
      );
    }

    case "real-esrgan":
      return upscale(input, images);

    case "flux-kontext-pro": {
      const image = images.input_image;
      let width;
      let height;
      if (input.aspect_ratio === "match_input_image") {
        [width, height] = image ? matchDimensions(image.width, image.height, 1) : [1024, 1024];
      } else {
        [width, height] = ratioDimensions(input.aspect_ratio, 1, 16);
      }
      let pixels = await pattern(input, seed, 0, width, height);
      if (image) pixels = blend(await rgbAt(image, width, height, "cover"), pixels, REFERENCE_STRENGTH);
      return [await file(pixels, width, height, input.output_format)];
    }

    case "flux-fill-pro":
      return fillPro(input, seed, images);

    default:
      throw new PredictionError(`model ${model.slug} cannot run in the emulator`);
  }
}

