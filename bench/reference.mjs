// The reference build the autocannon latencies are compared with: the worker
// as built from a git revision (default REFERENCE_DEFAULT, the service as it
// stood when the performance work was asked for; BENCH_REFERENCE=<rev> picks
// another), built once and cached under target/bench-reference/<sha>/build/.
//
// A build extracts the revision's tree (git archive) to
// target/bench-reference/<sha>/src and runs `worker-build --release` there,
// with the toolchain of .tools/env (as scripts/build.sh does) and one cargo
// target directory shared by every reference build
// (target/bench-reference/cargo), so dependencies are compiled once. The
// build is the revision's own: no step of today's scripts/build.sh is added.
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { closeSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { root } from "./services.mjs";

export const REFERENCE_DEFAULT = "bef49d1";
/** Where reference builds are cached, relative to the repository root. */
const CACHE = "target/bench-reference";
const BUILD_FILES = ["index.js", "index_bg.wasm"];

function git(...args) {
  const run = spawnSync("git", ["-C", root, ...args], { encoding: "utf8", maxBuffer: 1 << 30 });
  if (run.status !== 0) throw new Error(`git ${args.join(" ")}: ${(run.stderr || run.error?.message || "").trim()}`);
  return run.stdout;
}

/** Runs `command` (argv) in `cwd` with its output appended to the file `logPath`; resolves to its exit code. */
async function runLogged(command, { cwd, env, logPath }) {
  const fd = openSync(logPath, "a");
  try {
    const child = spawn(command[0], command.slice(1), { cwd, env, stdio: ["ignore", fd, fd] });
    const [code, signal] = await Promise.race([once(child, "exit"), once(child, "error").then(([e]) => Promise.reject(e))]);
    return code ?? signal;
  } finally {
    closeSync(fd);
  }
}

const tail = (path, lines = 15) =>
  existsSync(path) ? readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n") : "";

/**
 * The reference build, built now unless cached. Never throws: resolves to
 * { rev, sha, subject, date, dir, script, cached, buildSeconds } where dir
 * and script (its build/index.js, for startWorker) are relative to the
 * repository root, or to { rev, sha?, subject?, date?, error } when there is
 * no reference build (error says why).
 */
export async function referenceBuild({ log = (m) => process.stderr.write(`bench: ${m}\n`) } = {}) {
  const rev = process.env.BENCH_REFERENCE || REFERENCE_DEFAULT;
  const reference = { rev };
  try {
    reference.sha = git("rev-parse", "--verify", "--quiet", `${rev}^{commit}`).trim();
    const [subject, date] = git("log", "-1", "--format=%s%n%cI", reference.sha).split("\n");
    Object.assign(reference, { subject, date });
  } catch {
    log(`reference ${rev}: not a revision of this repository`);
    return { ...reference, error: `${rev} is not a revision of this repository` };
  }
  const base = join(CACHE, reference.sha);
  const dir = join(base, "build");
  const script = join(dir, "index.js");
  const name = `reference ${rev} (${reference.sha.slice(0, 12)})`;
  if (BUILD_FILES.every((f) => existsSync(join(root, dir, f)))) {
    log(`${name}: cached build in ${dir}`);
    return { ...reference, dir, script, cached: true, buildSeconds: null };
  }
  const started = performance.now();
  const src = join(base, "src");
  const logPath = join(base, "build.log");
  try {
    rmSync(join(root, src), { recursive: true, force: true });
    rmSync(join(root, logPath), { force: true });
    mkdirSync(join(root, src), { recursive: true });
    log(`${name}: extracting its tree to ${src}`);
    const archived = await runLogged(["bash", "-c", 'set -o pipefail; git -C "$1" archive "$2" | tar -x -C "$3"', "_", root, reference.sha, join(root, src)], {
      cwd: root,
      env: process.env,
      logPath: join(root, logPath),
    });
    if (archived !== 0) throw new Error(`git archive | tar exited with ${archived}: ${tail(join(root, logPath), 5)}`);
    // Without a Cargo.toml of its own, cargo would look in the directories
    // above and build this repository's working tree into its build/.
    if (!existsSync(join(root, src, "Cargo.toml"))) throw new Error("that revision has no Cargo.toml");
    const toolEnv = join(root, ".tools/env");
    if (!existsSync(toolEnv)) throw new Error(".tools/env is missing (run npm run setup)");
    log(`${name}: worker-build --release (the first build compiles its dependencies: minutes; output in ${logPath})`);
    const built = await runLogged(["bash", "-c", 'source "$1" && exec worker-build --release', "_", toolEnv], {
      cwd: join(root, src),
      // RUSTFLAGS set (empty) wins over any .cargo/config.toml cargo finds in
      // the directories above (this repository's): the revision is built with
      // its own flags.
      env: { ...process.env, CARGO_TARGET_DIR: join(root, CACHE, "cargo"), RUSTFLAGS: "" },
      logPath: join(root, logPath),
    });
    if (built !== 0) throw new Error(`worker-build --release exited with ${built}; the end of ${logPath}:\n${tail(join(root, logPath))}`);
    const missing = BUILD_FILES.filter((f) => !existsSync(join(root, src, "build", f)));
    if (missing.length) throw new Error(`worker-build left no ${missing.join(", ")} in ${join(src, "build")}`);
    // Copied whole, then renamed: a build/ in the cache is always complete.
    const partial = join(root, base, "build.partial");
    rmSync(partial, { recursive: true, force: true });
    cpSync(join(root, src, "build"), partial, { recursive: true });
    renameSync(partial, join(root, dir));
    rmSync(join(root, src), { recursive: true, force: true });
    const buildSeconds = (performance.now() - started) / 1000;
    log(`${name}: built in ${buildSeconds.toFixed(0)} s, cached in ${dir}`);
    return { ...reference, dir, script, cached: false, buildSeconds };
  } catch (error) {
    log(`${name}: no reference build: ${error.message}`);
    return { ...reference, error: `the build failed: ${error.message.split("\n")[0]} (see ${logPath})` };
  }
}

// `node bench/reference.mjs` builds (or finds) the reference and prints where it is.
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const reference = await referenceBuild();
  process.stdout.write(`${JSON.stringify(reference, null, 2)}\n`);
  if (reference.error) process.exitCode = 1;
}
