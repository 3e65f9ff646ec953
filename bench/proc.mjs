// Reads a process's CPU time and memory from /proc (Linux only).
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

const CLOCK_TICKS_PER_SECOND = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Fields of /proc/<pid>/stat after the command name (field 3 onwards), or null if gone. */
function statFields(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    return text.slice(text.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/** utime + stime of the process, in milliseconds (resolution: one clock tick). */
export function cpuMs(pid) {
  const fields = statFields(pid);
  if (!fields) throw new Error(`process ${pid} is gone`);
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/**
 * The CPU time `pid` has run, in nanoseconds: the sum over its threads of
 * field 1 of /proc/<pid>/task/<tid>/schedstat (the scheduler's own run-time
 * counter, nanosecond resolution). Where schedstat is missing, falls back to
 * utime + stime of /proc/<pid>/stat (one clock tick, 10 ms, of resolution).
 * Threads that exit take their time with them; workerd's threads live as
 * long as the process.
 */
export function cpuNs(pid) {
  return SCHEDSTAT ? schedNs(pid).run : cpuMs(pid) * 1e6;
}

/**
 * cpuNs, and the part of it that `pid`'s main thread ran (0 without
 * schedstat), read in one pass. In workerd the main thread is the event
 * loop: the requests' JavaScript and wasm, and Miniflare's local KV and R2;
 * the other threads are V8's helpers (compiling code up a tier, concurrent
 * garbage collection).
 */
export function cpuSplitNs(pid) {
  if (!SCHEDSTAT) return { ns: cpuMs(pid) * 1e6, mainNs: 0 };
  const { run, main } = schedNs(pid);
  return { ns: run, mainNs: main };
}

/**
 * Summed over the threads of `pid`, from /proc/<pid>/task/<tid>/schedstat:
 * run = ns spent running, wait = ns spent runnable but waiting for a CPU;
 * main = run of the main thread alone.
 */
function schedNs(pid) {
  let run = 0;
  let wait = 0;
  let main = 0;
  let tids;
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    throw new Error(`process ${pid} is gone`);
  }
  for (const tid of tids) {
    try {
      const fields = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ");
      run += Number(fields[0]);
      wait += Number(fields[1]);
      if (Number(tid) === Number(pid)) main = Number(fields[0]);
    } catch {}
  }
  return { run, wait, main };
}

/** Whether /proc/<pid>/task/<tid>/schedstat gives nanosecond run times here. */
export const SCHEDSTAT = (() => {
  try {
    const [run] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, "utf8").split(" ");
    return Number(run) > 0;
  } catch {
    return false;
  }
})();

/** How CPU time per request is read, for the report. */
export const CPU_SOURCE = SCHEDSTAT
  ? "sum of /proc/<pid>/task/*/schedstat run time (ns resolution)"
  : `utime + stime of /proc/<pid>/stat (${1000 / CLOCK_TICKS_PER_SECOND} ms ticks)`;

/**
 * Waits until the process has used at most `thresholdNs` of CPU over
 * `windowMs` (its trailing work, waitUntil included, is done), or `maxMs`
 * passed. With schedstat, time its threads spent runnable but waiting for a
 * CPU counts as not quiet: on a busy machine, work that did not get a CPU
 * yet is not mistaken for work done. Resolves to { ns (cpuNs at the end),
 * mainNs (its main thread's part, as cpuSplitNs), waitedMs, timedOut }.
 */
export async function quietCpu(pid, { windowMs = 50, pollMs = 5, thresholdNs = 100_000, maxMs = 10_000 } = {}) {
  if (!SCHEDSTAT) thresholdNs = Math.max(thresholdNs, 1e9 / CLOCK_TICKS_PER_SECOND);
  const busy = () => {
    const { run, wait, main } = SCHEDSTAT ? schedNs(pid) : { run: cpuMs(pid) * 1e6, wait: 0, main: 0 };
    return { run, main, both: run + wait };
  };
  const started = performance.now();
  let windowStart = performance.now();
  let base = busy().both;
  for (;;) {
    await new Promise((r) => setTimeout(r, pollMs));
    const sample = busy();
    const now = sample.both;
    const t = performance.now();
    if (now - base > thresholdNs) {
      base = now;
      windowStart = t;
    } else if (t - windowStart >= windowMs) {
      return { ns: sample.run, mainNs: sample.main, waitedMs: t - started, timedOut: false };
    }
    if (t - started > maxMs) return { ns: sample.run, mainNs: sample.main, waitedMs: t - started, timedOut: true };
  }
}

/** Resident set size in bytes (VmRSS). */
export function rssBytes(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]);
  return kib * 1024;
}

/** PIDs of the direct children of `parent` whose command line contains `needle`. */
export function childrenMatching(parent, needle) {
  const found = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(entry);
    if (!fields || Number(fields[1]) !== parent) continue;
    let cmdline = "";
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").replaceAll("\0", " ");
    } catch {
      continue;
    }
    if (cmdline.includes(needle)) found.push(Number(entry));
  }
  return found;
}

/** Samples the peak RSS of `pid` every `intervalMs` until stopped. */
export function rssSampler(pid, intervalMs = 50) {
  let peak = rssBytes(pid);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(pid));
    } catch {}
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}
