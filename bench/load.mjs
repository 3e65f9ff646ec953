// Drives load with autocannon. Latency percentiles are computed from every
// response time autocannon reports (its own histogram keeps whole
// milliseconds, too coarse for sub-millisecond overheads).
import autocannon from "autocannon";

/** Seconds per measured phase and per warm-up; BENCH_SECONDS shortens or lengthens a run. */
export const PHASE_SECONDS = Number(process.env.BENCH_SECONDS || 3);
export const WARMUP_SECONDS = Math.max(1, Math.round(PHASE_SECONDS / 4));
/** Hard cap on requests per phase, whatever the duration. */
const MAX_REQUESTS = 200_000;

/** The p-th percentile of ascending `sorted` (nearest rank), null when empty. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/**
 * Runs one phase against a loopback URL.
 * options: { url, connections, seconds, method, headers, body, onBody(status, body) }
 * Resolves to { requests, ok, failed, rps, p50, p99, bytesPerSec, seconds, loaderCpuPercent }
 * (the last: this process's CPU over the phase, 100 = one core busy), and
 * `latencies` (not enumerable): every 2xx answer's, ascending.
 */
export async function load({ url, connections, seconds = PHASE_SECONDS, method = "GET", headers, body, onBody }) {
  const { hostname } = new URL(url);
  if (hostname !== "127.0.0.1") throw new Error(`load is for loopback only, not ${hostname}`);
  const request = { method, headers, body };
  if (onBody) request.onResponse = (status, responseBody) => onBody(status, responseBody);
  const latencies = [];
  let bytes = 0;
  const instance = autocannon({
    url,
    connections,
    duration: seconds,
    maxOverallRequests: Math.max(MAX_REQUESTS, connections),
    timeout: 30,
    requests: [request],
  });
  instance.on("response", (_client, status, responseBytes, ms) => {
    if (status >= 200 && status < 300) {
      latencies.push(ms);
      bytes += responseBytes;
    }
  });
  const loaderCpu = process.cpuUsage();
  const hardStop = setTimeout(() => instance.stop(), (seconds + 30) * 1000);
  const cannon = await instance;
  clearTimeout(hardStop);
  const { user, system } = process.cpuUsage(loaderCpu);
  latencies.sort((a, b) => a - b);
  const elapsed = cannon.duration;
  const ok = latencies.length;
  const result = {
    connections,
    seconds: elapsed,
    requests: ok + cannon.non2xx + cannon.errors,
    ok,
    failed: cannon.non2xx + cannon.errors,
    rps: ok / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    bytesPerSec: bytes / elapsed,
    loaderCpuPercent: (user + system) / 10_000 / elapsed,
  };
  // Every answer's latency, ascending, for pooling runs of one phase; not
  // enumerable, so results written as JSON leave it out.
  Object.defineProperty(result, "latencies", { value: latencies });
  return result;
}
