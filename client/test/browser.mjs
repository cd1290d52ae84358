// @gamefeed/client in headless Chromium (playwright-core) against the real
// Worker, driven by tests/tests/client_browser.rs like client/test/live.mjs:
//   node client/test/browser.mjs <persist|offline|react>
// The pages are served from another origin than the Worker's (a server this
// script binds on port 0), as a partner's pages are: every request to the
// feed is cross-origin, with its preflight.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

import { result, run, store } from "./driver.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const feedUrl = process.env.GAMEFEED_URL;
const key = process.env.GAMEFEED_KEY;
const TIMEOUT = 60_000;

// A page that logs every round it is given into sessionStorage, so what a
// tab saw survives its reloads, and shows the feed's state.
const feedPage = `<!doctype html><meta charset="utf-8"><title>feed</title><p id="state">-</p>
<script type="module">
const params = new URLSearchParams(location.search);
const { GameFeed } = await import(params.get("feed") + "/client.js");
const log = JSON.parse(sessionStorage.getItem("log") ?? "[]");
window.__log = () => JSON.parse(sessionStorage.getItem("log") ?? "[]");
window.__states = [];
const feed = new GameFeed({ url: params.get("feed"), games: ["crash"], apiKey: params.get("key"),
  persist: "test", heartbeatMs: 1000, shareTabs: params.has("share") });
feed.on("round", (round, info) => { log.push([round.round_id, info.live]); sessionStorage.setItem("log", JSON.stringify(log)); });
feed.on("state", (s) => { window.__states.push(s); document.getElementById("state").textContent = s; });
window.__feed = feed;
</script>`;

async function serve() {
  let reactBundle = "";
  const server = createServer(async (req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/feed.html") {
      res.writeHead(200, { "content-type": "text/html" }).end(feedPage);
    } else if (path === "/react.html") {
      res.writeHead(200, { "content-type": "text/html" })
        .end(`<!doctype html><meta charset="utf-8"><div id="root"></div><script src="/react.js"></script>`);
    } else if (path === "/react.js") {
      if (!reactBundle) {
        const built = await esbuild.build({
          entryPoints: [join(here, "pages/react-page.tsx")],
          bundle: true,
          write: false,
          format: "iife",
          jsx: "automatic",
          define: { "process.env.NODE_ENV": '"production"' },
          alias: { "@gamefeed/client/react": join(here, "../dist/react.js") },
          logLevel: "warning",
        });
        reactBundle = built.outputFiles[0].text;
      }
      res.writeHead(200, { "content-type": "text/javascript" }).end(reactBundle);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

const scenarios = {
  /** A page with `persist` reloaded mid-stream: no gap, no repeat. */
  async persist(page, origin) {
    await page.goto(`${origin}/feed.html?feed=${encodeURIComponent(feedUrl)}&key=${encodeURIComponent(key)}`);
    await page.waitForFunction(() => document.getElementById("state").textContent === "live", null, { timeout: TIMEOUT });
    await store([1, 2]);
    await page.waitForFunction(() => window.__log().length >= 3, null, { timeout: TIMEOUT });
    // Rounds stored while the page reloads: the new page resumes from the
    // id the old one kept.
    const reloaded = page.reload();
    await store([3, 4]);
    await reloaded;
    await page.waitForFunction(() => document.getElementById("state").textContent === "live", null, { timeout: TIMEOUT });
    await store([5]);
    await page.waitForFunction(() => window.__log().some(([id]) => id === 5), null, { timeout: TIMEOUT });
    const ids = (await page.evaluate(() => window.__log())).map(([id]) => id);
    assert.deepEqual(ids, [0, 1, 2, 3, 4, 5], "every round once, in order, across the reload");
    result({ persist: "ok", ids });
  },

  /** The network goes away and comes back: reconnecting, then live, nothing lost. */
  async offline(page, origin, context) {
    await page.goto(`${origin}/feed.html?feed=${encodeURIComponent(feedUrl)}&key=${encodeURIComponent(key)}`);
    await page.waitForFunction(() => document.getElementById("state").textContent === "live", null, { timeout: TIMEOUT });
    await store([1]);
    await page.waitForFunction(() => window.__log().some(([id]) => id === 1), null, { timeout: TIMEOUT });
    await context.setOffline(true);
    await page.waitForFunction(() => document.getElementById("state").textContent === "reconnecting", null, { timeout: TIMEOUT });
    await store([2, 3]);
    await context.setOffline(false);
    await page.waitForFunction(() => window.__log().some(([id]) => id === 3), null, { timeout: TIMEOUT });
    await page.waitForFunction(() => document.getElementById("state").textContent === "live", null, { timeout: TIMEOUT });
    const ids = (await page.evaluate(() => window.__log())).map(([id]) => id);
    assert.deepEqual(ids, [0, 1, 2, 3]);
    const states = await page.evaluate(() => window.__states);
    assert.deepEqual(states.slice(0, 1), ["live"]);
    assert.ok(states.indexOf("reconnecting") > 0 && states.at(-1) === "live", JSON.stringify(states));
    result({ offline: "ok", states });
  },

  /** Two tabs share one connection; when the one holding it closes, the other takes over. */
  async tabs(first, origin, context) {
    let streams = 0;
    context.on("request", (r) => r.method() === "GET" && r.url().includes("/sse/") && streams++);
    const page = `${origin}/feed.html?share&feed=${encodeURIComponent(feedUrl)}&key=${encodeURIComponent(key)}`;
    await first.goto(page);
    await first.waitForFunction(() => document.getElementById("state").textContent === "live", null, { timeout: TIMEOUT });
    const second = await context.newPage();
    await second.goto(page);
    // The tab joining is told where things stand: live, and the latest round.
    await second.waitForFunction(
      () => document.getElementById("state").textContent === "live" && window.__log().length === 1, null, { timeout: TIMEOUT });
    await store([1]);
    for (const tab of [first, second]) {
      await tab.waitForFunction(() => window.__log().some(([id]) => id === 1), null, { timeout: TIMEOUT });
    }
    assert.equal(streams, 1, "one connection for both tabs");
    await first.close();
    await store([2]);
    await second.waitForFunction(() => window.__log().some(([id]) => id === 2), null, { timeout: TIMEOUT });
    assert.equal(streams, 2, "the second tab connected once the first was gone");
    const ids = (await second.evaluate(() => window.__log())).map(([id]) => id);
    assert.deepEqual(ids, [0, 1, 2], "no gap, no repeat across the hand-over");
    assert.equal(await second.textContent("#state"), "live");
    result({ tabs: "ok", ids });
  },

  /** The React hook renders the latest round and the viewer count. */
  async react(page, origin) {
    await store([1, 2, 3]);
    await page.goto(`${origin}/react.html?feed=${encodeURIComponent(feedUrl)}&key=${encodeURIComponent(key)}`);
    await page.waitForFunction(
      () => document.getElementById("latest")?.textContent === "3" && document.getElementById("viewers")?.textContent === "1",
      null, { timeout: TIMEOUT });
    await store([4]);
    await page.waitForFunction(() => document.getElementById("latest").textContent === "4", null, { timeout: TIMEOUT });
    const rounds = await page.$$eval("#rounds li", (lis) => lis.map((li) => li.textContent));
    assert.deepEqual(rounds, ["4", "3", "2", "1"]);
    assert.equal(await page.textContent("#state"), "live");
    await page.screenshot({ path: join(here, "../../tests/artifacts/client-react.png") });
    result({ react: "ok", rounds });
  },
};

await run(scenarios, async () => {
  const { server, origin } = await serve();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  return {
    args: [page, origin, context],
    done: async () => {
      await browser.close();
      server.close();
      // Checked last, after the scenario's own checks.
      assert.deepEqual(errors, [], "no error in the page");
    },
  };
});
