// @gamefeed/client against the real Worker (workerd under wrangler dev),
// driven by tests/tests/client_node.rs:
//   node client/test/live.mjs <scenario>
// with GAMEFEED_URL, GAMEFEED_KEY and GAMEFEED_ADMIN in the environment.
// Rounds are stored by the Rust side (it signs ingest batches): the script
// prints {"ask": …} on stdout and waits for one line back on stdin. It
// prints {"result": …} lines for the Rust side to check too, and exits
// non-zero with the failed check on stderr.
import assert from "node:assert/strict";

import { GameFeed } from "../dist/index.js";
import { ask, result, run, store } from "./driver.mjs";

const url = process.env.GAMEFEED_URL;
const key = process.env.GAMEFEED_KEY;
const admin = process.env.GAMEFEED_ADMIN;
const TIMEOUT = 60_000;

/** Everything a feed emits, with a way to wait for a condition on it. */
function watch(feed) {
  const log = { rounds: [], updates: [], states: [], errors: [], lives: [], viewers: [], resets: [] };
  const waiters = [];
  const changed = () => {
    for (const w of [...waiters]) {
      if (w.test()) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  feed.on("round", (round, info) => (log.rounds.push({ ...info, round: round.round_id }), changed()));
  feed.on("update", (round, info) => (log.updates.push({ ...info, round: round.round_id }), changed()));
  feed.on("state", (state) => (log.states.push(state), changed()));
  feed.on("error", (error) => (log.errors.push({ ...error, at: Date.now() }), changed()));
  feed.on("live", (live) => (log.lives.push(live), changed()));
  feed.on("viewers", (v) => (log.viewers.push(v), changed()));
  feed.on("reset", (r) => (log.resets.push(r), changed()));
  log.until = (test, what) =>
    new Promise((resolve, reject) => {
      if (test()) return resolve();
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}: ${JSON.stringify(log)}`)), TIMEOUT);
      waiters.push({ test, resolve: () => (clearTimeout(timer), resolve()) });
    });
  log.ids = (stream) => log.rounds.filter((r) => !stream || r.stream === stream).map((r) => r.round);
  return log;
}

/** The last viewer count a feed was told for `stream`. */
const lastViewers = (log, stream) => log.viewers.filter((v) => v.stream === stream).at(-1)?.viewers;

const scenarios = {
  /** Rewind, the live flag, a resume across a cut, a game not known yet, a fatal refusal. */
  async basics() {
    await store([1, 2, 3, 4, 5]);
    const feed = new GameFeed({ url, games: ["crash"], apiKey: key, rewind: 3 });
    const log = watch(feed);
    await log.until(() => feed.state === "live", "live");
    assert.deepEqual(log.rounds.map((r) => [r.round, r.live, r.stream]), [
      [3, false, "game:crash"],
      [4, false, "game:crash"],
      [5, false, "game:crash"],
    ]);
    assert.deepEqual(log.lives, [{ stream: "game:crash", replayed: 3 }]);
    await store([6]);
    await log.until(() => log.ids().includes(6), "round 6");
    assert.equal(log.rounds.at(-1).live, true, "news is live");

    // The stream is cut; two rounds are stored before the client is back.
    await ask({ disconnect: "game/crash" });
    await store([7, 8]);
    await log.until(() => log.ids().includes(8), "rounds 7 and 8 after the cut");
    await log.until(() => feed.state === "live", "live again");
    assert.deepEqual(log.ids(), [3, 4, 5, 6, 7, 8], "no gap, no repeat");
    assert.deepEqual(log.states, ["live", "reconnecting", "live"]);
    feed.close();
    assert.equal(feed.state, "closed");

    // Several streams on one connection: each member's rewind and `live`.
    const both = new GameFeed({ url, games: ["crash"], types: ["multiplier"], apiKey: key, rewind: 2 });
    const bothLog = watch(both);
    await bothLog.until(() => both.state === "live", "both live");
    assert.deepEqual(bothLog.ids("game:crash"), [7, 8]);
    assert.deepEqual(bothLog.ids("type:multiplier"), [7, 8]);
    await store([9]);
    await bothLog.until(() => bothLog.ids("type:multiplier").includes(9), "round 9 on both");
    assert.deepEqual(bothLog.ids("game:crash"), [7, 8, 9]);
    both.close();

    // A key the server does not know: one request, then closed for good.
    let requests = 0;
    const counting = (...args) => (requests++, fetch(...args));
    const wrong = new GameFeed({ url, games: ["crash"], apiKey: "sk_live_" + "0".repeat(32), fetch: counting });
    const wrongLog = watch(wrong);
    await wrongLog.until(() => wrong.state === "closed", "closed");
    assert.equal(wrongLog.errors.length, 1);
    assert.equal(wrongLog.errors[0].code, "invalid_api_key");
    assert.equal(wrongLog.errors[0].status, 401);
    assert.equal(wrongLog.errors[0].fatal, true);
    assert.equal(requests, 1);
    // A game with no round yet is 404: retried, not fatal; its first
    // round then arrives.
    const early = new GameFeed({ url, games: ["newgame"], apiKey: key });
    const earlyLog = watch(early);
    await earlyLog.until(() => earlyLog.errors.length > 0, "the 404");
    assert.equal(earlyLog.errors[0].code, "not_found");
    assert.equal(earlyLog.errors[0].fatal, false);
    await store([10], "newgame", "dice");
    await earlyLog.until(() => earlyLog.ids().includes(10), "the new game's first round");
    early.close();
    result({ basics: "ok", states: log.states });
  },

  /** A browser token that expires mid-stream is renewed; nothing is missed. */
  async token() {
    let minted = 0;
    const token = async () => {
      minted++;
      const response = await fetch(`${url}/api/tokens`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ ttl: 2, games: ["crash"] }),
      });
      assert.equal(response.status, 201);
      return (await response.json()).token;
    };
    const feed = new GameFeed({ url, games: ["crash"], token });
    const log = watch(feed);
    await log.until(() => feed.state === "live", "live");
    // Rounds keep coming while the first token expires and its stream ends.
    let id = 100;
    while (minted < 2 || feed.state !== "live") {
      await store([++id]);
      await log.until(() => log.ids().includes(id), `round ${id}`);
    }
    await store([++id]);
    await log.until(() => log.ids().includes(id), `round ${id}`);
    const want = Array.from({ length: id - 100 }, (_, i) => 101 + i);
    assert.deepEqual(log.ids().filter((r) => r > 100), want, "every round once");
    assert.ok(log.errors.some((e) => e.code === "invalid_token" && !e.fatal), JSON.stringify(log.errors));
    feed.close();
    result({ token: "ok", minted, rounds: want.length });
  },

  /** A 429 is waited out as Retry-After says; then the stream works. */
  async limits() {
    // The key may hold one stream: this one holds it.
    const holder = new AbortController();
    const held = await fetch(`${url}/sse/crash`, { headers: { authorization: `Bearer ${key}` }, signal: holder.signal });
    assert.equal(held.status, 200);
    const feed = new GameFeed({ url, games: ["crash"], apiKey: key });
    const log = watch(feed);
    await log.until(() => log.errors.length > 0, "the refusal");
    const refused = log.errors[0];
    assert.equal(refused.code, "too_many_streams");
    assert.equal(refused.status, 429);
    assert.equal(refused.fatal, false);
    assert.equal(refused.retryAfter, 5);
    holder.abort();
    await log.until(() => feed.state === "live", "live once the slot is free");
    const waited = Date.now() - refused.at;
    assert.ok(waited >= 5000, `Retry-After honoured: came back after ${waited} ms`);
    await store([200]);
    await log.until(() => log.ids().includes(200), "round 200");
    feed.close();
    result({ limits: "ok", waited });
  },

  /** Viewer counts are the feeds open, told to each of them. */
  async viewers() {
    const open = (n) => Array.from({ length: n }, () => new GameFeed({ url, games: ["crash"], apiKey: key }));
    const feeds = open(5);
    const logs = feeds.map(watch);
    await Promise.all(logs.map((log) => log.until(() => lastViewers(log, "game:crash") === 5, "5 viewers")));
    const stats = await (await fetch(`${url}/admin/streams/game/crash`, { headers: { authorization: `Bearer ${admin}` } })).json();
    feeds[3].close();
    feeds[4].close();
    await Promise.all(logs.slice(0, 3).map((log) => log.until(() => lastViewers(log, "game:crash") === 3, "3 viewers")));
    const response = await fetch(`${url}/api/games/crash/viewers`, { headers: { authorization: `Bearer ${key}` } });
    assert.deepEqual(await response.json(), { viewers: 3 });
    for (const feed of feeds) feed.close();
    result({ viewers: "ok", relays: stats.relays.length });
  },
};

await run(scenarios);
