// The cost of one Prometheus scrape of the edge (not a test): the built
// Worker under Miniflare (the workerd wrangler brings), 4 games of 3 types,
// and N clients of the feed's own client (@gamefeed/client) spread over
// them. `GET /admin/metrics` is timed with no client and again once every
// client is counted; what it costs in Durable Object calls is fixed by
// construction (the directory twice, each stream once: 2 + 7 here).
//   BENCH_CLIENTS=1000 node bench/scrape.mjs
import { performance } from "node:perf_hooks";

import { GameFeed } from "../client/dist/index.js";
import { benchSecrets, createKey, seedRound, startWorker } from "./miniflare.mjs";

const N = Number(process.env.BENCH_CLIENTS || 1000);
const SCRAPES = 30;
const WAVE = 250;
const GAMES = [["crash", "multiplier"], ["crash-turbo", "multiplier"], ["double", "roulette"], ["dice", "dice"]];

const secrets = benchSecrets();
const { mf, url } = await startWorker(secrets, 0);
const auth = { authorization: `Bearer ${secrets.ADMIN_TOKEN}` };

async function scrapes() {
  const times = [];
  let bytes = 0;
  let text = "";
  for (let i = 0; i < SCRAPES; i++) {
    const start = performance.now();
    const response = await fetch(`${url}/admin/metrics`, { headers: auth });
    text = await response.text();
    times.push(performance.now() - start);
    if (response.status !== 200) throw new Error(`scrape: ${response.status} ${text}`);
    bytes = text.length;
  }
  times.sort((a, b) => a - b);
  const at = (q) => times[Math.min(times.length - 1, Math.floor(times.length * q))];
  return { p50: at(0.5), p99: at(0.99), max: times[times.length - 1], bytes, text };
}

const viewersIn = (text) =>
  [...text.matchAll(/^gamefeed_viewers\{stream="game:[^"]+"\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);

try {
  const key = await createKey(url, secrets, "scrape");
  let id = 1;
  for (const [game, type] of GAMES) await seedRound(url, secrets, id++, game, type);
  const idle = await scrapes();
  const streams = [...idle.text.matchAll(/^gamefeed_rounds_stored_total\{stream="([^"]+)"\}/gm)].map((m) => m[1]);

  const feeds = [];
  for (let i = 0; i < N; i += WAVE) {
    await Promise.all(Array.from({ length: Math.min(WAVE, N - i) }, (_, j) => new Promise((ready) => {
      const feed = new GameFeed({ url, games: [GAMES[(i + j) % GAMES.length][0]], apiKey: key });
      feeds.push(feed);
      feed.on("state", (s) => s === "live" && ready());
    })));
  }
  const start = performance.now();
  for (;;) {
    const text = await (await fetch(`${url}/admin/metrics`, { headers: auth })).text();
    if (viewersIn(text) === N) break;
    if (performance.now() - start > 120_000) throw new Error(`viewers never reached ${N}: ${viewersIn(text)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const busy = await scrapes();
  for (const feed of feeds) feed.close();

  console.log(`One GET /admin/metrics: ${GAMES.length} games, ${streams.length} streams (${streams.join(", ")}), ${SCRAPES} scrapes each`);
  console.log(`Durable Object calls per scrape: ${2 + streams.length} (directory: games and the fail-open total; one per stream; no relay)`);
  console.log("| clients open | p50 ms | p99 ms | max ms | bytes |");
  console.log("|---:|---:|---:|---:|---:|");
  for (const [n, r] of [[0, idle], [N, busy]]) {
    console.log(`| ${n} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.max.toFixed(1)} | ${r.bytes} |`);
  }
  console.log(`viewers in the last scrape: ${viewersIn(busy.text)} (want ${N})`);
} finally {
  await mf.dispose();
}
