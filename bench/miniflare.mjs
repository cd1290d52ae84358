// The built Worker under Miniflare with the Worker's own socket exposed, for
// the benchmarks: wrangler dev's proxy would dominate their numbers.
//
// As a module: `startWorker(bindings, port, { inspect, onRestart })` → { mf, url }.
// As a program (used by the end-to-end benchmark, bench-e2e):
//   INGEST_SECRET=… ADMIN_TOKEN=… node bench/miniflare.mjs <port>
// prints `ready <url>` and serves until SIGTERM/SIGINT. Port 0 (or none) is
// a free port the runtime binds itself; `<url>` is the one it got.
//
// BENCH_WORKER_DIR (default worker/build) is the build to run, so a snapshot
// can be benchmarked while worker/src is mid-edit. BENCH_RELAY_CAPACITY (or
// RELAY_CAPACITY) becomes the Worker's RELAY_CAPACITY var, BENCH_FEED_GROUP
// (or FEED_GROUP) its FEED_GROUP.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";

const root = fileURLToPath(new URL("..", import.meta.url));

// The Miniflare (and so the workerd) that the project's wrangler brings, so
// the benchmarks run the runtime `wrangler dev` and the tests run. Resolved
// from wrangler's own location: npm nests it under wrangler today but would
// hoist it if nothing else pinned another version.
const fromWrangler = createRequire(createRequire(`${root}package.json`).resolve("wrangler/package.json"));
const miniflarePath = fromWrangler.resolve("miniflare");
const { Miniflare, convertV4MiniflareOptions } = fromWrangler(miniflarePath);
// Miniflare 5 takes a new options shape; it converts the Miniflare 4 shape
// used here (and Miniflare 4 takes it as it is).
export const options = convertV4MiniflareOptions ?? ((v4) => v4);
export { Miniflare };
const fromMiniflare = createRequire(miniflarePath);

function packageVersion(require, name) {
  return JSON.parse(fs.readFileSync(require.resolve(`${name}/package.json`), "utf8")).version;
}
export const versions = {
  miniflare: packageVersion(fromWrangler, "miniflare"),
  workerd: packageVersion(fromMiniflare, "workerd"),
};

export const workerDir = path.resolve(process.env.BENCH_WORKER_DIR || `${root}worker/build`);

// wrangler.toml's top-level compatibility date and flags (the lines before
// the first [section]), so the benchmark runs what `wrangler dev` runs. A
// workerd refuses dates after its own release: then its release date.
function compatibility() {
  const toml = fs.readFileSync(`${root}wrangler.toml`, "utf8").split(/^\[/m)[0];
  const wanted = toml.match(/^compatibility_date\s*=\s*"([\d-]+)"/m)?.[1];
  const flags = toml.match(/^compatibility_flags\s*=\s*\[([^\]]*)\]/m)?.[1];
  const released = versions.workerd.split(".")[1].replace(/(\d{4})(\d{2})(\d{2})/, "$1-$2-$3");
  return {
    date: wanted && wanted <= released ? wanted : released,
    flags: flags ? [...flags.matchAll(/"([^"]+)"/g)].map((m) => m[1]) : [],
  };
}

// `onRestart`: called when the runtime crashed and Miniflare restarted it
// (every client was dropped): a benchmark must not carry on as if nothing
// happened.
export async function startWorker(bindings, port = 0, { inspect = false, onRestart } = {}) {
  const script = `${workerDir}/index.js`;
  const compat = compatibility();
  const durableObjects = {
    STREAMS: { className: "StreamObject", useSQLite: true },
    DIRECTORY: { className: "Directory", useSQLite: true },
  };
  // Builds from before the relay tier have no RelayObject class to bind.
  if (fs.readFileSync(script, "utf8").includes("RelayObject")) {
    durableObjects.RELAYS = { className: "RelayObject", useSQLite: true };
  }
  const relayCapacity = process.env.BENCH_RELAY_CAPACITY || process.env.RELAY_CAPACITY;
  if (relayCapacity && bindings.RELAY_CAPACITY === undefined) {
    bindings = { ...bindings, RELAY_CAPACITY: relayCapacity };
  }
  // BENCH_FEED_GROUP=1: a socket per client to the objects (as many isolates
  // give on Cloudflare), instead of one feed socket for the isolate.
  const feedGroup = process.env.BENCH_FEED_GROUP || process.env.FEED_GROUP;
  if (feedGroup && bindings.FEED_GROUP === undefined) {
    bindings = { ...bindings, FEED_GROUP: feedGroup };
  }
  const mf = new Miniflare(options({
    host: "127.0.0.1",
    port: 0,
    cf: false,
    // Only the entry worker logs, and nothing here goes through it.
    logRequests: false,
    // Port 0: the runtime's inspector on a port it picks; getInspectorURL()
    // reads it back. Only when asked: the benchmark reads heap usage there.
    ...(inspect ? { inspectorPort: 0 } : {}),
    ...(onRestart ? { unsafeHandleRuntimeRestart: onRestart } : {}),
    workers: [
      {
        name: "gamefeed",
        modulesRoot: workerDir,
        modules: [
          { type: "ESModule", path: script },
          { type: "CompiledWasm", path: `${workerDir}/index_bg.wasm` },
        ],
        compatibilityDate: compat.date,
        compatibilityFlags: compat.flags,
        kvNamespaces: ["KEYS"],
        durableObjects,
        bindings,
        // Clients talk to the Worker's own socket, not through Miniflare's
        // entry worker, which would add a proxy hop (and its memory) per
        // request that the real edge does not have.
        unsafeDirectSockets: [{ host: "127.0.0.1", port }],
      },
    ],
  }));
  const entry = await mf.ready;
  const url = process.env.BENCH_VIA_ENTRY
    ? entry.toString().replace(/\/$/, "")
    : (await mf.unsafeGetDirectURL("gamefeed")).toString().replace(/\/$/, "");
  return { mf, url, compatibilityDate: compat.date };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const bindings = {};
  for (const name of [
    "INGEST_SECRET", "ADMIN_TOKEN", "TOKEN_SECRET", "HEARTBEAT_SECS",
    "UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN", "LIMITS_TIMEOUT_MS", "LIMITS_FAIL",
    "RELAY_CAPACITY", "FEED_GROUP",
  ]) {
    if (process.env[name]) bindings[name] = process.env[name];
  }
  const { mf, url } = await startWorker(bindings, Number(process.argv[2] || 0));
  console.log(`ready ${url}`);
  const stop = async () => {
    await mf.dispose();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

// The secrets a benchmark's Worker runs with, made fresh for each run.
export function benchSecrets() {
  const hex = () => crypto.randomBytes(16).toString("hex");
  return { INGEST_SECRET: hex(), ADMIN_TOKEN: hex() };
}

// A test API key made through the admin route; returns the key.
export async function createKey(url, secrets, name) {
  const created = await fetch(`${url}/admin/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${secrets.ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ name, test: true }),
  });
  if (created.status !== 201) throw new Error(`create key: ${created.status}`);
  return (await created.json()).key;
}

// Stores one new round of a game, `crash` by default (signed as ingest signs
// its batches).
export async function seedRound(url, secrets, roundId = 1, game = "crash", type = "multiplier") {
  const round = {
    round_id: roundId, game_id: 1, game_slug: game, game_type: type,
    finished_at: new Date().toISOString(), extras: "{}", timestamp: Date.now(),
  };
  const body = JSON.stringify({ events: [{ kind: "new", round }] });
  const t = Math.floor(Date.now() / 1000);
  const mac = crypto.createHmac("sha256", secrets.INGEST_SECRET).update(`${t}.${body}`).digest("hex");
  const posted = await fetch(`${url}/internal/rounds`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-signature": `t=${t},v1=${mac}` },
    body,
  });
  if (posted.status !== 200) throw new Error(`seed round: ${posted.status}`);
}
