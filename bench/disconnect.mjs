// How soon the Worker notices a client that left (not a test): the built
// Worker under Miniflare on its own socket (no proxy in front), one client
// of one game with a socket of its own (FEED_GROUP=1), HEARTBEAT_SECS=15;
// the client's connection is destroyed, and the stream object's socket
// count is polled until the client's socket is gone. The Worker listens for
// the request's abort signal (`enable_request_signal`) and for its body
// being cancelled; whichever the runtime gives first ends the client and
// gives its slot back, else its next heartbeat write does.
//   node bench/disconnect.mjs
import { benchSecrets, createKey, seedRound, startWorker } from "./miniflare.mjs";
import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";

const secrets = benchSecrets();
const admin = secrets.ADMIN_TOKEN;
const { mf, url } = await startWorker({ ...secrets, HEARTBEAT_SECS: "15", FEED_GROUP: "1" }, 0);
try {
  const key = await createKey(url, secrets, "probe");
  await seedRound(url, secrets);
  const sockets = async () => (await (await fetch(`${url}/admin/streams/game/crash`, { headers: { authorization: `Bearer ${admin}` } })).json()).sockets;
  for (const how of ["first client", "second client"]) {
    const req = http.get(`${url}/sse/crash?api_key=${key}`);
    const res = await new Promise((r) => req.on("response", r));
    await new Promise((r) => res.once("data", r));
    await sleep(500);
    console.log(how, "sockets while open:", await sockets());
    const t0 = Date.now();
    req.destroy();
    for (;;) {
      const n = await sockets();
      if (n === 0) { console.log(how, "socket released after", Date.now() - t0, "ms"); break; }
      if (Date.now() - t0 > 40000) { console.log(how, "still", n, "after 40 s"); break; }
      await sleep(100);
    }
  }
} finally {
  await mf.dispose();
}
