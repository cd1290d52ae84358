// The built Worker under Miniflare with the Worker's own socket exposed, for
// the benchmarks: wrangler dev's proxy would dominate their numbers.
//
// As a module: `startWorker(bindings)` → { mf, url }.
// As a program (used by the end-to-end benchmark, bench-e2e):
//   INGEST_SECRET=… ADMIN_TOKEN=… node bench/miniflare.mjs <port>
// prints `ready <url>` and serves until SIGTERM/SIGINT. Port 0 (or none) is
// a free port the runtime binds itself; `<url>` is the one it got.
import { Miniflare } from "miniflare";
import { fileURLToPath } from "node:url";

const root = new URL("..", import.meta.url).pathname;

export async function startWorker(bindings, port = 0) {
  const mf = new Miniflare({
    host: "127.0.0.1",
    port: 0,
    cf: false,
    workers: [
      {
        name: "gamefeed",
        modulesRoot: `${root}worker/build`,
        modules: [
          { type: "ESModule", path: `${root}worker/build/index.js` },
          { type: "CompiledWasm", path: `${root}worker/build/index_bg.wasm` },
        ],
        // Miniflare 4 ships workerd 2026-07-30; wrangler.toml asks for a
        // newer date that this binary does not know. Nothing we use changed.
        compatibilityDate: "2026-08-01",
        compatibilityFlags: ["enable_request_signal"],
        kvNamespaces: ["KEYS"],
        durableObjects: {
          STREAMS: { className: "StreamObject", useSQLite: true },
          DIRECTORY: { className: "Directory", useSQLite: true },
        },
        bindings,
        // Clients talk to the Worker's own socket, not through Miniflare's
        // entry worker, which would add a proxy hop (and its memory) per
        // request that the real edge does not have.
        unsafeDirectSockets: [{ host: "127.0.0.1", port }],
      },
    ],
  });
  const entry = await mf.ready;
  const url = process.env.BENCH_VIA_ENTRY
    ? entry.toString().replace(/\/$/, "")
    : (await mf.unsafeGetDirectURL("gamefeed")).toString().replace(/\/$/, "");
  return { mf, url };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const bindings = {};
  for (const name of [
    "INGEST_SECRET", "ADMIN_TOKEN", "TOKEN_SECRET", "HEARTBEAT_SECS",
    "UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN", "LIMITS_TIMEOUT_MS", "LIMITS_FAIL",
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
