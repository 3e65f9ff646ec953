// The baseline for image serving: a minimal static file server that streams
// files from one directory. Usage: node static-server.mjs <dir>
import { createReadStream, statSync } from "node:fs";
import { createServer } from "node:http";
import { basename, join } from "node:path";

const TYPES = { jpg: "image/jpeg", png: "image/png", webp: "image/webp" };
const dir = process.argv[2];

const server = createServer((req, res) => {
  const file = join(dir, basename(decodeURIComponent(new URL(req.url, "http://x").pathname)));
  let size;
  try {
    size = statSync(file).size;
  } catch {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, {
    "Content-Type": TYPES[file.split(".").pop()] ?? "application/octet-stream",
    "Content-Length": size,
    "Cache-Control": "public, max-age=31536000, immutable",
  });
  createReadStream(file).pipe(res);
});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`listening on http://127.0.0.1:${server.address().port}\n`);
});
process.on("SIGTERM", () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
