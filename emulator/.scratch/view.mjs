import sharp from "sharp";
import { generateImage } from "../images.mjs";
const a = await generateImage({ input: { prompt: "a cat", aspect_ratio: "16:9", megapixels: "1", output_format: "webp", output_quality: 80 }, seed: 1, index: 0 });
await sharp(a.bytes).png().toFile("/tmp/view1.png");
const b = await generateImage({ input: { prompt: "a dog", aspect_ratio: "1:1", megapixels: "1", output_format: "jpg", output_quality: 80 }, seed: 7, index: 1 });
await sharp(b.bytes).resize(512).png().toFile("/tmp/view2.png");
