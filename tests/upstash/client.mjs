// Upstash's own JS client (@upstash/redis) against upstash-local: the proof
// that our endpoint speaks the protocol as Upstash does.
//
//   node tests/upstash/client.mjs <url> <token>
//
// Run by tests/tests/upstash_local.rs. Prints one line per check and a
// summary; exits non-zero when any check failed.

import assert from "node:assert/strict";
import { Redis } from "@upstash/redis";

const [url, token] = process.argv.slice(2);
if (!url || !token) {
  console.error("usage: node tests/upstash/client.mjs <url> <token>");
  process.exit(2);
}

// Default settings: base64 response encoding, automatic deserialization.
const redis = new Redis({ url, token, enableTelemetry: false });
// Plain JSON strings in the replies.
const plain = new Redis({ url, token, responseEncoding: false, enableTelemetry: false });

// Keys of this run only, so a second run against the same Redis starts clean.
const run = `t${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
const key = (name) => `${run}:${name}`;
const TRICKY = "a/b c/ü€😀";

let passed = 0;
const failed = [];

async function check(name, body) {
  try {
    await body();
    passed += 1;
    console.log(`ok   ${name}`);
  } catch (err) {
    failed.push(name);
    console.log(`FAIL ${name}\n     ${String(err?.stack ?? err).replaceAll("\n", "\n     ")}`);
  }
}

await check("strings with slashes, spaces and non-ASCII (base64 replies)", async () => {
  const k = key(TRICKY);
  assert.equal(await redis.set(k, TRICKY), "OK");
  assert.equal(await redis.get(k), TRICKY);
  assert.equal(await redis.strlen(k), Buffer.byteLength(TRICKY));
  // A value that is itself "OK" comes back as "OK" too (base64 "T0s=").
  assert.equal(await redis.set(key("ok"), "OK"), "OK");
  assert.equal(await redis.get(key("ok")), "OK");
  assert.equal(await redis.get(key("missing")), null);
  assert.equal(await redis.ping(), "PONG");
});

await check("the same without base64 (responseEncoding: false)", async () => {
  const k = key(`plain ${TRICKY}`);
  assert.equal(await plain.set(k, TRICKY), "OK");
  assert.equal(await plain.get(k), TRICKY);
  assert.deepEqual(await plain.mget(k, key("missing")), [TRICKY, null]);
  await plain.hset(key("plain-h"), { "f/1": TRICKY });
  assert.deepEqual(await plain.hgetall(key("plain-h")), { "f/1": TRICKY });
});

await check("numbers: incr, incrby, incrbyfloat", async () => {
  const k = key("counter");
  assert.equal(await redis.incr(k), 1);
  assert.equal(await redis.incrby(k, 41), 42);
  assert.equal(await redis.incrbyfloat(k, 1.5), 43.5);
  assert.equal(await redis.incrbyfloat(k, -0.25), 43.25);
  assert.equal(await redis.get(k), 43.25);
  assert.equal(await redis.decr(key("neg")), -1);
});

await check("base64 replies in arrays: mget, hgetall, lrange", async () => {
  await redis.mset({ [key("m1")]: TRICKY, [key("m2")]: "plain" });
  assert.deepEqual(await redis.mget(key("m1"), key("missing"), key("m2")), [TRICKY, null, "plain"]);
  assert.equal(await redis.hset(key("h"), { "f/1": TRICKY, "f 2": "v 2", n: 7 }), 3);
  assert.deepEqual(await redis.hgetall(key("h")), { "f/1": TRICKY, "f 2": "v 2", n: 7 });
  assert.equal(await redis.hget(key("h"), "f/1"), TRICKY);
  assert.equal(await redis.rpush(key("l"), "a/b", "ü", "😀", "OK"), 4);
  assert.deepEqual(await redis.lrange(key("l"), 0, -1), ["a/b", "ü", "😀", "OK"]);
});

await check("pipeline: a failing command in the middle, the rest still runs", async () => {
  const k = key("p");
  const failing = () =>
    redis.pipeline().set(k, "not a number").incr(k).get(k).set(key("p-after"), "ran");
  // By default exec() rejects, naming the failing command…
  await assert.rejects(failing().exec(), (err) => {
    assert.match(err.message, /^Command 2 \[ incr \] failed: ERR value is not an integer or out of range/);
    return true;
  });
  // …but every command ran.
  assert.equal(await redis.get(key("p-after")), "ran");
  // keepErrors: one entry per command, the error in its own.
  const results = await failing().exec({ keepErrors: true });
  assert.equal(results.length, 4);
  assert.deepEqual(results[0], { error: undefined, result: "OK" });
  assert.equal(results[1].error, "ERR value is not an integer or out of range");
  assert.deepEqual(results[2], { error: undefined, result: "not a number" });
  assert.deepEqual(results[3], { error: undefined, result: "OK" });
  // A pipeline that succeeds: plain results, base64-decoded.
  assert.deepEqual(await redis.pipeline().set(k, TRICKY).get(k).incr(key("pc")).exec(), ["OK", TRICKY, 1]);
});

await check("multi-exec", async () => {
  const k = key("tx");
  const results = await redis.multi().set(k, 1).incr(k).get(k).lrange(key("l"), 0, 1).exec();
  assert.deepEqual(results, ["OK", 2, 2, ["a/b", "ü"]]);
  // A command failing at run time fails exec(); the others ran (Redis
  // transactions do not roll back).
  await assert.rejects(
    redis.multi().set(k, "text").incr(k).set(key("tx-after"), "ran").exec(),
    /Command 2 \[ incr \] failed: ERR value is not an integer/,
  );
  assert.equal(await redis.get(key("tx-after")), "ran");
  const kept = await redis.multi().set(k, "text").incr(k).exec({ keepErrors: true });
  assert.equal(kept[0].result, "OK");
  assert.equal(kept[1].error, "ERR value is not an integer or out of range");
});

await check("EVAL and EVALSHA (scriptLoad)", async () => {
  const script = "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) * 2, redis.call('SET', KEYS[1], ARGV[1])}";
  const k = key("lua/ü");
  // The status reply inside the array is base64-encoded like any string.
  assert.deepEqual(await redis.eval(script, [k], [TRICKY, 21]), [k, TRICKY, 42, "OK"]);
  assert.equal(await redis.get(k), TRICKY);
  const sha = await redis.scriptLoad(script);
  assert.match(sha, /^[0-9a-f]{40}$/);
  assert.deepEqual(await redis.evalsha(sha, [k], ["x", 1]), [k, "x", 2, "OK"]);
  assert.deepEqual(await redis.scriptExists(sha, "0".repeat(40)), [1, 0]);
  assert.equal(await redis.eval("return redis.call('SET', KEYS[1], 'v')", [k], []), "OK");
  await assert.rejects(redis.evalsha("0".repeat(40), [], []), /NOSCRIPT/);
  await assert.rejects(redis.eval("return redis.error_reply('my failure')", [], []), /my failure/);
});

await check("sorted sets: zadd, zrange with scores, zremrangebyscore, zcard", async () => {
  const k = key("z");
  assert.equal(
    await redis.zadd(k, { score: 1, member: "a" }, { score: 2.5, member: TRICKY }, { score: 3, member: "c" }),
    3,
  );
  assert.deepEqual(await redis.zrange(k, 0, -1, { withScores: true }), ["a", 1, TRICKY, 2.5, "c", 3]);
  assert.deepEqual(await redis.zrange(k, 2, 3, { byScore: true }), [TRICKY, "c"]);
  assert.equal(await redis.zscore(k, TRICKY), 2.5);
  assert.equal(await redis.zremrangebyscore(k, 0, 1.5), 1);
  assert.equal(await redis.zcard(k), 2);
  assert.deepEqual(await redis.zrange(k, 0, -1), [TRICKY, "c"]);
});

await check("a wrong token is rejected", async () => {
  const wrong = new Redis({ url, token: "not-the-token", retry: false, enableTelemetry: false });
  await assert.rejects(wrong.get(key("x")), (err) => {
    assert.match(err.message, /^Unauthorized/);
    return true;
  });
});

await check("a malformed body: 400 with a JSON error", async () => {
  for (const body of ["not json", "[]", '{"a":1}', '["GET", null]', '[["GET","k"]]']) {
    const res = await fetch(url, { method: "POST", headers: { authorization: `Bearer ${token}` }, body });
    assert.equal(res.status, 400, `status for ${body}`);
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
    const json = await res.json();
    assert.equal(typeof json.error, "string", `error for ${body}`);
    assert.ok(json.error.length > 0);
  }
});

await check("the path form: /set/<key>/<value>, /get/<key>", async () => {
  const k = key("path/ü x");
  const auth = { authorization: `Bearer ${token}` };
  const set = await fetch(`${url}/set/${encodeURIComponent(k)}/${encodeURIComponent(TRICKY)}`, { headers: auth });
  assert.deepEqual(await set.json(), { result: "OK" });
  const got = await fetch(`${url}/get/${encodeURIComponent(k)}`, { headers: auth });
  assert.deepEqual(await got.json(), { result: TRICKY });
  assert.equal(await redis.get(k), TRICKY);
});

console.log(`upstash client checks: ${passed} passed, ${failed.length} failed`);
if (failed.length > 0) {
  console.error(`failed: ${failed.join("; ")}`);
  process.exit(1);
}
