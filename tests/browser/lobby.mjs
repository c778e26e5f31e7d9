// Drives the browser lobby in headless Chromium: two pages create and join the same room, one
// paints a cell and sends a chat line, the other must show both. Saves screenshots of both
// pages. Run by tests/server/browser.rs:
//
//   node tests/browser/lobby.mjs <base-url> <artifact-dir> <chromium-path>
//
// Exits 0 on success; on failure prints why, saves failure screenshots, and exits 1.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, artifacts, executablePath] = process.argv.slice(2);
if (!base || !artifacts || !executablePath) {
  console.error("usage: node lobby.mjs <base-url> <artifact-dir> <chromium-path>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

const ROOM = "e2e-room";
const CELL = '#grid .cell[data-x="3"][data-y="4"]';
const RED = "#e4572e";
const TIMEOUT = 10_000;

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // Running as root in CI containers needs the sandbox off.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
let alice, bob;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 820 } });
  alice = await context.newPage();
  // A second context: its own localStorage, as a second person's browser would have.
  bob = await (await browser.newContext({ viewport: { width: 1280, height: 820 } })).newPage();
  for (const [who, page] of [["alice", alice], ["bob", bob]]) {
    page.on("pageerror", (err) => console.error(`${who} page error: ${err.message}`));
    page.on("console", (msg) => { if (msg.type() === "error") console.error(`${who} console: ${msg.text()}`); });
    await page.goto(base, { waitUntil: "load" });
    await page.waitForSelector('body[data-ready="true"]', { timeout: TIMEOUT });
    await page.fill("#name", who);
    await page.dispatchEvent("#name", "change");
  }

  // Alice creates the room; Bob sees it appear in his live list and joins it.
  await alice.fill("#create-name", ROOM);
  await alice.fill("#create-max", "4");
  await alice.click("#create-btn");
  await alice.waitForSelector(`#room-title:text-is("${ROOM}")`, { timeout: TIMEOUT });
  await bob.click(`#room-list tr[data-room="${ROOM}"] button.join`, { timeout: TIMEOUT });
  await bob.waitForSelector(`#room-title:text-is("${ROOM}")`, { timeout: TIMEOUT });

  // Each sees the other in the member list, by name (names travel in the shared state).
  await alice.waitForSelector('#members .member-name:text-is("bob")', { timeout: TIMEOUT });
  await bob.waitForSelector('#members .member-name:text-is("alice")', { timeout: TIMEOUT });

  // Alice paints a cell and says hello.
  await alice.fill("#color", RED);
  await alice.click(CELL);
  await alice.fill("#chat-input", "hello from alice");
  await alice.click("#chat-send");

  // Bob's page shows both.
  await bob.waitForFunction(
    ([selector, rgb]) => getComputedStyle(document.querySelector(selector)).backgroundColor === rgb,
    [CELL, "rgb(228, 87, 46)"],
    { timeout: TIMEOUT },
  );
  await bob.waitForSelector('#chat-log li:has-text("alice: hello from alice")', { timeout: TIMEOUT });

  await alice.screenshot({ path: join(artifacts, "lobby-alice.png"), fullPage: true });
  await bob.screenshot({ path: join(artifacts, "lobby-bob.png"), fullPage: true });
  console.log(`ok: screenshots in ${artifacts}`);
} catch (err) {
  console.error(`browser test failed: ${err.message}`);
  for (const [who, page] of [["alice", alice], ["bob", bob]]) {
    await page?.screenshot({ path: join(artifacts, `failed-${who}.png`), fullPage: true }).catch(() => {});
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
