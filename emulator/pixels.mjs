import { createHash } from "node:crypto";

function seededRandom(key) {
  const digest = createHash("sha256").update(key).digest();
  let a = digest.readUInt32LE(0);
  let b = digest.readUInt32LE(4);
  let c = digest.readUInt32LE(8);
  let d = digest.readUInt32LE(12);
  const next = () => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0;
    const t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    const r = (t + d) | 0;
    c = (c + r) | 0;
    return (r >>> 0) / 4294967296;
  };
  for (let i = 0; i < 12; i++) next();
  return next;
}

function randomColor(rand) {
  return [Math.floor(rand() * 256), Math.floor(rand() * 256), Math.floor(rand() * 256)];
}

function clamp8(v) {
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

function paintBackground(pixels, width, height, rand) {
  const from = randomColor(rand);
  const to = randomColor(rand);
  const glow = randomColor(rand);
  const angle = rand() * Math.PI * 2;
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const span = Math.abs(cos) * width + Math.abs(sin) * height;
  const offset = (cos < 0 ? -cos * width : 0) + (sin < 0 ? -sin * height : 0);
  const gx = rand() * width;
  const gy = rand() * height;
  const glowRadius = (0.3 + rand() * 0.5) * Math.max(width, height);
  const waveFreq = (2 + rand() * 6) * Math.PI * 2 / Math.max(width, height);
  const waveAmp = 10 + rand() * 18;
  const wavePhase = rand() * Math.PI * 2;
  const waveAngle = rand() * Math.PI;
  const wc = Math.cos(waveAngle);
  const ws = Math.sin(waveAngle);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const t = (x * cos + y * sin + offset) / span;
      const dx = x - gx;
      const dy = y - gy;
      const g = Math.max(0, 1 - Math.sqrt(dx * dx + dy * dy) / glowRadius);
      const glowWeight = g * g * 0.7;
      const wave = Math.sin((x * wc + y * ws) * waveFreq + wavePhase) * waveAmp;
      const i = (y * width + x) * 3;
      for (let ch = 0; ch < 3; ch++) {
        const base = from[ch] + (to[ch] - from[ch]) * t;
        pixels[i + ch] = clamp8(base + (glow[ch] - base) * glowWeight + wave);
      }
    }
  }
}

function paintCircle(pixels, width, height, rand, scale) {
  const color = randomColor(rand);
  const cx = rand() * width;
  const cy = rand() * height;
  const radius = (0.04 + rand() * 0.22) * scale;
  const ring = rand() < 0.3 ? radius * (0.08 + rand() * 0.2) : 0;
  const alpha = 0.35 + rand() * 0.55;
  const soft = 1.5 + rand() * radius * 0.15;
  const x0 = Math.max(0, Math.floor(cx - radius - soft));
  const x1 = Math.min(width - 1, Math.ceil(cx + radius + soft));
  const y0 = Math.max(0, Math.floor(cy - radius - soft));
  const y1 = Math.min(height - 1, Math.ceil(cy + radius + soft));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const dist = Math.sqrt((x - cx) ** 2 + (y - cy) ** 2);
      let cover = Math.min(1, Math.max(0, (radius - dist) / soft + 0.5));
      if (ring > 0) cover *= Math.min(1, Math.max(0, (dist - (radius - ring)) / soft + 0.5));
      if (cover <= 0) continue;
      const a = alpha * cover;
      const i = (y * width + x) * 3;
      for (let ch = 0; ch < 3; ch++) pixels[i + ch] = clamp8(pixels[i + ch] + (color[ch] - pixels[i + ch]) * a);
    }
  }
}

function paintRectangle(pixels, width, height, rand, scale) {
  const color = randomColor(rand);
  const w = (0.05 + rand() * 0.35) * scale;
  const h = (0.05 + rand() * 0.35) * scale;
  const left = Math.floor(rand() * width - w / 2);
  const top = Math.floor(rand() * height - h / 2);
  const alpha = 0.3 + rand() * 0.5;
  const shade = (rand() - 0.5) * 80;
  const x0 = Math.max(0, left);
  const x1 = Math.min(width, Math.ceil(left + w));
  const y0 = Math.max(0, top);
  const y1 = Math.min(height, Math.ceil(top + h));
  for (let y = y0; y < y1; y++) {
    const rowShade = shade * ((y - top) / h - 0.5);
    for (let x = x0; x < x1; x++) {
      const i = (y * width + x) * 3;
      for (let ch = 0; ch < 3; ch++) {
        const target = clamp8(color[ch] + rowShade);
        pixels[i + ch] = clamp8(pixels[i + ch] + (target - pixels[i + ch]) * alpha);
      }
    }
  }
}

function addTexture(pixels, width, height, rand, cell, amplitude) {
  const cols = Math.ceil(width / cell) + 2;
  const rows = Math.ceil(height / cell) + 2;
  const grid = new Float32Array(cols * rows * 3);
  for (let i = 0; i < grid.length; i++) grid[i] = (rand() - 0.5) * 2 * amplitude;
  for (let y = 0; y < height; y++) {
    const gy = y / cell;
    const r0 = Math.floor(gy);
    const fy = gy - r0;
    const sy = fy * fy * (3 - 2 * fy);
    for (let x = 0; x < width; x++) {
      const gx = x / cell;
      const c0 = Math.floor(gx);
      const fx = gx - c0;
      const sx = fx * fx * (3 - 2 * fx);
      const a = (r0 * cols + c0) * 3;
      const b = a + 3;
      const c = a + cols * 3;
      const d = c + 3;
      const i = (y * width + x) * 3;
      for (let ch = 0; ch < 3; ch++) {
        const top = grid[a + ch] + (grid[b + ch] - grid[a + ch]) * sx;
        const bottom = grid[c + ch] + (grid[d + ch] - grid[c + ch]) * sx;
        pixels[i + ch] = clamp8(pixels[i + ch] + top + (bottom - top) * sy);
      }
    }
  }
}

function addNoise(pixels, rand, amplitude) {
  let state = Math.floor(rand() * 4294967295) | 1;
  for (let i = 0; i < pixels.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const n = ((state & 0xff) / 255 - 0.5) * 2 * amplitude;
    pixels[i] = clamp8(Math.round(pixels[i] + n));
  }
}

/**
 * Raw RGB pixels for one output image. Deterministic for (prompt, seed, index).
 */
export function renderPixels({ prompt, seed, index, width, height }) {
  const rand = seededRandom(`${prompt}\u0000${seed}\u0000${index}`);
  const pixels = Buffer.alloc(width * height * 3);
  paintBackground(pixels, width, height, rand);
  const scale = Math.max(width, height);
  const shapes = 8 + Math.floor(rand() * 8);
  for (let s = 0; s < shapes; s++) {
    if (rand() < 0.6) paintCircle(pixels, width, height, rand, scale);
    else paintRectangle(pixels, width, height, rand, scale);
  }
  addTexture(pixels, width, height, rand, Math.max(4, Math.round(scale / 64)), 14);
  addTexture(pixels, width, height, rand, Math.max(2, Math.round(scale / 256)), 9);
  addNoise(pixels, rand, 1.5);
  return pixels;
}
