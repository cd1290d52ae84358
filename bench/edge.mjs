// Edge fan-out benchmark: one game, N SSE clients, rounds posted to
// /internal/rounds; measures POST → client latency, connect time, workerd
// memory per client, errors and lost rounds. Runs the built Worker under
// Miniflare directly (wrangler dev's proxy would dominate the numbers).
//
//   bash scripts/bench-edge.sh                 # N = 1000, 5000, 10000
//   BENCH_CLIENTS=1000 BENCH_ROUNDS=50 bash scripts/bench-edge.sh
import { startWorker } from "./miniflare.mjs";
import http from "node:http";
import crypto from "node:crypto";
import fs from "node:fs";
import { execFileSync } from "node:child_process";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";

const root = new URL("..", import.meta.url).pathname;
const sizes = (process.env.BENCH_CLIENTS || "1000,5000,10000").split(",").map(Number);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 30);
const GAP_MS = Number(process.env.BENCH_GAP_MS || 200);
const CONNECT_WAVE = Number(process.env.BENCH_CONNECT_WAVE || 250);
const GAME = "crash";

function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function workerdPids() {
  const out = execFileSync("ps", ["-eo", "pid,ppid,comm"], { encoding: "utf8" });
  const children = new Map();
  for (const line of out.trim().split("\n").slice(1)) {
    const [pid, ppid, comm] = line.trim().split(/\s+/);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push({ pid, comm });
  }
  const found = [];
  const walk = (pid) => {
    for (const child of children.get(String(pid)) || []) {
      if (child.comm.startsWith("workerd")) found.push(child.pid);
      walk(child.pid);
    }
  };
  walk(process.pid);
  return found;
}

function rssKb(pids) {
  let total = 0;
  for (const pid of pids) {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const m = status.match(/VmRSS:\s+(\d+) kB/);
    if (m) total += Number(m[1]);
  }
  return total;
}

async function startEdge() {
  const secret = crypto.randomBytes(16).toString("hex");
  const admin = crypto.randomBytes(16).toString("hex");
  const { mf, url } = await startWorker({ INGEST_SECRET: secret, ADMIN_TOKEN: admin, HEARTBEAT_SECS: "15" });
  const created = await fetch(`${url}/admin/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "bench", test: true }),
  });
  if (created.status !== 201) throw new Error(`key creation: ${created.status} ${await created.text()}`);
  const { key } = await created.json();
  return { mf, url, secret, key };
}

function post(edge, roundId) {
  const round = {
    round_id: roundId,
    game_id: 1,
    game_slug: GAME,
    game_type: "multiplier",
    finished_at: new Date().toISOString(),
    extras: JSON.stringify({ point: (1 + Math.random() * 10).toFixed(2) }),
    timestamp: Date.now(),
  };
  const body = JSON.stringify({ events: [{ kind: "new", round }] });
  const t = Math.floor(Date.now() / 1000);
  const mac = crypto.createHmac("sha256", edge.secret).update(`${t}.${body}`).digest("hex");
  return fetch(`${edge.url}/internal/rounds`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-signature": `t=${t},v1=${mac}` },
    body,
  });
}

// One SSE client: records when each round's `message` arrives.
function connect(edge, agent, onRound) {
  return new Promise((resolve) => {
    const started = performance.now();
    let settled = false;
    let buffer = "";
    const req = http.get(`${edge.url}/sse/${GAME}?api_key=${edge.key}${process.env.BENCH_QUERY || ""}`, { agent }, (res) => {
      if (res.statusCode !== 200) {
        settled = true;
        res.resume();
        return resolve({ error: `status ${res.statusCode}` });
      }
      res.setEncoding("utf8");
      res.on("data", (chunk) => {
        const now = performance.now();
        if (!settled) {
          settled = true;
          resolve({ req, connectMs: now - started });
        }
        buffer += chunk;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (frame.includes("event: message")) {
            const m = frame.match(/^id: (\d+)/m);
            if (m) onRound(Number(m[1]), now);
          }
        }
      });
      res.on("error", () => {});
    });
    req.on("error", (err) => {
      if (!settled) {
        settled = true;
        resolve({ error: err.code || String(err) });
      }
    });
  });
}

async function run(n) {
  const edge = await startEdge();
  const pids = workerdPids();
  // Warm the object and the isolate before the baseline.
  await (await post(edge, 1)).text();
  await sleep(500);
  const baseKb = rssKb(pids);

  const arrivals = new Map(); // round id -> latencies (ms)
  const postedAt = new Map();
  let received = 0;
  const onRound = (id, now) => {
    const t0 = postedAt.get(id);
    if (t0 === undefined) return;
    arrivals.get(id).push(now - t0);
    received++;
  };
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const clients = [];
  const connectMs = [];
  const errors = new Map();
  for (let i = 0; i < n; i += CONNECT_WAVE) {
    const wave = await Promise.all(
      Array.from({ length: Math.min(CONNECT_WAVE, n - i) }, () => connect(edge, agent, onRound)),
    );
    for (const c of wave) {
      if (c.error) errors.set(c.error, (errors.get(c.error) || 0) + 1);
      else {
        clients.push(c.req);
        connectMs.push(c.connectMs);
      }
    }
  }
  await sleep(2000);
  const connectedKb = rssKb(pids);

  for (let r = 0; r < ROUNDS; r++) {
    const id = 100 + r;
    arrivals.set(id, []);
    postedAt.set(id, performance.now());
    const res = await post(edge, id);
    if (res.status !== 200) errors.set(`post ${res.status}`, (errors.get(`post ${res.status}`) || 0) + 1);
    await res.text();
    const deadline = performance.now() + 15000;
    while (arrivals.get(id).length < clients.length && performance.now() < deadline) await sleep(5);
    await sleep(GAP_MS);
  }
  await sleep(1000);
  const latencies = [...arrivals.values()].flat().sort((a, b) => a - b);
  // The first client of each round: the edge's work before the fan-out.
  const firsts = [...arrivals.values()].filter((l) => l.length).map((l) => Math.min(...l)).sort((a, b) => a - b);
  connectMs.sort((a, b) => a - b);
  const lost = ROUNDS * clients.length - received;
  for (const req of clients) req.destroy();
  agent.destroy();
  await edge.mf.dispose();
  return {
    n,
    connected: clients.length,
    connectP50: quantile(connectMs, 0.5),
    connectP99: quantile(connectMs, 0.99),
    first: quantile(firsts, 0.5),
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    max: latencies[latencies.length - 1],
    kbPerClient: (connectedKb - baseKb) / Math.max(1, clients.length),
    errors: [...errors].map(([k, v]) => `${k}×${v}`).join(" ") || "0",
    lost,
  };
}

const rows = [];
for (const n of sizes) {
  process.stderr.write(`bench: ${n} clients, ${ROUNDS} rounds…\n`);
  rows.push(await run(n));
}
const f = (x) => (Number.isFinite(x) ? x.toFixed(1) : "-");
const workerd = JSON.parse(fs.readFileSync(`${root}node_modules/miniflare/node_modules/workerd/package.json`, "utf8")).version;
console.log(`\nEdge fan-out, one game, ${ROUNDS} rounds, Miniflare direct socket, workerd ${workerd}, load client on the same machine`);
console.log("| clients | connected | connect p50/p99 ms | first client p50 ms | latency p50 ms | p99 ms | max ms | workerd KB/client | errors | rounds lost |");
console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
for (const r of rows) {
  console.log(
    `| ${r.n} | ${r.connected} | ${f(r.connectP50)} / ${f(r.connectP99)} | ${f(r.first)} | ${f(r.p50)} | ${f(r.p99)} | ${f(r.max)} | ${f(r.kbPerClient)} | ${r.errors} | ${r.lost} |`,
  );
}
