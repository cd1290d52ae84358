// Drives the demo page in Debian's headless Chromium (playwright-core).
//   node tests/browser/demo.mjs <page url> <game> <round id> <other game> <screenshot path> [<resume ids>]
// Prints `ready` once the page is connected and shows the game's card, then
// waits for the round to appear on that card and prints one JSON line with
// what the page shows. With resume ids (comma-separated), it then waits for
// the connection to drop and come back, and for those rounds to appear on
// the card, and prints a second JSON line: the states the page went through
// and the round ids on the card. Exits non-zero if anything is missing.
import { chromium } from "playwright-core";

const [url, game, roundId, otherGame, screenshot, resumeIds] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
let code = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 700 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(
    (g) => document.querySelector("#state")?.textContent === "connected" &&
      document.querySelector(`section[data-game="${g}"] li[data-id]`),
    game, { timeout: 60000 });
  // Every state the page shows from now on, in order.
  await page.evaluate(() => {
    window.__states = [];
    const el = document.querySelector("#state");
    new MutationObserver(() => window.__states.push(el.textContent))
      .observe(el, { childList: true, characterData: true, subtree: true });
  });
  console.log("ready");
  const row = `section[data-game="${game}"] li[data-id="${roundId}"]`;
  await page.waitForSelector(row, { timeout: 60000 });
  const result = {
    state: await page.textContent("#state"),
    row: await page.textContent(row),
    latest: await page.textContent(`section[data-game="${game}"] .latest`),
    delay: await page.textContent(`section[data-game="${game}"] .delay b`),
    on_other_card: await page.$(`section[data-game="${otherGame}"] li[data-id="${roundId}"]`) !== null,
    cards: await page.$$eval("section.card", (cards) => cards.map((c) => c.dataset.game)),
    errors,
  };
  await page.screenshot({ path: screenshot });
  console.log(JSON.stringify(result));
  if (resumeIds) {
    const ids = resumeIds.split(",");
    await page.waitForFunction(
      ([g, wanted]) => window.__states.includes("resumed") &&
        wanted.every((id) => document.querySelector(`section[data-game="${g}"] li[data-id="${id}"]`)),
      [game, ids], { timeout: 60000 });
    await page.screenshot({ path: screenshot }); // the richer picture: after the resume
    console.log(JSON.stringify({
      states: await page.evaluate(() => window.__states),
      state: await page.textContent("#state"),
      ids: await page.$$eval(`section[data-game="${game}"] li[data-id]`, (lis) => lis.map((li) => li.dataset.id)),
      errors,
    }));
  }
} catch (e) {
  console.error(String(e));
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
