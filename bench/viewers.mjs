// Viewer counts (not a test): N clients of the feed's own client
// (@gamefeed/client) hold one game's stream of the built Worker under
// Miniflare with the deployed settings (VIEWERS_SECS 10, HEARTBEAT_SECS 15).
// Measured: how long after the last client is live every client has been
// told N viewers, and after half of them leave, how long until the others
// are told N/2; and whether the figure told is exact.
//   BENCH_CLIENTS=1000 node bench/viewers.mjs
import { performance } from "node:perf_hooks";

import { GameFeed } from "../client/dist/index.js";
import { benchSecrets, createKey, seedRound, startWorker } from "./miniflare.mjs";

const N = Number(process.env.BENCH_CLIENTS || 1000);
const WAVE = 250;
const TIMEOUT_MS = 180_000;

const secrets = benchSecrets();
const { mf, url } = await startWorker(secrets, 0);
try {
  const key = await createKey(url, secrets, "viewers");
  await seedRound(url, secrets);

  const feeds = [];
  const told = [];
  for (let i = 0; i < N; i += WAVE) {
    await Promise.all(Array.from({ length: Math.min(WAVE, N - i) }, () => new Promise((ready) => {
      const feed = new GameFeed({ url, games: ["crash"], apiKey: key });
      const index = feeds.push(feed) - 1;
      feed.on("viewers", ({ viewers }) => (told[index] = viewers));
      feed.on("state", (s) => s === "live" && ready());
    })));
  }
  const until = async (want, clients) => {
    const start = performance.now();
    while (!clients.every((i) => told[i] === want)) {
      if (performance.now() - start > TIMEOUT_MS) {
        const wrong = clients.filter((i) => told[i] !== want).map((i) => told[i]);
        throw new Error(`${wrong.length} clients not told ${want}: ${[...new Set(wrong)].join(",")}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return performance.now() - start;
  };
  const all = feeds.map((_, i) => i);
  const joined = await until(N, all);
  const half = Math.floor(N / 2);
  for (const feed of feeds.slice(half)) feed.close();
  const stay = all.slice(0, half);
  const left = await until(half, stay);
  const answer = await (await fetch(`${url}/api/games/crash/viewers`, { headers: { authorization: `Bearer ${key}` } })).json();
  for (const feed of feeds) feed.close();
  console.log(`Viewer counts: ${N} @gamefeed/client clients of one game, VIEWERS_SECS 10, HEARTBEAT_SECS 15`);
  console.log("| event | every client told | delay after the last change |");
  console.log("|---|---|---:|");
  console.log(`| ${N} joined | ${N} | ${(joined / 1000).toFixed(1)} s |`);
  console.log(`| ${N - half} left | ${half} | ${(left / 1000).toFixed(1)} s |`);
  console.log(`GET /api/games/crash/viewers afterwards: ${JSON.stringify(answer)} (want ${half})`);
} finally {
  await mf.dispose();
}
process.exit(0);
