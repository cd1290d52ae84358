// The competitor of the edge benchmark: an SSE fan-out server written the way
// such servers usually are. One Node process, Express 5, ioredis, ONE shared
// Redis subscriber connection with a channel per game; every published round
// is written straight to every client's response. No auth, no per-client
// queue, no backpressure handling: the common shape, not a tuned one.
//
//   REDIS_SOCKET=/path/redis.sock GAMES=crash PORT=0 node bench/node-sse-server.mjs
// prints `ready http://127.0.0.1:<port>` once subscribed and listening
// (PORT 0: a free port the kernel picks). REDIS_URL works instead of
// REDIS_SOCKET. Publish with `SET latest:<game> <json>` then
// `PUBLISH rounds:<game> <json>`; the JSON needs a `round_id`.
import express from "express";
import { Redis } from "ioredis";

const redisTarget = process.env.REDIS_SOCKET || process.env.REDIS_URL || "redis://127.0.0.1:6379";
const games = (process.env.GAMES || "crash").split(",").filter(Boolean);
const port = Number(process.env.PORT || 0);
const HEARTBEAT_MS = Number(process.env.HEARTBEAT_SECS || 15) * 1000;
const RETRY_MS = Number(process.env.RETRY_MS || 3000);

// A subscribed connection can run no other command: GETs go on a second one.
const redis = new Redis(redisTarget);
const sub = new Redis(redisTarget);
for (const [name, conn] of [["redis", redis], ["subscriber", sub]]) {
  conn.on("error", (err) => console.error(`${name}: ${err.message}`));
}

const clients = new Map(games.map((game) => [game, new Set()]));

sub.on("message", (channel, message) => {
  const targets = clients.get(channel.slice("rounds:".length));
  if (!targets) return;
  let round;
  try {
    round = JSON.parse(message);
  } catch {
    console.error(`${channel}: not JSON, dropped`);
    return;
  }
  // One frame string for all clients; the message is forwarded verbatim.
  const frame = `id: ${round.round_id}\nevent: message\ndata: ${message}\n\n`;
  for (const res of targets) res.write(frame);
});

const app = express();

app.get("/sse/:game", async (req, res) => {
  const targets = clients.get(req.params.game);
  if (!targets) {
    res.status(404).json({ error: "unknown game" });
    return;
  }
  let heartbeat;
  let closed = false;
  // Registered before the first await, so a client that leaves while the
  // latest round is being read leaves nothing behind.
  res.on("close", () => {
    closed = true;
    clearInterval(heartbeat);
    targets.delete(res);
  });
  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    connection: "keep-alive",
  });
  res.write(`retry: ${RETRY_MS}\n\n`);
  let latest = null;
  try {
    latest = await redis.get(`latest:${req.params.game}`);
  } catch (err) {
    console.error(`latest:${req.params.game}: ${err.message}`);
  }
  if (closed) return;
  res.write(`event: initial\ndata: ${latest ?? "null"}\n\n`);
  targets.add(res);
  heartbeat = setInterval(() => res.write(`: hb ${Math.floor(Date.now() / 1000)}\n\n`), HEARTBEAT_MS);
});

await sub.subscribe(...games.map((game) => `rounds:${game}`));
const server = app.listen(port, "127.0.0.1", (err) => {
  if (err) {
    console.error(`listen: ${err.message}`);
    process.exit(1);
  }
  console.log(`ready http://127.0.0.1:${server.address().port}`);
});

const stop = () => {
  server.close();
  server.closeAllConnections();
  redis.disconnect();
  sub.disconnect();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
