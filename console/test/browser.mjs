// The operators' console in headless Chromium (playwright-core) against the
// whole local system, driven by tests/tests/console_browser.rs:
//   node console/test/browser.mjs console
// GAMEFEED_URL: the Worker; GAMEFEED_KEY: a key for SSE clients;
// GAMEFEED_ADMIN: the admin token, typed into the page; GAMEFEED_GAMES: the
// four games' slugs; GAMEFEED_SHOT: where the screenshot goes.
import assert from "node:assert/strict";

import { chromium } from "playwright-core";

import { ask, result, run } from "../../client/test/driver.mjs";

const feedUrl = process.env.GAMEFEED_URL.replace(/\/$/, "");
const key = process.env.GAMEFEED_KEY;
const admin = process.env.GAMEFEED_ADMIN;
const games = process.env.GAMEFEED_GAMES.split(",");
const shot = process.env.GAMEFEED_SHOT;
const TIMEOUT = 90_000;

/** An SSE stream opened from Node with `credential` in `Authorization`. */
async function openStream(path, credential) {
  const abort = new AbortController();
  const response = await fetch(`${feedUrl}${path}`, { headers: { authorization: `Bearer ${credential}` }, signal: abort.signal });
  if (response.status !== 200) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  const reader = response.body.getReader();
  let open = true;
  const ended = (async () => {
    try {
      while (!(await reader.read()).done);
    } catch {
      // aborted
    }
    open = false;
  })();
  return { close: () => abort.abort(), ended, isOpen: () => open };
}

/** Asks again (pressing Refresh) until `check` holds of what the page shows. */
async function until(page, what, check, arg) {
  const deadline = Date.now() + TIMEOUT;
  let last;
  for (;;) {
    last = await page.evaluate(check, arg);
    if (last === true) return;
    if (Date.now() > deadline) throw new Error(`${what} never held; last ${JSON.stringify(last)}`);
    await page.click("#refresh");
    await page.waitForTimeout(500);
  }
}

/** Progress, printed for the Rust side's output. */
const step = (text) => console.log(`step: ${text}`);

async function console_(page, requests) {
  step("sign in");
  // Sign in: the token is typed once and kept for the tab.
  await page.goto(`${feedUrl}/console`);
  await page.fill("#token", admin);
  await page.click("#sign-in button[type=submit]");
  await page.waitForFunction((n) => document.querySelectorAll(".game[data-game]").length >= n, games.length, { timeout: TIMEOUT });
  assert.match(await page.textContent("#health-limits"), /limits on/);
  assert.match(await page.textContent("#health-config"), /config ok/);
  await page.reload();
  await page.waitForSelector(".game[data-game]", { timeout: TIMEOUT });
  assert.equal(await page.$("#sign-in"), null, "still signed in after a reload");

  step("viewers and delays");
  // Viewers while SSE clients are open, and commit → edge figures after rounds flow.
  const watchers = [];
  for (const game of games) watchers.push(await openStream(`/sse/${game}`, key));
  for (const game of games) await ask({ insert: game });
  await until(
    page,
    "every game watched, with its delay",
    (slugs) => {
      const cards = slugs.map((s) => document.querySelector(`.game[data-game="${s}"]`));
      const ok = cards.every(
        (c) => c && Number(c.querySelector(".viewers").textContent) >= 1 && /p50 \d/.test(c.querySelector(".delay").textContent) && c.querySelectorAll(".rounds li").length > 0,
      );
      return ok || cards.map((c) => c && [c.querySelector(".viewers").textContent, c.querySelector(".delay").textContent]);
    },
    games,
  );
  const shown = await page.$$eval(".game", (cards) =>
    cards.map((c) => ({ game: c.dataset.game, viewers: Number(c.querySelector(".viewers").textContent), delay: c.querySelector(".delay").textContent, charts: c.querySelectorAll("canvas").length })),
  );
  for (const card of shown) assert.ok(card.charts >= 1, `${card.game} has its chart`);
  result({ games: shown });

  step("create a key");
  // Create a key with every field of the form; it is shown once.
  const expires = new Date(Date.now() + 30 * 86_400_000);
  const local = new Date(expires.getTime() - expires.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
  await page.fill("#new-name", "console partner");
  await page.fill("#new-games", games[0]);
  await page.fill("#new-types", "crash");
  await page.fill("#new-origins", "https://partner.example");
  await page.fill("#new-expires", local);
  await page.fill("#new-max_streams", "5");
  await page.fill("#new-connects_per_minute", "100");
  await page.fill("#new-requests_per_minute", "50");
  await page.check("#new-test");
  await page.click("#create-key button[type=submit]");
  await page.waitForSelector("#new-key-value", { timeout: TIMEOUT });
  const created = (await page.textContent("#new-key-value")).trim();
  assert.match(created, /^sk_test_/);
  const id = (await page.textContent("#new-key .once p")).match(/key_[0-9a-f]+/)[0];
  const row = `.key[data-id="${id}"]`;
  await page.waitForSelector(row, { timeout: TIMEOUT });
  const listed = await page.textContent(row);
  assert.match(listed, /console partner/);
  assert.match(listed, new RegExp(`games ${games[0]}; types crash`));
  assert.match(listed, /https:\/\/partner\.example/);
  assert.match(listed, /5 streams, 100 connects\/min, 50 requests\/min/);
  await page.click("#new-key-done");
  assert.ok(!(await page.content()).includes(created), "the key is shown once, then nowhere");

  step("the key's streams counted");
  // Its streams are counted, and its share of max_streams is shown.
  const mine = [];
  for (let i = 0; i < 4; i++) mine.push(await openStream(`/sse/${games[0]}`, created));
  await until(page, "the key's four streams counted", (sel) => document.querySelector(`${sel} .open`)?.textContent === "4" || document.querySelector(`${sel} .open`)?.textContent, row);
  assert.match(await page.textContent(`${row} .shares`), /streams 80 %/);
  assert.ok(await page.$(`${row} .flag`), "a key at 80 % of max_streams is flagged");

  step("usage chart");
  // Its usage chart is drawn.
  await page.click(`${row} button.usage`);
  await page.waitForSelector(`${row} .usage-chart canvas`, { timeout: TIMEOUT });
  const canvas = await page.$eval(`${row} .usage-chart canvas`, (c) => ({ width: c.width, height: c.height }));
  assert.ok(canvas.width > 100 && canvas.height > 50, JSON.stringify(canvas));
  assert.match(await page.textContent(`${row} .usage-chart`), /connects/);
  await page.screenshot({ path: shot, fullPage: true });

  step("revoke");
  // Revoke, with a confirmation: the key shows revoked and its streams end.
  let confirmed = "";
  page.once("dialog", (dialog) => {
    confirmed = dialog.message();
    void dialog.accept();
  });
  await page.click(`${row} button.revoke`);
  await page.waitForSelector(`${row}.revoked`, { timeout: TIMEOUT });
  assert.match(confirmed, new RegExp(`Revoke console partner \\(${id}\\)`));
  const ended = await Promise.race([
    Promise.all(mine.map((s) => s.ended)).then(() => true),
    new Promise((resolve) => setTimeout(() => resolve(false), TIMEOUT)),
  ]);
  assert.ok(ended, "the revoked key's streams ended");
  assert.ok(watchers.every((w) => w.isOpen()), "the other key's streams go on");

  step("phone width");
  // A phone's width: nothing wider than the screen.
  // The charts follow the resize in the page's own resize handler: waited
  // for, not slept on.
  await page.setViewportSize({ width: 390, height: 844 });
  const fits = await page
    .waitForFunction(() => document.documentElement.scrollWidth <= window.innerWidth, null, { timeout: 10_000 })
    .then(() => true, () => false);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(fits && overflow <= 0, `the page is ${overflow}px wider than a phone`);

  // The admin token never went into a URL.
  assert.ok(requests.length > 10, `${requests.length} requests seen`);
  for (const url of requests) assert.ok(!url.includes(admin) && !url.includes(encodeURIComponent(admin)), `the token in ${url}`);
  for (const w of watchers) w.close();
  result({ requests: requests.length, revokedStreamsEnded: mine.length });
}

await run({ console: console_ }, async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));
  page.on("pageerror", (err) => console.error(`page error: ${err.message}`));
  return { args: [page, requests], done: () => browser.close() };
});
