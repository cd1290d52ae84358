// The console's pure helpers (console/src/format.ts, built as dist/format.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { bare, duration, flagged, keyRequest, list, perMinute, percent, share, usageColumns } from "../dist/format.js";

test("shares of limits, and the 80 % flag", () => {
  assert.equal(share(8, 10), 0.8);
  assert.equal(share(3, 0), null, "no limit");
  assert.equal(flagged([share(8, 10), null]), true);
  assert.equal(flagged([share(7, 10), share(79, 100), null]), false);
  assert.equal(flagged([share(12, 10)]), true, "over the limit");
  assert.equal(flagged([]), false);
  assert.equal(percent(0.8), "80 %");
  assert.equal(percent(null), "no limit");
});

test("durations read as people say them", () => {
  assert.equal(duration(0.0171), "17 ms");
  assert.equal(duration(1.44), "1.4 s");
  assert.equal(duration(12.4), "12 s");
  assert.equal(duration(null), "—");
  assert.equal(duration(undefined), "—");
  assert.equal(duration(Number.NaN), "—");
  assert.equal(perMinute(42.4), "42");
  assert.equal(perMinute(3.46), "3.5");
  assert.equal(perMinute(2 / 60), "0.03");
  assert.equal(perMinute(0), "0");
});

const empty = { name: "", games: "", types: "", origins: "", expires: "", maxStreams: "", connectsPerMinute: "", requestsPerMinute: "", test: false };

test("the create form becomes the admin route's body, every field", () => {
  const { body } = keyRequest({
    ...empty,
    name: "  partner-a ",
    games: "crash, double ,",
    types: "dice",
    origins: "https://a.example, http://localhost:8080",
    expires: "2030-01-02T03:04",
    maxStreams: "200",
    connectsPerMinute: "0",
    requestsPerMinute: "600",
    test: true,
  });
  assert.equal(body.name, "partner-a");
  assert.deepEqual(body.games, ["crash", "double"]);
  assert.deepEqual(body.types, ["dice"]);
  assert.deepEqual(body.origins, ["https://a.example", "http://localhost:8080"]);
  assert.equal(body.expires_at, new Date("2030-01-02T03:04").toISOString());
  assert.equal(body.max_streams, 200);
  assert.equal(body.connects_per_minute, 0);
  assert.equal(body.requests_per_minute, 600);
  assert.equal(body.test, true);
  const minimal = keyRequest({ ...empty, name: "x" }).body;
  assert.deepEqual(minimal, { name: "x", test: false }, "empty fields are left out: the defaults apply");
});

test("the create form refuses what the route would", () => {
  assert.match(keyRequest({ ...empty, name: "   " }).error, /name/);
  assert.match(keyRequest({ ...empty, name: "x", maxStreams: "-1" }).error, /max streams/);
  assert.match(keyRequest({ ...empty, name: "x", requestsPerMinute: "2.5" }).error, /requests per minute/);
  assert.match(keyRequest({ ...empty, name: "x", expires: "soon" }).error, /expiry/);
  assert.deepEqual(list(" , "), undefined);
});

test("usage becomes chart columns, oldest day first, stream seconds in hours", () => {
  const columns = usageColumns([
    { day: "2026-12-03", connects: 5, rejected: 1, stream_seconds: 7200, requests: 9 },
    { day: "2026-12-02", connects: 2, rejected: 0, stream_seconds: 1800, requests: 0 },
  ]);
  assert.deepEqual(columns, [
    [Date.UTC(2026, 11, 2) / 1000, Date.UTC(2026, 11, 3) / 1000],
    [2, 5],
    [0.5, 2],
    [0, 9],
    [0, 1],
  ]);
  assert.equal(bare("game:crash-classic"), "crash-classic");
  assert.equal(bare("type:dice"), "dice");
});
