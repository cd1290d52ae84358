// Reconnect storm (not a test): N clients that behave like `EventSource`
// (they wait the server's `retry:` after a drop and resume with
// `Last-Event-ID`) hold one game's stream of the built Worker under
// Miniflare (its own socket); the admin route ends every stream at once,
// as a deploy or an object restart does. Measured per client: how long
// from the cut until its stream is open again (first byte of the resumed
// response), and the connects per second the Worker sees. Run with the
// spread `retry:` (RETRY_JITTER=on, the default) and without it, side by
// side, and a third time with the feed's own client (@gamefeed/client,
// client/dist: full-jitter backoff from the spread `retry:`, resume from
// Last-Event-ID) in place of the EventSource-like one.
//   BENCH_CLIENTS=5000 node bench/storm.mjs
import { benchSecrets, createKey, seedRound, startWorker } from "./miniflare.mjs";
import http from "node:http";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";

import { GameFeed } from "../client/dist/index.js";

const N = Number(process.env.BENCH_CLIENTS || 5000);
const WAVE = 250;
const TIMEOUT_MS = 120_000;

function quantile(sorted, q) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function run(jitter, kind = "eventsource") {
  const secrets = benchSecrets();
  const admin = secrets.ADMIN_TOKEN;
  const { mf, url } = await startWorker({ ...secrets, HEARTBEAT_SECS: "15", RETRY_JITTER: jitter }, 0);
  try {
    const key = await createKey(url, secrets, "storm");
    await seedRound(url, secrets);

    const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
    const connects = []; // times (ms) the Worker was asked for a stream after the cut
    let cutAt = null;
    const resumed = [];
    const errors = new Map();
    const count = (what) => errors.set(what, (errors.get(what) || 0) + 1);
    let open = 0;

    // The feed's own client: its connects counted through its `fetch`, its
    // resume when it says it is live again.
    function feedClient() {
      return new Promise((ready) => {
        const counting = (...args) => {
          if (cutAt !== null) connects.push(performance.now());
          return fetch(...args);
        };
        const feed = new GameFeed({ url, games: ["crash"], apiKey: key, fetch: counting });
        feeds.push(feed);
        let seen = false;
        feed.on("state", (state) => {
          if (state !== "live") return;
          open += 1;
          if (!seen) {
            seen = true;
            return ready();
          }
          resumed.push(performance.now() - cutAt);
        });
        feed.on("error", (err) => count(err.code));
      });
    }
    const feeds = [];

    function client() {
      let lastId = null;
      let retry = 3000;
      const connect = (afterCut) => {
        if (afterCut) connects.push(performance.now());
        const headers = lastId ? { "last-event-id": lastId } : {};
        return new Promise((ready) => {
          const req = http.get(`${url}/sse/crash?api_key=${key}`, { agent, headers }, (res) => {
            if (res.statusCode !== 200) {
              count(`status ${res.statusCode}`);
              res.resume();
              res.on("end", () => setTimeout(() => connect(afterCut), retry));
              return ready();
            }
            let first = true;
            let buffer = "";
            res.setEncoding("utf8");
            res.on("data", (chunk) => {
              if (first) {
                first = false;
                open += 1;
                if (afterCut) resumed.push(performance.now() - cutAt);
                ready();
              }
              buffer += chunk;
              let end;
              while ((end = buffer.indexOf("\n\n")) >= 0) {
                const frame = buffer.slice(0, end);
                buffer = buffer.slice(end + 2);
                for (const line of frame.split("\n")) {
                  if (line.startsWith("retry: ")) retry = Number(line.slice(7));
                  if (line.startsWith("id: ")) lastId = line.slice(4);
                }
              }
            });
            res.on("end", () => {
              open -= 1;
              setTimeout(() => connect(true), retry);
            });
            res.on("error", () => {});
          });
          req.on("error", (err) => {
            count(err.code || err.message);
            setTimeout(() => connect(afterCut), retry);
          });
        });
      };
      return connect(false);
    }

    const make = kind === "client" ? feedClient : client;
    for (let i = 0; i < N; i += WAVE) {
      await Promise.all(Array.from({ length: Math.min(WAVE, N - i) }, make));
    }
    await sleep(1000);
    cutAt = performance.now();
    const cut = await fetch(`${url}/admin/streams/game/crash/disconnect`, {
      method: "POST",
      headers: { authorization: `Bearer ${admin}` },
    });
    if (cut.status !== 200) throw new Error(`disconnect: ${cut.status}`);
    const deadline = performance.now() + TIMEOUT_MS;
    while (resumed.length < N && performance.now() < deadline) await sleep(100);
    const sorted = resumed.slice().sort((a, b) => a - b);
    // Connects per second after the cut: the busiest second, and over how
    // many seconds they came.
    const perSecond = new Map();
    for (const at of connects) {
      const s = Math.floor((at - cutAt) / 1000);
      perSecond.set(s, (perSecond.get(s) || 0) + 1);
    }
    const busiest = Math.max(0, ...perSecond.values());
    const seconds = perSecond.size;
    agent.destroy();
    for (const feed of feeds) feed.close();
    return {
      kind,
      jitter,
      resumed: resumed.length,
      p50: quantile(sorted, 0.5),
      p99: quantile(sorted, 0.99),
      max: sorted[sorted.length - 1],
      busiest,
      seconds,
      errors: [...errors].map(([k, v]) => `${k}: ${v}`).join(", ") || "none",
    };
  } finally {
    await mf.dispose();
  }
}

const rows = [];
for (const [jitter, kind] of [["off", "eventsource"], ["on", "eventsource"], ["on", "client"]]) {
  process.stderr.write(`storm: ${N} ${kind} clients, RETRY_JITTER=${jitter}…\n`);
  rows.push(await run(jitter, kind));
}
console.log(`Reconnect storm: ${N} clients of one game cut at once (admin disconnect), RETRY_MS 3000`);
console.log("| client | retry: | resumed | p50 s | p99 s | max s | busiest second (connects) | seconds with connects | errors |");
console.log("|---|---|---:|---:|---:|---:|---:|---:|---|");
for (const r of rows) {
  const s = (ms) => (ms / 1000).toFixed(1);
  const who = r.kind === "client" ? "@gamefeed/client" : "EventSource-like";
  console.log(
    `| ${who} | ${r.jitter === "on" ? "spread 1–6 s" : "fixed 3 s"} | ${r.resumed}/${N} | ${s(r.p50)} | ${s(r.p99)} | ${s(r.max)} | ${r.busiest} | ${r.seconds} | ${r.errors} |`,
  );
}
