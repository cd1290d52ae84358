// Edge fan-out benchmark: one game, N SSE clients, side by side for
//   OURS  the built Worker under Miniflare (its own socket, no proxy in
//         front), rounds posted signed to /internal/rounds;
//   NODE  the usual competitor, bench/node-sse-server.mjs (Express 5 +
//         ioredis, one process, one shared subscriber) on a redis-server of
//         its own, rounds published with SET latest:<game> + PUBLISH.
// Per side and N it measures delivery latency (t0 just before the POST or
// the PUBLISH), rounds lost, server CPU per client per round, server memory
// per client, and for OURS how that memory splits between the isolate (what
// counts against its 128 MB) and the runtime. Each side gets a fresh server
// per N. The load client is this process, on the same machine.
//
//   bash scripts/bench-edge.sh                       # N = 1000, 5000, 10000
//   BENCH_CLIENTS=1000 BENCH_ROUNDS=30 bash scripts/bench-edge.sh
// Other knobs: BENCH_SIDES=ours,node  BENCH_GAP_MS=200  BENCH_CONNECT_WAVE=250
//   BENCH_HEAP=0 (no inspector, no heap split)  BENCH_WORKER_DIR=<build>
//   BENCH_RELAY_CAPACITY=<n>  BENCH_QUERY=&… (appended to OURS' SSE URL)
//   BENCH_MULTIPLEXED=1 (OURS' clients open /sse?games=crash: a multiplexed
//   stream of one member, whose frames the Worker rewrites)
//   BENCH_EXTRAS_BYTES=<n> (pads each round's extras to about n bytes)
import { startWorker, versions, workerDir } from "./miniflare.mjs";
import { cpuTicks, fdCount, fdLimit, quantile, rssKb, workerdPids } from "./proc.mjs";
import { Redis } from "ioredis";
import http from "node:http";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { execFileSync, spawn } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";

const root = fileURLToPath(new URL("..", import.meta.url));
const sizes = (process.env.BENCH_CLIENTS || "1000,5000,10000").split(",").map(Number);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 10);
const GAP_MS = Number(process.env.BENCH_GAP_MS || 200);
const CONNECT_WAVE = Number(process.env.BENCH_CONNECT_WAVE || 250);
const SIDES = (process.env.BENCH_SIDES || "ours,node").split(",");
const HEAP = process.env.BENCH_HEAP !== "0";
const REDIS_SERVER = process.env.REDIS_SERVER || "redis-server";
const ROUND_TIMEOUT_MS = 15000;
const STARTUP_TIMEOUT_MS = 60000;
const GAME = "crash";
const MULTIPLEXED = process.env.BENCH_MULTIPLEXED === "1";
const PAD = "x".repeat(Number(process.env.BENCH_EXTRAS_BYTES || 0));
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());

for (const side of SIDES) {
  if (side !== "ours" && side !== "node") throw new Error(`BENCH_SIDES: unknown side ${side}`);
}

// ---- everything started, and stopping it -----------------------------------

// Stop functions of whatever runs now; each removes itself once called.
const live = new Set();
const children = new Set();

function track(stop) {
  let stopped = null;
  const entry = () => {
    live.delete(entry);
    stopped ??= Promise.resolve().then(stop);
    return stopped;
  };
  live.add(entry);
  return entry;
}

async function stopAll() {
  for (const stop of [...live].reverse()) await stop().catch(() => {});
}

let failing = false;
// A server died mid-run or we were interrupted: stop everything, exit at once.
function fail(reason, code = 1) {
  if (failing) return;
  failing = true;
  console.error(`bench: ${reason instanceof Error ? reason.message : reason}`);
  stopAll().finally(() => process.exit(code));
}
process.on("SIGINT", () => fail("interrupted", 130));
process.on("SIGTERM", () => fail("terminated", 143));
// Last resort when the process goes down anyway: nothing may outlive it.
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
  for (const pid of workerdPids()) {
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {}
  }
});

// Spawns a server and resolves once a line of its output matches `ready`
// (with the match). Dying or hanging before that rejects with the tail of its
// output; dying after it fails the whole bench.
function spawnServer(name, command, args, { ready, env = process.env }) {
  const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  const lines = [];
  const tail = () => lines.join("\n") || "(no output)";
  let started = false;
  let stopping = false;
  const gone = new Promise((resolve) => {
    child.once("close", resolve);
    child.once("error", resolve);
  });
  const stop = track(async () => {
    stopping = true;
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      child.kill("SIGTERM");
      const force = setTimeout(() => child.kill("SIGKILL"), 5000);
      await gone;
      clearTimeout(force);
    }
    children.delete(child);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`${name} not ready after ${STARTUP_TIMEOUT_MS / 1000} s; its last output:\n${tail()}`));
    }, STARTUP_TIMEOUT_MS);
    const onLine = (line) => {
      lines.push(line);
      if (lines.length > 30) lines.shift();
      // What it says once running (errors, say) is worth seeing as it comes.
      if (started && !stopping) console.error(`${name}: ${line}`);
      const match = !started && line.match(ready);
      if (match) {
        started = true;
        clearTimeout(timer);
        resolve({ child, match, stop });
      }
    };
    readline.createInterface({ input: child.stdout }).on("line", onLine);
    readline.createInterface({ input: child.stderr }).on("line", onLine);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`${name}: cannot start ${command}: ${err.message}`));
    });
    // `close`, not `exit`: by then all of its output has been read.
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      const how = signal ? `on ${signal}` : `with code ${code}`;
      if (!started) reject(new Error(`${name} exited ${how} during startup; its last output:\n${tail()}`));
      else if (!stopping) fail(new Error(`${name} exited ${how} during the run; its last output:\n${tail()}`));
    });
  });
}

function within(promise, ms) {
  let timer;
  return Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

// ---- the isolate's memory, over the inspector (Chrome DevTools Protocol) -----

// JS heap, embedder (C++ objects V8 manages for workerd) and ArrayBuffer
// backing stores from Runtime.getHeapUsage; the wasm linear memory from the
// WebAssembly.Memory objects themselves (V8 counts it in none of those).
// Runtime.queryObjects collects garbage first, so the sizes are of live data.
async function isolateMemory(inspector, workerName) {
  const targets = await (await fetch(`http://${inspector.host}/json`)).json();
  const target = targets.find((t) => t.id === `core:user:${workerName}`);
  if (!target) throw new Error(`no inspector target for ${workerName}: ${targets.map((t) => t.id).join(", ")}`);
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`inspector: cannot connect to ${target.webSocketDebuggerUrl}`));
  });
  const pending = new Map();
  const contexts = [];
  let next = 0;
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.id !== undefined) {
      const call = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) call.reject(new Error(`${call.method}: ${msg.error.message}`));
      else call.resolve(msg.result);
    } else if (msg.method === "Runtime.executionContextCreated") {
      contexts.push(msg.params.context.id);
    }
  };
  const call = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = ++next;
      pending.set(id, { resolve, reject, method });
      ws.send(JSON.stringify({ id, method, params }));
      setTimeout(() => pending.has(id) && reject(new Error(`${method}: no answer in 60 s`)), 60000).unref();
    });
  try {
    // Reports the existing contexts before it answers.
    await call("Runtime.enable");
    let wasm = 0;
    for (const contextId of contexts) {
      const proto = await call("Runtime.evaluate", {
        expression: "WebAssembly.Memory.prototype",
        contextId,
        objectGroup: "bench",
      });
      const found = await call("Runtime.queryObjects", {
        prototypeObjectId: proto.result.objectId,
        objectGroup: "bench",
      });
      const sum = await call("Runtime.callFunctionOn", {
        objectId: found.objects.objectId,
        functionDeclaration: "function () { return this.reduce((n, m) => n + m.buffer.byteLength, 0); }",
        returnByValue: true,
      });
      wasm += sum.result.value;
    }
    await call("Runtime.releaseObjectGroup", { objectGroup: "bench" });
    const heap = await call("Runtime.getHeapUsage");
    await call("Runtime.disable");
    return {
      js: heap.usedSize,
      embedder: heap.embedderHeapUsedSize ?? 0,
      backing: heap.backingStorageSize ?? 0,
      wasm,
    };
  } finally {
    ws.close();
  }
}

// ---- the two sides ---------------------------------------------------------------

function makeRound(roundId) {
  return {
    round_id: roundId,
    game_id: 1,
    game_slug: GAME,
    game_type: "multiplier",
    finished_at: new Date().toISOString(),
    extras: JSON.stringify({ point: (1 + Math.random() * 10).toFixed(2), ...(PAD && { pad: PAD }) }),
    timestamp: Date.now(),
  };
}

// Each side: { url, query, pids(), send(round, stamp) → error label or null,
// heap?() → isolate memory, stop() }. `send` calls `stamp` right before the
// request that delivers the round.
async function startOurs() {
  const secret = crypto.randomBytes(16).toString("hex");
  const admin = crypto.randomBytes(16).toString("hex");
  const { mf, url } = await startWorker(
    { INGEST_SECRET: secret, ADMIN_TOKEN: admin, HEARTBEAT_SECS: "15" },
    0,
    {
      inspect: HEAP,
      onRestart: () => fail("workerd crashed and Miniflare restarted it, dropping every client (its output is above)"),
    },
  );
  const stop = track(() => mf.dispose());
  const created = await fetch(`${url}/admin/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "bench", test: true }),
  });
  if (created.status !== 201) throw new Error(`key creation: ${created.status} ${await created.text()}`);
  const { key } = await created.json();
  const inspector = HEAP ? await mf.getInspectorURL() : null;
  return {
    url,
    query: `?api_key=${key}${process.env.BENCH_QUERY || ""}`,
    multiplexable: true,
    pids: workerdPids,
    async send(round, stamp) {
      const body = JSON.stringify({ events: [{ kind: "new", round }] });
      const t = Math.floor(Date.now() / 1000);
      const mac = crypto.createHmac("sha256", secret).update(`${t}.${body}`).digest("hex");
      stamp();
      const res = await fetch(`${url}/internal/rounds`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-signature": `t=${t},v1=${mac}` },
        body,
      });
      await res.text();
      return res.status === 200 ? null : `post ${res.status}`;
    },
    heap: inspector && (() => isolateMemory(inspector, "gamefeed")),
    // How the stream's sockets spread over the object and its relays.
    async spread() {
      const res = await fetch(`${url}/admin/streams/game/${GAME}`, { headers: { authorization: `Bearer ${admin}` } });
      const stats = await res.json();
      const relays = (stats.relays || []).map((r) => r.sockets);
      return `${stats.local_sockets ?? stats.sockets} on the object` + (relays.length ? ` + relays ${relays.join(", ")}` : "");
    },
    stop,
  };
}

async function startNode() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gamefeed-bench-"));
  const own = [track(() => fs.rmSync(dir, { recursive: true, force: true }))];
  const socket = path.join(dir, "redis.sock");
  // A unix socket and no TCP port at all (--port 0), nothing persisted.
  const redis = await spawnServer(
    "redis-server",
    REDIS_SERVER,
    ["--port", "0", "--unixsocket", socket, "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", dir],
    { ready: /ready to accept connections/i },
  );
  own.push(redis.stop);
  const server = await spawnServer("node-sse-server", process.execPath, [`${root}bench/node-sse-server.mjs`], {
    env: { ...process.env, REDIS_SOCKET: socket, GAMES: GAME, PORT: "0", HEARTBEAT_SECS: "15", RETRY_MS: "3000" },
    ready: /^ready (http:\/\/\S+)$/,
  });
  own.push(server.stop);
  const pub = new Redis(socket);
  pub.on("error", (err) => console.error(`bench publisher: ${err.message}`));
  own.push(track(() => pub.disconnect()));
  return {
    url: server.match[1],
    query: "",
    pids: () => [String(server.child.pid)],
    async send(round, stamp) {
      const json = JSON.stringify(round);
      await pub.set(`latest:${GAME}`, json);
      stamp();
      const receivers = await pub.publish(`rounds:${GAME}`, json);
      return receivers === 1 ? null : `publish reached ${receivers} subscribers`;
    },
    heap: null,
    async stop() {
      for (const stop of own.reverse()) await stop();
    },
  };
}

// ---- load ----------------------------------------------------------------------

// One SSE client: records when each round's `message` arrives.
function connect(target, agent, onRound) {
  return new Promise((resolve) => {
    const started = performance.now();
    let settled = false;
    let buffer = "";
    const path = target.multiplexable && MULTIPLEXED
      ? `/sse?games=${GAME}&${target.query.slice(1)}`
      : `/sse/${GAME}${target.query}`;
    const req = http.get(`${target.url}${path}`, { agent }, (res) => {
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
            const m = frame.match(/^id: (?:g:[a-z0-9-]+:)?(\d+)/m);
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

// Server fds per connected client, to skip a run the fd limit cannot hold
// instead of crashing the server halfway. Measured by each run; before the
// first one, what was seen here: workerd 1.20261117 holds every accepted
// connection twice (the socket and a dup of it), Node once.
const fdsPerClient = { ours: 2, node: 1 };
const FD_HEADROOM = 256;


async function run(sideName, n) {
  const needed = Math.ceil(n * fdsPerClient[sideName]) + FD_HEADROOM;
  if (needed > fdLimit()) {
    const reason = `not run: ~${needed} fds needed (${fdsPerClient[sideName].toFixed(1)} per client), limit ${fdLimit()}`;
    process.stderr.write(`bench: ${sideName}, ${n} clients: ${reason}\n`);
    return { side: sideName, n, skipped: reason };
  }
  const side = sideName === "ours" ? await startOurs() : await startNode();
  const errors = new Map();
  const count = (label) => errors.set(label, (errors.get(label) || 0) + 1);

  // Warm the server (OURS: isolate and object; NODE: the latest key) first.
  const warm = await side.send(makeRound(1), () => {});
  if (warm) count(warm);
  await sleep(500);
  const pids = side.pids();
  const baseKb = rssKb(pids);
  const baseFds = fdCount(pids);
  const heapFailed = (err) => {
    count(`heap: ${err.message}`);
    return null;
  };
  const baseHeap = side.heap ? await side.heap().catch(heapFailed) : null;

  const rounds = new Map(); // round id -> { t0, latencies, done }
  let received = 0;
  const clients = [];
  const onRound = (id, now) => {
    const round = rounds.get(id);
    if (!round) return;
    round.latencies.push(now - round.t0);
    received++;
    if (round.latencies.length === clients.length) round.done();
  };
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const connectMs = [];
  for (let i = 0; i < n; i += CONNECT_WAVE) {
    const wave = await Promise.all(
      Array.from({ length: Math.min(CONNECT_WAVE, n - i) }, () => connect(side, agent, onRound)),
    );
    for (const c of wave) {
      if (c.error) count(c.error);
      else {
        clients.push(c.req);
        connectMs.push(c.connectMs);
      }
    }
  }
  await sleep(2000);
  const connectedKb = rssKb(pids);
  const spread = side.spread ? await side.spread().catch((e) => `stats failed: ${e}`) : null;
  if (spread) process.stderr.write(`bench: ${sideName} sockets: ${spread}\n`);
  const serverFdsPerClient = (fdCount(pids) - baseFds) / Math.max(1, clients.length);
  if (clients.length >= 100) fdsPerClient[sideName] = serverFdsPerClient;
  const connectedHeap = side.heap ? await side.heap().catch(heapFailed) : null;

  const cpuStart = cpuTicks(pids);
  const wallStart = performance.now();
  for (let r = 0; r < ROUNDS; r++) {
    const id = 100 + r;
    const round = { t0: NaN, latencies: [] };
    const complete = new Promise((resolve) => (round.done = resolve));
    rounds.set(id, round);
    const err = await side.send(makeRound(id), () => (round.t0 = performance.now()));
    if (err) count(err);
    if (clients.length > 0) await within(complete, ROUND_TIMEOUT_MS);
    if (r < ROUNDS - 1) await sleep(GAP_MS);
  }
  const roundTicks = cpuTicks(pids) - cpuStart;
  const roundWallMs = performance.now() - wallStart;
  // The same wall time again without rounds: what the server burns on its
  // own (heartbeats, timers) with N clients. Late round frames land here too.
  await sleep(roundWallMs);
  const idleTicks = cpuTicks(pids) - cpuStart - roundTicks;

  const latencies = [...rounds.values()].flatMap((r) => r.latencies).sort((a, b) => a - b);
  // The first client of each round: the server's work before the fan-out.
  const firsts = [...rounds.values()]
    .filter((r) => r.latencies.length)
    .map((r) => Math.min(...r.latencies))
    .sort((a, b) => a - b);
  connectMs.sort((a, b) => a - b);
  for (const req of clients) req.destroy();
  agent.destroy();
  await side.stop();

  const perClientRound = Math.max(1, clients.length) * ROUNDS;
  const heapDelta =
    baseHeap && connectedHeap
      ? Object.fromEntries(Object.keys(baseHeap).map((k) => [k, connectedHeap[k] - baseHeap[k]]))
      : null;
  return {
    side: sideName,
    n,
    connected: clients.length,
    connectP50: quantile(connectMs, 0.5),
    connectP99: quantile(connectMs, 0.99),
    first: quantile(firsts, 0.5),
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    max: latencies[latencies.length - 1],
    lost: ROUNDS * clients.length - received,
    cpuUs: (roundTicks * 1e6) / CLK_TCK / perClientRound,
    idleCpuUs: (idleTicks * 1e6) / CLK_TCK / perClientRound,
    cpuPercent: (roundTicks / CLK_TCK / (roundWallMs / 1000)) * 100,
    baseMiB: baseKb / 1024,
    connectedMiB: connectedKb / 1024,
    kibPerClient: (connectedKb - baseKb) / Math.max(1, clients.length),
    fdsPerClient: serverFdsPerClient,
    heap: connectedHeap,
    heapDelta,
    errors,
  };
}

// ---- main ----------------------------------------------------------------------

function redisVersion() {
  try {
    return execFileSync(REDIS_SERVER, ["--version"], { encoding: "utf8" }).match(/v=(\S+)/)?.[1] ?? "?";
  } catch {
    return "?";
  }
}

async function main() {
  const results = [];
  for (const n of sizes) {
    for (const side of SIDES) {
      process.stderr.write(`bench: ${side}, ${n} clients, ${ROUNDS} rounds…\n`);
      results.push(await run(side, n));
    }
  }
  report(results);
}

function report(results) {
  const f = (x, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : "-");
  const get = (side, n) => results.find((r) => r.side === side && r.n === n);
  // One cell for all sides, "ours / Node" when both ran; "-" for a skipped run.
  const cell = (n, value) => SIDES.map((s) => (get(s, n).skipped ? "-" : value(get(s, n)))).join(" / ");
  const errorText = (r) => r.skipped ?? ([...r.errors].map(([k, v]) => `${k}×${v}`).join(" ") || "0");
  const fromRoot = createRequire(`${root}package.json`);
  const pkg = (name) => JSON.parse(fs.readFileSync(fromRoot.resolve(`${name}/package.json`), "utf8")).version;
  const relays = fs.readFileSync(`${workerDir}/index.js`, "utf8").includes("RelayObject");
  const label = { ours: "ours", node: "Node" };
  const sidesLabel = SIDES.map((s) => label[s]).join(" / ");

  console.log(`\nEdge fan-out, one game, ${ROUNDS} rounds ${GAP_MS} ms apart, load client on the same machine (${os.cpus().length} cores)`);
  console.log(
    `Versions: workerd ${versions.workerd} (Miniflare ${versions.miniflare}, its own socket, worker ${workerDir}` +
      `${relays ? ", RELAYS bound" : ""}) · Node competitor: Node ${process.version}, express ${pkg("express")}, ` +
      `ioredis ${pkg("ioredis")}, redis-server ${redisVersion()} (unix socket)`,
  );
  console.log("");
  console.log(
    `| clients | ${SIDES.map((s) => `${label[s]} p50 / p99 ms`).join(" | ")} | CPU µs per client per round ${sidesLabel} ` +
      `| KiB per client ${sidesLabel} | lost ${sidesLabel} | errors |`,
  );
  console.log(`|---:|${SIDES.map(() => "---:|").join("")}---:|---:|---:|---|`);
  for (const n of sizes) {
    const latency = SIDES.map((s) => (get(s, n).skipped ? "-" : `${f(get(s, n).p50)} / ${f(get(s, n).p99)}`));
    const errors = SIDES.map((s) => `${SIDES.length > 1 ? `${label[s]}: ` : ""}${errorText(get(s, n))}`).join("; ");
    console.log(
      `| ${n} | ${latency.join(" | ")} | ${cell(n, (r) => f(r.cpuUs, 2))} | ${cell(n, (r) => f(r.kibPerClient))} ` +
        `| ${cell(n, (r) => r.lost)} | ${errors} |`,
    );
  }

  const ran = results.filter((r) => !r.skipped);
  console.log("\nDetails. CPU: utime+stime of the server processes (every workerd process for ours, the one node process");
  console.log("for Node; not redis-server, not the load client) from the first round sent to the last one received;");
  console.log("idle: the same wall time again right after, clients connected, no rounds.");
  console.log(
    "| clients | side | connected | connect p50 / p99 ms | first client p50 ms | latency max ms | server CPU during rounds " +
      "| idle CPU µs per client per round | RSS before → with clients MiB | server fds per client |",
  );
  console.log("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const r of ran) {
    console.log(
      `| ${r.n} | ${label[r.side]} | ${r.connected} | ${f(r.connectP50)} / ${f(r.connectP99)} | ${f(r.first)} | ${f(r.max)} ` +
        `| ${f(r.cpuPercent, 0)} % | ${f(r.idleCpuUs, 2)} | ${f(r.baseMiB)} → ${f(r.connectedMiB)} | ${f(r.fdsPerClient, 2)} |`,
    );
  }

  const split = ran.filter((r) => r.heapDelta);
  if (split.length) {
    const perClient = (bytes, r) => f(bytes / 1024 / Math.max(1, r.connected), 2);
    console.log("\nOurs, memory per client split (inspector, after a GC): the isolate's (JS heap + embedder heap + ArrayBuffer");
    console.log("backing stores + wasm memory: what counts against its 128 MB) and the runtime's own (RSS growth minus the isolate's)");
    console.log(
      "| clients | RSS KiB per client | isolate KiB per client (JS / embedder / buffers / wasm) | runtime KiB per client " +
        "| isolate total with clients MiB |",
    );
    console.log("|---:|---:|---:|---:|---:|");
    for (const r of split) {
      const d = r.heapDelta;
      const isolate = d.js + d.embedder + d.backing + d.wasm;
      const total = r.heap.js + r.heap.embedder + r.heap.backing + r.heap.wasm;
      console.log(
        `| ${r.n} | ${f(r.kibPerClient)} | ${perClient(isolate, r)} (${perClient(d.js, r)} / ${perClient(d.embedder, r)} / ` +
          `${perClient(d.backing, r)} / ${perClient(d.wasm, r)}) | ${f(r.kibPerClient - isolate / 1024 / Math.max(1, r.connected), 2)} ` +
          `| ${f(total / 1048576)} |`,
      );
    }
  }
}

try {
  await main();
  await stopAll();
} catch (err) {
  fail(err);
}
