import { parentPort } from "node:worker_threads";
import { renderPixels } from "./pixels.mjs";

parentPort.on("message", ({ id, params }) => {
  try {
    const pixels = renderPixels(params);
    const copy = pixels.buffer.slice(pixels.byteOffset, pixels.byteOffset + pixels.byteLength);
    parentPort.postMessage({ id, pixels: copy }, [copy]);
  } catch (error) {
    parentPort.postMessage({ id, error: String(error?.message ?? error) });
  }
});
