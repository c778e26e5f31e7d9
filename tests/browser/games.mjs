// Plays the example games' pages (examples/games/web/) in headless Chromium, two players each.
//
// Arena: Alice and Bob open the same arena; each page hears the world 20 times a second and
// draws both players. Alice holds an arrow key: Bob's page sees her move that way. A forged
// input (a direction past 1) is refused by the server with the game's reason and moves no one.
// Cards: Alice makes a table and Bob sits down; Alice starts; each page shows five cards of its
// own, none of them the other's; Bob playing out of turn is refused (`not_your_turn`) and his
// cards stay disabled; Alice plays a card and Bob's page logs it. Screenshots of all four
// pages are saved. Run by tests/games.rs:
//
//   node tests/browser/games.mjs <base-url> <artifact-dir> <chromium-path>
//
// Exits 0 on success; on failure prints why, saves failure screenshots, and exits 1.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, artifacts, executablePath] = process.argv.slice(2);
if (!base || !artifacts || !executablePath) {
  console.error("usage: node games.mjs <base-url> <artifact-dir> <chromium-path>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });
const TIMEOUT = 15_000;

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
const pages = {};
async function open(who, path) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  page.on("pageerror", (err) => console.error(`${who}: page error: ${err.message}`));
  pages[who] = page;
  await page.goto(new URL(path, base).href);
  return page;
}

try {
  // ---- arena ------------------------------------------------------------------------------
  const alice = await open("arena-alice", "/arena?room=e2e-arena");
  await alice.waitForFunction(() => window.arena?.ticks > 0, null, { timeout: TIMEOUT });
  const bob = await open("arena-bob", "/arena?room=e2e-arena");
  const twoPlayers = () => window.arena?.worlds.at(-1)?.players.size === 2;
  await alice.waitForFunction(twoPlayers, null, { timeout: TIMEOUT });
  await bob.waitForFunction(twoPlayers, null, { timeout: TIMEOUT });
  const aliceId = await alice.evaluate(() => window.arena.me);
  const xSeenByBob = () => bob.evaluate((id) => window.arena.worlds.at(-1).players.get(id).x, aliceId);
  const startX = await xSeenByBob();
  // Toward the far side: right from the left half, left from the right half.
  const [key, sign] = startX < 50 ? ["ArrowRight", 1] : ["ArrowLeft", -1];
  await alice.focus("canvas");
  await alice.keyboard.down(key);
  await bob.waitForFunction(
    ([id, x0, s]) => s * (window.arena.worlds.at(-1).players.get(id).x - x0) > 10,
    [aliceId, startX, sign],
    { timeout: TIMEOUT },
  );
  await alice.keyboard.up(key);
  // A forged input: refused with the game's reason, Alice's direction unchanged (stopped).
  await alice.evaluate(() => window.arena.steer(0, 0));
  await alice.evaluate(() => window.arena.steer(5, 0));
  await alice.waitForFunction(() => window.arena.error === "invalid_input", null, { timeout: TIMEOUT });
  const x1 = await xSeenByBob();
  await bob.waitForFunction(() => window.arena.ticks > 0, null, { timeout: TIMEOUT });
  await new Promise((r) => setTimeout(r, 300));
  const x2 = await xSeenByBob();
  if (Math.abs(x2 - x1) > 1e-9) throw new Error(`a refused input moved Alice: ${x1} -> ${x2}`);
  await alice.screenshot({ path: join(artifacts, "arena-alice.png") });
  await bob.screenshot({ path: join(artifacts, "arena-bob.png") });
  console.log(`arena: Alice moved from x=${startX.toFixed(1)} to x=${x2.toFixed(1)} as Bob saw it`);

  // ---- cards ------------------------------------------------------------------------------
  const carol = await open("cards-alice", "/cards?room=e2e-cards");
  await carol.waitForFunction(() => window.cards?.hand.length === 5, null, { timeout: TIMEOUT });
  const dave = await open("cards-bob", "/cards?room=e2e-cards");
  await dave.waitForFunction(() => window.cards?.hand.length === 5, null, { timeout: TIMEOUT });
  await carol.waitForFunction(() => !document.getElementById("start").hidden, null, { timeout: TIMEOUT });
  await carol.click("#start");
  await carol.waitForFunction(() => document.getElementById("turn").textContent === "Your turn", null, { timeout: TIMEOUT });
  await dave.waitForFunction(() => /turn$/.test(document.getElementById("turn").textContent), null, { timeout: TIMEOUT });
  const handA = await carol.evaluate(() => window.cards.hand);
  const handB = await dave.evaluate(() => window.cards.hand);
  if (handA.some((c) => handB.includes(c))) {
    throw new Error(`the hands overlap: ${handA} / ${handB}`);
  }
  const daveCards = await dave.$$eval("#hand .card", (bs) => bs.map((b) => b.disabled));
  if (daveCards.length !== 5 || daveCards.some((d) => !d)) {
    throw new Error(`Bob's cards should be shown and disabled on Alice's turn: ${daveCards}`);
  }
  // Out of turn, through the page's own call: refused with the game's reason.
  await dave.evaluate((card) => window.cards.play(card), handB[0]);
  await dave.waitForFunction(() => window.cards.refusal === "not_your_turn", null, { timeout: TIMEOUT });
  // Alice plays her first card; Bob's table log shows it, and it is his turn.
  await carol.click(`#hand .card[data-card="${handA[0]}"]`);
  await dave.waitForFunction(
    (card) => window.cards.log.some((l) => l.endsWith(`played ${card}`)),
    handA[0],
    { timeout: TIMEOUT },
  );
  await dave.waitForFunction(() => document.getElementById("turn").textContent === "Your turn", null, { timeout: TIMEOUT });
  await carol.waitForFunction(() => window.cards.hand.length === 4, null, { timeout: TIMEOUT });
  await carol.screenshot({ path: join(artifacts, "cards-alice.png") });
  await dave.screenshot({ path: join(artifacts, "cards-bob.png") });
  console.log(`cards: hands ${handA} / ${handB}; Alice played ${handA[0]}`);
  await browser.close();
} catch (err) {
  console.error(`games e2e failed: ${err.stack ?? err}`);
  for (const [who, page] of Object.entries(pages)) {
    await page.screenshot({ path: join(artifacts, `failed-${who}.png`) }).catch(() => {});
    const state = await page.evaluate(() => JSON.stringify({ arena: window.arena && { ...window.arena, worlds: undefined }, cards: window.cards, status: document.getElementById("status")?.textContent })).catch(() => "?");
    console.error(`${who}: ${state}`);
  }
  await browser.close();
  process.exit(1);
}
