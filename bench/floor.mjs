// The runtime's floor for our fan-out (not a test): N SSE clients on the
// smallest Worker of that shape (bench/floor/worker.js) under the workerd
// that wrangler brings, rounds pushed to all of them; prints latency, CPU
// per client per round and memory per client for each body kind.
//   node bench/floor.mjs            # BENCH_CLIENTS=1000,5000 BENCH_ROUNDS=10 BENCH_MODES=readable,identity
import http from "node:http";
import { execFileSync } from "node:child_process";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Miniflare, options, versions } from "./miniflare.mjs";
import { cpuTicks, quantile, rssKb, workerdPids } from "./proc.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const sizes = (process.env.BENCH_CLIENTS || "1000,5000,10000").split(",").map(Number);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 10);
const GAP_MS = Number(process.env.BENCH_GAP_MS || 200);
const modes = (process.env.BENCH_MODES || "readable,identity").split(",");
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());

async function run(mode, n) {
  const mf = new Miniflare(options({
    host: "127.0.0.1",
    port: 0,
    logRequests: false,
    workers: [{
      name: "floor",
      modules: true,
      scriptPath: `${here}floor/worker.js`,
      // The date wrangler.toml asks for; BENCH_COMPAT_DATE to compare others.
      compatibilityDate: process.env.BENCH_COMPAT_DATE || "2026-11-01",
      compatibilityFlags: ["enable_request_signal"],
      unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
    }],
  }));
  await mf.ready;
  const url = (await mf.unsafeGetDirectURL("floor")).toString().replace(/\/$/, "");
  const pids = workerdPids();
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const pending = new Map();
  const latencies = [];
  const requests = [];
  const baseKb = rssKb(pids);
  for (let i = 0; i < n; i += 250) {
    await Promise.all(Array.from({ length: Math.min(250, n - i) }, () => new Promise((resolve, reject) => {
      const req = http.get(`${url}/sse?mode=${mode}`, { agent }, (res) => {
        res.setEncoding("utf8");
        res.once("data", () => resolve());
        res.on("data", (chunk) => {
          const m = chunk.match(/^id: (\d+)/m);
          const round = m && pending.get(Number(m[1]));
          if (round) {
            latencies.push(performance.now() - round.t0);
            if (++round.got === n) round.done();
          }
        });
      });
      req.on("error", reject);
      requests.push(req);
    })));
  }
  await sleep(1000);
  const connectedKb = rssKb(pids);
  const start = cpuTicks(pids);
  for (let r = 0; r < ROUNDS; r++) {
    const id = 100 + r;
    const round = { t0: 0, got: 0 };
    const done = new Promise((resolve) => (round.done = resolve));
    pending.set(id, round);
    const frame = `id: ${id}\nevent: message\ndata: {"round_id":${id},"game_slug":"crash","extras":"{\\"point\\": 2.31}"}\n\n`;
    round.t0 = performance.now();
    await (await fetch(`${url}/push`, { method: "POST", body: frame })).text();
    await Promise.race([done, sleep(30000)]);
    await sleep(GAP_MS);
  }
  const spentTicks = cpuTicks(pids) - start;
  for (const req of requests) req.destroy();
  agent.destroy();
  await mf.dispose();
  latencies.sort((a, b) => a - b);
  return {
    mode, n,
    p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99),
    lost: ROUNDS * n - latencies.length,
    cpuUs: (spentTicks * 1e6) / CLK_TCK / (ROUNDS * n),
    kib: (connectedKb - baseKb) / n,
  };
}

const rows = [];
for (const n of sizes) for (const mode of modes) {
  process.stderr.write(`floor: ${mode}, ${n} clients…\n`);
  rows.push(await run(mode, n));
}
console.log(`\nFloor: the smallest Worker of our shape, workerd ${versions.workerd}, ${ROUNDS} rounds ${GAP_MS} ms apart`);
console.log("| body | clients | p50 / p99 ms | CPU µs per client per round (whole workerd, incl. its gaps) | KiB per client | lost |");
console.log("|---|---:|---:|---:|---:|---:|");
const f = (x) => (Number.isFinite(x) ? x.toFixed(1) : "-");
for (const r of rows) console.log(`| ${r.mode} | ${r.n} | ${f(r.p50)} / ${f(r.p99)} | ${f(r.cpuUs)} | ${f(r.kib)} | ${r.lost} |`);
