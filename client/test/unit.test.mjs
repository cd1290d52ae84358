// Unit tests of the client's parts, on the built package (node --test).
import assert from "node:assert/strict";
import { test } from "node:test";

import { SseParser, MAX_DELAY_MS, members, movedMember, nextDelay, parseCursor, streamPath } from "../dist/index.js";

function parse(chunks) {
  const events = [];
  const retries = [];
  const parser = new SseParser((e) => events.push(e), (ms) => retries.push(ms));
  for (const chunk of chunks) parser.push(chunk);
  return { events, retries, parser };
}

test("frames split anywhere parse the same", () => {
  const text = "retry: 2500\n\nid: 7\nevent: initial\ndata: {\"a\":1}\n\n: heartbeat 9\n\nid: 8\ndata: x\ndata: y\n\n";
  const whole = parse([text]);
  assert.deepEqual(whole.retries, [2500]);
  assert.deepEqual(whole.events, [
    { type: "initial", data: '{"a":1}', id: "7" },
    { type: "message", data: "x\ny", id: "8" },
  ]);
  for (let size = 1; size < text.length; size++) {
    const chunks = [];
    for (let i = 0; i < text.length; i += size) chunks.push(text.slice(i, i + size));
    assert.deepEqual(parse(chunks).events, whole.events, `chunks of ${size}`);
  }
});

test("CRLF, CR and LF all end lines, also across chunks", () => {
  const want = [{ type: "a", data: "1", id: "" }, { type: "b", data: "2", id: "" }];
  assert.deepEqual(parse(["event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\r"]).events, want);
  // A CR ending one chunk and an LF starting the next are one line end.
  assert.deepEqual(parse(["event: a\r", "\ndata: 1\r", "\n\r", "\nevent: b\ndata: 2\n\n"]).events, want);
});

test("a leading BOM is dropped, once", () => {
  assert.deepEqual(parse(["\uFEFFdata: x\n\n"]).events, [{ type: "message", data: "x", id: "" }]);
  // Only at the very start: later it is part of a field name.
  assert.deepEqual(parse(["data: x\n\n", "\uFEFFdata: y\n\n"]).events.length, 1);
});

test("comments, unknown fields, bad retries and empty data", () => {
  const { events, retries } = parse([
    ": comment\nfoo: bar\nretry: 12a\nretry: -1\nretry\ndata\n\nevent: only\n\nid: 3\n\ndata:  two spaces\n\n",
  ]);
  assert.deepEqual(retries, []);
  assert.deepEqual(events, [
    { type: "message", data: "", id: "" },
    // An id-only frame moves the last id; the next event carries it.
    { type: "message", data: " two spaces", id: "3" },
  ]);
});

test("an id with NUL is ignored; the last id stays in force", () => {
  const { events, parser } = parse(["id: 5\ndata: a\n\nid: 6\0x\ndata: b\n\nid\ndata: c\n\n"]);
  assert.deepEqual(events.map((e) => e.id), ["5", "5", ""]);
  assert.equal(parser.lastId, "");
});

test("backoff: full jitter, doubling, capped, Retry-After a floor", () => {
  assert.equal(nextDelay(0, 3000, () => 0), 0);
  assert.equal(nextDelay(0, 3000, () => 1), 3000);
  assert.equal(nextDelay(1, 3000, () => 1), 6000);
  assert.equal(nextDelay(3, 3000, () => 0.5), 12000);
  assert.equal(nextDelay(50, 3000, () => 1), MAX_DELAY_MS);
  assert.equal(nextDelay(-3, 3000, () => 1), 3000);
  assert.equal(nextDelay(0, 3000, () => 7), 3000, "a draw is clamped to 0..1");
  assert.equal(nextDelay(4, 3000, () => 0, 5000), 5000);
  assert.equal(nextDelay(4, 3000, () => 1, 5000), 8000);
  // A thousand clients cut at once: spread over the span, not bunched.
  const delays = Array.from({ length: 1000 }, () => nextDelay(0, 3000));
  const seconds = new Map();
  for (const d of delays) seconds.set(Math.floor(d / 1000), (seconds.get(Math.floor(d / 1000)) ?? 0) + 1);
  assert.ok([...seconds.values()].every((n) => n < 500), JSON.stringify([...seconds]));
  assert.ok(delays.every((d) => d >= 0 && d <= 3000));
});

test("streams, routes and cursors", () => {
  assert.deepEqual(members([" dice", "crash", "crash", ""], ["multiplier"]), ["game:crash", "game:dice", "type:multiplier"]);
  assert.equal(streamPath(["game:crash"]), "/sse/crash");
  assert.equal(streamPath(["type:dice"]), "/sse/type/dice");
  assert.equal(streamPath(["game:crash", "type:dice"]), "/sse?games=crash&types=dice");
  assert.equal(streamPath(["game:a", "game:b"]), "/sse?games=a%2Cb");
  assert.deepEqual(
    [...parseCursor("g:crash:12,g:dice-duel:7.3,t:multiplier:-4")],
    [["game:crash", "12"], ["game:dice-duel", "7.3"], ["type:multiplier", "-4"]],
  );
  assert.equal(movedMember("g:crash:12", "g:crash:12,t:dice:3"), "type:dice");
  assert.equal(movedMember("g:crash:12,t:dice:3", "g:crash:12.1,t:dice:3"), "game:crash");
  assert.equal(movedMember("g:crash:12", "g:crash:12"), undefined);
});
