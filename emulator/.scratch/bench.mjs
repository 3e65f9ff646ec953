import { generateImage } from "/work/main/emulator/images.mjs";
import sharp from "sharp";
import fs from "node:fs";
for (const [ar, mp, fmt] of [["1:1","1","webp"],["16:9","1","png"],["1:1","0.25","jpg"],["1:1","1","jpg"],["9:21","0.25","webp"]]) {
  const t = performance.now();
  const r = await generateImage({ input: { prompt: "a cat", aspect_ratio: ar, megapixels: mp, output_format: fmt, output_quality: 80 }, seed: 1, index: 0 });
  const m = await sharp(r.bytes).metadata();
  console.log(ar, mp, fmt, r.bytes.length, m.format, m.width, m.height, (performance.now()-t).toFixed(0)+"ms");
  fs.writeFileSync(`/tmp/sample-${fmt}-${mp}.${fmt === "jpg" ? "jpg" : fmt}`, r.bytes);
}
import { renderPixels } from "../images.mjs";
let t = performance.now(); renderPixels({prompt:"x", seed: 3, index: 0, width: 1024, height: 1024}); console.log("render", performance.now()-t);
