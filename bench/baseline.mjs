// The previous run's figures, read from bench/results/LATEST.md before it is
// overwritten (latest.json is not committed). LATEST.md carries them as JSON
// in an HTML comment; a LATEST.md written before that is read from its tables.
import { existsSync, readFileSync } from "node:fs";

export const DATA_MARK = "bench-data";

/** Resolves to { from, startedAt, latency: { name: { p50, p99 } } }, or null when there is none. */
export function readBaseline(path) {
  if (!existsSync(path)) return null;
  const text = readFileSync(path, "utf8");
  const embedded = new RegExp(`<!-- ${DATA_MARK} (\\{.*\\}) -->`).exec(text);
  if (embedded) {
    try {
      const data = JSON.parse(embedded[1]);
      return { from: "LATEST.md", startedAt: data.startedAt, latency: data.latency ?? {} };
    } catch {
      return null;
    }
  }
  const latency = legacyLatencies(text);
  if (Object.keys(latency).length === 0) return null;
  const startedAt = /started (\S+), took/.exec(text)?.[1] ?? null;
  return { from: "LATEST.md (tables)", startedAt, latency };
}

/** What the next run needs of this one, as the comment to embed in LATEST.md. */
export function dataComment(results) {
  return `<!-- ${DATA_MARK} ${JSON.stringify({ startedAt: results.startedAt, latency: results.latency })} -->`;
}

/** The tables of a Markdown report: [{ section, rows: [{ column: cell }] }]. */
function tables(text) {
  const found = [];
  let section = "";
  let current = null;
  for (const line of text.split("\n")) {
    if (line.startsWith("## ")) section = line.slice(3);
    if (!line.startsWith("|")) {
      current = null;
      continue;
    }
    const cells = line.split("|").slice(1, -1).map((c) => c.trim());
    if (!current) {
      current = { section, columns: cells, rows: [] };
      found.push(current);
    } else if (!cells.every((c) => /^:?-+:?$/.test(c))) {
      current.rows.push(Object.fromEntries(current.columns.map((c, i) => [c, cells[i]])));
    }
  }
  return found;
}

/** p50 and p99 per autocannon phase from the tables of a report written before the embedded data. */
function legacyLatencies(text) {
  const out = {};
  const num = (v) => Number(String(v).replaceAll(",", ""));
  for (const t of tables(text)) {
    for (const row of t.rows) {
      if (row["p50 ms"] == null || row["p99 ms"] == null) continue;
      const value = { p50: num(row["p50 ms"]), p99: num(row["p99 ms"]) };
      if (t.section.startsWith("Baseline: GET /health")) out[`GET /health c${row.conc}`] = value;
      else if (t.section.startsWith("Generation overhead") && row.path === "through worker") out[`POST /generate c${row.conc}`] = value;
      else if (t.section.startsWith("Image serving") && row.server === "worker") out[`GET /image ${row.image} c${row.conc}`] = value;
    }
  }
  return out;
}
