// The line protocol of client/test's scenario scripts with the Rust test
// that runs them (tests/src/node_driver.rs): {"ask": …} lines out, one
// `ok` (or what went wrong) back on stdin; {"result": …} lines out.
import { createInterface } from "node:readline";

const replies = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Asks the Rust side to do something (store rounds, cut streams). */
export async function ask(request) {
  console.log(JSON.stringify({ ask: request }));
  const { value, done } = await replies.next();
  if (done || value !== "ok") throw new Error(`the test did not do ${JSON.stringify(request)}: ${value}`);
}

/** Stores rounds `ids` of a game (signed ingest, on the Rust side). */
export const store = (ids, game = "crash", type = "multiplier") => ask({ store: ids, game, type });

/** A line of results for the Rust side to check. */
export const result = (value) => console.log(JSON.stringify({ result: value }));

/**
 * Runs the scenario named by the first argument with the arguments
 * `setUp` made, then its `done` (which may check more); exits 1 with what
 * failed.
 */
export async function run(scenarios, setUp = async () => ({ args: [], done: async () => {} })) {
  const name = process.argv[2];
  if (!scenarios[name]) {
    console.error(`usage: node ${process.argv[1]} <${Object.keys(scenarios).join("|")}>`);
    process.exit(2);
  }
  let code = 0;
  const { args, done } = await setUp();
  try {
    await scenarios[name](...args);
  } catch (err) {
    console.error(err?.stack ?? String(err));
    code = 1;
  }
  try {
    await done();
  } catch (err) {
    console.error(err?.stack ?? String(err));
    code = 1;
  }
  process.exit(code);
}
